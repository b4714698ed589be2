//! hello: prints `Hello from ttvm!` and `cmdline: <the command line>`, exits 0.
//!
//! Command line: anything; it is printed back verbatim. With the flag `int3`, it also runs
//! an INT3 and reports the #BP its handler saw (Linux does the same at boot; some hosts'
//! KVM cannot execute INT3 in ring 0 and ttvm raises the exception itself). With `ac`, it
//! runs STAC and CLAC (Linux's SMAP toggles, also beyond some hosts' ring-0 emulator) and
//! prints the AC flag after each. With `fwait`, it runs FWAIT (Linux's FPU state saving
//! does; some hosts' ring-0 emulator cannot) and says it came back. With `mxcsr`, it loads
//! MXCSR with LDMXCSR (Linux's `kernel_fpu_begin` does; also beyond some hosts' ring-0
//! emulator), reads it back, then loads a value with a reserved bit and reports the #GP.
//! With `x87`, it runs Linux's FPU-restore sequence on AMD (FNINIT, FNCLEX, EMMS, FILD,
//! then FXSAVE/FXRSTOR) and prints the x87 state: FSW, tag word and ST0 holding -12345.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use ttvm_kernel_support::{self as k, idt, println, TrapFrame};

/// RIP the #BP handler found on its frame: the address after the INT3.
static BP_RETURN: AtomicU64 = AtomicU64::new(0);

fn on_breakpoint(f: &mut TrapFrame) {
    BP_RETURN.store(f.rip, Ordering::SeqCst);
}

fn int3_check() {
    const BP_VECTOR: u8 = 3;
    idt::set_handler(BP_VECTOR, on_breakpoint);
    let after: u64;
    // SAFETY: INT3 traps to the handler above, which records the return RIP and resumes.
    unsafe {
        core::arch::asm!("int3", "2:", "lea {}, [rip + 2b]", out(reg) after);
    }
    let seen = BP_RETURN.load(Ordering::SeqCst);
    if seen == after {
        println!("int3: #BP handled, returned to {:#x}", seen);
    } else {
        println!("int3: #BP handler saw RIP {:#x}, expected {:#x}", seen, after);
        k::exit(1);
    }
}

/// Where the #GP handler resumes, and the error code it saw plus one (0: no #GP yet).
static GP_RESUME: AtomicU64 = AtomicU64::new(0);
static GP_SEEN: AtomicU64 = AtomicU64::new(0);

fn on_general_protection(f: &mut TrapFrame) {
    GP_SEEN.store(f.error_code + 1, Ordering::SeqCst);
    f.rip = GP_RESUME.load(Ordering::SeqCst);
}

fn read_mxcsr() -> u32 {
    let mut value: u32 = 0;
    // SAFETY: STMXCSR writes 4 bytes to a live local.
    unsafe { core::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack)) };
    value
}

fn mxcsr_check() {
    const GP_VECTOR: u8 = 13;
    const ROUND_TOWARD_ZERO: u32 = 0x7f80; // RC = 11, all exceptions masked
    const RESERVED_BIT: u32 = 1 << 16;
    const DEFAULT: u32 = 0x1f80;
    let wanted = ROUND_TOWARD_ZERO;
    // SAFETY: loads a valid MXCSR value from a live local.
    unsafe { core::arch::asm!("ldmxcsr [{}]", in(reg) &wanted, options(nostack, readonly)) };
    println!("mxcsr: loaded {:#x}, read back {:#x}", wanted, read_mxcsr());
    idt::set_handler(GP_VECTOR, on_general_protection);
    let bad = DEFAULT | RESERVED_BIT;
    // SAFETY: the LDMXCSR faults (#GP); the handler resumes at label 2, past it.
    unsafe {
        core::arch::asm!(
            "lea {tmp}, [rip + 2f]",
            "mov [{resume}], {tmp}",
            "ldmxcsr [{bad}]",
            "2:",
            tmp = out(reg) _,
            resume = in(reg) GP_RESUME.as_ptr(),
            bad = in(reg) &bad,
            options(nostack),
        );
    }
    match GP_SEEN.load(Ordering::SeqCst) {
        0 => println!("mxcsr: reserved bit accepted, MXCSR now {:#x}", read_mxcsr()),
        seen => println!("mxcsr: reserved bit raised #GP({}), MXCSR still {:#x}", seen - 1, read_mxcsr()),
    }
    // SAFETY: restores the default MXCSR.
    unsafe { core::arch::asm!("ldmxcsr [{}]", in(reg) &DEFAULT, options(nostack, readonly)) };
}

/// A 512-byte FXSAVE area.
#[repr(C, align(16))]
struct FxArea([u8; 512]);

/// Linux's `restore_fpregs_from_fpstate` on AMD CPUs without XSAVEERPTR (FNCLEX, EMMS, FILD
/// to give FIP/FDP/FOP defined values), then its FXSAVE/FXRSTOR of the state.
fn x87_check() {
    let mut area = FxArea([0; 512]);
    let value: i32 = -12345;
    // SAFETY: x87 and FXSAVE/FXRSTOR on a live, aligned area; the FPU is enabled by boot.
    unsafe {
        core::arch::asm!("fninit", "fnclex", "emms", "fild dword ptr [{v}]", v = in(reg) &value, options(nostack));
        core::arch::asm!("fxsave64 [{a}]", a = in(reg) &mut area, options(nostack));
        core::arch::asm!("fxrstor64 [{a}]", a = in(reg) &area, options(nostack));
    }
    // FOP/FIP/FDP are left out: AMD CPUs without XSAVEERPTR store them only while an
    // exception is pending, so they differ between hosts.
    let a = &area.0;
    let fsw = u16::from_le_bytes([a[2], a[3]]);
    let ftw = a[4];
    let mantissa = u64::from_le_bytes(a[32..40].try_into().unwrap_or([0; 8]));
    let sign_exp = u16::from_le_bytes([a[40], a[41]]);
    println!("x87: fsw={:#06x} ftw={:#04x} st0={:#06x}:{:#018x}", fsw, ftw, sign_exp, mantissa);
}

fn rflags_ac() -> u64 {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack.
    unsafe { core::arch::asm!("pushfq", "pop {}", out(reg) flags) };
    (flags >> 18) & 1
}

fn ac_check() {
    // SAFETY: STAC/CLAC only change RFLAGS.AC (the CPU model may lack SMAP: then the guest
    // takes #UD and the exception report says so).
    unsafe { core::arch::asm!("stac", options(nomem, nostack)) };
    let after_stac = rflags_ac();
    unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
    println!("ac: {} after stac, {} after clac", after_stac, rflags_ac());
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "hello");
    println!("Hello from ttvm!");
    println!("cmdline: {}", cmdline.as_str());
    if cmdline.flag("int3") {
        int3_check();
    }
    if cmdline.flag("ac") {
        ac_check();
    }
    if cmdline.flag("fwait") {
        // SAFETY: no x87 exception is pending after boot, so FWAIT does nothing.
        unsafe { core::arch::asm!("fwait", options(nomem, nostack)) };
        println!("fwait: no x87 exception pending");
    }
    if cmdline.flag("mxcsr") {
        mxcsr_check();
    }
    if cmdline.flag("x87") {
        x87_check();
    }
    k::exit(0)
}
