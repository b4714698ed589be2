//! Port I/O and small CPU helpers.
use core::arch::asm;

#[inline(always)]
pub unsafe fn outb(port: u16, v: u8) {
    asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags));
}
#[inline(always)]
pub unsafe fn outw(port: u16, v: u16) {
    asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags));
}
#[inline(always)]
pub unsafe fn outl(port: u16, v: u32) {
    asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags));
}
#[inline(always)]
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags));
    v
}
#[inline(always)]
pub unsafe fn inw(port: u16) -> u16 {
    let v: u16;
    asm!("in ax, dx", out("ax") v, in("dx") port, options(nomem, nostack, preserves_flags));
    v
}
#[inline(always)]
pub unsafe fn inl(port: u16) -> u32 {
    let v: u32;
    asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags));
    v
}

/// Disables interrupts. Also a compiler barrier: memory accesses are not moved across it.
#[inline(always)]
pub fn cli() {
    unsafe { asm!("cli", options(nostack)) };
}
/// Enables interrupts (compiler barrier).
#[inline(always)]
pub fn sti() {
    unsafe { asm!("sti", options(nostack)) };
}
/// `sti; hlt`: the sti shadow makes check-then-sleep race free when the
/// check ran with interrupts disabled.
#[inline(always)]
pub fn sti_hlt() {
    unsafe { asm!("sti", "hlt", options(nostack)) };
}

pub fn interrupts_enabled() -> bool {
    let f: u64;
    unsafe { asm!("pushfq", "pop {}", out(reg) f, options(nomem, preserves_flags)) };
    f & (1 << 9) != 0
}

/// Runs `f` with interrupts disabled, restoring the previous IF afterwards.
#[inline(always)]
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let was = interrupts_enabled();
    cli();
    let r = f();
    if was {
        sti();
    }
    r
}

pub fn read_cr2() -> u64 {
    let v: u64;
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CPUID leaf/subleaf -> (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    let (a, b, c, d): (u32, u32, u32, u32);
    // rbx is reserved by LLVM: swap it through a scratch register.
    unsafe {
        asm!("mov {t:r}, rbx", "cpuid", "xchg {t:r}, rbx", t = out(reg) b,
             inout("eax") leaf => a, inout("ecx") sub => c, out("edx") d,
             options(nomem, nostack, preserves_flags));
    }
    (a, b, c, d)
}

pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (hi as u64) << 32 | lo as u64
}
