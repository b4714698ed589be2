//! Memory operands (ModRM, SIB, displacement, segment) of the few instructions ttvm carries
//! out itself when the host's KVM cannot (see `Vm::emulate_failed_instruction`). Only what
//! those instructions need: 32- and 64-bit addressing, no 16-bit addressing.

use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::insn::{gpr_mut, CodeMode};

/// An instruction `[prefixes] opcode /reg` whose ModRM names memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryForm {
    /// The opcode: `0x0fXX` for two-byte opcodes, `0x00XX` for one-byte ones.
    pub opcode: u16,
    /// The ModRM byte (x87 records it in FOP).
    pub modrm: u8,
    /// ModRM.reg: the sub-opcode of group instructions such as 0F AE or the x87 escapes.
    pub reg: u8,
    /// Linear address of the operand (segment base applied, wrapped to the address size).
    pub linear: u64,
    /// The effective address (offset within the segment), which x87 records as FDP.
    pub offset: u64,
    /// Length of the whole instruction.
    pub len: usize,
}

/// Legacy prefixes seen before the opcode.
#[derive(Default)]
struct Prefixes {
    /// Segment override (sreg number: ES CS SS DS FS GS = 0..5).
    segment: Option<u8>,
    address_size: bool,
    /// 66, F2, F3 or F0: all change or invalidate the instructions decoded here.
    other: bool,
    rex: u8,
}

/// Decodes the instruction `code` (bytes at RIP) if it is a two-byte (0F) opcode or an x87
/// escape (D8-DF) with a memory ModRM operand; `None` when it is not (register operand,
/// another opcode, 16-bit addressing, an operand-size, repeat or lock prefix) or is
/// truncated.
pub fn decode_memory(code: &[u8], mode: CodeMode, regs: &kvm_regs, sregs: &kvm_sregs) -> Option<MemoryForm> {
    if mode == CodeMode::Bits16 {
        return None;
    }
    let (prefixes, mut pos) = read_prefixes(code, mode);
    if prefixes.other || prefixes.address_size && mode == CodeMode::Bits32 {
        return None;
    }
    let opcode = match *code.get(pos)? {
        0x0f => {
            pos += 1;
            0x0f00 | u16::from(*code.get(pos)?)
        }
        b @ 0xd8..=0xdf => u16::from(b),
        _ => return None,
    };
    let modrm = *code.get(pos + 1)?;
    pos += 2;
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return None;
    }
    let mut regs = *regs;
    let rex_b = (prefixes.rex & 1) << 3;
    let rex_x = (prefixes.rex & 2) << 2;
    let mut default_segment = DS;
    let mut rip_relative = false;
    let mut ea: u64 = 0;
    if rm == 4 {
        let sib = *code.get(pos)?;
        pos += 1;
        let (scale, index, base) = (sib >> 6, ((sib >> 3) & 7) | rex_x, sib & 7);
        if index != 4 {
            ea = ea.wrapping_add(gpr_mut(&mut regs, index).wrapping_shl(u32::from(scale)));
        }
        if base == 5 && md == 0 {
            ea = ea.wrapping_add(read_disp(code, &mut pos, 4)?);
        } else {
            ea = ea.wrapping_add(*gpr_mut(&mut regs, base | rex_b));
            if base == 4 || base == 5 {
                default_segment = SS;
            }
        }
    } else if rm == 5 && md == 0 {
        ea = read_disp(code, &mut pos, 4)?;
        rip_relative = mode == CodeMode::Long;
    } else {
        ea = *gpr_mut(&mut regs, rm | rex_b);
        if rm == 5 {
            default_segment = SS;
        }
    }
    match md {
        1 => ea = ea.wrapping_add(read_disp(code, &mut pos, 1)?),
        2 => ea = ea.wrapping_add(read_disp(code, &mut pos, 4)?),
        _ => {}
    }
    if rip_relative {
        ea = ea.wrapping_add(regs.rip).wrapping_add(pos as u64);
    }
    let narrow = mode == CodeMode::Bits32 || prefixes.address_size;
    if narrow {
        ea &= 0xffff_ffff;
    }
    let segment = prefixes.segment.unwrap_or(default_segment);
    // In 64-bit mode only FS and GS have bases; in 32-bit mode every segment does.
    let base = match (mode, segment) {
        (CodeMode::Long, FS) => sregs.fs.base,
        (CodeMode::Long, GS) => sregs.gs.base,
        (CodeMode::Long, _) => 0,
        (_, s) => segment_base(sregs, s),
    };
    let mut linear = base.wrapping_add(ea);
    if mode == CodeMode::Bits32 {
        linear &= 0xffff_ffff;
    }
    Some(MemoryForm { opcode, modrm, reg, linear, offset: ea, len: pos })
}

const SS: u8 = 2;
const DS: u8 = 3;
const FS: u8 = 4;
const GS: u8 = 5;

fn segment_base(sregs: &kvm_sregs, segment: u8) -> u64 {
    match segment {
        0 => sregs.es.base,
        1 => sregs.cs.base,
        SS => sregs.ss.base,
        DS => sregs.ds.base,
        FS => sregs.fs.base,
        _ => sregs.gs.base,
    }
}

/// Legacy prefixes, then REX (long mode only, and only directly before the opcode).
fn read_prefixes(code: &[u8], mode: CodeMode) -> (Prefixes, usize) {
    let mut p = Prefixes::default();
    let mut pos = 0;
    while let Some(&b) = code.get(pos) {
        match b {
            0x26 => p.segment = Some(0),
            0x2e => p.segment = Some(1),
            0x36 => p.segment = Some(SS),
            0x3e => p.segment = Some(DS),
            0x64 => p.segment = Some(FS),
            0x65 => p.segment = Some(GS),
            0x67 => p.address_size = true,
            0x66 | 0xf0 | 0xf2 | 0xf3 => p.other = true,
            _ => break,
        }
        pos += 1;
    }
    if mode == CodeMode::Long {
        if let Some(&b @ 0x40..=0x4f) = code.get(pos) {
            p.rex = b;
            pos += 1;
        }
    }
    (p, pos)
}

/// A sign-extended displacement of `size` bytes at `*pos`.
fn read_disp(code: &[u8], pos: &mut usize, size: usize) -> Option<u64> {
    let bytes = code.get(*pos..*pos + size)?;
    *pos += size;
    Some(match size {
        1 => bytes[0] as i8 as i64 as u64,
        _ => i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i64 as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_mode() -> (kvm_regs, kvm_sregs) {
        let regs = kvm_regs {
            rax: 0x1000,
            rcx: 0x10,
            rsp: 0xffff_c900_0000_bd80,
            rbp: 0x5000,
            r12: 0x7000,
            r13: 0x9000,
            rip: 0xffff_ffff_8104_0b5e,
            ..Default::default()
        };
        let mut sregs = kvm_sregs::default();
        sregs.gs.base = 0xffff_8880_0600_0000;
        sregs.fs.base = 0x4000_0000;
        (regs, sregs)
    }

    fn decode(code: &[u8]) -> Option<MemoryForm> {
        let (regs, sregs) = long_mode();
        decode_memory(code, CodeMode::Long, &regs, &sregs)
    }

    #[test]
    fn linux_kernel_fpu_begin_ldmxcsr() {
        // ldmxcsr 0x4(%rsp), as in kernel_fpu_begin_mask.
        let m = decode(&[0x0f, 0xae, 0x54, 0x24, 0x04]).unwrap();
        assert_eq!(
            m,
            MemoryForm {
                opcode: 0x0fae,
                modrm: 0x54,
                reg: 2,
                linear: 0xffff_c900_0000_bd84,
                offset: 0xffff_c900_0000_bd84,
                len: 5
            }
        );
    }

    #[test]
    fn base_index_scale_displacement_and_rex() {
        // ldmxcsr 0x10(%rax,%rcx,4)
        assert_eq!(decode(&[0x0f, 0xae, 0x54, 0x88, 0x10]).unwrap().linear, 0x1000 + 0x40 + 0x10);
        // ldmxcsr -8(%r13): REX.B, disp8 sign-extended, r13 needs a displacement
        let m = decode(&[0x41, 0x0f, 0xae, 0x55, 0xf8]).unwrap();
        assert_eq!((m.linear, m.len, m.reg), (0x9000 - 8, 5, 2));
        // stmxcsr (%r12): REX.B with SIB (r12 low bits are 4)
        let m = decode(&[0x41, 0x0f, 0xae, 0x1c, 0x24]).unwrap();
        assert_eq!((m.linear, m.len, m.reg), (0x7000, 5, 3));
        // ldmxcsr 0x100(,%rcx,8): no base, disp32
        assert_eq!(decode(&[0x0f, 0xae, 0x14, 0xcd, 0x00, 0x01, 0, 0]).unwrap().linear, 0x80 + 0x100);
    }

    #[test]
    fn x87_escapes() {
        // fildl (%rdi)... with rax as base here: fildl (%rax)
        let m = decode(&[0xdb, 0x00]).unwrap();
        assert_eq!((m.opcode, m.reg, m.linear, m.offset, m.len), (0xdb, 0, 0x1000, 0x1000, 2));
        // fildl %fs:8(%rax): the offset excludes the segment base, the linear address not
        let m = decode(&[0x64, 0xdb, 0x40, 0x08]).unwrap();
        assert_eq!((m.linear, m.offset), (0x4000_1008, 0x1008));
    }

    #[test]
    fn rip_relative_counts_from_the_next_instruction() {
        let m = decode(&[0x0f, 0xae, 0x15, 0x10, 0, 0, 0]).unwrap();
        assert_eq!((m.linear, m.len), (0xffff_ffff_8104_0b5e + 7 + 0x10, 7));
    }

    #[test]
    fn segment_overrides_and_address_size() {
        // ldmxcsr %gs:0x20 (absolute via SIB, as per-CPU accesses are written)
        let m = decode(&[0x65, 0x0f, 0xae, 0x14, 0x25, 0x20, 0, 0, 0]).unwrap();
        assert_eq!(m.linear, 0xffff_8880_0600_0020);
        // ldmxcsr %fs:(%rax)
        assert_eq!(decode(&[0x64, 0x0f, 0xae, 0x10]).unwrap().linear, 0x4000_1000);
        // addr32 ldmxcsr (%esp) truncates the address before the (zero) segment base
        assert_eq!(decode(&[0x67, 0x0f, 0xae, 0x14, 0x24]).unwrap().linear, 0xbd80);
    }

    #[test]
    fn protected_mode_adds_the_segment_base() {
        let (mut regs, mut sregs) = long_mode();
        regs.rax = 0xffff_fff0;
        sregs.ds.base = 0x20;
        sregs.ss.base = 0x1_0000;
        let m = decode_memory(&[0x0f, 0xae, 0x10], CodeMode::Bits32, &regs, &sregs).unwrap();
        assert_eq!(m.linear, 0x10, "wraps at 4 GiB");
        let m = decode_memory(&[0x0f, 0xae, 0x55, 0x00], CodeMode::Bits32, &regs, &sregs).unwrap();
        assert_eq!(m.linear, 0x1_5000, "EBP-based addresses default to SS");
    }

    #[test]
    fn refuses_what_it_does_not_decode() {
        assert_eq!(decode(&[0x0f, 0xae, 0xd0]), None, "register operand");
        assert_eq!(decode(&[0x66, 0x0f, 0xae, 0x10]), None, "operand-size prefix");
        assert_eq!(decode(&[0xf3, 0x0f, 0xae, 0x10]), None, "repeat prefix");
        assert_eq!(decode(&[0x0f, 0xae, 0x54, 0x24]), None, "truncated");
        assert_eq!(decode(&[0xae, 0x10]), None, "not 0F");
        assert_eq!(decode(&[0xdb, 0xe2]), None, "fnclex: an x87 escape with a register form");
        let (regs, sregs) = long_mode();
        assert_eq!(decode_memory(&[0x0f, 0xae, 0x10], CodeMode::Bits16, &regs, &sregs), None);
    }
}
