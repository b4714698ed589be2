//! ping: sends numbered frames 1..=N over virtio-net, each after the reply to the previous
//! one has arrived, then frame 0 (which tells `pong` to stop), and prints `ping: N replies`.
//! Runs against `pong` on a ttvm network: `ttvm run --vm ping --cmdline rounds=N --vm pong`.
//!
//! Command line: rounds=N (default 10); peer=I sends to the VM at position I instead of
//! broadcasting; retransmit=T sends a frame again when its reply has not come within T
//! timer ticks (1 kHz PIT).
//!
//! `retransmit` carries a timing-dependent protocol bug, for the network CI bug trace:
//! once ping has retransmitted a frame it stops checking reply numbers (the flag that
//! should say "this frame was sent again" is never reset). When a first transmission's
//! reply was only late, the retransmission is answered too, and that duplicate is taken
//! as the reply to the next frame: from then on ping is one reply behind, and it notices
//! only at the end (`ping: replies out of step ...`, status 1). Whether a reply is late
//! depends on how the VMs' threads were scheduled, so only some runs fail
//! (`record --until-failure`).
#![no_std]
#![no_main]

#[path = "../net/driver.rs"]
mod driver;

use core::ptr::{addr_of, addr_of_mut};

use driver::{mac_of, Net, BROADCAST};
use ttvm_kernel_support::{self as k, idt, pic, pit, println};

/// Timer interrupts so far (only the IRQ 0 handler writes it).
static mut TICKS: u64 = 0;

fn on_tick(_frame: &mut k::TrapFrame) {
    unsafe { addr_of_mut!(TICKS).write_volatile(TICKS + 1) };
    pic::eoi(pit::IRQ);
}

fn ticks() -> u64 {
    unsafe { addr_of!(TICKS).read_volatile() }
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "ping");
    let rounds = cmdline.u64("rounds", 10);
    let retransmit = cmdline.u64("retransmit", 0);
    let dst = cmdline.get("peer").and_then(ttvm_kernel_support::cmdline::parse_u64).map_or(BROADCAST, mac_of);
    let Some(mut net) = Net::find() else {
        println!("ping: no virtio-net card on PCI bus 0 (run with --vm ping --vm pong)");
        k::exit(1)
    };
    if retransmit > 0 {
        idt::set_handler(pic::irq_vector(pit::IRQ), on_tick);
        pit::start_periodic(1000);
        pic::unmask(pit::IRQ);
    }
    let mut replies = 0u64;
    let mut last_reply = 0u64;
    // The bug: this belongs inside the loop, one per frame. Declared here, it stays set
    // after the first retransmission, and from then on every reply is taken as the answer
    // to the frame being waited for, whatever its number.
    let mut retransmitted = false;
    for n in 1..=rounds {
        net.send(dst, n);
        loop {
            let got = if retransmit > 0 {
                let deadline = ticks() + retransmit;
                match net.recv_until(|| ticks() >= deadline) {
                    Some(got) => got,
                    None => {
                        println!("ping: no reply to {} within {} ticks; sending it again", n, retransmit);
                        net.send(dst, n);
                        retransmitted = true;
                        continue;
                    }
                }
            } else {
                net.recv()
            };
            if got.number == n || retransmitted {
                replies += 1;
                last_reply = got.number;
                break;
            }
            println!("ping: frame {} while waiting for {}; ignored", got.number, n);
        }
    }
    net.send(dst, 0);
    // Frame 0 must have left the card before the machine stops.
    net.flush();
    if retransmit > 0 {
        pic::mask(pit::IRQ);
    }
    if last_reply != rounds {
        println!("ping: replies out of step: the last reply was for frame {}, not {}", last_reply, rounds);
        k::exit(1)
    }
    println!("ping: {} replies", replies);
    k::exit(0)
}
