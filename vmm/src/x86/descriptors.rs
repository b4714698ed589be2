//! The guest's descriptor tables as the exact engine needs them for ring 3: an IDT gate
//! (handler and IST index), the stack a delivery from ring 3 switches to (TSS.RSP0 or an
//! IST slot), and a code or data segment loaded from the GDT by selector.

use kvm_bindings::{kvm_segment, kvm_sregs};

use crate::memory::GuestRam;
use crate::paging::AddressSpace;

const GATE_SIZE: u64 = 16;
/// TSS offsets (64-bit TSS): RSP0, and IST1 (IST n is at `IST1 + 8 * (n - 1)`).
const TSS_RSP0: u64 = 4;
const TSS_IST1: u64 = 0x24;

/// An IDT gate, as far as delivery needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    /// The handler's address.
    pub handler: u64,
    /// Interrupt stack table index (0: none, the TSS.RSP0 stack on a privilege change).
    pub ist: u8,
}

/// Gate `vector` of the guest's IDT (IDTR and paging from `sregs`), if the IDT covers it, it
/// is mapped and present.
pub fn idt_gate(ram: &GuestRam, sregs: &kvm_sregs, vector: u8) -> Option<Gate> {
    let offset = u64::from(vector) * GATE_SIZE;
    if u64::from(sregs.idt.limit) < offset + GATE_SIZE - 1 {
        return None;
    }
    let mut g = [0u8; 16];
    AddressSpace::from_sregs(sregs).read_virt(ram, sregs.idt.base + offset, &mut g).ok()?;
    if g[5] & 0x80 == 0 {
        return None;
    }
    let low = u64::from(u16::from_le_bytes([g[0], g[1]]));
    let mid = u64::from(u16::from_le_bytes([g[6], g[7]]));
    let high = u64::from(u32::from_le_bytes([g[8], g[9], g[10], g[11]]));
    Some(Gate { handler: low | mid << 16 | high << 32, ist: g[4] & 7 })
}

/// Where the CPU pushes the frame when `gate` is taken from ring 3 in long mode: the top of
/// the IST stack or of TSS.RSP0, aligned down to 16 bytes. The frame (RIP, CS, RFLAGS, RSP,
/// SS, and an error code below them for some vectors) ends there.
pub fn delivery_stack_top(ram: &GuestRam, sregs: &kvm_sregs, gate: Gate) -> Option<u64> {
    let slot = if gate.ist == 0 { TSS_RSP0 } else { TSS_IST1 + 8 * u64::from(gate.ist - 1) };
    let mut w = [0u8; 8];
    AddressSpace::from_sregs(sregs).read_virt(ram, sregs.tr.base + slot, &mut w).ok()?;
    Some(u64::from_le_bytes(w) & !15)
}

/// The segment a far transfer (IRET) loads for `selector` from the GDT, with the descriptor's
/// base, limit and attributes. `None` for a null or LDT selector, or a descriptor outside
/// the GDT or not present. The descriptor's accessed bit is left as it is, as the reference
/// hosts' IRETQ leaves it (measured with the `ring3` kernel's GDT).
pub fn gdt_segment(ram: &GuestRam, sregs: &kvm_sregs, selector: u16) -> Option<kvm_segment> {
    let index = u64::from(selector & !7);
    if index == 0 || selector & 4 != 0 || index + 7 > u64::from(sregs.gdt.limit) {
        return None;
    }
    let mut b = [0u8; 8];
    AddressSpace::from_sregs(sregs).read_virt(ram, sregs.gdt.base + index, &mut b).ok()?;
    let d = u64::from_le_bytes(b);
    let access = (d >> 40) as u8;
    let flags = (d >> 52) as u8;
    let raw_limit = ((d & 0xffff) | ((d >> 32) & 0xf_0000)) as u32;
    let g = flags >> 3 & 1;
    let segment = kvm_segment {
        base: (d >> 16) & 0xff_ffff | ((d >> 56) & 0xff) << 24,
        limit: if g != 0 { raw_limit << 12 | 0xfff } else { raw_limit },
        selector,
        type_: access & 0xf,
        present: access >> 7,
        dpl: access >> 5 & 3,
        db: flags >> 2 & 1,
        s: access >> 4 & 1,
        l: flags >> 1 & 1,
        g,
        avl: flags & 1,
        unusable: 0,
        padding: 0,
    };
    (segment.present != 0).then_some(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GDT at 0x1000, IDT at 0x2000, TSS at 0x3000, paging off (flat physical addresses).
    fn tables() -> (GuestRam, kvm_sregs) {
        let mut ram = GuestRam::new(crate::memory::MIN_RAM).unwrap();
        let gdt: [u64; 7] =
            [0, 0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, 0, 0x00CF_F200_0000_FFFF, 0x00AF_FA00_0000_FFFF];
        for (i, d) in gdt.iter().enumerate() {
            ram.write(0x1000 + 8 * i as u64, &d.to_le_bytes()).unwrap();
        }
        let mut gate = [0u8; 16];
        let handler = 0xffff_ffff_8100_1234u64;
        gate[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
        gate[4] = 3;
        gate[5] = 0x8e;
        gate[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
        gate[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
        ram.write(0x2000 + 16, &gate).unwrap();
        ram.write(0x3000 + 4, &0x9008u64.to_le_bytes()).unwrap();
        ram.write(0x3000 + 0x24 + 16, &0xa00fu64.to_le_bytes()).unwrap();
        let mut sregs = kvm_sregs::default();
        sregs.gdt.base = 0x1000;
        sregs.gdt.limit = 7 * 8 - 1;
        sregs.idt.base = 0x2000;
        sregs.idt.limit = 0xfff;
        sregs.tr.base = 0x3000;
        (ram, sregs)
    }

    #[test]
    fn gates_give_handler_and_ist_and_absent_gates_none() {
        let (ram, sregs) = tables();
        assert_eq!(idt_gate(&ram, &sregs, 1), Some(Gate { handler: 0xffff_ffff_8100_1234, ist: 3 }));
        assert_eq!(idt_gate(&ram, &sregs, 2), None, "not present");
    }

    #[test]
    fn delivery_stacks_come_from_rsp0_or_the_ist_aligned() {
        let (ram, sregs) = tables();
        assert_eq!(delivery_stack_top(&ram, &sregs, Gate { handler: 0, ist: 0 }), Some(0x9000));
        assert_eq!(delivery_stack_top(&ram, &sregs, Gate { handler: 0, ist: 3 }), Some(0xa000));
    }

    #[test]
    fn user_segments_load_from_the_gdt() {
        let (ram, sregs) = tables();
        let cs = gdt_segment(&ram, &sregs, 0x33).unwrap();
        assert_eq!((cs.selector, cs.dpl, cs.l, cs.db, cs.type_, cs.s, cs.g), (0x33, 3, 1, 0, 0xa, 1, 1));
        assert_eq!((cs.base, cs.limit), (0, 0xffff_ffff));
        let ss = gdt_segment(&ram, &sregs, 0x2b).unwrap();
        assert_eq!((ss.selector, ss.dpl, ss.l, ss.db, ss.type_), (0x2b, 3, 0, 1, 2));
        assert_eq!(gdt_segment(&ram, &sregs, 0x23), None, "not present");
        assert_eq!(gdt_segment(&ram, &sregs, 0x3b), None, "beyond the limit");
        assert_eq!(gdt_segment(&ram, &sregs, 0x2f), None, "LDT selector");
        assert_eq!(gdt_segment(&ram, &sregs, 0x3), None, "null selector");
    }
}
