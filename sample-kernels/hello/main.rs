//! hello: prints `Hello from ttvm!` and `cmdline: <the command line>`, exits 0.
//!
//! Command line: anything; it is printed back verbatim. With the flag `int3`, it also runs
//! an INT3 and reports the #BP its handler saw (Linux does the same at boot; some hosts'
//! KVM cannot execute INT3 in ring 0 and ttvm raises the exception itself).
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

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "hello");
    println!("Hello from ttvm!");
    println!("cmdline: {}", cmdline.as_str());
    if cmdline.flag("int3") {
        int3_check();
    }
    k::exit(0)
}
