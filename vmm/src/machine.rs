//! A booted machine: the VM and its devices. Engines (the free-running
//! one here, the recording/replaying one in `ttvm-replay`) drive a `Machine`.

use serde::{Deserialize, Serialize};

use crate::boot::{self, BootError};
use crate::cpuid::CpuVendor;
use crate::devices::Board;
use crate::regs_dump::format_registers;
use crate::vm::{Vm, VmError};

/// Default guest RAM: 128 MiB.
pub const DEFAULT_MEM_SIZE: u64 = 128 << 20;

/// Everything needed to build a machine at reset. Recorded in trace headers, so replay
/// rebuilds exactly the same machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineConfig {
    /// Guest RAM size in bytes.
    pub mem_size: u64,
    /// The kernel image.
    pub kernel: Vec<u8>,
    /// Kernel command line.
    pub cmdline: String,
    /// RTC wall-clock time at boot (seconds since the Unix epoch).
    pub rtc_base_unix_secs: u64,
    /// Initial ramdisk handed to the kernel (empty: none).
    pub initrd: Vec<u8>,
}

impl MachineConfig {
    /// A configuration with default RAM, no initrd and the RTC at the Unix epoch.
    pub fn new(kernel: Vec<u8>, cmdline: impl Into<String>) -> Self {
        Self { mem_size: DEFAULT_MEM_SIZE, kernel, cmdline: cmdline.into(), rtc_base_unix_secs: 0, initrd: Vec::new() }
    }
}

/// Errors building a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// KVM or RAM set-up failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The kernel could not be loaded.
    #[error(transparent)]
    Boot(#[from] BootError),
}

/// The CPUID vendor a new recording or run shows its kernel: Linux sees the host's (it
/// takes vendor-specific paths that the host's KVM only accepts for its own vendor), every
/// other kernel the vendor-neutral CPU, so its traces replay on AMD and Intel hosts alike.
pub fn default_vendor(is_linux: bool) -> CpuVendor {
    if is_linux {
        CpuVendor::Host
    } else {
        CpuVendor::Neutral
    }
}

/// The machine.
#[derive(Debug)]
pub struct Machine {
    /// KVM VM, RAM and vCPU.
    pub vm: Vm,
    /// The devices.
    pub board: Board,
}

impl Machine {
    /// Creates the VM, loads the kernel and puts the vCPU at the kernel's entry. The CPU's
    /// vendor is [`default_vendor`]'s choice for this kernel.
    pub fn new(config: MachineConfig) -> Result<Self, MachineError> {
        Self::with_vendor(config, None)
    }

    /// Like [`Machine::new`], with the CPUID vendor given (replay: the recorded one).
    pub fn with_vendor(config: MachineConfig, vendor: Option<CpuVendor>) -> Result<Self, MachineError> {
        // Validate (and unpack a bzImage) before touching KVM so a bad file is reported as
        // such even on a machine without KVM.
        let kernel = boot::prepare(&config.kernel)?;
        let vendor = vendor.unwrap_or_else(|| default_vendor(kernel.is_linux()));
        let mut vm = Vm::new(config.mem_size, vendor)?;
        let base_sregs = vm.vcpu().sregs();
        let boot = boot::load_prepared(vm.ram_mut(), &kernel, &config.cmdline, &config.initrd, base_sregs)?;
        drop(kernel);
        vm.vcpu_mut().init_registers(&boot.regs, &boot.sregs).map_err(VmError::from)?;
        // The boot image is the first checkpoint's base: start dirty tracking after it.
        vm.take_dirty_pages()?;
        Ok(Self { vm, board: Board::new(config.rtc_base_unix_secs) })
    }

    /// The accesses the disk's pending requests would make (see
    /// [`crate::devices::virtio_blk::VirtioBlk::pending_ops`]); none without a disk.
    pub fn pending_disk_ops(
        &mut self,
    ) -> Result<Vec<(crate::devices::virtio_blk::DiskOpKind, u64, u64)>, crate::memory::MemoryError> {
        let Machine { vm, board } = self;
        let Some(blk) = board.virtio_blk.as_ref() else { return Ok(Vec::new()) };
        let view = vm.ram_mut().vm_memory()?;
        Ok(blk.pending_ops(&view.mem))
    }

    /// Completes the disk's notified requests against `backend` (the caller decides when:
    /// [`Board::disk_due`]) and notes every page the device wrote as dirty, since KVM's
    /// dirty log does not see device writes.
    pub fn complete_disk(
        &mut self,
        backend: &mut dyn crate::disk::DiskBackend,
    ) -> Result<crate::devices::virtio_blk::Completion, crate::memory::MemoryError> {
        let Machine { vm, board } = self;
        let view = vm.ram_mut().vm_memory()?;
        let done = board.complete_disk(&view.mem, backend);
        drop(view);
        let pages = vm.ram().pages() as u64;
        for &(addr, len) in &done.written {
            if len == 0 {
                continue;
            }
            let last = addr.saturating_add(len - 1) >> 12;
            for pfn in (addr >> 12)..=last.min(pages.saturating_sub(1)) {
                vm.note_emulated_write(pfn as u32);
            }
        }
        Ok(done)
    }

    /// Takes the frames the guest's virtio-net card has notified (see
    /// [`crate::devices::virtio_net::VirtioNet::transmit`]), marking the used ring dirty.
    pub fn transmit_net(&mut self) -> Result<crate::devices::virtio_net::Transmitted, crate::memory::MemoryError> {
        let Machine { vm, board } = self;
        let view = vm.ram_mut().vm_memory()?;
        let out = board.transmit_net(&view.mem);
        drop(view);
        self.note_device_writes(&out.written);
        Ok(out)
    }

    /// Whether the guest's virtio-net card would receive a frame now (a buffer is posted).
    pub fn net_rx_ready(&mut self) -> Result<bool, crate::memory::MemoryError> {
        let Machine { vm, board } = self;
        let view = vm.ram_mut().vm_memory()?;
        Ok(board.virtio_net.as_ref().is_some_and(|n| n.rx_ready(&view.mem)))
    }

    /// Puts `frame` into the card's next receive buffer, marking what it wrote dirty.
    /// `Ok(false)`: the card could not take it (no buffer, driver not ready).
    pub fn receive_net(&mut self, frame: &[u8]) -> Result<bool, crate::memory::MemoryError> {
        let Machine { vm, board } = self;
        let view = vm.ram_mut().vm_memory()?;
        let written = board.receive_net(&view.mem, frame);
        drop(view);
        match written {
            Ok(w) => {
                self.note_device_writes(&w);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Marks the pages of guest-physical ranges a device wrote dirty: KVM's dirty log does
    /// not see them.
    fn note_device_writes(&mut self, ranges: &[(u64, u64)]) {
        let pages = self.vm.ram().pages() as u64;
        for &(addr, len) in ranges {
            if len == 0 {
                continue;
            }
            let last = addr.saturating_add(len - 1) >> 12;
            for pfn in (addr >> 12)..=last.min(pages.saturating_sub(1)) {
                self.vm.note_emulated_write(pfn as u32);
            }
        }
    }

    /// Register dump of the current vCPU state.
    pub fn register_dump(&self) -> String {
        format_registers(&self.vm.vcpu().regs(), &self.vm.vcpu().sregs())
    }
}

impl crate::error_kind::Classify for MachineError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            Self::Vm(e) => crate::error_kind::Classify::kind(e),
            Self::Boot(e) => crate::error_kind::Classify::kind(e),
        }
    }
}
