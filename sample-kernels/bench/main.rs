//! bench: deterministic compute + memory workload. A buffer of `size` KiB
//! (above the kernel image) is filled with xorshift64 output, then each round
//! does a strided read-modify-write pass that touches every page, sorts a
//! 4 KiB window, and hashes the whole buffer. Prints
//! `bench: checksum=0x... size=N rounds=N` and exits 0.
//! Same command line => same checksum.
//!
//! Command line:
//!   size=N     buffer size in KiB (default 256, minimum 8)
//!   rounds=N   number of rounds (default 4)
//!   seed=N     xorshift seed (default 0x2545f4914f6cdd1d)
#![no_std]
#![no_main]

use ttvm_kernel_support::{self as k, mem, println};

/// Words per sorted window (4 KiB).
const SORT_WORDS: usize = 512;
/// Stride of the page-touching pass: a page plus one word, so consecutive
/// accesses land on different pages and different cache lines.
const STRIDE_WORDS: usize = 4096 / 8 + 1;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x100_0000_01b3).rotate_left(29)
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "bench");
    let size_kib = cmdline.u64("size", 256).max(8) as usize;
    let rounds = cmdline.u64("rounds", 4);
    let mut seed = cmdline.u64("seed", 0x2545_f491_4f6c_dd1d);
    if seed == 0 {
        seed = 1; // xorshift's one fixed point
    }

    let words = size_kib * 1024 / 8;
    let buf: &mut [u64] = unsafe { core::slice::from_raw_parts_mut(mem::alloc(words * 8, 4096) as *mut u64, words) };
    for w in buf.iter_mut() {
        *w = xorshift(&mut seed);
    }

    let mut checksum: u64 = 0xcbf2_9ce4_8422_2325;
    for round in 0..rounds as usize {
        // Strided pass: visits every word once, jumping a page at a time.
        let mut idx = round % words;
        for n in 0..words {
            let j = (idx + words / 2) % words;
            buf[idx] = buf[idx].rotate_left(7) ^ buf[j] ^ n as u64;
            idx += STRIDE_WORDS;
            if idx >= words {
                idx -= words;
            }
        }
        // Sort a window that moves every round.
        let start = (round * SORT_WORDS * 3) % (words - SORT_WORDS + 1);
        buf[start..start + SORT_WORDS].sort_unstable();
        // Hash pass.
        let mut h = checksum ^ round as u64;
        for &w in buf.iter() {
            h = mix(h, w);
        }
        checksum = h;
    }
    println!("bench: checksum={:#018x} size={} rounds={}", checksum, size_kib, rounds);
    k::exit(0)
}
