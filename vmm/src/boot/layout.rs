//! Guest-physical memory layout for booting (the same addresses QEMU and Firecracker use
//! for PVH, so kernels that boot there boot here).

/// A tiny GDT for the 32-bit PVH entry state.
pub const BOOT_GDT_START: u64 = 0x500;
/// `struct hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (initrd).
pub const MODLIST_START: u64 = 0x6040;
/// E820-style memory map handed to the guest.
pub const MEMMAP_START: u64 = 0x7000;
/// Linux zero page (boot_params) for the 64-bit Linux boot protocol.
pub const ZERO_PAGE_START: u64 = 0x7000 + 0x1000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Longest command line accepted (Linux's COMMAND_LINE_SIZE on x86 is 2048).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the extended BIOS data area: RAM below it is usable.
pub const EBDA_START: u64 = 0x9fc00;
/// Kernels load at or above 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;
/// Stack pointer at the 64-bit Linux entry (the protocol does not require one; a valid
/// stack below the boot structures keeps an early fault from scribbling over them).
pub const BOOT_STACK_POINTER: u64 = 0x5ff0;
/// Identity-map page tables for the 64-bit Linux boot protocol: PML4, PDPT, PD.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// Page directory (512 × 2 MiB pages: the first GiB).
pub const PDE_START: u64 = 0xb000;
