//! Seeks into checkpoint intervals run natively to the last waypoint before their target
//! (trace format 8, `replay/src/free_seek.rs`) and show exactly what single-stepping shows:
//! real gdb's `monitor goto` to positions spread over a `bench` recording, against
//! `replay --gdb` with and without `--step-all`.

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use harness::{gdb, hex, mark, marks, serve, shared_trace};

#[test]
fn seeks_run_natively_to_waypoints_and_show_what_stepping_shows() {
    if !common::require_kvm("seeks_run_natively_to_waypoints_and_show_what_stepping_shows") {
        return;
    }
    let trace = shared_trace("bench", "size=16 rounds=1");
    let free = gdb(&serve(&trace, &[]), &[], "free_seek.py");
    let stepped = gdb(&serve(&trace, &["--step-all"]), &[], "free_seek.py");
    let (at_free, at_stepped) = (marks(&free, "at"), marks(&stepped, "at"));
    assert_eq!(at_free.len(), 8, "{free}");
    for m in &at_free {
        assert_eq!(hex(&m[0]), hex(&m[1]), "goto did not arrive\n{free}");
    }
    assert_eq!(at_free, at_stepped, "a native seek showed another state than stepping\n{free}\n{stepped}");

    let replayed = |out: &str| hex(&mark(out, "replayed")[0]);
    let seeks = |out: &str| hex(&mark(out, "seeks")[0]);
    assert_eq!(seeks(&stepped), 0, "--step-all ran natively\n{stepped}");
    assert!(seeks(&free) >= 4, "too few seeks ran natively\n{free}");
    // `monitor info` says how read watchpoints are looked out for, as this host's probe does.
    let fire = u64::from(ttvm_replay::stepping::data_breakpoints_fire());
    assert_eq!(hex(&mark(&free, "data-breakpoints")[0]), fire, "{free}");
    assert_eq!(hex(&mark(&free, "watch-stepped")[0]), 0, "{free}");
    assert_eq!(hex(&mark(&stepped, "watch-stepped")[0]), 1, "--step-all single-steps reads\n{stepped}");
    // Most of each distance from a checkpoint is run natively, the rest (under 1024 steps
    // past the last waypoint) single-stepped.
    assert!(
        replayed(&free) * 2 < replayed(&stepped),
        "native seeks single-stepped {} steps, stepping {}\n{free}",
        replayed(&free),
        replayed(&stepped)
    );
}
