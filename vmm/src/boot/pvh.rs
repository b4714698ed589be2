//! PVH boot: the kernel is entered in 32-bit flat protected mode with paging off and `ebx`
//! pointing at `struct hvm_start_info` (the Xen PVH ABI, also used by QEMU and Firecracker).

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::GuestAddress;

use super::{BootError, BootSetup, KernelFormat};
use crate::layout::*;
use crate::memory::GuestRam;

const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// The guest memory map: low RAM, the legacy hole, then RAM from 1 MiB to the end.
pub(crate) fn memory_map(ram_size: u64) -> Vec<(u64, u64, u32)> {
    vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
        (HIMEM_START, ram_size - HIMEM_START, E820_RAM),
    ]
}

pub(super) fn load(
    ram: &mut GuestRam,
    image: &[u8],
    cmdline: &str,
    initrd: &[u8],
    base_sregs: kvm_sregs,
) -> Result<BootSetup, BootError> {
    let ram_size = ram.size();
    let (entry, kernel_end, initrd_addr) = {
        let view = ram.vm_memory()?;
        let mut cursor = std::io::Cursor::new(image);
        let result = Elf::load(&view.mem, None, &mut cursor, Some(GuestAddress(HIMEM_START)))
            .map_err(|e| BootError::Loader(e.to_string()))?;
        let entry = match result.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(a) => a.0,
            _ => return Err(BootError::NoPvhEntry),
        };
        let mut cl = cmdline.as_bytes().to_vec();
        cl.push(0);
        let map: Vec<hvm_memmap_table_entry> = memory_map(ram_size)
            .into_iter()
            .map(|(addr, size, type_)| hvm_memmap_table_entry { addr, size, type_, reserved: 0 })
            .collect();
        // The initrd is PVH module 0 (Linux's PVH entry turns it into boot_params'
        // ramdisk_image/ramdisk_size).
        let initrd_addr = super::linux::place_initrd(ram_size, result.kernel_end, initrd.len())?;
        let modules: Vec<hvm_modlist_entry> = initrd_addr
            .map(|paddr| hvm_modlist_entry { paddr, size: initrd.len() as u64, ..Default::default() })
            .into_iter()
            .collect();
        let start_info = hvm_start_info {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            cmdline_paddr: CMDLINE_START,
            memmap_paddr: MEMMAP_START,
            memmap_entries: map.len() as u32,
            nr_modules: modules.len() as u32,
            modlist_paddr: if modules.is_empty() { 0 } else { MODLIST_START },
            ..Default::default()
        };
        let mut params = BootParams::new(&start_info, GuestAddress(PVH_INFO_START));
        params.set_sections(&map, GuestAddress(MEMMAP_START));
        if !modules.is_empty() {
            params.set_modules(&modules, GuestAddress(MODLIST_START));
        }
        PvhBootConfigurator::write_bootparams(&params, &view.mem).map_err(|e| BootError::Loader(e.to_string()))?;
        drop(view);
        ram.write(CMDLINE_START, &cl)?;
        (entry, result.kernel_end, initrd_addr)
    };
    if let Some(a) = initrd_addr {
        ram.write(a, initrd)?;
    }
    write_boot_gdt(ram)?;
    let (regs, sregs) = entry_registers(entry, base_sregs);
    Ok(BootSetup { format: KernelFormat::ElfPvh, entry, kernel_end, regs, sregs })
}

/// Flat 32-bit GDT: null, code (0x08), data (0x10), TSS (0x18). PVH allows GDTR to be
/// invalid, but a real table keeps the hidden segment state consistent with memory.
const GDT: [u64; 4] = [0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x0080_8b00_0000_0067];

fn write_boot_gdt(ram: &mut GuestRam) -> Result<(), BootError> {
    let bytes: Vec<u8> = GDT.iter().flat_map(|d| d.to_le_bytes()).collect();
    ram.write(BOOT_GDT_START, &bytes)?;
    Ok(())
}

fn segment(selector: u16, type_: u8, limit: u32, g: u8, db: u8, s: u8) -> kvm_segment {
    kvm_segment { base: 0, limit, selector, type_, present: 1, dpl: 0, db, s, l: 0, g, avl: 0, unusable: 0, padding: 0 }
}

/// Register state at the PVH entry.
pub(crate) fn entry_registers(entry: u64, base: kvm_sregs) -> (kvm_regs, kvm_sregs) {
    let regs = kvm_regs { rip: entry, rbx: PVH_INFO_START, rflags: 0x2, ..Default::default() };
    let code = segment(0x08, 0xb, 0xffff_ffff, 1, 1, 1);
    let data = segment(0x10, 0x3, 0xffff_ffff, 1, 1, 1);
    let tss = segment(0x18, 0xb, 0x67, 0, 0, 0);
    let mut sregs = kvm_sregs { cs: code, ds: data, es: data, fs: data, gs: data, ss: data, tr: tss, ..base };
    sregs.ldt = kvm_segment { unusable: 1, type_: 0x2, ..Default::default() };
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr4 = 0;
    sregs.efer = 0;
    (regs, sregs)
}
