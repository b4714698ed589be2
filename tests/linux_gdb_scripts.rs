//! Issue 19 item 4: the gdb scripts kernel developers already use, Linux's own
//! `vmlinux-gdb.py` (`linux_support::gdb_scripts`: scripts/gdb from Debian's
//! linux-source-6.1, constants.py generated from the kernel's headers), against a replay of
//! Debian's kernel with its -dbg vmlinux: `lx-dmesg` at two points of history shows the log
//! as it was at each, `lx-version`, `$lx_current()` (which needs `monitor info version`),
//! `lx-cpus`, `lx-ps`, `lx-lsmod` and `lx-symbols` run.

mod common;
#[path = "gdb/harness.rs"]
mod harness;
mod linux_support;

use harness::mark;

const STEPS: u64 = 3_000_000;

#[test]
fn linux_gdb_scripts_read_the_kernel_at_any_point_of_history() {
    if !common::require_kvm("linux_gdb_scripts_read_the_kernel_at_any_point_of_history") {
        return;
    }
    let k = linux_support::debian_kernel();
    let dbg = linux_support::debian_debug_files(&k);
    let scripts = linux_support::gdb_scripts::linux_gdb_scripts(&k);
    let dir = common::tempdir();
    let trace = linux_support::record_boot(&k, dir.path(), STEPS);
    // lx-symbols reloads the kernel's symbols from the objfile named "vmlinux".
    let vmlinux = dir.path().join("vmlinux");
    std::os::unix::fs::symlink(&dbg.vmlinux, &vmlinux).expect("symlink vmlinux");
    std::env::set_var("TTVM_LX_BUILD_DIR", dir.path());
    std::env::set_var("TTVM_LX_EARLY", "45000");
    std::env::set_var("TTVM_LX_LATE", STEPS.to_string());
    let server = harness::serve(&trace, &[]);
    let source = format!("source {}", scripts.join("vmlinux-gdb.py").display());
    let out = harness::gdb_with(&server, &[&source], "linux_lx.py", Some(&vmlinux));
    let dmesg = mark(&out, "dmesg");
    let (early, late) = (harness::hex(&dmesg[0]), harness::hex(&dmesg[1]));
    assert!(early > 0 && late > early, "the log grows between the two points: {dmesg:?}\n{out}");
    assert_eq!(dmesg[2], "prefix", "the earlier log is the start of the later one\n{out}");
    assert!(out.contains("EARLY-LAST [    0.000000] Linux version 6.1"), "the banner, logged first\n{out}");
    assert_eq!(mark(&out, "version"), ["linux"], "{out}");
    assert_eq!(mark(&out, "server"), ["ttvm"], "monitor info version names ttvm\n{out}");
    assert_eq!(mark(&out, "current"), ["comm=swapper"], "$lx_current() is init_task this early\n{out}");
    assert_eq!(mark(&out, "cpus"), ["ok"], "{out}");
    assert_eq!(mark(&out, "ps")[1], "swapper", "init_task is listed\n{out}");
    assert_eq!(mark(&out, "lsmod"), ["ok"], "{out}");
    assert_eq!(mark(&out, "symbols"), ["ok"], "{out}");
}
