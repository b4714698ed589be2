//! ping: sends numbered frames 1..=N over virtio-net, each after the reply to the previous
//! one has arrived, then frame 0 (which tells `pong` to stop), and prints `ping: N replies`.
//! Runs against `pong` on a ttvm network: `ttvm run --vm ping --cmdline rounds=N --vm pong`.
//!
//! Command line: rounds=N (default 10); peer=I sends to the VM at position I instead of
//! broadcasting.
#![no_std]
#![no_main]

#[path = "../net/driver.rs"]
mod driver;

use driver::{mac_of, Net, BROADCAST};
use ttvm_kernel_support::{self as k, println};

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "ping");
    let rounds = cmdline.u64("rounds", 10);
    let dst = cmdline.get("peer").and_then(ttvm_kernel_support::cmdline::parse_u64).map_or(BROADCAST, mac_of);
    let Some(mut net) = Net::find() else {
        println!("ping: no virtio-net card on PCI bus 0 (run with --vm ping --vm pong)");
        k::exit(1)
    };
    let mut replies = 0u64;
    for n in 1..=rounds {
        net.send(dst, n);
        loop {
            let got = net.recv();
            if got.number == n {
                replies += 1;
                break;
            }
            println!("ping: frame {} while waiting for {}; ignored", got.number, n);
        }
    }
    net.send(dst, 0);
    // Frame 0 must have left the card before the machine stops.
    net.flush();
    println!("ping: {} replies", replies);
    k::exit(0)
}
