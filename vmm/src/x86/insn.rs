//! Recognising the instructions the exact engine must emulate because their result does not
//! follow from guest state: RDTSC, RDTSCP, RDRAND, RDSEED, RDMSR (of IA32_TSC) and HLT.
//!
//! This is a prefix-skipping opcode matcher rather than a general decoder: it runs before
//! every step, and only needs to answer "is this one of six instructions, and how long is
//! it". It is checked against capstone in the tests below; capstone itself is used where a
//! full disassembly is shown to people (divergence reports, the UI).

/// How the CPU interprets code at RIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeMode {
    /// 64-bit mode (CS.L = 1).
    Long,
    /// 32-bit protected mode (CS.D = 1).
    Bits32,
    /// 16-bit code.
    Bits16,
}

/// An instruction the engine emulates.
#[allow(missing_docs)] // variant fields are named in the variant's doc
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// RDTSC.
    Rdtsc,
    /// RDTSCP.
    Rdtscp,
    /// RDRAND into register `reg` (0..15) of `size` bytes (2, 4, 8).
    Rdrand { reg: u8, size: u8 },
    /// RDSEED, same operands as RDRAND.
    Rdseed { reg: u8, size: u8 },
    /// RDMSR (the engine emulates it only when ECX = IA32_TSC).
    Rdmsr,
    /// HLT.
    Hlt,
    /// CPUID (the exact engine answers it from the CPUID model).
    Cpuid,
}

const RFLAGS_CF: u64 = 1 << 0;
/// Flags RDRAND/RDSEED clear: OF SF ZF AF PF CF (CF is then set to report success).
const RFLAGS_RDRAND_CLEARED: u64 = (1 << 11) | (1 << 7) | (1 << 6) | (1 << 4) | (1 << 2) | RFLAGS_CF;

/// Maps ModRM register numbers to `kvm_regs` fields.
pub fn gpr_mut(regs: &mut kvm_bindings::kvm_regs, n: u8) -> &mut u64 {
    match n {
        0 => &mut regs.rax,
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        4 => &mut regs.rsp,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        _ => &mut regs.r15,
    }
}

/// Applies the architectural effect of an emulated value-producing instruction (RDTSC,
/// RDTSCP, RDRAND, RDSEED, RDMSR) to `regs`, including advancing RIP by `len`. `value` is
/// the TSC/random/MSR value, `tsc_aux` the TSC_AUX MSR (used by RDTSCP). HLT only advances
/// RIP.
pub fn apply_emulated(regs: &mut kvm_bindings::kvm_regs, special: Special, len: usize, value: u64, tsc_aux: u64) {
    match special {
        Special::Rdtsc | Special::Rdmsr => {
            regs.rax = value & 0xffff_ffff;
            regs.rdx = value >> 32;
        }
        Special::Rdtscp => {
            regs.rax = value & 0xffff_ffff;
            regs.rdx = value >> 32;
            regs.rcx = tsc_aux & 0xffff_ffff;
        }
        Special::Rdrand { reg, size } | Special::Rdseed { reg, size } => {
            let r = gpr_mut(regs, reg);
            *r = match size {
                2 => (*r & !0xffff) | (value & 0xffff),
                4 => value & 0xffff_ffff,
                _ => value,
            };
            regs.rflags = (regs.rflags & !RFLAGS_RDRAND_CLEARED) | RFLAGS_CF;
        }
        // CPUID's four outputs are written by the caller; HLT has none.
        Special::Hlt | Special::Cpuid => {}
    }
    regs.rip = regs.rip.wrapping_add(len as u64);
}

/// Longest x86 instruction.
pub const MAX_INSN_LEN: usize = 15;

/// The code mode implied by CS and EFER.
pub fn code_mode(sregs: &kvm_bindings::kvm_sregs) -> CodeMode {
    if sregs.efer & (1 << 10) != 0 && sregs.cs.l != 0 {
        CodeMode::Long
    } else if sregs.cs.db != 0 {
        CodeMode::Bits32
    } else {
        CodeMode::Bits16
    }
}

/// The linear address of the instruction at RIP.
pub fn instruction_linear_address(regs: &kvm_bindings::kvm_regs, sregs: &kvm_bindings::kvm_sregs) -> u64 {
    match code_mode(sregs) {
        CodeMode::Long => regs.rip,
        CodeMode::Bits32 => (sregs.cs.base + (regs.rip & 0xffff_ffff)) & 0xffff_ffff,
        CodeMode::Bits16 => (sregs.cs.base + (regs.rip & 0xffff)) & 0xf_ffff,
    }
}

/// Reads up to 15 instruction bytes at RIP through the guest page tables; returns how many
/// were readable.
pub fn fetch_at_rip(
    ram: &crate::memory::GuestRam,
    regs: &kvm_bindings::kvm_regs,
    sregs: &kvm_bindings::kvm_sregs,
) -> ([u8; MAX_INSN_LEN], usize) {
    let space = crate::paging::AddressSpace::from_sregs(sregs);
    let linear = instruction_linear_address(regs, sregs);
    let mut buf = [0u8; MAX_INSN_LEN];
    let first = (0x1000 - (linear & 0xfff)).min(MAX_INSN_LEN as u64) as usize;
    if space.read_virt(ram, linear, &mut buf[..first]).is_err() {
        return (buf, 0);
    }
    if first < MAX_INSN_LEN && space.read_virt(ram, linear + first as u64, &mut buf[first..]).is_err() {
        return (buf, first);
    }
    (buf, MAX_INSN_LEN)
}

/// If `bytes` (the instruction bytes at RIP, up to 15) start with one of the special
/// instructions, returns it and its length.
pub fn classify(bytes: &[u8], mode: CodeMode) -> Option<(Special, usize)> {
    let mut i = 0usize;
    let mut opsize_prefix = false;
    let mut rep_prefix = false;
    let mut rex = 0u8;
    // Legacy prefixes, then (in 64-bit mode) REX, which must immediately precede the opcode.
    while i < bytes.len() && i < MAX_INSN_LEN {
        match bytes[i] {
            0x66 => opsize_prefix = true,
            // F2/F3 make RDRAND/RDSEED invalid (their encodings are NFx) or another instruction.
            0xf3 | 0xf2 => rep_prefix = true,
            // LOCK makes all of them #UD: leave those to the CPU.
            0xf0 => return None,
            0x67 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 => {}
            _ => break,
        }
        rex = 0;
        i += 1;
    }
    if mode == CodeMode::Long {
        if let Some(&b) = bytes.get(i) {
            if (0x40..=0x4f).contains(&b) {
                rex = b;
                i += 1;
            }
        }
    }
    let op = |k: usize| bytes.get(i + k).copied();
    match op(0)? {
        0xf4 => Some((Special::Hlt, i + 1)),
        0x0f => match op(1)? {
            0x31 => Some((Special::Rdtsc, i + 2)),
            0x32 => Some((Special::Rdmsr, i + 2)),
            0xa2 => Some((Special::Cpuid, i + 2)),
            0x01 if op(2)? == 0xf9 => Some((Special::Rdtscp, i + 3)),
            0xc7 => {
                let modrm = op(2)?;
                if modrm >> 6 != 3 {
                    return None;
                }
                let reg_field = (modrm >> 3) & 7;
                let rm = (modrm & 7) | ((rex & 1) << 3);
                let size = if rex & 8 != 0 {
                    8
                } else {
                    let default16 = mode == CodeMode::Bits16;
                    if opsize_prefix != default16 {
                        2
                    } else {
                        4
                    }
                };
                match reg_field {
                    6 if !rep_prefix => Some((Special::Rdrand { reg: rm, size }, i + 3)),
                    // F3 0F C7 /7 is RDPID, which reads TSC_AUX: guest state, not emulated.
                    7 if !rep_prefix => Some((Special::Rdseed { reg: rm, size }, i + 3)),
                    _ => None,
                }
            }
            _ => None,
        },
        _ => None,
    }
}

/// An instruction after which these hosts' single-step also runs the next instruction
/// before reporting the step (measured with the `entropy` kernel; IRETQ does the same). The
/// exact engine carries them out itself, so that an RDTSC, RDRAND or CPUID after them is
/// decoded and emulated like any other instead of running natively, unlogged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merging {
    /// LFENCE, MFENCE or SFENCE: nothing to do on one vCPU whose every step completes.
    Fence,
    /// OUT imm8, AL/AX/EAX (`size` bytes); the DX form steps normally.
    OutImm8 {
        /// Port number.
        port: u16,
        /// 1, 2 or 4.
        size: usize,
    },
    /// SWAPGS (64-bit mode).
    Swapgs,
}

/// Decodes a [`Merging`] instruction at the start of `bytes`, with its length. Only the
/// plain encodings: with other prefixes the instruction is left to the CPU.
pub fn classify_merging(bytes: &[u8], mode: CodeMode) -> Option<(Merging, usize)> {
    let (opsize, rest) = match bytes {
        [0x66, rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    let p = usize::from(opsize);
    match rest {
        [0x0f, 0xae, modrm, ..] if !opsize && *modrm >= 0xe8 => Some((Merging::Fence, 3)),
        [0xe6, port, ..] => Some((Merging::OutImm8 { port: u16::from(*port), size: 1 }, p + 2)),
        [0xe7, port, ..] => {
            let size = match (mode, opsize) {
                (CodeMode::Bits16, false) | (CodeMode::Long | CodeMode::Bits32, true) => 2,
                _ => 4,
            };
            Some((Merging::OutImm8 { port: u16::from(*port), size }, p + 2))
        }
        [0x0f, 0x01, 0xf8, ..] if !opsize && mode == CodeMode::Long => Some((Merging::Swapgs, 3)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstone::prelude::*;

    fn cs64() -> Capstone {
        Capstone::new().x86().mode(arch::x86::ArchMode::Mode64).build().unwrap()
    }

    #[test]
    fn applies_results_like_the_cpu() {
        let mut r =
            kvm_bindings::kvm_regs { rip: 0x1000, rax: u64::MAX, rdx: u64::MAX, rflags: 0x8d5, ..Default::default() };
        apply_emulated(&mut r, Special::Rdtsc, 2, 0x1122_3344_5566_7788, 0);
        assert_eq!((r.rax, r.rdx, r.rip), (0x5566_7788, 0x1122_3344, 0x1002));
        r.r9 = u64::MAX;
        apply_emulated(&mut r, Special::Rdrand { reg: 9, size: 2 }, 4, 0xabcd_1234, 0);
        assert_eq!(r.r9, 0xffff_ffff_ffff_1234);
        assert_eq!(r.rflags & 0x8d5, 1, "only CF set among the arithmetic flags");
        apply_emulated(&mut r, Special::Rdseed { reg: 9, size: 4 }, 4, 0xffff_ffff_abcd_1234, 0);
        assert_eq!(r.r9, 0xabcd_1234, "32-bit destinations zero-extend");
        apply_emulated(&mut r, Special::Rdtscp, 3, 5, 0x1_0000_0007);
        assert_eq!((r.rax, r.rdx, r.rcx), (5, 0, 7));
    }

    #[test]
    fn recognises_the_plain_encodings() {
        assert_eq!(classify(&[0x0f, 0x31], CodeMode::Long), Some((Special::Rdtsc, 2)));
        assert_eq!(classify(&[0x0f, 0x01, 0xf9], CodeMode::Long), Some((Special::Rdtscp, 3)));
        assert_eq!(classify(&[0xf4], CodeMode::Bits32), Some((Special::Hlt, 1)));
        assert_eq!(classify(&[0x0f, 0x32], CodeMode::Long), Some((Special::Rdmsr, 2)));
        assert_eq!(classify(&[0x0f, 0xa2], CodeMode::Long), Some((Special::Cpuid, 2)));
        // rdrand rax = 48 0f c7 f0; rdseed r9d = 41 0f c7 f9; rdrand ax = 66 0f c7 f0.
        assert_eq!(classify(&[0x48, 0x0f, 0xc7, 0xf0], CodeMode::Long), Some((Special::Rdrand { reg: 0, size: 8 }, 4)));
        assert_eq!(classify(&[0x41, 0x0f, 0xc7, 0xf9], CodeMode::Long), Some((Special::Rdseed { reg: 9, size: 4 }, 4)));
        assert_eq!(classify(&[0x66, 0x0f, 0xc7, 0xf0], CodeMode::Long), Some((Special::Rdrand { reg: 0, size: 2 }, 4)));
        assert_eq!(
            classify(&[0x66, 0x0f, 0xc7, 0xf0], CodeMode::Bits16),
            Some((Special::Rdrand { reg: 0, size: 4 }, 4))
        );
        // In 32-bit mode 0x48 is DEC EAX, not REX.
        assert_eq!(classify(&[0x48, 0x0f, 0x31], CodeMode::Bits32), None);
        // RDPID and memory forms of 0f c7 are not special.
        assert_eq!(classify(&[0xf3, 0x0f, 0xc7, 0xf8], CodeMode::Long), None);
        assert_eq!(classify(&[0x0f, 0xc7, 0x30], CodeMode::Long), None);
        assert_eq!(classify(&[0x90], CodeMode::Long), None);
        assert_eq!(classify(&[0x0f], CodeMode::Long), None);
        assert_eq!(classify(&[], CodeMode::Long), None);
    }

    /// Exhaustively compares with capstone over prefixes x opcodes x ModRM bytes.
    #[test]
    fn agrees_with_capstone() {
        let cs = cs64();
        let prefixes: &[&[u8]] =
            &[&[], &[0x66], &[0xf3], &[0xf2], &[0x48], &[0x41], &[0x49], &[0x66, 0x48], &[0x2e], &[0xf0]];
        let mut checked = 0;
        for p in prefixes {
            let mut bodies: Vec<Vec<u8>> =
                vec![vec![0x0f, 0x31], vec![0x0f, 0x32], vec![0x0f, 0x01, 0xf9], vec![0xf4], vec![0x0f, 0x01, 0xf8]];
            for modrm in 0..=255u8 {
                bodies.push(vec![0x0f, 0xc7, modrm, 0, 0, 0, 0, 0, 0]);
            }
            for b in bodies {
                let mut bytes = p.to_vec();
                bytes.extend_from_slice(&b);
                let ours = classify(&bytes, CodeMode::Long);
                let insns = cs.disasm_count(&bytes, 0x1000, 1).unwrap();
                let Some(insn) = insns.iter().next() else {
                    assert!(ours.is_none(), "{bytes:02x?}: capstone says invalid, we say {ours:?}");
                    continue;
                };
                let mnemonic = insn.mnemonic().unwrap_or("");
                let expect = match mnemonic {
                    "rdtsc" => Some("rdtsc"),
                    "rdtscp" => Some("rdtscp"),
                    "rdrand" => Some("rdrand"),
                    "rdseed" => Some("rdseed"),
                    "rdmsr" => Some("rdmsr"),
                    "hlt" => Some("hlt"),
                    _ => None,
                };
                let got = ours.map(|(s, _)| match s {
                    Special::Rdtsc => "rdtsc",
                    Special::Rdtscp => "rdtscp",
                    Special::Rdrand { .. } => "rdrand",
                    Special::Rdseed { .. } => "rdseed",
                    Special::Rdmsr => "rdmsr",
                    Special::Hlt => "hlt",
                    Special::Cpuid => "cpuid",
                });
                assert_eq!(got, expect, "{bytes:02x?}: capstone {mnemonic} {}", insn.op_str().unwrap_or(""));
                if let Some((_, len)) = ours {
                    assert_eq!(len, insn.len(), "{bytes:02x?}: length");
                }
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} encodings compared");
    }

    #[test]
    fn merging_instructions() {
        let long = CodeMode::Long;
        assert_eq!(classify_merging(&[0x0f, 0xae, 0xe8], long), Some((Merging::Fence, 3)), "lfence");
        assert_eq!(classify_merging(&[0x0f, 0xae, 0xf0], long), Some((Merging::Fence, 3)), "mfence");
        assert_eq!(classify_merging(&[0x0f, 0xae, 0xf8], long), Some((Merging::Fence, 3)), "sfence");
        assert_eq!(classify_merging(&[0x0f, 0xae, 0x38], long), None, "clflush [rax] is not a fence");
        assert_eq!(classify_merging(&[0xe6, 0x80], long), Some((Merging::OutImm8 { port: 0x80, size: 1 }, 2)));
        assert_eq!(classify_merging(&[0xe7, 0x42], long), Some((Merging::OutImm8 { port: 0x42, size: 4 }, 2)));
        assert_eq!(classify_merging(&[0x66, 0xe7, 0x42], long), Some((Merging::OutImm8 { port: 0x42, size: 2 }, 3)));
        assert_eq!(classify_merging(&[0xee], long), None, "out dx, al steps normally");
        assert_eq!(classify_merging(&[0x0f, 0x01, 0xf8], long), Some((Merging::Swapgs, 3)));
        assert_eq!(classify_merging(&[0x0f, 0x01, 0xf8], CodeMode::Bits32), None, "SWAPGS is #UD outside 64-bit mode");
    }
}
