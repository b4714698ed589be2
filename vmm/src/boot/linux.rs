//! Linux specifics: recognising a Linux kernel, the default command line, where the initrd
//! goes, and the 64-bit Linux boot protocol (zero page) for kernels without a PVH entry.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::Elf;
use linux_loader::loader::KernelLoader;
use vm_memory::{ByteValued, GuestAddress};

use super::{BootError, BootSetup, KernelFormat};
use crate::layout::*;
use crate::memory::GuestRam;

/// The command line ttvm gives a Linux kernel when the user gives none; docs/LINUX.md
/// explains each item. In short: the console is COM1 from the first instruction on; the
/// machine has no ACPI tables, no local APIC/IO-APIC (CPUID hides the APIC), one CPU and
/// one UART, so Linux is told not to look for more; and work that only costs time under
/// emulated ring 0 (crypto self-tests, zeroing every allocated page, speculation
/// mitigations, watchdogs) is switched off. Under the free engine CPUID on PVM hosts shows
/// the host's FSGSBASE, XSAVE, SSSE3, POPCNT, INVPCID and RDPID, whose instructions PVM's
/// ring-0 emulator cannot run, so Linux is told not to use them (`clearcpuid=` takes
/// Linux's feature numbers: 137 SSSE3, which Debian's BLAKE2s would use for every entropy
/// mix, 151 POPCNT, 298 INVPCID, 534 RDPID); recorded guests never see them
/// (the exact engine answers CPUID from the model), so there the options change nothing.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0,115200 earlyprintk=serial,ttyS0,115200 acpi=off \
     8250.nr_uarts=1 tsc=reliable no_timer_check nowatchdog mitigations=off \
     cryptomgr.notests init_on_alloc=0 nofsgsbase noxsave clearcpuid=137,151,298,534";

/// Initrds are placed below this address: the 64-bit boot protocol's default
/// `initrd_addr_max` and what PVH kernels accept too.
const INITRD_ADDR_MAX: u64 = 0x8000_0000;

/// Where the initrd of `len` bytes goes: at the top of RAM (below 2 GiB), page aligned, as
/// bootloaders do, so it stays clear of the kernel and the memory the kernel allocates
/// first. Returns `None` for an empty initrd.
pub(crate) fn place_initrd(ram_size: u64, kernel_end: u64, len: usize) -> Result<Option<u64>, BootError> {
    if len == 0 {
        return Ok(None);
    }
    let top = ram_size.min(INITRD_ADDR_MAX);
    let addr = top.checked_sub(len as u64).map(|a| a & !0xfff);
    match addr {
        Some(a) if a >= kernel_end => Ok(Some(a)),
        _ => Err(BootError::InitrdDoesNotFit { len: len as u64, kernel_end, ram: ram_size >> 20 }),
    }
}

/// Boots a Linux ELF (`vmlinux`) through the 64-bit boot protocol: long mode with an
/// identity map of the first GiB, `rsi` pointing at the zero page (`struct boot_params`).
/// `setup_header` is the bzImage's header when the ELF came from one (copied into the
/// zero page as a bootloader would); a plain vmlinux gets a minimal header.
pub(super) fn load_64bit(
    ram: &mut GuestRam,
    elf: &[u8],
    entry: u64,
    setup_header: Option<&[u8]>,
    cmdline: &str,
    initrd: &[u8],
    base_sregs: kvm_sregs,
) -> Result<BootSetup, BootError> {
    let ram_size = ram.size();
    let kernel_end = {
        let view = ram.vm_memory()?;
        let mut cursor = std::io::Cursor::new(elf);
        Elf::load(&view.mem, None, &mut cursor, Some(GuestAddress(HIMEM_START)))
            .map_err(|e| BootError::Loader(e.to_string()))?
            .kernel_end
    };
    let initrd_addr = place_initrd(ram_size, kernel_end, initrd.len())?;
    if let Some(a) = initrd_addr {
        ram.write(a, initrd)?;
    }
    let mut cl = cmdline.as_bytes().to_vec();
    cl.push(0);
    ram.write(CMDLINE_START, &cl)?;

    let mut params = boot_params::default();
    if let Some(h) = setup_header {
        // The header starts at 0x1f1 in both the file and boot_params.
        let bytes = params.as_mut_slice();
        let n = h.len().min(bytes.len() - 0x1f1);
        bytes[0x1f1..0x1f1 + n].copy_from_slice(&h[..n]);
    } else {
        params.hdr.boot_flag = 0xaa55;
        params.hdr.header = 0x5372_6448; // "HdrS"
        params.hdr.version = 0x020c;
        params.hdr.kernel_alignment = 0x20_0000;
    }
    params.hdr.type_of_loader = 0xff; // "undefined" boot loader
    params.hdr.loadflags |= 0x01; // LOADED_HIGH
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = CMDLINE_MAX_SIZE as u32;
    if let Some(a) = initrd_addr {
        params.hdr.ramdisk_image = a as u32;
        params.hdr.ramdisk_size = initrd.len() as u32;
    }
    let map = super::pvh::memory_map(ram_size);
    for (i, &(addr, size, type_)) in map.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry { addr, size, r#type: type_ };
    }
    params.e820_entries = map.len() as u8;
    ram.write(ZERO_PAGE_START, params.as_slice())?;
    write_identity_map(ram)?;
    let bytes: Vec<u8> = GDT64.iter().flat_map(|d| d.to_le_bytes()).collect();
    ram.write(BOOT_GDT_START, &bytes)?;
    let (regs, sregs) = entry_registers_64(entry, base_sregs);
    Ok(BootSetup { format: KernelFormat::Linux64, entry, kernel_end, regs, sregs })
}

/// Boot GDT of the 64-bit protocol: `__BOOT_CS` is 0x10 and `__BOOT_DS` is 0x18
/// (Documentation/arch/x86/boot.rst, "64-bit boot protocol").
const GDT64: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

/// Identity-maps the first GiB with 2 MiB pages: covers the kernel's `init_size`, the zero
/// page and the command line, as the protocol requires.
fn write_identity_map(ram: &mut GuestRam) -> Result<(), BootError> {
    ram.write(PML4_START, &(PDPTE_START | 0x3).to_le_bytes())?;
    ram.write(PDPTE_START, &(PDE_START | 0x3).to_le_bytes())?;
    let pde: Vec<u8> = (0..512u64).flat_map(|i| ((i << 21) | 0x83).to_le_bytes()).collect();
    ram.write(PDE_START, &pde)?;
    Ok(())
}

/// A present ring-0 segment over the whole 4 GiB with 4 KiB granularity: `type_` 0xb is
/// code (execute/read, accessed), 0x3 data (read/write, accessed); `l` marks 64-bit code,
/// `db` 32-bit default size.
pub fn flat_segment(selector: u16, type_: u8, l: u8, db: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db,
        s: 1,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn entry_registers_64(entry: u64, base: kvm_sregs) -> (kvm_regs, kvm_sregs) {
    let regs =
        kvm_regs { rip: entry, rsi: ZERO_PAGE_START, rsp: BOOT_STACK_POINTER, rflags: 0x2, ..Default::default() };
    let code = flat_segment(0x10, 0xb, 1, 0);
    let data = flat_segment(0x18, 0x3, 0, 1);
    let mut sregs = kvm_sregs { cs: code, ds: data, es: data, fs: data, gs: data, ss: data, ..base };
    sregs.tr = kvm_segment { type_: 0xb, present: 1, limit: 0x67, ..Default::default() };
    sregs.ldt = kvm_segment { unusable: 1, type_: 0x2, ..Default::default() };
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (GDT64.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = PML4_START;
    sregs.cr4 = 0x20; // PAE
    sregs.cr0 = 0x8000_0011; // PG | ET | PE
    sregs.efer = 0x500; // LMA | LME
    (regs, sregs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initrd_goes_to_the_top_of_ram_page_aligned() {
        assert_eq!(place_initrd(128 << 20, 80 << 20, 0).unwrap(), None);
        assert_eq!(place_initrd(128 << 20, 80 << 20, 5000).unwrap(), Some((128 << 20) - 0x2000));
        assert_eq!(place_initrd(4 << 30, 80 << 20, 4096).unwrap(), Some(0x8000_0000 - 4096));
        let e = place_initrd(128 << 20, 80 << 20, 60 << 20).unwrap_err();
        assert!(e.to_string().contains("initrd"), "{e}");
    }

    #[test]
    fn identity_map_entry_state_is_long_mode() {
        let (regs, sregs) = entry_registers_64(0x100_0000, kvm_sregs::default());
        assert_eq!(regs.rsi, ZERO_PAGE_START);
        assert_eq!(sregs.cs.selector, 0x10);
        assert_eq!(sregs.cs.l, 1);
        assert_eq!(sregs.ds.selector, 0x18);
        assert_eq!(sregs.efer & 0x500, 0x500);
    }

    #[test]
    fn default_cmdline_fits_and_names_the_console() {
        assert!(DEFAULT_CMDLINE.len() < CMDLINE_MAX_SIZE);
        assert!(DEFAULT_CMDLINE.contains("console=ttyS0"));
        assert!(!DEFAULT_CMDLINE.contains("  "));
    }
}
