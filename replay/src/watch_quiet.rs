//! Whether a write watchpoint can fire in a checkpoint interval, from what the trace says
//! the interval wrote (issue 23, items 2 and 3).
//!
//! A write watchpoint stops a run after a step that changed the watched bytes as read
//! through the page tables in use. Each persistent checkpoint stores every page written
//! since the previous one (`PageIndex::written_before`: KVM's dirty log, whatever value was
//! written, plus the pages ttvm's own emulated stores and the devices wrote). So if the
//! translation of the watched range is the same at every step of an interval and none of
//! the pages it translates to was written in it, the watched bytes are the same at every
//! step and the watchpoint cannot fire there: a run passes the interval over unreplayed.
//!
//! The translation is proved constant from the trace alone, when the vCPU at the interval's
//! first checkpoint uses 4-level paging (the same CR0, CR3, CR4 and EFER at its last) and:
//! - none of the page-table pages a walk of the watched range visits was written in the
//!   interval (the CPU setting an accessed or dirty bit counts as a write: conservative);
//! - no instruction of the interval can write CR0, CR3 or CR4. In long mode only MOV to a
//!   control register (`0F 22`) changes them; interrupts, exceptions, IRETQ, SYSCALL and
//!   SYSRET do not. The interval's code list names the 16-byte block of every step's first
//!   instruction; an instruction the host ran inside a step without its own position (the
//!   first of a handler a step delivered to, or one merged after another) starts at most 15
//!   bytes before the next step's block or 31 after a listed one. So every byte from 15
//!   before each listed block (and the next checkpoint's RIP) to 48 after it is read, and
//!   none may start `0F 22`. Those bytes are read through the same walks from pages the
//!   interval did not write, so, step by step, the code that ran is the code read and the
//!   translation never changed. Bytes on unmapped pages are skipped: with the tables
//!   unchanged, fetching them faults and nothing there runs.
//!
//! Read and access watchpoints are not covered: a read leaves no trace in the dirty log.

use std::collections::HashMap;
use std::rc::Rc;

use roaring::RoaringBitmap;

use crate::recording::Recording;

const CR0_PG: u64 = 1 << 31;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
const PRESENT: u64 = 1;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 0x1000;

/// Bytes read before and after each listed 16-byte code block (see the module comment).
const CODE_BEFORE: u64 = 15;
const CODE_AFTER: u64 = 48;

/// Where a virtual page is, by a walk at the interval's first checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// At this guest-physical page.
    Mapped(u64),
    /// Not mapped (or not canonical).
    Unmapped,
}

/// Guest-physical memory as recorded at checkpoint `k`, page by page from the trace.
struct PagesAt<'a> {
    rec: &'a Recording,
    k: u32,
    cache: HashMap<u32, Option<Rc<Vec<u8>>>>,
    /// Every frame read or translated to: none may have been written in the interval.
    used: RoaringBitmap,
}

impl<'a> PagesAt<'a> {
    fn new(rec: &'a Recording, k: u32) -> Self {
        Self { rec, k, cache: HashMap::new(), used: RoaringBitmap::new() }
    }

    /// The page of frame `pfn`; `None` outside RAM or if the trace cannot give it.
    fn page(&mut self, pfn: u64) -> Option<Rc<Vec<u8>>> {
        let pfn = u32::try_from(pfn).ok().filter(|&p| (p as usize) < self.rec.pages.frames())?;
        self.used.insert(pfn);
        let (rec, k) = (self.rec, self.k);
        self.cache
            .entry(pfn)
            .or_insert_with(|| match rec.pages.version_at(pfn, k) {
                Some(blob) => rec.page(blob).ok(),
                // Never stored: the boot checkpoint stores every page that is not zero.
                None => Some(Rc::new(vec![0u8; PAGE as usize])),
            })
            .clone()
    }

    fn read_u64(&mut self, phys: u64) -> Option<u64> {
        let page = self.page(phys >> 12)?;
        let at = (phys & (PAGE - 1)) as usize & !7;
        Some(u64::from_le_bytes(page[at..at + 8].try_into().ok()?))
    }

    /// A 4-level walk of `vaddr` from `cr3` as `AddressSpace::translate` does it, noting
    /// every table page visited; `None` if a table lies outside RAM.
    fn walk(&mut self, cr3: u64, vaddr: u64) -> Option<Walk> {
        let top = vaddr >> 47;
        if top != 0 && top != 0x1_ffff {
            return Some(Walk::Unmapped);
        }
        let mut table = cr3 & ADDR_MASK;
        for level in (0..4).rev() {
            let entry = self.read_u64(table + ((vaddr >> (12 + 9 * level)) & 0x1ff) * 8)?;
            if entry & PRESENT == 0 {
                return Some(Walk::Unmapped);
            }
            if level > 0 && level < 3 && entry & HUGE != 0 {
                let mask = (1u64 << (12 + 9 * level)) - 1;
                return Some(Walk::Mapped(((entry & ADDR_MASK & !mask) | (vaddr & mask)) & !(PAGE - 1)));
            }
            table = entry & ADDR_MASK;
        }
        Some(Walk::Mapped(table))
    }

    /// Whether some byte of `[lo, hi)` that is mapped starts `0F 22` (MOV to a control
    /// register) with the byte after it; `None` if a page cannot be read.
    fn writes_cr(&mut self, cr3: u64, lo: u64, hi: u64) -> Option<bool> {
        let mut prev_0f = false;
        let mut va = lo;
        while va < hi {
            let page_end = (va | (PAGE - 1)).saturating_add(1).min(hi);
            match self.walk(cr3, va)? {
                Walk::Unmapped => prev_0f = false,
                Walk::Mapped(p) => {
                    let page = self.page(p >> 12)?;
                    let from = (va & (PAGE - 1)) as usize;
                    if mov_to_cr_in(&mut prev_0f, &page[from..from + (page_end - va) as usize]) {
                        return Some(true);
                    }
                }
            }
            if page_end == va {
                break;
            }
            va = page_end;
        }
        Some(false)
    }
}

/// Whether `bytes`, following a byte that was `0F` if `prev_0f`, hold `0F 22`; leaves in
/// `prev_0f` whether the last byte was `0F`.
fn mov_to_cr_in(prev_0f: &mut bool, bytes: &[u8]) -> bool {
    for &b in bytes {
        if *prev_0f && b == 0x22 {
            return true;
        }
        *prev_0f = b == 0x0f;
    }
    false
}

impl Recording {
    /// Whether no step of persistent-checkpoint interval `k` can change the bytes of any
    /// of `ranges` (start, length) as the guest's page tables show them at that step (see
    /// the module comment): false whenever that cannot be proved.
    pub fn interval_keeps_unchanged(&self, k: usize, ranges: &[(u64, u64)]) -> bool {
        self.fixed_translation(k, ranges, Pages::Unwritten).is_some()
    }

    /// The guest-physical page each virtual page of `ranges` translates to at every step
    /// of persistent-checkpoint interval `k`, as (virtual page, physical page), when that is
    /// proved as for [`Recording::interval_keeps_unchanged`] (the pages themselves may be
    /// written) and every one of them is mapped; `None` otherwise. For read and access
    /// watchpoints in free runs (`free_watch.rs`).
    pub fn interval_translation_fixed(&self, k: usize, ranges: &[(u64, u64)]) -> Option<Vec<(u64, u64)>> {
        self.fixed_translation(k, ranges, Pages::Mapped)
    }

    fn fixed_translation(&self, k: usize, ranges: &[(u64, u64)], pages: Pages) -> Option<Vec<(u64, u64)>> {
        let (Some(Some(code)), Some(first), Some(next)) =
            (self.interval_code.get(k), self.checkpoints.get(k), self.checkpoints.get(k + 1))
        else {
            return None;
        };
        let written = u32::try_from(k + 1).ok().and_then(|n| self.pages.written_before(n))?;
        let (s, t) = (&first.vcpu.sregs, &next.vcpu.sregs);
        if (s.cr0, s.cr3, s.cr4, s.efer) != (t.cr0, t.cr3, t.cr4, t.efer)
            || s.cr0 & CR0_PG == 0
            || s.efer & EFER_LMA == 0
            || s.cr4 & CR4_LA57 != 0
        {
            return None;
        }
        let mut mem = PagesAt::new(self, k as u32);
        let mut data = RoaringBitmap::new();
        let mut translation = Vec::new();
        for &(addr, len) in ranges {
            let last = addr.saturating_add(len.max(1) - 1);
            let mut page = addr & !(PAGE - 1);
            while page <= last {
                match mem.walk(s.cr3, page)? {
                    Walk::Mapped(p) => {
                        data.insert(u32::try_from(p >> 12).ok()?);
                        translation.push((page, p));
                    }
                    Walk::Unmapped if pages == Pages::Unwritten => {}
                    Walk::Unmapped => return None,
                }
                let Some(n) = page.checked_add(PAGE) else { break };
                page = n;
            }
        }
        // The watched pages first: most intervals that write them are refused here, before
        // reading any code.
        if pages == Pages::Unwritten && !data.is_disjoint(written) {
            return None;
        }
        if !mem.used.is_disjoint(written) {
            return None;
        }
        let mut windows: Vec<(u64, u64)> = code
            .pages
            .iter()
            .flat_map(|&(page, bits)| {
                (0..256u64)
                    .filter(move |b| bits[(b / 64) as usize] & (1 << (b % 64)) != 0)
                    .map(move |b| (page << 12) | (b << 4))
            })
            .chain([next.vcpu.regs.rip & !0xf])
            .map(|b| (b.saturating_sub(CODE_BEFORE), b.saturating_add(16 + CODE_AFTER)))
            .collect();
        windows.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(windows.len());
        for (lo, hi) in windows {
            match merged.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        for (lo, hi) in merged {
            if mem.writes_cr(s.cr3, lo, hi) != Some(false) {
                return None;
            }
        }
        // The code read and every table walked: none written in the interval.
        mem.used.is_disjoint(written).then_some(translation)
    }
}

/// What [`Recording::fixed_translation`] also asks of the watched pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pages {
    /// None written in the interval (unmapped ones are fine: nothing changes there).
    Unwritten,
    /// All mapped (written or not).
    Mapped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mov_to_a_control_register_is_found_even_split_between_reads() {
        let mut prev = false;
        assert!(mov_to_cr_in(&mut prev, &[0x90, 0x0f, 0x22, 0xd8]), "mov cr3, rax");
        prev = false;
        assert!(!mov_to_cr_in(&mut prev, &[0x0f, 0x20, 0xd8]), "mov rax, cr3 only reads");
        prev = false;
        assert!(!mov_to_cr_in(&mut prev, &[0x48, 0x0f]));
        assert!(prev, "a trailing 0F is carried to the next read");
        assert!(mov_to_cr_in(&mut prev, &[0x22, 0xd8]));
    }
}
