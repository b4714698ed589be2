//! Reverse debugging inside Linux: QEMU's forward/backward PC comparison with the real gdb
//! at a point in Debian's kernel (inside start_kernel's early setup, icount 40 000; see
//! docs/LINUX.md), and reverse-continue to a breakpoint there.

mod common;
#[path = "gdb/harness.rs"]
mod harness;
mod linux_support;

use harness::{mark, marks};

#[test]
fn reverse_stepi_and_reverse_continue_inside_linux() {
    if !common::require_kvm("reverse_stepi_and_reverse_continue_inside_linux") {
        return;
    }
    let k = linux_support::debian_kernel();
    let dir = common::tempdir();
    let trace = linux_support::record_boot(&k, dir.path(), 60_000);
    let server = harness::serve(&trace, &[]);
    let out = harness::gdb_with(&server, &["set architecture i386:x86-64"], "linux_reverse.py", None);
    let fwd = marks(&out, "fwd");
    let rev = marks(&out, "rev");
    let again = marks(&out, "again");
    assert_eq!(fwd.len(), 11, "{out}");
    assert_eq!(rev.len(), 10, "{out}");
    for r in &rev {
        let i = usize::from_str_radix(&r[0], 16).unwrap();
        assert_eq!(
            r[1..],
            fwd[i][1..],
            "reverse-stepi to step {i}: pc and registers must equal the forward ones\n{out}"
        );
    }
    for a in &again {
        let i = usize::from_str_radix(&a[0], 16).unwrap();
        assert_eq!(a[1..], fwd[i][1..], "stepi again to step {i}\n{out}");
    }
    // The PCs are kernel text (the high half), not the PVH entry's identity-mapped code.
    assert!(fwd[0][1].starts_with("ffffffff"), "{out}");
    let end = mark(&out, "end");
    assert_eq!(end[0], end[1], "{out}");
    let rc = mark(&out, "rc");
    assert_eq!(rc[2], "breakpoint", "{out}");
    // The last breakpoint hit before the end: one of the ten PCs, before the end...
    assert!(fwd.iter().any(|f| f[1] == rc[1]), "{out}");
    let hex = |s: &String| u64::from_str_radix(s, 16).unwrap();
    assert!(hex(&rc[0]) < hex(&end[0]), "{out}");
    // ...and the most recent one: continuing forward from it reaches the end of history.
    let after = mark(&out, "after");
    assert_eq!(after[0], end[0], "a later hit was skipped by reverse-continue\n{out}");
}
