//! entropy: prints every source of nondeterminism a recorder must log:
//! the CPUID feature words it sees (recorded runs see exactly ttvm's CPUID model),
//! RDTSC, RDTSCP (+ TSC_AUX), RDRAND and RDSEED (64-bit, retried a bounded
//! number of times while CF=0), the CMOS RTC date/time; then enables UART
//! receive interrupts (IER, MCR.OUT2, IRQ 4) and echoes serial input lines as
//! `echo: <line>`, idling with `sti; hlt` while waiting. Exits 0.
//!
//! It also runs RDTSC, RDRAND and CPUID as the instruction right after an IRETQ (to
//! ring 0), and RDTSC right after LFENCE, MFENCE, SFENCE, OUT imm8, SWAPGS and FWAIT:
//! single-step on these hosts runs each of those together with the next instruction,
//! where a recorder that only decodes the instruction at RIP would let it run natively
//! with the host's values. It prints what they returned and panics when a TSC read is out
//! of order with its neighbours or CPUID differs from the plain one.
//!
//! Command line:
//!   lines=N   number of input lines to echo before exiting (default 1)
#![no_std]
#![no_main]

use core::arch::asm;
use ttvm_kernel_support::{self as k, cpu, print, println, serial};

/// RDRAND/RDSEED may transiently fail (CF=0); retry at most this often.
const RETRIES: u32 = 16;

fn rdtscp() -> (u64, u32) {
    let (lo, hi, aux): (u32, u32, u32);
    unsafe { asm!("rdtscp", out("eax") lo, out("edx") hi, out("ecx") aux, options(nomem, nostack)) };
    ((hi as u64) << 32 | lo as u64, aux)
}

fn rdrand() -> Option<u64> {
    for _ in 0..RETRIES {
        let (v, ok): (u64, u8);
        unsafe { asm!("rdrand {}", "setc {}", out(reg) v, out(reg_byte) ok, options(nomem, nostack)) };
        if ok != 0 {
            return Some(v);
        }
    }
    None
}

fn rdseed() -> Option<u64> {
    for _ in 0..RETRIES {
        let (v, ok): (u64, u8);
        unsafe { asm!("rdseed {}", "setc {}", out(reg) v, out(reg_byte) ok, options(nomem, nostack)) };
        if ok != 0 {
            return Some(v);
        }
    }
    None
}

/// The IRETQ frame for a return to the next label in ring 0 (SS, RSP, RFLAGS, CS, RIP),
/// then IRETQ; the instruction after this prefix is the one that merges with it.
macro_rules! iretq_to_next {
    () => {
        concat!(
            "mov {t:e}, ss\n",
            "push {t}\n",
            "lea {t}, [rsp + 8]\n",
            "push {t}\n",
            "pushfq\n",
            "mov {t:e}, cs\n",
            "push {t}\n",
            "lea {t}, [rip + 2f]\n",
            "push {t}\n",
            "iretq\n",
            "2:\n",
        )
    };
}

fn rdtsc_after_iretq() -> u64 {
    let (lo, hi): (u32, u32);
    unsafe { asm!(iretq_to_next!(), "rdtsc", t = out(reg) _, out("eax") lo, out("edx") hi) };
    (hi as u64) << 32 | lo as u64
}

fn rdrand_after_iretq() -> (u64, bool) {
    let (v, ok): (u64, u8);
    unsafe { asm!(iretq_to_next!(), "rdrand {v}", "setc {ok}", t = out(reg) _, v = out(reg) v, ok = out(reg_byte) ok) };
    (v, ok != 0)
}

fn cpuid1_after_iretq() -> (u32, u32) {
    let (c, d): (u32, u32);
    // rbx is reserved by LLVM: saved in a scratch register around CPUID.
    unsafe {
        asm!("mov {b}, rbx", iretq_to_next!(), "cpuid", "mov rbx, {b}", t = out(reg) _, b = out(reg) _,
             inout("eax") 1u32 => _, inout("ecx") 0u32 => c, out("edx") d)
    };
    (c, d)
}

/// RDTSC right after the `$insn` lines, checked against plain reads around it: whether it ran as a
/// step of its own (true) or was merged into the previous step, natively, with the host's
/// TSC (false, under a recorder that does not guard against it).
macro_rules! tsc_in_order_after {
    ($($insn:literal),+) => {{
        let before = cpu::rdtsc();
        let (lo, hi): (u32, u32);
        unsafe { asm!($($insn),+, "rdtsc", out("eax") lo, out("edx") hi) };
        let merged = (hi as u64) << 32 | lo as u64;
        let after = cpu::rdtsc();
        before <= merged && merged <= after && after - before < 1 << 24
    }};
}

/// RDTSC after each instruction that these hosts' single-step runs together with the next
/// one (and, for contrast, after `out dx` and `nop`, which it does not).
fn tsc_after_merging_instructions() {
    let checks = [
        ("lfence", tsc_in_order_after!("lfence")),
        ("mfence", tsc_in_order_after!("mfence")),
        ("sfence", tsc_in_order_after!("sfence")),
        ("out-imm8", tsc_in_order_after!("out 0x80, al")),
        ("out-dx", tsc_in_order_after!("push rdx", "mov dx, 0x80", "out dx, al", "pop rdx")),
        ("swapgs", tsc_in_order_after!("swapgs", "swapgs")),
        ("fwait", tsc_in_order_after!("fwait")),
        ("nop", tsc_in_order_after!("nop")),
    ];
    print!("rdtsc after");
    for (name, _) in &checks {
        print!(" {}", name);
    }
    match checks.iter().find(|(_, ok)| !ok) {
        None => println!(": in order"),
        Some((name, _)) => {
            println!(": OUT OF ORDER after {}", name);
            panic!("an RDTSC after {} did not see the guest's TSC", name);
        }
    }
}

/// The instructions whose values come from outside guest state, each right after an IRETQ.
fn after_iretq(has_rdrand: bool) {
    let before = cpu::rdtsc();
    let merged = rdtsc_after_iretq();
    let after = cpu::rdtsc();
    let in_order = before <= merged && merged <= after && after - before < 1 << 24;
    println!("after iretq: rdtsc {}: {:#x} <= {:#x} <= {:#x}", if in_order { "in order" } else { "OUT OF ORDER" }, before, merged, after);
    if has_rdrand {
        let (v, ok) = rdrand_after_iretq();
        println!("after iretq: rdrand {:#018x} cf={}", v, ok as u8);
    }
    let (ecx1, edx1) = { let (_, _, c, d) = cpu::cpuid(1, 0); (c, d) };
    let merged = cpuid1_after_iretq();
    println!("after iretq: cpuid 1.ecx={:#x} 1.edx={:#x}", merged.0, merged.1);
    if !in_order || merged != (ecx1, edx1) {
        panic!("an instruction after IRETQ did not see what the plain one sees");
    }
}

fn report(name: &str, supported: bool, f: fn() -> Option<u64>) {
    match (supported, supported.then(f).flatten()) {
        (false, _) => println!("{}: unsupported", name),
        (true, None) => println!("{}: failed {} times", name, RETRIES),
        (true, Some(v)) => println!("{}: {:#018x}", name, v),
    }
}

fn cmos(reg: u8) -> u8 {
    unsafe {
        cpu::outb(0x70, reg);
        cpu::inb(0x71)
    }
}

/// Date and time as (year, month, day, hour, minute, second), binary.
fn rtc_read_raw() -> [u8; 7] {
    // Wait (bounded) for no update in progress, then read; callers compare
    // two reads to rule out a torn value.
    for _ in 0..10_000 {
        if cmos(0x0A) & 0x80 == 0 {
            break;
        }
    }
    [cmos(0x32), cmos(0x09), cmos(0x08), cmos(0x07), cmos(0x04), cmos(0x02), cmos(0x00)]
}

fn bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0F)
}

fn rtc() -> (u32, u8, u8, u8, u8, u8) {
    let mut r = rtc_read_raw();
    for _ in 0..5 {
        let again = rtc_read_raw();
        if again == r {
            break;
        }
        r = again;
    }
    let [century, year, month, day, hour, min, sec] = r;
    let status_b = cmos(0x0B);
    let binary = status_b & 0x04 != 0;
    let h24 = status_b & 0x02 != 0;
    let conv = |v: u8| if binary { v } else { bcd(v) };
    let pm = hour & 0x80 != 0;
    let mut hour = conv(hour & 0x7F);
    if !h24 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let century = match conv(century) {
        c @ 19..=21 => c as u32,
        _ => 20, // no century register
    };
    (century * 100 + conv(year) as u32, conv(month), conv(day), hour, conv(min), conv(sec))
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "entropy");
    let lines = cmdline.u64("lines", 1);

    let (_, _, ecx1, edx1) = cpu::cpuid(1, 0);
    let (max_leaf, _, _, _) = cpu::cpuid(0, 0);
    let (_, ebx7, _, _) = if max_leaf >= 7 { cpu::cpuid(7, 0) } else { (0, 0, 0, 0) };
    let (max_ext, _, _, _) = cpu::cpuid(0x8000_0000, 0);
    let (_, _, _, edx_ext) = if max_ext >= 0x8000_0001 { cpu::cpuid(0x8000_0001, 0) } else { (0, 0, 0, 0) };
    let has_rdtscp = edx_ext & (1 << 27) != 0;
    let has_rdrand = ecx1 & (1 << 30) != 0;
    let has_rdseed = ebx7 & (1 << 18) != 0;

    println!("cpuid: 1.ecx={:#x} 1.edx={:#x} 7.ebx={:#x} 80000001.edx={:#x}", ecx1, edx1, ebx7, edx_ext);
    println!("rdtsc: {:#018x}", cpu::rdtsc());
    if has_rdtscp {
        let (tsc, aux) = rdtscp();
        println!("rdtscp: {:#018x} tsc_aux={:#x}", tsc, aux);
    } else {
        println!("rdtscp: unsupported");
    }
    report("rdrand", has_rdrand, rdrand);
    report("rdseed", has_rdseed, rdseed);
    tsc_after_merging_instructions();
    after_iretq(has_rdrand);
    let (y, mo, d, h, mi, s) = rtc();
    println!("rtc: {:04}-{:02}-{:02} {:02}:{:02}:{:02}", y, mo, d, h, mi, s);

    serial::enable_rx_interrupts();
    println!("entropy: echoing {} line(s)", lines);
    let mut buf = [0u8; 128];
    for _ in 0..lines {
        let n = serial::read_line(&mut buf);
        // Non-ASCII bytes are shown as \xNN so output stays one plain line.
        print!("echo: ");
        for &b in &buf[..n] {
            if (0x20..0x7f).contains(&b) {
                print!("{}", b as char);
            } else {
                print!("\\x{:02x}", b);
            }
        }
        println!();
    }
    k::exit(0)
}
