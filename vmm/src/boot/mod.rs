//! Kernel loading: puts a kernel image, its command line and boot structures into guest RAM
//! and returns the vCPU state the kernel expects at its entry point.
//!
//! ttvm boots ELF kernels through their PVH entry (the Xen/QEMU/Firecracker protocol).
//! A Linux `bzImage` is unpacked in the host ([`bzimage`]) into its `vmlinux` ELF, which
//! boots the same way; a Linux ELF without a PVH note boots through the 64-bit Linux boot
//! protocol ([`linux`]).

pub mod bzimage;
mod elf_header;
pub(crate) mod layout;
pub mod linux;
mod pvh;

use std::borrow::Cow;

use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::memory::GuestRam;

pub use elf_header::ElfSummary;

/// Errors loading a kernel. Every variant is the user's input being unusable, so the CLI
/// maps all of them to the "bad input" exit code.
#[allow(missing_docs)] // variant fields are named in the variant's doc and message
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
    /// The bzImage could not be unpacked.
    #[error("{0}")]
    BzImage(#[from] bzimage::BzImageError),
    /// The initrd does not fit between the kernel and the top of RAM.
    #[error(
        "the initrd ({len} bytes) does not fit in guest RAM above the kernel (which ends at \
         {kernel_end:#x}; RAM is {ram} MiB; try a larger --mem)"
    )]
    InitrdDoesNotFit { len: u64, kernel_end: u64, ram: u64 },
    /// Writing boot structures to RAM failed.
    #[error("writing boot structures failed: {0}")]
    Memory(#[from] crate::memory::MemoryError),
}

/// The kernel formats ttvm recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// An ELF64 executable with a PVH entry note.
    ElfPvh,
    /// A Linux ELF (plain or unpacked from a bzImage) booted through the 64-bit Linux boot
    /// protocol because it has no PVH note.
    Linux64,
}

/// Where the ELF that gets loaded came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// The file was the ELF.
    Elf,
    /// The ELF was unpacked from a bzImage.
    BzImage {
        /// Payload compression.
        compression: bzimage::Compression,
        /// The bzImage's setup header (for the zero page of the 64-bit protocol).
        setup_header: Vec<u8>,
    },
}

/// A kernel file checked and, for a bzImage, unpacked: ready to load into any machine.
#[derive(Clone, Debug)]
pub struct PreparedKernel<'a> {
    /// The ELF to load.
    pub elf: Cow<'a, [u8]>,
    /// Its headers.
    pub summary: ElfSummary,
    /// Where it came from.
    pub source: KernelSource,
}

impl PreparedKernel<'_> {
    /// Whether this is a Linux kernel (a bzImage, or an ELF with a "Linux" note).
    pub fn is_linux(&self) -> bool {
        matches!(self.source, KernelSource::BzImage { .. }) || self.summary.linux_note
    }
}

/// Checks `image` and unpacks a bzImage, without touching KVM: a bad kernel file is
/// reported as such even on a machine without /dev/kvm.
pub fn prepare(image: &[u8]) -> Result<PreparedKernel<'_>, BootError> {
    if bzimage::is_bzimage(image) && !image.starts_with(b"\x7fELF") {
        let bz = bzimage::BzImage::parse(image)?;
        let elf = bz.decompress()?;
        let summary = ElfSummary::parse(&elf).map_err(|e| {
            BootError::NotLoadable(format!("the bzImage's {} payload is not a kernel ELF: {e}", bz.compression))
        })?;
        let source = KernelSource::BzImage { compression: bz.compression, setup_header: bz.setup_header.to_vec() };
        return Ok(PreparedKernel { elf: Cow::Owned(elf), summary, source });
    }
    let summary = ElfSummary::parse(image)?;
    Ok(PreparedKernel { elf: Cow::Borrowed(image), summary, source: KernelSource::Elf })
}

/// Whether `image` is a Linux kernel (cheap: does not decompress a bzImage). Used to pick
/// the default command line.
pub fn looks_like_linux(image: &[u8]) -> bool {
    if image.starts_with(b"\x7fELF") {
        return ElfSummary::parse(image).is_ok_and(|s| s.linux_note);
    }
    bzimage::is_bzimage(image)
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
    load_prepared(ram, &prepare(image)?, cmdline, &[], base_sregs)
}

/// Loads a prepared kernel with `cmdline` and an optional `initrd` (empty: none).
pub fn load_prepared(
    ram: &mut GuestRam,
    kernel: &PreparedKernel<'_>,
    cmdline: &str,
    initrd: &[u8],
    base_sregs: kvm_sregs,
) -> Result<BootSetup, BootError> {
    if cmdline.len() >= crate::layout::CMDLINE_MAX_SIZE {
        return Err(BootError::CmdlineTooLong { len: cmdline.len(), max: crate::layout::CMDLINE_MAX_SIZE - 1 });
    }
    if cmdline.as_bytes().contains(&0) {
        return Err(BootError::CmdlineNul);
    }
    let summary = &kernel.summary;
    summary.check_fits(ram.size())?;
    if summary.has_pvh_note {
        return pvh::load(ram, &kernel.elf, cmdline, initrd, base_sregs);
    }
    if !kernel.is_linux() {
        return Err(BootError::NoPvhEntry);
    }
    let setup_header = match &kernel.source {
        KernelSource::BzImage { setup_header, .. } => Some(setup_header.as_slice()),
        KernelSource::Elf => None,
    };
    linux::load_64bit(ram, &kernel.elf, summary.entry, setup_header, cmdline, initrd, base_sregs)
}

/// Every boot failure is the kernel's or its arguments' fault.
impl crate::error_kind::Classify for BootError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        crate::error_kind::ErrorKind::BadInput
    }
}
