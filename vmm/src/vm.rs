//! The KVM virtual machine: system fd, VM fd, guest RAM in slot 0 with dirty logging, the
//! CPUID model and the one vCPU.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;

use crate::cpuid::{CpuidError, CpuidModel};
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
}

impl Vm {
    /// Creates a VM with `mem_size` bytes of RAM and one vCPU at reset.
    pub fn new(mem_size: u64) -> Result<Self, VmError> {
        let kvm = KvmSystem::open()?;
        let ram = GuestRam::new(mem_size)?;
        let vm = kvm.kvm().create_vm().map_err(|source| VmError::Ioctl { op: "KVM_CREATE_VM", source })?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: KVM_MEM_LOG_DIRTY_PAGES,
            guest_phys_addr: 0,
            memory_size: ram.size(),
            userspace_addr: ram.host_addr(),
        };
        // SAFETY: the region describes `ram`'s live mapping, which outlives the VM fd (field
        // order above drops the fds first).
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|source| VmError::Ioctl { op: "KVM_SET_USER_MEMORY_REGION", source })?;
        // Required on Intel for real-mode emulation; placed in the top of the 32-bit space,
        // outside RAM. Harmless elsewhere, so a failure is not fatal.
        let _ = vm.set_tss_address(0xfffb_d000);
        let cpuid = CpuidModel::for_host(&kvm)?;
        let kvm_cpuid = cpuid.to_kvm()?;
        let msr_list =
            kvm.kvm().get_msr_index_list().map_err(|source| VmError::Ioctl { op: "KVM_GET_MSR_INDEX_LIST", source })?;
        let vcpu = Vcpu::new(&vm, &kvm_cpuid, msr_list.as_slice())?;
        Ok(Self { vcpu, vm, kvm, ram, cpuid })
    }

    /// After KVM failed to emulate the instruction at RIP, carries out the few that hosts
    /// whose KVM emulates ring-0 code (PVM) cannot, and that need nothing from outside the
    /// guest: INT3 raises its #BP (RIP past it, then the exception, as a trap; Linux runs
    /// one in `int3_selftest`), CLAC/STAC clear/set RFLAGS.AC (Linux's exception entry code
    /// when the CPU shows SMAP), FWAIT raises #NM or a pending x87 #MF, else does nothing
    /// (Linux's FPU state saving). Returns false, changing nothing, for anything else.
    pub fn emulate_failed_instruction(&mut self) -> Result<bool, VcpuError> {
        const INT3: u8 = 0xcc;
        const FWAIT: u8 = 0x9b;
        const CLAC: [u8; 3] = [0x0f, 0x01, 0xca];
        const STAC: [u8; 3] = [0x0f, 0x01, 0xcb];
        const BP_VECTOR: u8 = 3;
        const RFLAGS_AC: u64 = 1 << 18;
        let (mut regs, sregs) = (self.vcpu.regs(), self.vcpu.sregs());
        let (bytes, n) = crate::insn::fetch_at_rip(&self.ram, &regs, &sregs);
        let code = &bytes[..n];
        if code.first() == Some(&INT3) {
            regs.rip = regs.rip.wrapping_add(1);
            self.vcpu.set_regs(&regs);
            self.vcpu.inject_exception(BP_VECTOR)?;
            return Ok(true);
        }
        if code.first() == Some(&FWAIT) {
            const CR0_MP: u64 = 1 << 1;
            const CR0_TS: u64 = 1 << 3;
            const NM_VECTOR: u8 = 7;
            const MF_VECTOR: u8 = 16;
            // FSW is the high half of the first word of the FXSAVE image; ES = bit 7.
            let fsw = self.vcpu.xsave()?.first().map_or(0, |w| w >> 16);
            if sregs.cr0 & (CR0_MP | CR0_TS) == CR0_MP | CR0_TS {
                self.vcpu.inject_exception(NM_VECTOR)?; // a fault: RIP stays at the FWAIT
            } else if fsw & (1 << 7) != 0 {
                self.vcpu.inject_exception(MF_VECTOR)?;
            } else {
                regs.rip = regs.rip.wrapping_add(1);
                self.vcpu.set_regs(&regs);
            }
            return Ok(true);
        }
        // Both are ring-0 only (#UD elsewhere, which KVM would have delivered itself).
        if sregs.cs.dpl == 0 && (code.starts_with(&CLAC) || code.starts_with(&STAC)) {
            regs.rflags = if code.starts_with(&STAC) { regs.rflags | RFLAGS_AC } else { regs.rflags & !RFLAGS_AC };
            regs.rip = regs.rip.wrapping_add(3);
            self.vcpu.set_regs(&regs);
            return Ok(true);
        }
        Ok(false)
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

    /// The CPUID table the guest sees.
    pub fn cpuid(&self) -> &CpuidModel {
        &self.cpuid
    }

    /// The KVM device path in use.
    pub fn kvm_path(&self) -> &str {
        self.kvm.path()
    }

    /// Frame numbers of pages the guest wrote since the previous call (KVM_GET_DIRTY_LOG,
    /// which also resets the log).
    pub fn take_dirty_pages(&self) -> Result<Vec<u32>, VmError> {
        let bitmap = self
            .vm
            .get_dirty_log(0, self.ram.size() as usize)
            .map_err(|source| VmError::Ioctl { op: "KVM_GET_DIRTY_LOG", source })?;
        let mut pages = Vec::new();
        for (word_index, &word) in bitmap.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                let bit = w.trailing_zeros();
                let pfn = word_index as u32 * 64 + bit;
                if (pfn as usize) < self.ram.size() as usize / PAGE_SIZE {
                    pages.push(pfn);
                }
                w &= w - 1;
            }
        }
        Ok(pages)
    }
}
