//! Kernel loading: puts a kernel image, its command line and boot structures into guest RAM
//! and returns the vCPU state the kernel expects at its entry point.
//!
//! Today ttvm boots ELF kernels through their PVH entry (the Xen/QEMU/Firecracker
//! protocol). The [`KernelFormat`] detection is where further protocols (Linux bzImage, the
//! 64-bit Linux boot protocol) plug in.

mod elf_header;
mod pvh;

use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::memory::GuestRam;

pub use elf_header::ElfSummary;

/// Errors loading a kernel. Every variant is the user's input being unusable, so the CLI
/// maps all of them to the "bad input" exit code.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The file is not an ELF image ttvm can load.
    #[error("not a loadable kernel: {0}")]
    NotLoadable(String),
    /// An ELF without a PVH entry note.
    #[error(
        "the ELF has no PVH entry point (no Xen ELF note of type 18, XEN_ELFNOTE_PHYS32_ENTRY); \
         ttvm boots ELF kernels through their PVH entry, as QEMU's -kernel and Firecracker do"
    )]
    NoPvhEntry,
    /// A segment lies outside guest RAM.
    #[error(
        "the kernel does not fit in guest RAM: it needs guest-physical {start:#x}..{end:#x} \
         but RAM is {ram} MiB (try a larger --mem)"
    )]
    DoesNotFit { start: u64, end: u64, ram: u64 },
    /// A segment below 1 MiB would overwrite the boot structures.
    #[error("the kernel loads a segment at {addr:#x}, below 1 MiB where the boot structures live")]
    BelowHimem { addr: u64 },
    /// The command line is too long.
    #[error("the command line is {len} bytes; at most {max} are supported")]
    CmdlineTooLong { len: usize, max: usize },
    /// The command line contains a NUL byte.
    #[error("the command line contains a NUL byte")]
    CmdlineNul,
    /// linux-loader failed for another reason.
    #[error("loading the kernel failed: {0}")]
    Loader(String),
    /// Writing boot structures to RAM failed.
    #[error("writing boot structures failed: {0}")]
    Memory(#[from] crate::memory::MemoryError),
}

/// The kernel formats ttvm recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// An ELF64 executable with a PVH entry note.
    ElfPvh,
}

/// Result of loading: where the kernel went and the entry state.
#[derive(Clone, Debug)]
pub struct BootSetup {
    /// How the kernel was booted.
    pub format: KernelFormat,
    /// The kernel's entry point (guest-physical).
    pub entry: u64,
    /// End of the loaded image (guest-physical).
    pub kernel_end: u64,
    /// Initial general registers.
    pub regs: kvm_regs,
    /// Initial system registers.
    pub sregs: kvm_sregs,
}

/// Loads `image` into `ram` with `cmdline` and returns the entry state.
///
/// `base_sregs` is the vCPU's reset state; fields the boot protocol does not define (APIC
/// base, pending interrupt bitmap) are kept from it.
pub fn load_kernel(
    ram: &mut GuestRam,
    image: &[u8],
    cmdline: &str,
    base_sregs: kvm_sregs,
) -> Result<BootSetup, BootError> {
    if cmdline.len() >= crate::layout::CMDLINE_MAX_SIZE {
        return Err(BootError::CmdlineTooLong { len: cmdline.len(), max: crate::layout::CMDLINE_MAX_SIZE - 1 });
    }
    if cmdline.as_bytes().contains(&0) {
        return Err(BootError::CmdlineNul);
    }
    let summary = ElfSummary::parse(image)?;
    summary.check_fits(ram.size())?;
    if !summary.has_pvh_note {
        return Err(BootError::NoPvhEntry);
    }
    pvh::load(ram, image, cmdline, base_sregs)
}
