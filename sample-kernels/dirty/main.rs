//! dirty: dirties guest memory at a chosen rate, for measuring live checkpoints. A buffer of
//! `mib` MiB is allocated; each pass writes one word into every 4 KiB page of it (a value
//! made of the pass and the page, so no two passes leave equal pages and content
//! deduplication cannot help), then waits `gap` PIT ticks (1 kHz) in `sti; hlt`. Prints
//! `dirty: pass N` every 10 passes, then `dirty: done passes=N`, exits 0.
//!
//! Command line:
//!   mib=N      buffer size in MiB (default 16)
//!   passes=N   number of passes (default 100)
//!   gap=N      ticks to wait after each pass (default 100, i.e. 100 ms of device time)
//!   check=1    before each pass, check that every page holds the previous pass's word and
//!              not yet its own, and panic naming the page otherwise: a run resumed from a
//!              checkpoint that caught a page before or after the moment it was taken fails
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut};
use ttvm_kernel_support::{self as k, cpu, idt, mem, pic, pit, println};

const PAGE: usize = 4096;

/// Timer interrupts seen so far (only the IRQ 0 handler writes it).
static mut TICKS: u64 = 0;

fn on_tick(_frame: &mut k::TrapFrame) {
    unsafe { addr_of_mut!(TICKS).write_volatile(TICKS + 1) };
    pic::eoi(pit::IRQ);
}

fn ticks() -> u64 {
    unsafe { addr_of!(TICKS).read_volatile() }
}

/// The word pass `pass` writes into `page` (0 before any pass wrote it there).
fn word_of(buf: *mut u8, page: usize, pass: u64) -> u64 {
    unsafe { (buf.add(page * PAGE + (pass as usize % 512) * 8) as *const u64).read_volatile() }
}

/// Before pass `pass`: each page holds the previous pass's word and not yet this one's.
fn check_pages(buf: *mut u8, pages: usize, pass: u64) {
    for page in 0..pages {
        let previous = pass - 1;
        if previous > 0 && word_of(buf, page, previous) != previous << 32 | page as u64 {
            panic!("dirty: page {} lost the word of pass {}", page, previous);
        }
        // Offsets repeat every 512 passes: an older pass may have left this one's slot.
        if word_of(buf, page, pass) == pass << 32 | page as u64 {
            panic!("dirty: page {} already holds the word of pass {}", page, pass);
        }
    }
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "dirty");
    let mib = cmdline.u64("mib", 16).max(1) as usize;
    let passes = cmdline.u64("passes", 100);
    let gap = cmdline.u64("gap", 100);
    let check = cmdline.u64("check", 0) == 1;
    let pages = mib * 1024 * 1024 / PAGE;
    let buf = mem::alloc(pages * PAGE, PAGE);

    idt::set_handler(pic::irq_vector(pit::IRQ), on_tick);
    pit::start_periodic(1000);
    pic::unmask(pit::IRQ);
    println!("dirty: {} MiB ({} pages) per pass, {} passes, {} ticks apart", mib, pages, passes, gap);
    for pass in 1..=passes {
        if check {
            check_pages(buf, pages, pass);
        }
        for page in 0..pages {
            // One volatile store per page: enough for KVM to log the page dirty.
            let word = unsafe { buf.add(page * PAGE + (pass as usize % 512) * 8) as *mut u64 };
            unsafe { word.write_volatile(pass << 32 | page as u64) };
        }
        if pass % 10 == 0 {
            println!("dirty: pass {}", pass);
        }
        let until = ticks() + gap;
        loop {
            cpu::cli();
            if ticks() >= until {
                break;
            }
            cpu::sti_hlt();
        }
        cpu::sti();
    }
    pic::mask(pit::IRQ);
    println!("dirty: done passes={}", passes);
    k::exit(0)
}
