//! timer: PIT channel 0 in mode 2 at 1 kHz (divisor 1193) on IRQ 0, remapped
//! to vector 0x20. The handler counts ticks and EOIs; the idle loop is
//! `sti; hlt`. Prints `tick N` every 10 ticks, then `timer: N ticks`, exits 0.
//!
//! Command line:
//!   ticks=N   number of timer interrupts to wait for (default 50)
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut};
use ttvm_kernel_support::{self as k, cpu, idt, pic, pit, println};

/// Timer interrupts seen so far (only the IRQ 0 handler writes it).
#[no_mangle]
static mut TICKS: u64 = 0;

fn on_tick(_frame: &mut k::TrapFrame) {
    unsafe { addr_of_mut!(TICKS).write_volatile(TICKS + 1) };
    pic::eoi(pit::IRQ);
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "timer");
    let want = cmdline.u64("ticks", 50);

    idt::set_handler(pic::irq_vector(pit::IRQ), on_tick);
    let div = pit::start_periodic(1000);
    println!("timer: pit divisor={} waiting for {} ticks", div, want);
    pic::unmask(pit::IRQ);

    let mut next_report = 10;
    loop {
        cpu::cli();
        let t = unsafe { addr_of!(TICKS).read_volatile() };
        // Report by multiples of 10 so the output does not depend on how
        // many ticks arrive between two wake-ups.
        while next_report <= t.min(want) {
            println!("tick {}", next_report);
            next_report += 10;
        }
        if t >= want {
            break;
        }
        cpu::sti_hlt(); // sleep until the next interrupt, race-free
    }
    pic::mask(pit::IRQ);
    println!("timer: {} ticks", want);
    k::exit(0)
}
