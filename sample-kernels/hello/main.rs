//! hello: prints `Hello from ttvm!` and `cmdline: <the command line>`, exits 0.
//!
//! Command line: anything; it is printed back verbatim. With the flag `int3`, it also runs
//! an INT3 and reports the #BP its handler saw (Linux does the same at boot; some hosts'
//! KVM cannot execute INT3 in ring 0 and ttvm raises the exception itself). With `ac`, it
//! runs STAC and CLAC (Linux's SMAP toggles, also beyond some hosts' ring-0 emulator) and
//! prints the AC flag after each. With `fwait`, it runs FWAIT (Linux's FPU state saving
//! does; some hosts' ring-0 emulator cannot) and says it came back.
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
    k::exit(0)
}
