//! memcorrupt: a deterministic memory-corruption bug for "who wrote this?".
//!
//! An event log keeps the last 8 events in a ring (`RING`). The linker places
//! `CONFIG` directly after it (`.data.ordered.*` sections, checked at boot).
//! The producer's wrap check is off by one (`> RING_LEN` instead of `>=`), so
//! the 9th event is written to `RING[8]`, i.e. over `CONFIG.magic` and
//! `CONFIG.limit`. Nothing notices until, after a long stretch of unrelated
//! work, the config is validated and the kernel panics
//! `config corrupted: ...`. In gdb: `watch CONFIG.magic`, `reverse-continue`.
//!
//! Command line:
//!   events=N   events logged at start-up (default 12; <= 8 does not corrupt)
//!   work=N     iterations of unrelated work before the check (default 50000)
#![no_std]
#![no_main]

use core::mem::size_of;
use core::ptr::{addr_of, addr_of_mut};
use ttvm_kernel_support::{self as k, panic, println};

const RING_LEN: usize = 8;
const CONFIG_MAGIC: u64 = 0xC0F1_6000_5AFE_0001;

#[repr(C)]
#[derive(Clone, Copy)]
struct Event {
    seq: u64,
    code: u64,
}

#[repr(C)]
struct Config {
    magic: u64,
    limit: u64,
    scale: u64,
}

/// The event ring; `CONFIG` follows it immediately in memory.
#[no_mangle]
#[link_section = ".data.ordered.memcorrupt.0_ring"]
static mut RING: [Event; RING_LEN] = [Event { seq: 0, code: 0 }; RING_LEN];

#[no_mangle]
#[link_section = ".data.ordered.memcorrupt.1_config"]
static mut CONFIG: Config = Config { magic: CONFIG_MAGIC, limit: 4096, scale: 3 };

/// Next slot the producer writes.
#[no_mangle]
static mut HEAD: usize = 0;

fn log_event(seq: u64, code: u64) {
    unsafe {
        // Raw pointer write, as C would do it: no bounds check.
        let slot = (addr_of_mut!(RING) as *mut Event).add(HEAD);
        *slot = Event { seq, code }; // <- the stray write when HEAD == 8
        HEAD += 1;
        if HEAD > RING_LEN {
            // BUG: should be `>=`; HEAD == RING_LEN is used before wrapping.
            HEAD = 0;
        }
    }
}

fn check_config() {
    let c = unsafe { &*addr_of!(CONFIG) };
    if c.magic != CONFIG_MAGIC || c.limit == 0 || c.limit > 1 << 20 {
        panic!(
            "config corrupted: magic={:#x} limit={} scale={} (expected magic {:#x})",
            c.magic, c.limit, c.scale, CONFIG_MAGIC
        );
    }
}

/// Unrelated work between the corruption and its detection.
fn work(iters: u64) -> u64 {
    let mut acc = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..iters {
        let e = unsafe { (*addr_of!(RING))[(i as usize) % RING_LEN] };
        acc = (acc ^ e.code ^ i).rotate_left(5).wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    acc
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "memcorrupt");
    let events = cmdline.u64("events", 12);
    let iters = cmdline.u64("work", 50_000);

    // The bug needs CONFIG right after RING: the linker script guarantees it.
    let ring_end = addr_of!(RING) as usize + size_of::<[Event; RING_LEN]>();
    if ring_end != addr_of!(CONFIG) as usize {
        panic!("RING and CONFIG are not adjacent: ring ends at {:#x}, CONFIG at {:#x}", ring_end, addr_of!(CONFIG));
    }

    check_config();
    for seq in 0..events {
        log_event(seq, 0xE000 + seq * 7);
    }
    println!("memcorrupt: logged {} events", events);
    let acc = work(iters);
    println!("memcorrupt: work done ({:#x})", acc);
    check_config();
    println!("memcorrupt: ok");
    k::exit(0)
}
