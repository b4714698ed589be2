//! The arithmetic flags that an instruction leaves architecturally undefined, so the exact
//! engine can give them one canonical value on every CPU.
//!
//! IMUL leaves SF, ZF, AF and PF undefined; DIV all six; BSF/BSR, BT*, shifts and rotates
//! by more than one, SHLD/SHRD and the logic instructions (AF) leave some undefined too. A
//! CPU still writes *something* there, and what it writes differs between vendors and
//! between generations of one vendor: a trace recorded on one AMD EPYC diverged on another
//! at an `imul` (the registers at the next checkpoint differed in RFLAGS only). The guest
//! can see those bits (PUSHF, an interrupt frame, a checkpoint), so a recording that keeps
//! them depends on the recording CPU's microarchitecture.
//!
//! The engine therefore clears them after every such instruction, in recording and in
//! replay alike (trace format 3): clearing is a function of the architecture alone, so the
//! trace means the same on every CPU. [`undefined_flags`] is the decoder that says which
//! bits: like [`crate::insn::classify`] it is an opcode matcher rather than a general
//! decoder (it runs before every step), and it is checked against capstone's lengths and
//! mnemonics in its tests. The masks follow the Intel SDM and AMD APM instruction pages;
//! where the two disagree the union is taken (a bit either vendor leaves undefined).
//!
//! Not covered, and why it is acceptable: the first instruction of an exception or
//! interrupt handler that the host's single-step merges with the delivery (the engine
//! cannot tell which instruction ran; no known kernel starts a handler with one of these);
//! the destination of BSF/BSR with a zero source and of a 16-bit SHLD/SHRD by more than 16
//! (undefined *results*: both vendors leave the destination unchanged / shift through in
//! practice, and the flags are still cleared); VEX-encoded BMI instructions (the CPUID
//! model does not offer BMI).

use crate::insn::CodeMode;

/// RFLAGS.CF.
pub const CF: u64 = 1 << 0;
/// RFLAGS.PF.
pub const PF: u64 = 1 << 2;
/// RFLAGS.AF.
pub const AF: u64 = 1 << 4;
/// RFLAGS.ZF.
pub const ZF: u64 = 1 << 6;
/// RFLAGS.SF.
pub const SF: u64 = 1 << 7;
/// RFLAGS.OF.
pub const OF: u64 = 1 << 11;
/// All six arithmetic flags.
pub const ARITHMETIC: u64 = CF | PF | AF | ZF | SF | OF;

/// Names of the RFLAGS bits, for reports (index = bit).
const RFLAGS_NAMES: [(u64, &str); 18] = [
    (CF, "CF"),
    (PF, "PF"),
    (AF, "AF"),
    (ZF, "ZF"),
    (SF, "SF"),
    (1 << 8, "TF"),
    (1 << 9, "IF"),
    (1 << 10, "DF"),
    (OF, "OF"),
    (3 << 12, "IOPL"),
    (1 << 14, "NT"),
    (1 << 16, "RF"),
    (1 << 17, "VM"),
    (1 << 18, "AC"),
    (1 << 19, "VIF"),
    (1 << 20, "VIP"),
    (1 << 21, "ID"),
    (1 << 1, "reserved bit 1"),
];

/// Names the RFLAGS bits set in `bits` ("SF ZF"); unnamed bits as `bit N`.
pub fn rflags_names(bits: u64) -> String {
    let mut left = bits;
    let mut names = Vec::new();
    for (mask, name) in RFLAGS_NAMES {
        if left & mask != 0 {
            names.push(name.to_string());
            left &= !mask;
        }
    }
    for b in 0..64 {
        if left & (1 << b) != 0 {
            names.push(format!("bit {b}"));
        }
    }
    names.join(" ")
}

/// What one instruction leaves undefined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UndefinedFlags {
    /// The RFLAGS bits with no architectural value after the instruction (never empty).
    pub mask: u64,
    /// The instruction's length: the engine clears the bits only when the step ended right
    /// after it (no exception, no branch).
    pub len: usize,
}

/// Shift and rotate kinds of the C0/C1/D0-D3 group (ModRM.reg).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ShiftKind {
    Rotate,
    Shift { logical: bool },
}

/// Where a shift takes its count from.
#[derive(Clone, Copy)]
enum Count {
    One,
    Cl,
    Imm8,
}

/// Prefixes and sizes in force for the opcode.
struct Decoded {
    /// Index of the first opcode byte.
    opcode_at: usize,
    /// Operand size in bytes for non-byte forms (2, 4 or 8).
    opsize: u8,
    /// Address size in bytes (2, 4 or 8).
    addrsize: u8,
    /// F3 seen (REP/REPE: TZCNT/LZCNT with 0F BC/BD).
    rep: bool,
}

fn prefixes(code: &[u8], mode: CodeMode) -> Option<Decoded> {
    let mut i = 0;
    let (mut opsize_prefix, mut addr_prefix, mut rep) = (false, false, false);
    let mut rex_w = false;
    loop {
        let b = *code.get(i)?;
        match b {
            0x66 => opsize_prefix = true,
            0x67 => addr_prefix = true,
            0xf3 => rep = true,
            0xf2 => rep = false,
            0xf0 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 => {}
            // REX (64-bit mode; elsewhere 40-4F are INC/DEC): only the last one before
            // the opcode counts, and a legacy prefix after it cancels it.
            0x40..=0x4f if mode == CodeMode::Long => {
                rex_w = b & 8 != 0;
                i += 1;
                if i >= 14 {
                    return None;
                }
                continue;
            }
            _ => break,
        }
        rex_w = false;
        i += 1;
        if i >= 14 {
            return None;
        }
    }
    let opsize = match mode {
        CodeMode::Long if rex_w => 8,
        CodeMode::Long | CodeMode::Bits32 => {
            if opsize_prefix {
                2
            } else {
                4
            }
        }
        CodeMode::Bits16 => {
            if opsize_prefix {
                4
            } else {
                2
            }
        }
    };
    let addrsize = match (mode, addr_prefix) {
        (CodeMode::Long, false) => 8,
        (CodeMode::Long, true) | (CodeMode::Bits32, false) | (CodeMode::Bits16, true) => 4,
        (CodeMode::Bits32, true) | (CodeMode::Bits16, false) => 2,
    };
    Some(Decoded { opcode_at: i, opsize, addrsize, rep })
}

/// Length of a ModRM operand (ModRM, SIB, displacement) starting at `at`.
fn modrm_len(code: &[u8], at: usize, addrsize: u8) -> Option<usize> {
    let modrm = *code.get(at)?;
    let (md, rm) = (modrm >> 6, modrm & 7);
    if md == 3 {
        return Some(1);
    }
    if addrsize == 2 {
        return Some(match (md, rm) {
            (0, 6) | (2, _) => 3,
            (1, _) => 2,
            _ => 1,
        });
    }
    let mut len = 1;
    if rm == 4 {
        let sib = *code.get(at + 1)?;
        len += 1;
        if md == 0 && sib & 7 == 5 {
            len += 4;
        }
    }
    len += match (md, rm) {
        (0, 5) => 4,
        (1, _) => 1,
        (2, _) => 4,
        _ => 0,
    };
    Some(len)
}

/// Size of a full immediate (imm16/imm32; 64-bit operands take a sign-extended imm32).
fn imm_len(opsize: u8) -> usize {
    if opsize == 2 {
        2
    } else {
        4
    }
}

/// The undefined flags of a shift or rotate by `count` (already read from CL or the
/// immediate) of an operand of `bits` bits; `None` when the masked count is 0 (no flag
/// changes at all).
fn shift_mask(kind: ShiftKind, count: u64, bits: u32) -> Option<u64> {
    let masked = count & if bits == 64 { 0x3f } else { 0x1f };
    if masked == 0 {
        return None;
    }
    let mut mask = if masked == 1 { 0 } else { OF };
    if let ShiftKind::Shift { logical } = kind {
        mask |= AF;
        if logical && masked >= u64::from(bits) {
            mask |= CF;
        }
    }
    (mask != 0).then_some(mask)
}

/// The flags SHLD/SHRD by `count` leave undefined.
fn double_shift_mask(count: u64, bits: u32) -> Option<u64> {
    let masked = count & if bits == 64 { 0x3f } else { 0x1f };
    match masked {
        0 => None,
        // A 16-bit operand shifted by more than 16: result and every flag undefined.
        m if m > u64::from(bits) => Some(ARITHMETIC),
        1 => Some(AF),
        _ => Some(AF | OF),
    }
}

/// If the instruction at the start of `code` leaves arithmetic flags undefined, which ones
/// and its length. `rcx` is RCX before the instruction (the count of shifts by CL).
pub fn undefined_flags(code: &[u8], mode: CodeMode, rcx: u64) -> Option<UndefinedFlags> {
    let d = prefixes(code, mode)?;
    let op = d.opcode_at;
    let opsize = d.opsize;
    let bits = u32::from(opsize) * 8;
    let with_modrm = |imm: usize| modrm_len(code, op + 1, d.addrsize).map(|m| op + 1 + m + imm);
    let found = |mask: u64, len: Option<usize>| {
        let len = len?;
        (len <= code.len() && len <= crate::insn::MAX_INSN_LEN).then_some(UndefinedFlags { mask, len })
    };
    let reg_of = |at: usize| code.get(at).map(|m| (m >> 3) & 7);
    let legacy = mode != CodeMode::Long;
    match *code.get(op)? {
        // OR/AND/XOR: AF.
        0x08..=0x0b | 0x20..=0x23 | 0x30..=0x33 | 0x84 | 0x85 => found(AF, with_modrm(0)),
        0x0c | 0x24 | 0x34 | 0xa8 => found(AF, Some(op + 2)),
        0x0d | 0x25 | 0x35 | 0xa9 => found(AF, Some(op + 1 + imm_len(opsize))),
        0x80..=0x83 => {
            let opcode = code[op];
            if opcode == 0x82 && !legacy {
                return None; // #UD in 64-bit mode
            }
            // /1 OR, /4 AND, /6 XOR; ADD ADC SBB SUB CMP define every flag.
            if !matches!(reg_of(op + 1)?, 1 | 4 | 6) {
                return None;
            }
            let imm = if opcode == 0x81 { imm_len(opsize) } else { 1 };
            found(AF, with_modrm(imm))
        }
        // IMUL r, r/m, imm.
        0x69 => found(SF | ZF | AF | PF, with_modrm(imm_len(opsize))),
        0x6b => found(SF | ZF | AF | PF, with_modrm(1)),
        0xf6 | 0xf7 => {
            let imm = if code[op] == 0xf6 { 1 } else { imm_len(opsize) };
            match reg_of(op + 1)? {
                0 | 1 => found(AF, with_modrm(imm)),              // TEST r/m, imm
                4 | 5 => found(SF | ZF | AF | PF, with_modrm(0)), // MUL, IMUL
                6 | 7 => found(ARITHMETIC, with_modrm(0)),        // DIV, IDIV
                _ => None,                                        // NOT, NEG
            }
        }
        opcode @ (0xc0 | 0xc1 | 0xd0 | 0xd1 | 0xd2 | 0xd3) => {
            let byte = opcode & 1 == 0;
            let count_from = match opcode {
                0xc0 | 0xc1 => Count::Imm8,
                0xd0 | 0xd1 => Count::One,
                _ => Count::Cl,
            };
            let kind = match reg_of(op + 1)? {
                0..=3 => ShiftKind::Rotate,
                4 | 6 => ShiftKind::Shift { logical: true },
                5 => ShiftKind::Shift { logical: true },
                _ => ShiftKind::Shift { logical: false },
            };
            let imm = usize::from(matches!(count_from, Count::Imm8));
            let len = with_modrm(imm)?;
            let count = match count_from {
                Count::One => 1,
                Count::Cl => rcx & 0xff,
                Count::Imm8 => u64::from(*code.get(len - 1)?),
            };
            found(shift_mask(kind, count, if byte { 8 } else { bits })?, Some(len))
        }
        // BCD adjustments (not valid in 64-bit mode).
        0x27 | 0x2f if legacy => found(OF, Some(op + 1)),
        0x37 | 0x3f if legacy => found(OF | SF | ZF | PF, Some(op + 1)),
        0xd4 | 0xd5 if legacy => found(OF | AF | CF, Some(op + 2)),
        0x0f => match *code.get(op + 1)? {
            0xaf => found(SF | ZF | AF | PF, modrm_len(code, op + 2, d.addrsize).map(|m| op + 2 + m)),
            // BT, BTS, BTR, BTC.
            0xa3 | 0xab | 0xb3 | 0xbb => {
                found(OF | SF | AF | PF, modrm_len(code, op + 2, d.addrsize).map(|m| op + 2 + m))
            }
            0xba if reg_of(op + 2)? >= 4 => {
                found(OF | SF | AF | PF, modrm_len(code, op + 2, d.addrsize).map(|m| op + 2 + m + 1))
            }
            // BSF/BSR; with F3, TZCNT/LZCNT (every current host has them, whatever the
            // CPUID model says, and executes them as such).
            0xbc | 0xbd => {
                let mask = if d.rep { OF | SF | AF | PF } else { CF | OF | SF | AF | PF };
                found(mask, modrm_len(code, op + 2, d.addrsize).map(|m| op + 2 + m))
            }
            // SHLD/SHRD by imm8 or CL.
            second @ (0xa4 | 0xa5 | 0xac | 0xad) => {
                let len = op + 2 + modrm_len(code, op + 2, d.addrsize)? + usize::from(second & 1 == 0);
                let count = if second & 1 == 0 { u64::from(*code.get(len - 1)?) } else { rcx & 0xff };
                found(double_shift_mask(count, bits)?, Some(len))
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstone::prelude::*;

    const LONG: CodeMode = CodeMode::Long;

    fn mask(code: &[u8]) -> Option<u64> {
        undefined_flags(code, LONG, 0).map(|u| u.mask)
    }

    #[test]
    fn the_sdm_masks() {
        // imul rax, rcx (48 0f af c1); mul rcx (48 f7 e1); div rcx (48 f7 f1).
        assert_eq!(
            undefined_flags(&[0x48, 0x0f, 0xaf, 0xc1], LONG, 0),
            Some(UndefinedFlags { mask: SF | ZF | AF | PF, len: 4 })
        );
        assert_eq!(mask(&[0x48, 0xf7, 0xe1]), Some(SF | ZF | AF | PF));
        assert_eq!(mask(&[0x48, 0xf7, 0xf1]), Some(ARITHMETIC));
        // and eax, ecx; test al, 1; or qword [rax], 8.
        assert_eq!(mask(&[0x21, 0xc8]), Some(AF));
        assert_eq!(mask(&[0xa8, 0x01]), Some(AF));
        assert_eq!(undefined_flags(&[0x48, 0x83, 0x08, 0x08], LONG, 0), Some(UndefinedFlags { mask: AF, len: 4 }));
        // add and cmp define every flag; not/neg too.
        assert_eq!(mask(&[0x48, 0x83, 0xc0, 0x08]), None);
        assert_eq!(mask(&[0x48, 0x39, 0xc8]), None);
        assert_eq!(mask(&[0x48, 0xf7, 0xd0]), None);
        assert_eq!(mask(&[0x48, 0xf7, 0xd8]), None);
        // bsf rax, rcx; tzcnt rax, rcx; bt eax, 3.
        assert_eq!(mask(&[0x48, 0x0f, 0xbc, 0xc1]), Some(CF | OF | SF | AF | PF));
        assert_eq!(mask(&[0xf3, 0x48, 0x0f, 0xbc, 0xc1]), Some(OF | SF | AF | PF));
        assert_eq!(
            undefined_flags(&[0x0f, 0xba, 0xe0, 0x03], LONG, 0),
            Some(UndefinedFlags { mask: OF | SF | AF | PF, len: 4 })
        );
        assert_eq!(mask(&[0x0f, 0xba, 0x18, 0x03]), None, "0f ba /4..7 only");
    }

    #[test]
    fn shifts_depend_on_their_count() {
        // shl rax, 1 (48 d1 e0): only AF. shl rax, 3 (48 c1 e0 03): AF and OF.
        assert_eq!(mask(&[0x48, 0xd1, 0xe0]), Some(AF));
        assert_eq!(mask(&[0x48, 0xc1, 0xe0, 0x03]), Some(AF | OF));
        // A count of 0 (or 64, masked to 0) changes no flag at all.
        assert_eq!(mask(&[0x48, 0xc1, 0xe0, 0x00]), None);
        assert_eq!(mask(&[0x48, 0xc1, 0xe0, 0x40]), None);
        // shl eax, cl: the count comes from RCX before the step.
        assert_eq!(undefined_flags(&[0xd3, 0xe0], LONG, 0x100).map(|u| u.mask), None, "CL = 0");
        assert_eq!(undefined_flags(&[0xd3, 0xe0], LONG, 1).map(|u| u.mask), Some(AF));
        assert_eq!(undefined_flags(&[0xd3, 0xe0], LONG, 5).map(|u| u.mask), Some(AF | OF));
        // shr al, 9: count >= the operand size leaves CF undefined; sar does not.
        assert_eq!(mask(&[0xc0, 0xe8, 0x09]), Some(AF | OF | CF));
        assert_eq!(mask(&[0xc0, 0xf8, 0x09]), Some(AF | OF));
        // Rotates: OF when the count is not 1, never AF.
        assert_eq!(mask(&[0xd1, 0xc0]), None, "rol eax, 1");
        assert_eq!(mask(&[0xc1, 0xc0, 0x05]), Some(OF));
        // shld eax, ecx, 1 / 4; shld ax, cx, 20: everything.
        assert_eq!(mask(&[0x0f, 0xa4, 0xc8, 0x01]), Some(AF));
        assert_eq!(mask(&[0x0f, 0xa4, 0xc8, 0x04]), Some(AF | OF));
        assert_eq!(mask(&[0x66, 0x0f, 0xa4, 0xc8, 0x14]), Some(ARITHMETIC));
        assert_eq!(undefined_flags(&[0x0f, 0xad, 0xc8], LONG, 0).map(|u| u.mask), None, "shrd by CL = 0");
    }

    #[test]
    fn legacy_modes() {
        let b32 = CodeMode::Bits32;
        // 0x48 is DEC EAX in 32-bit mode, not REX.W: imul after it is not reached.
        assert_eq!(undefined_flags(&[0x48, 0x0f, 0xaf, 0xc1], b32, 0), None);
        assert_eq!(undefined_flags(&[0x37], b32, 0).map(|u| u.mask), Some(OF | SF | ZF | PF));
        assert_eq!(undefined_flags(&[0x37], LONG, 0), None, "AAA is #UD in 64-bit mode");
        assert_eq!(undefined_flags(&[0xd4, 0x0a], b32, 0), Some(UndefinedFlags { mask: OF | AF | CF, len: 2 }));
        // and eax, imm32 in 16-bit code with 66: 66 25 imm32.
        assert_eq!(
            undefined_flags(&[0x66, 0x25, 1, 2, 3, 4], CodeMode::Bits16, 0),
            Some(UndefinedFlags { mask: AF, len: 6 })
        );
        // 16-bit addressing: and [bp+si+0x1234], ax = 21 82 34 12.
        assert_eq!(undefined_flags(&[0x21, 0x82, 0x34, 0x12], CodeMode::Bits16, 0).map(|u| u.len), Some(4));
    }

    #[test]
    fn names_rflags_bits() {
        assert_eq!(rflags_names(SF | ZF | (1 << 9)), "ZF SF IF");
        assert_eq!(rflags_names(1 << 40), "bit 40");
        assert_eq!(rflags_names(0), "");
    }

    /// Capstone as the independent decoder: for every opcode (one- and two-byte) x ModRM x
    /// a set of prefixes, the instructions we claim are exactly those whose mnemonic is on
    /// the list, with capstone's length.
    #[test]
    fn agrees_with_capstone_on_which_and_how_long() {
        let cs = Capstone::new().x86().mode(arch::x86::ArchMode::Mode64).build().unwrap();
        let listed = [
            "and", "or", "xor", "test", "imul", "mul", "div", "idiv", "shl", "sal", "shr", "sar", "rol", "ror", "rcl",
            "rcr", "shld", "shrd", "bt", "bts", "btr", "btc", "bsf", "bsr", "tzcnt", "lzcnt",
        ];
        let prefixes: &[&[u8]] = &[&[], &[0x66], &[0x48], &[0x41], &[0x67], &[0xf0], &[0x65, 0x48]];
        let mut compared = 0;
        for p in prefixes {
            for opcode in 0..=255u8 {
                for second in
                    [None, Some(0xa3u8), Some(0xab), Some(0xaf), Some(0xa4), Some(0xa5), Some(0xba), Some(0xbc)]
                {
                    if second.is_some() && opcode != 0x0f {
                        continue;
                    }
                    for modrm in (0..=255u8).step_by(7) {
                        let mut bytes = p.to_vec();
                        bytes.push(opcode);
                        bytes.extend(second);
                        // Count 3 for the immediate shifts so that every shift has a mask.
                        bytes.extend_from_slice(&[modrm, 0x24, 0x03, 3, 3, 3, 3, 3, 3, 3, 3]);
                        let ours = undefined_flags(&bytes, LONG, 3);
                        let insns = cs.disasm_count(&bytes, 0x1000, 1).unwrap();
                        let Some(insn) = insns.iter().next() else {
                            continue;
                        };
                        let mnemonic = insn.mnemonic().unwrap_or("");
                        let mnemonic = mnemonic.strip_prefix("lock ").unwrap_or(mnemonic);
                        // A rotate by one defines both flags it writes.
                        let rotate_by_one =
                            matches!(mnemonic, "rol" | "ror" | "rcl" | "rcr") && matches!(opcode, 0xd0 | 0xd1);
                        let on_list = listed.contains(&mnemonic) && !rotate_by_one;
                        assert_eq!(ours.is_some(), on_list, "{bytes:02x?}: capstone `{mnemonic}`, we say {ours:?}");
                        if let Some(u) = ours {
                            assert_eq!(u.len, insn.len(), "{bytes:02x?}: `{mnemonic}` length");
                        }
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 20_000, "only {compared} encodings compared");
    }
}
