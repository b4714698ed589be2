//! Recording from a booted machine (issue 19, item 2): `ttvm record --from SNAPSHOT` and
//! `ttvm run KERNEL --record-from-output REGEX -o TRACE` boot at free-run speed and record
//! only what follows. The traces are self-contained (the machine's state is their first
//! checkpoint) and verify; what cannot start a recording is refused with status 2.

mod common;

use std::path::PathBuf;

use common::{require_kvm, run, text};

/// The `ticks` the timer kernel counts: 3 s of device time, far longer than the free runs
/// below are let go on any host.
const TICKS: &str = "ticks=3000";

/// The guest's console output (stdout), its CR LF line ends made LF.
fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n")
}

#[test]
fn a_snapshot_is_recorded_from_where_it_was_saved() {
    if !require_kvm("a_snapshot_is_recorded_from_where_it_was_saved") {
        return;
    }
    let dir = common::tempdir();
    let snap = dir.path().join("timer.snap");
    let o = run(&["run", "timer", "--cmdline", TICKS, "--timeout", "0.5", "--save-state", snap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(73), "the free run times out and saves: {}", text(&o));
    assert!(out(&o).contains("waiting for 3000 ticks"), "{}", text(&o));

    let trace = dir.path().join("timer.ttvm");
    let o = run(&["record", "--from", snap.to_str().unwrap(), "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let recorded = out(&o);
    assert!(recorded.ends_with("timer: 3000 ticks\n"), "the recording runs to the guest's exit: {recorded}");
    assert!(!recorded.contains("waiting for"), "the boot is not recorded again: {recorded}");

    let o = run(&["replay", "--verify", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(out(&o), recorded, "replay regenerates exactly the recorded output");

    // The snapshot's machine, not a new one: a KERNEL (or --cmdline) with --from is refused.
    let o = run(&["record", "--from", snap.to_str().unwrap(), "timer", "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("give no KERNEL"), "{}", text(&o));
}

#[test]
fn an_older_snapshot_without_its_kernel_is_refused() {
    // No KVM needed: the snapshot is refused when it is read.
    let dir = common::tempdir();
    let v2 = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timer-v2.snap");
    let trace = dir.path().join("x.ttvm");
    let o = run(&["record", "--from", v2.to_str().unwrap(), "-o", trace.to_str().unwrap()]);
    if o.status.code() == Some(3) {
        assert!(!require_kvm("an_older_snapshot_without_its_kernel_is_refused"));
        return;
    }
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("does not hold the kernel it booted"), "{}", text(&o));
    assert!(!trace.exists(), "no trace is written");
}

#[test]
fn a_run_records_from_the_line_that_matches() {
    if !require_kvm("a_run_records_from_the_line_that_matches") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("from-output.ttvm");
    let o = run(&[
        "run",
        "timer",
        "--cmdline",
        TICKS,
        "--record-from-output",
        "^tick 2500$",
        "-o",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(out(&o).contains("tick 2500\ntick 2510\n"), "the console goes on across the switch: {}", text(&o));
    assert!(text(&o).contains("recording from here into"), "{}", text(&o));

    let o = run(&["replay", "--verify", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let replayed = out(&o);
    assert!(replayed.starts_with("tick 2510\n"), "the trace starts after the matching line: {replayed}");
    assert!(replayed.ends_with("timer: 3000 ticks\n"), "{replayed}");

    // A pattern the guest never prints: nothing is recorded, and the status says so.
    let never = dir.path().join("never.ttvm");
    let o = run(&[
        "run",
        "timer",
        "--cmdline",
        "ticks=20",
        "--record-from-output",
        "no such line",
        "-o",
        never.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    assert!(text(&o).contains("before its output matched"), "{}", text(&o));
    assert!(!never.exists());
    // A bad pattern is bad input.
    let o = run(&["run", "timer", "--record-from-output", "(", "-o", never.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
