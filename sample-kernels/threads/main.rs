//! threads: 3 kernel threads, preemptively switched round robin by the PIT
//! interrupt, increment a shared counter WITHOUT a lock:
//!
//!     v = COUNTER; <window of busy work>; cli; COUNTER = v + 1; DONE += 1; check; sti
//!
//! If the timer preempts a thread between its read and its write, the other
//! threads increment COUNTER meanwhile and the stale `COUNTER = v + 1` loses
//! their updates; the check right after it panics
//! `lost update: counter=.. done=..`. Whether that happens depends only on
//! where timer interrupts land. To find the culprit: `watch COUNTER`, then
//! `reverse-continue` from the panic lands on the stale write.
//! Otherwise prints `threads: ok counter=N` and exits 0.
//!
//! Command line. The defaults make a run pass under `--clock icount` (no timer tick lands
//! while the workers run) and fail about half the time under `--clock realtime` (a tick
//! lands every few hundred steps; a few in a thousand land inside a race window):
//!   hz=N       timer frequency (default 100)
//!   window=N   busy-loop iterations between read and write (default 1)
//!   work=N     busy-loop iterations outside the race, per increment (default 1000)
//!   iters=N    increments per thread (default 30)
//! `hz=1000 window=8 work=0 iters=20000` fails deterministically under either clock.
#![no_std]
#![no_main]

use core::ptr::addr_of;
use ttvm_kernel_support::{self as k, cpu, idt, panic, pic, pit, println, thread};

const THREADS: usize = 3;

/// The shared counter, updated without a lock.
#[no_mangle]
static mut COUNTER: u64 = 0;
/// Increments completed so far (updated with interrupts off: always exact).
#[no_mangle]
static mut DONE: u64 = 0;

static mut ITERS: u64 = 0;
static mut WINDOW: u64 = 0;
static mut WORK: u64 = 0;

fn on_tick(frame: &mut k::TrapFrame) {
    pic::eoi(pit::IRQ);
    thread::schedule(frame); // preempt: round robin
}

/// Work between the read and the write; its length sets how likely a
/// preemption is to land inside the race window.
#[inline(never)]
fn busy(n: u64) {
    for i in 0..n {
        core::hint::black_box(i);
    }
}

fn worker(_id: usize) {
    let (iters, window, work) = unsafe { (ITERS, WINDOW, WORK) };
    for _ in 0..iters {
        busy(work);
        unsafe {
            let v = addr_of!(COUNTER).read_volatile();
            busy(window);
            cpu::cli();
            // A plain store (cli is a compiler barrier), not write_volatile:
            // gdb then attributes the store instruction to this line.
            COUNTER = v + 1; // <- a preempted thread's stale write
            DONE += 1;
            let (c, d) = (addr_of!(COUNTER).read_volatile(), DONE);
            if c != d {
                panic!("lost update: counter={} done={}", c, d);
            }
            cpu::sti();
        }
    }
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "threads");
    let hz = cmdline.u64("hz", 100) as u32;
    unsafe {
        ITERS = cmdline.u64("iters", 30);
        WINDOW = cmdline.u64("window", 1);
        WORK = cmdline.u64("work", 1000);
    }
    println!(
        "threads: {} threads, iters={} window={} work={} hz={}",
        THREADS,
        unsafe { ITERS },
        unsafe { WINDOW },
        unsafe { WORK },
        hz
    );

    thread::init();
    for i in 0..THREADS {
        thread::spawn(worker, i, 16 * 1024);
    }
    idt::set_handler(pic::irq_vector(pit::IRQ), on_tick);
    pit::start_periodic(hz);
    pic::unmask(pit::IRQ);

    // The boot thread just passes the CPU on until the workers are done.
    cpu::sti();
    while thread::finished() < THREADS {
        thread::yield_now();
    }
    cpu::cli();
    pic::mask(pit::IRQ);
    println!("threads: ok counter={}", unsafe { addr_of!(COUNTER).read_volatile() });
    k::exit(0)
}
