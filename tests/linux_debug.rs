//! Debugging Linux with its symbols, as a kernel developer does: Debian's vmlinux with
//! DWARF (from `linux-image-*-dbg`) in gdb and its System.map given to ttvm with
//! `--symbols`. gdb breaks on `start_kernel` by name, goes forward and back over its source
//! lines, `reverse-finish`es out of `setup_arch` and `reverse-continue`s to `start_kernel`;
//! `monitor when` and the TUI name the functions.

mod common;
#[path = "gdb/harness.rs"]
mod harness;
mod linux_support;

use common::tmux::Tmux;
use harness::{mark, marks};

/// Enough steps to run through `start_kernel`'s first lines and into `setup_arch`
/// (icounts in docs/LINUX.md).
const STEPS: u64 = 100_000;

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s, 16).unwrap_or_else(|_| panic!("not hex: {s}"))
}

#[test]
fn gdb_monitor_and_tui_name_linux_functions() {
    if !common::require_kvm("gdb_monitor_and_tui_name_linux_functions") {
        return;
    }
    let k = linux_support::debian_kernel();
    let dbg = linux_support::debian_debug_files(&k);
    let dir = common::tempdir();
    let trace = linux_support::record_boot(&k, dir.path(), STEPS);
    let map = dbg.system_map.to_str().unwrap();

    let server = harness::serve(&trace, &["--symbols", map]);
    assert!(server.stderr().contains("bzImage, which gdb cannot load"), "{}", server.stderr());
    let out = harness::gdb_with(&server, &[], "linux_symbols.py", Some(&dbg.vmlinux));
    let start = mark(&out, "start");
    assert_eq!(start[2], "start_kernel", "{out}");
    assert_eq!(start[3], "breakpoint", "{out}");
    assert_eq!(start[4], "start_kernel", "monitor when names the function from the System.map\n{out}");
    assert!(hex(&start[0]) > 0, "{out}");
    assert_eq!(mark(&out, "caller")[0], "secondary_startup_64", "gdb's backtrace from DWARF\n{out}");

    // Three `next`s walk start_kernel's lines in init/main.c; `reverse-next` goes back to
    // exactly where the second one stopped.
    let nexts = marks(&out, "next");
    assert_eq!(nexts.len(), 3, "{out}");
    for n in &nexts {
        assert!(n[3].starts_with("init/main.c:"), "{out}");
    }
    assert!(hex(&nexts[0][1]) < hex(&nexts[1][1]) && hex(&nexts[1][1]) < hex(&nexts[2][1]), "{out}");
    let rn = mark(&out, "reverse-next");
    assert_eq!(rn[..3], nexts[1][1..], "reverse-next returns to the previous line's stop\n{out}");
    assert_eq!(rn[3], "start_kernel", "{out}");

    // setup_arch is called by start_kernel; reverse-finish lands on the call, one step back.
    let sa = mark(&out, "setup-arch");
    assert_eq!(sa[1..], ["setup_arch", "setup_arch"], "{out}");
    let rf = mark(&out, "reverse-finish");
    assert_eq!(hex(&rf[0]), hex(&sa[0]) - 1, "reverse-finish stops at the call instruction\n{out}");
    assert_eq!(rf[2], "start_kernel", "{out}");
    assert!(rf[3].starts_with("start_kernel+0x"), "{out}");

    // reverse-continue finds the start_kernel breakpoint at the icount it was first hit.
    let rc = mark(&out, "reverse-continue");
    assert_eq!(rc[..3], start[..3], "{out}");
    assert_eq!(rc[3], "breakpoint", "{out}");
    let before = mark(&out, "before-start");
    assert_eq!(hex(&before[0]), hex(&start[0]) - 1, "{out}");
    assert_eq!(before[1], "x86_64_start_reservations", "start_kernel's caller\n{out}");
    assert!(before[2].starts_with("x86_64_start_reservations+0x"), "{out}");
    drop(server);

    // --write-kernel gives gdb something it can load: the (stripped) vmlinux inside the bzImage.
    let elf = dir.path().join("vmlinux");
    let server = harness::serve(&trace, &["--write-kernel", elf.to_str().unwrap()]);
    assert_eq!(server.kernel, elf, "{}", server.stderr());
    assert!(std::fs::read(&elf).unwrap().starts_with(b"\x7fELF"), "not an ELF");
    assert!(server.stderr().contains("has no symbols"), "{}", server.stderr());
    drop(server);

    // A System.map of another build would name the wrong functions: refused, with a reason.
    let real = std::fs::read_to_string(&dbg.system_map).unwrap();
    let other: String = real
        .lines()
        .map(|l| match l.strip_suffix(" D linux_banner") {
            Some(addr) => format!("{:016x} D linux_banner\n", u64::from_str_radix(addr, 16).unwrap() + 0x40),
            None => format!("{l}\n"),
        })
        .collect();
    assert_ne!(other, real, "the System.map has linux_banner");
    let other_map = dir.path().join("System.map-other");
    std::fs::write(&other_map, other).unwrap();
    for cmd in [&["replay", trace.to_str().unwrap(), "--gdb", "127.0.0.1:0"][..], &["tui", trace.to_str().unwrap()]] {
        let mut args = cmd.to_vec();
        args.extend(["--symbols", other_map.to_str().unwrap()]);
        let o = common::run(&args);
        assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("not the kernel's"), "{}", common::text(&o));
    }

    // The TUI: a breakpoint set by name runs to start_kernel, whose disassembly is labelled.
    let cmd = format!(
        "'{}' tui '{}' --symbols '{map}'; echo EXIT=$?; sleep 600",
        env!("CARGO_BIN_EXE_ttvm"),
        trace.display()
    );
    let t = Tmux::start(&cmd);
    t.wait("the UI", |s| s.contains("Disassembly"));
    t.keys(&["b"]);
    t.wait("the breakpoint prompt", |s| s.contains("breakpoint"));
    t.keys(&["-l", "start_kernel"]);
    t.keys(&["Enter"]);
    t.keys(&["c"]);
    let at = format!("icount {} /", hex(&start[0]));
    let screen = t.wait("the stop at start_kernel", |s| s.contains(&at) && s.contains("Disassembly · start_kernel"));
    assert!(screen.contains("<start_kernel>:"), "{screen}");
    assert!(screen.contains("<__fentry__>"), "call targets are named too:\n{screen}");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
}
