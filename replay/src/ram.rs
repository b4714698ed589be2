//! Rebuilding guest RAM at a checkpoint in time proportional to the pages that differ,
//! not to the size of RAM (as snapshot fuzzers do).
//!
//! RAM is always "checkpoint `base` plus some pages": the pages the guest dirtied since RAM
//! was last rebuilt (KVM's dirty log) and, for an in-memory checkpoint, the pages it
//! carries. Moving to checkpoint k rewrites only those pages and the pages that changed
//! between `base` and k.

use std::collections::BTreeMap;
use std::rc::Rc;

use roaring::RoaringBitmap;
use ttvm_vmm::memory::PAGE_SIZE;
use ttvm_vmm::vm::Vm;

use crate::recording::Recording;
use crate::trace::TraceError;

/// Pages that differ from a checkpoint's RAM, captured in memory.
#[derive(Clone, Debug, Default)]
pub struct PageOverlay {
    /// Frame -> contents.
    pub pages: BTreeMap<u32, Rc<[u8]>>,
}

impl PageOverlay {
    /// Bytes of page data held.
    pub fn bytes(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }
}

/// Errors rebuilding RAM.
#[derive(Debug, thiserror::Error)]
pub enum RamError {
    /// The trace's page store is damaged.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// KVM_GET_DIRTY_LOG failed.
    #[error(transparent)]
    Vm(#[from] ttvm_vmm::vm::VmError),
}

/// Tracks which checkpoint RAM is based on and which pages differ from it.
#[derive(Debug)]
pub struct RamTracker {
    base: u32,
    /// Pages that may differ from checkpoint `base`'s RAM.
    differs: RoaringBitmap,
}

impl RamTracker {
    /// A tracker for RAM that is at checkpoint `base` exactly... after a full rebuild.
    fn at(base: u32) -> Self {
        Self { base, differs: RoaringBitmap::new() }
    }

    /// Rebuilds all of RAM at checkpoint `k` (used once, when a replay machine is created:
    /// it starts as the freshly loaded boot image, so only non-zero pages of checkpoint 0 and
    /// later versions need writing, but every page is checked).
    pub fn full_restore(vm: &mut Vm, rec: &Recording, k: u32) -> Result<Self, RamError> {
        let pages = vm.ram().pages() as u32;
        let mut page = vec![0u8; PAGE_SIZE];
        for pfn in 0..pages {
            match rec.pages.version_at(pfn, k) {
                Some(blob) => rec.copy_page(blob, &mut page)?,
                None => page.fill(0),
            }
            let dst = vm.ram_mut().page_mut(pfn as usize);
            if dst != &page[..] {
                dst.copy_from_slice(&page);
            }
        }
        vm.take_dirty_pages()?;
        Ok(Self::at(k))
    }

    /// The checkpoint RAM is based on.
    pub fn base(&self) -> u32 {
        self.base
    }

    /// Folds KVM's dirty log into the set of pages differing from the base.
    pub fn collect_dirty(&mut self, vm: &Vm) -> Result<(), RamError> {
        for pfn in vm.take_dirty_pages()? {
            self.differs.insert(pfn);
        }
        Ok(())
    }

    /// Pages currently differing from the base (after [`RamTracker::collect_dirty`]).
    pub fn differing(&self) -> &RoaringBitmap {
        &self.differs
    }

    /// Captures the pages that differ from the base, for an in-memory checkpoint.
    pub fn capture_overlay(&mut self, vm: &Vm) -> Result<PageOverlay, RamError> {
        self.collect_dirty(vm)?;
        let mut pages = BTreeMap::new();
        for pfn in &self.differs {
            pages.insert(pfn, Rc::from(vm.ram().page(pfn as usize)));
        }
        Ok(PageOverlay { pages })
    }

    /// Makes RAM equal to checkpoint `k` plus `overlay`. Returns the number of pages written.
    pub fn restore(
        &mut self,
        vm: &mut Vm,
        rec: &Recording,
        k: u32,
        overlay: Option<&PageOverlay>,
    ) -> Result<usize, RamError> {
        // An exit nobody answered would be completed at the next entry, after this
        // restore: finish it now, so what it writes is in the dirty log collected next.
        vm.vcpu_mut().finish_exit();
        self.collect_dirty(vm)?;
        let mut fix = std::mem::take(&mut self.differs);
        fix |= rec.pages.changed_between(self.base, k);
        if let Some(o) = overlay {
            fix.extend(o.pages.keys().copied());
        }
        let mut page = vec![0u8; PAGE_SIZE];
        let mut written = 0;
        for pfn in &fix {
            let content: &[u8] = match overlay.and_then(|o| o.pages.get(&pfn)) {
                Some(p) => p,
                None => {
                    match rec.pages.version_at(pfn, k) {
                        Some(blob) => rec.copy_page(blob, &mut page)?,
                        None => page.fill(0),
                    }
                    &page
                }
            };
            let dst = vm.ram_mut().page_mut(pfn as usize);
            if dst != content {
                dst.copy_from_slice(content);
                written += 1;
            }
        }
        // Our own writes are not in KVM's log; reset it so it reports guest writes only.
        vm.take_dirty_pages()?;
        self.base = k;
        self.differs = match overlay {
            Some(o) => o.pages.keys().copied().collect(),
            None => RoaringBitmap::new(),
        };
        Ok(written)
    }
}

/// Guest RAM is rebuilt from the trace's pages: failing to is the trace's fault.
impl ttvm_vmm::error_kind::Classify for RamError {
    fn kind(&self) -> ttvm_vmm::error_kind::ErrorKind {
        match self {
            Self::Trace(_) => ttvm_vmm::error_kind::ErrorKind::Damaged,
            Self::Vm(e) => ttvm_vmm::error_kind::Classify::kind(e),
        }
    }
}
