//! pong: answers each numbered frame that arrives over virtio-net with a frame of the same
//! number, back to its sender; exits 0 after answering frame 0. Prints `pong: N frames`.
//! Command line: delay=N spins N times before each answer (a slow peer).
#![no_std]
#![no_main]

#[path = "../net/driver.rs"]
mod driver;

use driver::Net;
use ttvm_kernel_support::{self as k, println};

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "pong");
    // delay=N: spin N times before each answer, a slow peer (ping's retransmissions then
    // fire whatever the host's timing).
    let delay = cmdline.u64("delay", 0);
    let Some(mut net) = Net::find() else {
        println!("pong: no virtio-net card on PCI bus 0 (run with --vm ping --vm pong)");
        k::exit(1)
    };
    let mut frames = 0u64;
    loop {
        let got = net.recv();
        frames += 1;
        for _ in 0..delay {
            core::hint::spin_loop();
        }
        net.send(got.src, got.number);
        if got.number == 0 {
            break;
        }
    }
    net.flush();
    println!("pong: {} frames", frames);
    k::exit(0)
}
