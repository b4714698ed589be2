//! The KVM virtual machine: system fd, VM fd, guest RAM in slot 0 with dirty logging, the
//! CPUID model and the one vCPU.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;
use std::sync::Mutex;

use crate::cpuid::{CpuVendor, CpuidError, CpuidModel};
use crate::kvm::{KvmError, KvmSystem};
use crate::memory::{GuestRam, MemoryError, PAGE_SIZE};
use crate::vcpu::{Vcpu, VcpuError};

/// Errors creating the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Opening KVM failed.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// Guest RAM could not be created.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The CPUID model could not be built.
    #[error(transparent)]
    Cpuid(#[from] CpuidError),
    /// A vCPU ioctl failed.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// A VM ioctl failed.
    #[error("KVM {op} failed: {source}")]
    Ioctl {
        /// The ioctl.
        op: &'static str,
        /// Its errno.
        source: kvm_ioctls::Error,
    },
}

/// The VM.
#[derive(Debug)]
pub struct Vm {
    // Field order matters for drop: the vCPU and VM fds close before RAM is unmapped.
    vcpu: Vcpu,
    vm: VmFd,
    kvm: KvmSystem,
    ram: GuestRam,
    cpuid: CpuidModel,
    /// Pages ttvm itself wrote on the guest's behalf (emulated instructions): KVM's dirty
    /// log does not see them, and checkpoints must.
    emulated_writes: Mutex<Vec<u32>>,
    /// RAM frames taken out of KVM's memory slots ([`Vm::hide_frames`]), ascending.
    hidden: Vec<u32>,
}

/// RAM frames taken out of KVM's memory slots ([`Vm::hide_frames`]): a guest access to
/// one exits as MMIO, and this carries it out on ttvm's RAM as KVM would have.
pub struct HiddenFrames<'a> {
    ram: &'a mut GuestRam,
    hidden: &'a [u32],
    emulated_writes: &'a Mutex<Vec<u32>>,
}

impl HiddenFrames<'_> {
    /// Whether guest-physical `addr` lies in a hidden frame.
    pub fn holds(&self, addr: u64) -> bool {
        u32::try_from(addr >> 12).is_ok_and(|f| self.hidden.binary_search(&f).is_ok())
    }

    /// Completes an MMIO read at `addr` from RAM if it is in a hidden frame; false if it
    /// is not (or lies outside RAM): a device's, for the caller.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        self.holds(addr) && self.ram.read(addr, data).is_ok()
    }

    /// Completes an MMIO write at `addr` into RAM if it is in a hidden frame, noting the
    /// page as written (KVM's dirty log does not see it); false as for [`Self::read`].
    pub fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        if !self.holds(addr) || self.ram.write(addr, data).is_err() {
            return false;
        }
        let last = addr + data.len().saturating_sub(1) as u64;
        let mut notes = self.emulated_writes.lock().unwrap_or_else(|e| e.into_inner());
        for frame in [addr >> 12, last >> 12] {
            if let Ok(f) = u32::try_from(frame) {
                notes.push(f);
            }
        }
        true
    }
}

impl Vm {
    /// Creates a VM with `mem_size` bytes of RAM and one vCPU at reset, whose CPUID shows
    /// `vendor`.
    pub fn new(mem_size: u64, vendor: CpuVendor) -> Result<Self, VmError> {
        let kvm = KvmSystem::open()?;
        let ram = GuestRam::new(mem_size)?;
        let vm = kvm.kvm().create_vm().map_err(|source| VmError::Ioctl { op: "KVM_CREATE_VM", source })?;
        set_ram_slot(&vm, &ram, 0, 0, ram.pages() as u64)?;
        // Required on Intel for real-mode emulation; placed in the top of the 32-bit space,
        // outside RAM. Harmless elsewhere, so a failure is not fatal.
        let _ = vm.set_tss_address(0xfffb_d000);
        let cpuid = CpuidModel::for_host(&kvm, vendor)?;
        let kvm_cpuid = cpuid.to_kvm()?;
        let msr_list =
            kvm.kvm().get_msr_index_list().map_err(|source| VmError::Ioctl { op: "KVM_GET_MSR_INDEX_LIST", source })?;
        let vcpu = Vcpu::new(&vm, &kvm_cpuid, msr_list.as_slice())?;
        Ok(Self { vcpu, vm, kvm, ram, cpuid, emulated_writes: Mutex::new(Vec::new()), hidden: Vec::new() })
    }

    /// Notes that ttvm wrote guest page `pfn` itself, so the next
    /// [`Vm::take_dirty_pages`] reports it.
    pub fn note_emulated_write(&self, pfn: u32) {
        self.emulated_writes.lock().unwrap_or_else(|e| e.into_inner()).push(pfn);
    }

    /// Writes guest-virtual memory on the guest's behalf (through the page tables of
    /// `sregs`) and notes the pages for the next checkpoint.
    pub fn write_guest_virt(&mut self, sregs: &kvm_bindings::kvm_sregs, vaddr: u64, data: &[u8]) -> bool {
        let space = crate::paging::AddressSpace::from_sregs(sregs);
        if space.write_virt(&mut self.ram, vaddr, data).is_err() {
            return false;
        }
        for addr in [vaddr, vaddr.wrapping_add(data.len().saturating_sub(1) as u64)] {
            if let Ok(phys) = space.translate(&self.ram, addr) {
                self.note_emulated_write((phys >> 12) as u32);
            }
        }
        true
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Guest RAM, mutable.
    pub fn ram_mut(&mut self) -> &mut GuestRam {
        &mut self.ram
    }

    /// The vCPU.
    pub fn vcpu(&self) -> &Vcpu {
        &self.vcpu
    }

    /// The vCPU, mutable.
    pub fn vcpu_mut(&mut self) -> &mut Vcpu {
        &mut self.vcpu
    }

    /// RAM and vCPU together (both mutable), for code that reads memory while running.
    pub fn split_mut(&mut self) -> (&mut GuestRam, &mut Vcpu) {
        (&mut self.ram, &mut self.vcpu)
    }

    /// The vCPU to run, with what completes the MMIO exits of accesses to hidden frames
    /// ([`Vm::hide_frames`]) from and into RAM.
    pub fn run_parts(&mut self) -> (&mut Vcpu, HiddenFrames<'_>) {
        (
            &mut self.vcpu,
            HiddenFrames { ram: &mut self.ram, hidden: &self.hidden, emulated_writes: &self.emulated_writes },
        )
    }

    /// The CPUID table the guest sees.
    pub fn cpuid(&self) -> &CpuidModel {
        &self.cpuid
    }

    /// The KVM device path in use.
    pub fn kvm_path(&self) -> &str {
        self.kvm.path()
    }

    /// Makes KVM forget every mapping of guest memory it built, by taking the memory slot
    /// out and putting it back. On hosts that run the guest on shadow page tables (PVM, for
    /// ring 3) KVM does not see ttvm rewrite guest page tables from the host (a restore),
    /// so a shadow entry built after the restored point would survive it and let the guest
    /// skip a page fault it took in the recording. The dirty log is read first and kept,
    /// so the next [`Vm::take_dirty_pages`] still reports every page written.
    pub fn drop_guest_mappings(&mut self) -> Result<(), VmError> {
        let hidden = self.hidden.clone();
        self.set_slots(&hidden)
    }

    /// Takes RAM frames `frames` out of KVM's memory slots (the rest stays in), so every
    /// guest access to them exits as MMIO (`KVM_EXIT_MMIO`, which the caller completes from
    /// and into [`Vm::ram`]), until [`Vm::show_all_frames`]. Replay uses this to see each
    /// access to a watched page in a native run (`free_watch.rs`). Like
    /// [`Vm::drop_guest_mappings`] it makes KVM forget its mappings, and keeps the dirty
    /// log. Frames outside RAM are ignored.
    pub fn hide_frames(&mut self, frames: &[u32]) -> Result<(), VmError> {
        let pages = self.ram.pages();
        let mut hidden: Vec<u32> = frames.iter().copied().filter(|&f| (f as usize) < pages).collect();
        hidden.sort_unstable();
        hidden.dedup();
        self.set_slots(&hidden)
    }

    /// Puts every hidden frame back ([`Vm::hide_frames`]), reporting each as written in the
    /// next [`Vm::take_dirty_pages`]: a frame outside every slot has no dirty log, so a
    /// write KVM made to it some way other than an MMIO exit (event delivery onto a hidden
    /// stack page, say) would otherwise be missed by whoever restores or compares RAM.
    pub fn show_all_frames(&mut self) -> Result<(), VmError> {
        if self.hidden.is_empty() {
            return Ok(());
        }
        self.emulated_writes.lock().unwrap_or_else(|e| e.into_inner()).extend(&self.hidden);
        self.set_slots(&[])
    }

    /// Re-registers RAM as the slots around `hidden` (first reading the dirty log, which
    /// a slot's removal discards, into the pages the next `take_dirty_pages` reports).
    fn set_slots(&mut self, hidden: &[u32]) -> Result<(), VmError> {
        let pending = self.take_dirty_pages()?;
        for slot in 0..ram_slots(self.ram.pages() as u64, &self.hidden).len() {
            set_ram_slot(&self.vm, &self.ram, slot as u32, 0, 0)?;
        }
        self.hidden = hidden.to_vec();
        for (slot, (first, count)) in ram_slots(self.ram.pages() as u64, hidden).into_iter().enumerate() {
            set_ram_slot(&self.vm, &self.ram, slot as u32, first, count)?;
        }
        self.emulated_writes.lock().unwrap_or_else(|e| e.into_inner()).extend(pending);
        Ok(())
    }

    /// Frame numbers of pages the guest wrote since the previous call, in ascending order:
    /// KVM_GET_DIRTY_LOG of every RAM slot (which also resets the log) plus the pages of
    /// instructions ttvm carried out itself.
    pub fn take_dirty_pages(&self) -> Result<Vec<u32>, VmError> {
        let mut pages = std::mem::take(&mut *self.emulated_writes.lock().unwrap_or_else(|e| e.into_inner()));
        for (slot, (first, count)) in ram_slots(self.ram.pages() as u64, &self.hidden).into_iter().enumerate() {
            let bitmap = self
                .vm
                .get_dirty_log(slot as u32, count as usize * PAGE_SIZE)
                .map_err(|source| VmError::Ioctl { op: "KVM_GET_DIRTY_LOG", source })?;
            for (word_index, &word) in bitmap.iter().enumerate() {
                let mut w = word;
                while w != 0 {
                    let bit = u64::from(w.trailing_zeros());
                    let offset = word_index as u64 * 64 + bit;
                    if offset < count {
                        pages.push((first + offset) as u32);
                    }
                    w &= w - 1;
                }
            }
        }
        pages.sort_unstable();
        pages.dedup();
        Ok(pages)
    }
}

/// The memory slots of RAM of `pages` frames with the frames `hidden` (ascending, in RAM)
/// left out: (first frame, frames) per slot, in slot order.
fn ram_slots(pages: u64, hidden: &[u32]) -> Vec<(u64, u64)> {
    let mut slots = Vec::with_capacity(hidden.len() + 1);
    let mut from = 0u64;
    for &h in hidden {
        let h = u64::from(h);
        if h > from {
            slots.push((from, h - from));
        }
        from = h + 1;
    }
    if pages > from {
        slots.push((from, pages - from));
    }
    slots
}

impl crate::error_kind::Classify for VmError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            Self::Kvm(e) => crate::error_kind::Classify::kind(e),
            Self::Memory(e) => crate::error_kind::Classify::kind(e),
            Self::Cpuid(e) => crate::error_kind::Classify::kind(e),
            Self::Vcpu(e) => crate::error_kind::Classify::kind(e),
            Self::Ioctl { .. } => crate::error_kind::ErrorKind::KvmInternal,
        }
    }
}

/// Memory slot `slot`: `count` frames of guest RAM from frame `first` (0 frames takes the
/// slot out), with KVM's dirty log on.
fn set_ram_slot(vm: &VmFd, ram: &GuestRam, slot: u32, first: u64, count: u64) -> Result<(), VmError> {
    let offset = first * PAGE_SIZE as u64;
    let region = kvm_userspace_memory_region {
        slot,
        flags: KVM_MEM_LOG_DIRTY_PAGES,
        guest_phys_addr: offset,
        memory_size: count * PAGE_SIZE as u64,
        userspace_addr: ram.host_addr() + offset,
    };
    // SAFETY: the region describes `ram`'s live mapping, which outlives the VM fd (the
    // struct's field order drops the fds first).
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|source| VmError::Ioctl { op: "KVM_SET_USER_MEMORY_REGION", source })
}

#[cfg(test)]
mod tests {
    use super::{ram_slots, GuestRam, HiddenFrames, Mutex};

    #[test]
    fn accesses_to_hidden_frames_are_carried_out_on_ram_and_writes_noted() {
        let mut ram = GuestRam::new(crate::memory::MIN_RAM).unwrap();
        ram.write(0x1ff8, &0x1122_3344_5566_7788u64.to_le_bytes()).unwrap();
        let notes = Mutex::new(Vec::new());
        let mut hidden = HiddenFrames { ram: &mut ram, hidden: &[1, 2], emulated_writes: &notes };
        let mut word = [0u8; 8];
        assert!(hidden.read(0x1ff8, &mut word));
        assert_eq!(u64::from_le_bytes(word), 0x1122_3344_5566_7788);
        // Frame 0 is in a slot: a device's MMIO, not hidden RAM's.
        assert!(!hidden.read(0x0ff8, &mut word) && !hidden.write(0x10, &[1]));
        assert!(hidden.write(0x1ffe, &[0xaa, 0xbb, 0xcc, 0xdd]));
        assert_eq!(*notes.lock().unwrap(), vec![1, 2]);
        assert!(hidden.read(0x2000, &mut word[..2]));
        assert_eq!(word[..2], [0xcc, 0xdd]);
    }

    #[test]
    fn hidden_frames_split_ram_into_slots_around_them() {
        assert_eq!(ram_slots(100, &[]), vec![(0, 100)]);
        assert_eq!(ram_slots(100, &[10]), vec![(0, 10), (11, 89)]);
        assert_eq!(ram_slots(100, &[0, 1, 50, 99]), vec![(2, 48), (51, 48)]);
        assert_eq!(ram_slots(3, &[0, 1, 2]), Vec::<(u64, u64)>::new());
    }
}
