//! uaf: a use-after-free that only shows up for some interrupt timings.
//!
//! Objects come from a tiny allocator (fixed pool, LIFO free list, so a freed
//! slot is the next one handed out). Two threads plus a timer watchdog:
//! - `worker` allocates a request, publishes it in `IN_FLIGHT`, works on it
//!   for `window` iterations, then stores its result through its pointer and
//!   frees it unless the watchdog already did.
//! - the IRQ 0 handler is a watchdog: a request still in flight when a tick
//!   arrives has "timed out" and is freed (BUG: the worker still holds the
//!   pointer), then the handler switches threads round robin.
//! - `keeper` allocates objects, stamps them with an owner tag and checksum,
//!   keeps the last 4 and validates each when releasing it; it yields after
//!   every object.
//!
//! When a tick lands inside the worker's window, the keeper's next allocation
//! reuses the freed slot, then the worker's stale `req.result = ...` write
//! corrupts the keeper's object and the keeper panics
//! `use after free detected: ...`. Otherwise prints `uaf: ok ...`, exits 0.
//! In gdb: `watch -l` the corrupted object's `result`, `reverse-continue`.
//!
//! Command line:
//!   hz=N       timer frequency (default 1000)
//!   window=N   busy iterations while a request is in flight (default 50)
//!   iters=N    requests the worker makes (default 10000)
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut, null_mut};
use ttvm_kernel_support::{self as k, cpu, idt, panic, pic, pit, println, thread};

const POOL_SIZE: usize = 16;
const KEEP: usize = 4;
const OWNER_WORKER: u64 = 0x5752_4b52; // "WRKR"
const OWNER_KEEPER: u64 = 0x4b45_4550; // "KEEP"

#[repr(C)]
#[derive(Clone, Copy)]
struct Obj {
    owner: u64,
    seq: u64,
    result: u64,
    check: u64,
}

impl Obj {
    const EMPTY: Obj = Obj { owner: 0, seq: 0, result: 0, check: 0 };
    fn checksum(&self) -> u64 {
        (self.owner ^ self.seq.rotate_left(17) ^ self.result.rotate_left(31)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

// ---- the allocator: fixed pool + LIFO free list ---------------------------

#[no_mangle]
static mut POOL: [Obj; POOL_SIZE] = [Obj::EMPTY; POOL_SIZE];
static mut FREE: [usize; POOL_SIZE] = [0; POOL_SIZE];
static mut NFREE: usize = 0;

fn pool_init() {
    unsafe {
        FREE = core::array::from_fn(|i| POOL_SIZE - 1 - i); // slot 0 is handed out first
        NFREE = POOL_SIZE;
    }
}

fn alloc() -> *mut Obj {
    cpu::without_interrupts(|| unsafe {
        if NFREE == 0 {
            panic!("pool exhausted");
        }
        NFREE -= 1;
        (addr_of_mut!(POOL) as *mut Obj).add(FREE[NFREE])
    })
}

fn free(p: *mut Obj) {
    cpu::without_interrupts(|| unsafe {
        let i = p.offset_from(addr_of!(POOL) as *const Obj) as usize;
        FREE[NFREE] = i;
        NFREE += 1;
    })
}

// ---- shared state ------------------------------------------------------------

/// The worker's current request, visible to the watchdog.
#[no_mangle]
static mut IN_FLIGHT: *mut Obj = null_mut();
static mut TIMEOUTS: u64 = 0;
static mut WORKER_DONE: bool = false;
static mut ITERS: u64 = 0;
static mut WINDOW: u64 = 0;

fn on_tick(frame: &mut k::TrapFrame) {
    unsafe {
        // Watchdog: anything still in flight at a tick has timed out.
        if !IN_FLIGHT.is_null() {
            free(IN_FLIGHT); // BUG: the worker still uses it
            IN_FLIGHT = null_mut();
            TIMEOUTS += 1;
        }
    }
    pic::eoi(pit::IRQ);
    thread::schedule(frame);
}

#[inline(never)]
fn busy(n: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..n {
        x = core::hint::black_box(x ^ i);
    }
    x
}

fn worker(_: usize) {
    let (iters, window) = unsafe { (ITERS, WINDOW) };
    for seq in 0..iters {
        let req = alloc();
        unsafe {
            req.write(Obj { owner: OWNER_WORKER, seq, result: 0, check: 0 });
            cpu::cli();
            IN_FLIGHT = req;
            cpu::sti();
            let r = busy(window) ^ seq;
            (*req).result = r; // <- stale write if the watchdog freed req
            cpu::cli();
            if IN_FLIGHT == req {
                IN_FLIGHT = null_mut();
                free(req);
            } // else: timed out, the watchdog already freed it
            cpu::sti();
        }
    }
    unsafe { addr_of_mut!(WORKER_DONE).write_volatile(true) };
}

fn validate(p: *mut Obj) {
    let o = unsafe { p.read() };
    if o.owner != OWNER_KEEPER || o.check != o.checksum() {
        let slot = unsafe { p.offset_from(addr_of!(POOL) as *const Obj) };
        panic!(
            "use after free detected: POOL[{}] owner={:#x} seq={} result={:#x} check={:#x}",
            slot, o.owner, o.seq, o.result, o.check
        );
    }
}

fn keeper(_: usize) {
    let mut kept = [null_mut::<Obj>(); KEEP];
    let mut seq = 0u64;
    while !unsafe { addr_of!(WORKER_DONE).read_volatile() } {
        let p = alloc();
        let mut o = Obj { owner: OWNER_KEEPER, seq, result: seq.wrapping_mul(3), check: 0 };
        o.check = o.checksum();
        unsafe { p.write(o) };
        let slot = &mut kept[seq as usize % KEEP];
        if !slot.is_null() {
            validate(*slot);
            free(*slot);
        }
        *slot = p;
        seq += 1;
        thread::yield_now(); // low priority: let the worker run
    }
    for p in kept.into_iter().filter(|p| !p.is_null()) {
        validate(p);
        free(p);
    }
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "uaf");
    let hz = cmdline.u64("hz", 1000) as u32;
    unsafe {
        ITERS = cmdline.u64("iters", 10_000);
        WINDOW = cmdline.u64("window", 50);
    }
    println!("uaf: iters={} window={} hz={}", unsafe { ITERS }, unsafe { WINDOW }, hz);

    pool_init();
    thread::init();
    thread::spawn(worker, 0, 16 * 1024);
    thread::spawn(keeper, 0, 16 * 1024);
    idt::set_handler(pic::irq_vector(pit::IRQ), on_tick);
    pit::start_periodic(hz);
    pic::unmask(pit::IRQ);

    cpu::sti();
    while thread::finished() < 2 {
        thread::yield_now();
    }
    cpu::cli();
    pic::mask(pit::IRQ);
    println!("uaf: ok requests={} timeouts={}", unsafe { ITERS }, unsafe { TIMEOUTS });
    k::exit(0)
}
