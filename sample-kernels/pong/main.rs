//! pong: answers each numbered frame that arrives over virtio-net with a frame of the same
//! number, back to its sender; exits 0 after answering frame 0. Prints `pong: N frames`.
#![no_std]
#![no_main]

#[path = "../net/driver.rs"]
mod driver;

use driver::Net;
use ttvm_kernel_support::{self as k, println};

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let _cmdline = k::init(info, "pong");
    let Some(mut net) = Net::find() else {
        println!("pong: no virtio-net card on PCI bus 0 (run with --vm ping --vm pong)");
        k::exit(1)
    };
    let mut frames = 0u64;
    loop {
        let got = net.recv();
        frames += 1;
        net.send(got.src, got.number);
        if got.number == 0 {
            break;
        }
    }
    net.flush();
    println!("pong: {} frames", frames);
    k::exit(0)
}
