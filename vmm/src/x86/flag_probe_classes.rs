// The instruction classes that leave arithmetic flags undefined, as run by both flag probes:
// the host's (`host_cpu.rs`, in ttvm's own process) and the guest's (the `flagprobe` sample
// kernel, `include!`d there). One table, so the two measure the same thing. The includer
// provides `asm`, the flag constants CF PF AF ZF SF OF and ARITHMETIC.

/// Runs `$insn` (Intel syntax, operands rax and rcx, rdx as the high half or the second
/// source) with RFLAGS's arithmetic flags set to `$init` first (IF clear: nothing can land
/// in between; in user mode POPF leaves IF alone); returns RFLAGS after.
macro_rules! flags_after {
    ($insn:literal, $init:expr, $a:expr, $b:expr, $d:expr) => {{
        let flags: u64;
        // SAFETY: the instruction only touches the named registers and the flags; the
        // stack is used for PUSHF/POPF only (no `nostack`), and DF/TF are never set.
        unsafe {
            asm!(
                "push {init}",
                "popfq",
                $insn,
                "pushfq",
                "pop {flags}",
                init = in(reg) $init | 0x2,
                flags = lateout(reg) flags,
                inout("rax") $a => _,
                inout("rcx") $b => _,
                inout("rdx") $d => _,
            );
        }
        flags
    }};
}

/// Operands every class is fed: small, signed, overflowing, zero.
const OPERANDS: [(u64, u64); 5] =
    [(3, 5), (u64::MAX, 1), (0x8000_0000_0000_0000, 2), (0x0123_4567_89ab_cdef, 0x11), (0, 7)];

/// One class: its name, the bits it leaves undefined, and how to run it (initial
/// flags, rax, rcx) -> RFLAGS after.
type Class = (&'static str, u64, fn(u64, u64, u64) -> u64);

/// Every class, in report order.
fn classes() -> [Class; 11] {
    [
        ("imul", SF | ZF | AF | PF, |i, a, b| flags_after!("imul rax, rcx", i, a, b, 0u64)),
        ("mul", SF | ZF | AF | PF, |i, a, b| flags_after!("mul rcx", i, a, b, 0u64)),
        ("div", ARITHMETIC, |i, a, b| flags_after!("div rcx", i, a, b | 1, 0u64)),
        ("bsf", CF | OF | SF | AF | PF, |i, a, b| flags_after!("bsf rax, rcx", i, a, b.wrapping_sub(1) & a, 0u64)),
        ("bsr", CF | OF | SF | AF | PF, |i, a, b| flags_after!("bsr rax, rcx", i, a, b ^ a, 0u64)),
        ("bt", OF | SF | AF | PF, |i, a, b| flags_after!("bt rax, rcx", i, a, b, 0u64)),
        ("shl", OF | AF, |i, a, b| flags_after!("shl rax, cl", i, a, (b % 7) + 2, 0u64)),
        ("sar", OF | AF, |i, a, b| flags_after!("sar rax, cl", i, a, (b % 7) + 2, 0u64)),
        ("rol", OF, |i, a, b| flags_after!("rol rax, cl", i, a, (b % 7) + 2, 0u64)),
        ("shld", OF | AF, |i, a, b| flags_after!("shld rax, rdx, cl", i, a, (b % 7) + 2, b)),
        ("and", AF, |i, a, b| flags_after!("and rax, rcx", i, a, b, 0u64)),
    ]
}
