//! Issue 19's crash, end to end: Debian's kernel boots with the free engine to the crash
//! initramfs's /init, which announces itself; `--record-from-output` records from that
//! line with the exact engine, through init's user code, its `write` of `c` to
//! /proc/sysrq-trigger and the kernel's panic, which ends the recording (status 79).
//! `ttvm check` verifies the trace, and the gdb walkthrough of docs/LINUX.md (read from
//! the document, so it cannot drift) runs against it with the -dbg vmlinux: the panic's
//! backtrace, a kernel watchpoint found going backwards, reverse-finish, and back into
//! the user program's system call with its user-mode registers.
//!
//! The free boot takes minutes here (4 on the Intel host, likely 15 on the AMD one), so
//! the recording runs only with `TTVM_LONG_TESTS=1`; the initramfs and the walkthrough
//! block are always built and checked.

mod common;
#[path = "gdb/harness.rs"]
mod harness;
mod linux_support;

use std::ffi::OsStr;

const START_LINE: &str = "TTVM-CRASH: init is running";
const PANIC_LINE: &str = "end Kernel panic - not syncing: sysrq triggered crash";

/// The ```` ```gdb linux-crash-walkthrough ```` block of docs/LINUX.md.
fn walkthrough() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/LINUX.md")).expect("docs/LINUX.md");
    let start = doc.find("```gdb linux-crash-walkthrough\n").expect("docs/LINUX.md has the crash walkthrough");
    let body = &doc[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").expect("the walkthrough block ends")].to_string()
}

/// The value gdb's `info registers` printed for `reg` (the last such line).
fn register(out: &str, reg: &str) -> u64 {
    let line = out
        .lines()
        .rev()
        .find(|l| l.split_whitespace().next() == Some(reg))
        .unwrap_or_else(|| panic!("no {reg} in the gdb output:\n{out}"));
    let hex = line.split_whitespace().nth(1).unwrap_or_default();
    u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn linux_crash_from_user_space_is_recorded_and_debugged_backwards() {
    if !common::require_kvm("linux_crash_from_user_space_is_recorded_and_debugged_backwards") {
        return;
    }
    let dir = common::tempdir();
    let initrd = linux_support::build_crash_initramfs(dir.path());
    let cpio = std::fs::read(&initrd).expect("read initramfs");
    assert!(cpio.starts_with(b"070701") && cpio.windows(10).any(|w| w == b"TRAILER!!!"));
    let script = walkthrough();
    assert!(script.contains("reverse-continue") && script.contains("watch panic_cpu"), "{script}");
    if std::env::var("TTVM_LONG_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "linux_crash_from_user_space_is_recorded_and_debugged_backwards: initramfs and walkthrough \
             checked; booting Linux takes minutes and runs only with TTVM_LONG_TESTS=1"
        );
        return;
    }
    let k = linux_support::debian_kernel();
    let dbg = linux_support::debian_debug_files(&k);
    let trace = dir.path().join("crash.ttvm");
    let args: [&OsStr; 10] = [
        "run".as_ref(),
        k.bzimage.as_os_str(),
        "--initrd".as_ref(),
        initrd.as_os_str(),
        "--record-from-output".as_ref(),
        START_LINE.as_ref(),
        "-o".as_ref(),
        trace.as_os_str(),
        "--timeout".as_ref(),
        "5400".as_ref(),
    ];
    let started = std::time::Instant::now();
    let w = linux_support::run_until(&args, |_| false);
    eprintln!("booted and recorded in {:.0} s", started.elapsed().as_secs_f64());
    assert_eq!(w.status, Some(79), "a kernel panic ends the recording with status 79:\n{}", w.text());
    assert!(w.stderr.contains("the guest kernel panicked: sysrq triggered crash"), "{}", w.text());
    assert!(w.stdout.contains("sysrq: Trigger a crash") && w.stdout.contains(PANIC_LINE), "{}", w.text());

    let o = common::run(&["check", trace.to_str().unwrap(), "--expect-output", PANIC_LINE]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    assert!(common::text(&o).contains("the guest kernel panicked"), "{}", common::text(&o));
    let o = common::run(&["info", trace.to_str().unwrap()]);
    assert!(common::text(&o).contains("ring3=db-trap"), "a Linux recording steps user mode:\n{}", common::text(&o));

    let gdb_file = dir.path().join("crash.gdb");
    std::fs::write(&gdb_file, &script).expect("write crash.gdb");
    let map = dbg.system_map.to_str().unwrap();
    let server = harness::serve(&trace, &["--symbols", map]);
    let out = harness::gdb_with(&server, &[], gdb_file.to_str().unwrap(), Some(&dbg.vmlinux));
    // The panic's backtrace goes back through the sysrq handler to the write system call.
    for frame in ["panic (", "sysrq_handle_crash", "write_sysrq_trigger", "ksys_write", "entry_SYSCALL_64"] {
        assert!(out.contains(frame), "the backtrace at the panic names {frame}:\n{out}");
    }
    // Going backwards, the watchpoint finds panic()'s claim of the CPU.
    assert!(out.contains("Hardware watchpoint 1: panic_cpu"), "{out}");
    assert!(out.contains("New value = {counter = -1}"), "the write in panic() found going backwards:\n{out}");
    assert!(out.contains("kernel/panic.c:"), "{out}");
    assert!(out.contains("in sysrq_handle_crash"), "reverse-finish leaves panic for its caller:\n{out}");
    // The system call's entry, then one step back: the user program's own registers.
    assert!(out.contains("Breakpoint 2, entry_SYSCALL_64"), "{out}");
    let user_rip = register(&out, "rip");
    assert_eq!(register(&out, "cs"), 0x33, "back in user mode:\n{out}");
    assert_eq!(register(&out, "ss"), 0x2b, "{out}");
    assert_eq!(register(&out, "rax"), 1, "__NR_write:\n{out}");
    assert_eq!(register(&out, "rdx"), 1, "one byte:\n{out}");
    assert!(user_rip < 0x80_0000_0000, "a user address: {user_rip:#x}\n{out}");
    assert_eq!(register(&out, "rcx"), user_rip + 2, "RCX at the entry is the address after the syscall:\n{out}");
    assert!(out.contains(&format!("{user_rip:#x}:\tsyscall")), "{out}");
    assert!(out.contains("(recorded history)"), "monitor when answers in user mode:\n{out}");
}
