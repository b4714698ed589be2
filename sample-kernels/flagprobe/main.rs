//! flagprobe: runs every class of instruction that leaves arithmetic flags undefined (IMUL,
//! MUL, DIV, BSF, BSR, BT, shifts and rotates by more than one, SHLD, AND) in ring 0 with
//! fixed operands, from both initial flag states (all six set, all clear), and reads RFLAGS
//! right after each with PUSHF. For each class it prints
//! `flags: <class> undefined=<bits seen set>` and finally `flags: canonical` when no
//! undefined bit was ever set, or `flags: host-specific <classes>` otherwise, exiting 0 or 1.
//!
//! Under `ttvm record` (trace format 3) the exact engine clears the undefined bits after
//! each of these instructions, so the kernel must print `canonical` on every host; under
//! `ttvm run` (native execution) it shows what this host's CPU leaves there.
//!
//! Command line: `rounds=N` repeats the whole probe N times (default 1).
#![no_std]
#![no_main]

use core::arch::asm;

use ttvm_kernel_support::{self as k, println};

const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const AF: u64 = 1 << 4;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const OF: u64 = 1 << 11;
const ARITHMETIC: u64 = CF | PF | AF | ZF | SF | OF;

// The classes and how each is run: the same table as the host-side probe in ttvm.
include!("../../vmm/src/x86/flag_probe_classes.rs");

/// Names the flag bits in `bits`.
fn print_bits(bits: u64) {
    if bits == 0 {
        k::print!("none");
    }
    let mut first = true;
    for (b, n) in [(CF, "CF"), (PF, "PF"), (AF, "AF"), (ZF, "ZF"), (SF, "SF"), (OF, "OF")] {
        if bits & b != 0 {
            k::print!("{}{}", if first { "" } else { " " }, n);
            first = false;
        }
    }
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "flagprobe");
    let rounds = cmdline.u64("rounds", 1).max(1);
    let mut seen = [0u64; 11];
    for _ in 0..rounds {
        for (c, (_, mask, run)) in classes().iter().enumerate() {
            for init in [ARITHMETIC, 0] {
                for (a, b) in OPERANDS {
                    seen[c] |= run(init, a, b) & mask;
                }
            }
        }
    }
    let mut canonical = true;
    for (c, (name, _, _)) in classes().iter().enumerate() {
        k::print!("flags: {} undefined=", name);
        print_bits(seen[c]);
        println!();
        canonical &= seen[c] == 0;
    }
    if canonical {
        println!("flags: canonical");
        k::exit(0);
    }
    k::print!("flags: host-specific");
    for (c, (name, _, _)) in classes().iter().enumerate() {
        if seen[c] != 0 {
            k::print!(" {}", name);
        }
    }
    println!();
    k::exit(1)
}
