//! Live time-travel debugging with `ttvm debug`: gdb runs the guest forward (recording),
//! goes back through the recorded history, continues into new territory, and the trace
//! written meanwhile replays bit-for-bit.

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use harness::{gdb, mark};

#[test]
fn live_debug_goes_back_then_records_new_history_and_the_trace_verifies() {
    if !common::require_kvm("live_debug_goes_back_then_records_new_history_and_the_trace_verifies") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("live.ttvm");
    let server = harness::serve_live("bench", "size=16 rounds=1", &trace);
    let out = gdb(&server, &[], "live_debug.py");
    let start = mark(&out, "start");
    let num = |s: &str| u64::from_str_radix(s, 16).unwrap();
    assert_eq!(start[1], start[2], "at kmain the position is the frontier of what was recorded\n{out}");
    let frontier = mark(&out, "frontier");
    assert_eq!(num(&frontier[0]), num(&start[0]) + 300, "{out}");
    assert_eq!(frontier[1], frontier[2], "stepping forward at the frontier records new steps\n{out}");
    let back = mark(&out, "back");
    assert_eq!(num(&back[0]), num(&frontier[0]) - 100, "{out}");
    assert_eq!(back[1], back[2], "reverse-stepi reached the recorded pc\n{out}");
    assert_eq!(back[3], "1", "every register equals what was seen going forward\n{out}");
    let past = mark(&out, "past-frontier");
    assert_eq!(num(&past[0]), num(&frontier[0]) + 50, "{out}");
    let end = mark(&out, "end");
    assert_eq!(end[0], end[1], "{out}");
    assert!(num(&end[0]) > num(&past[0]) + 1000, "continue ran the guest to its exit\n{out}");

    let (status, stderr) = server.wait(std::time::Duration::from_secs(60));
    assert!(status.success(), "ttvm debug: {stderr}");
    assert!(stderr.contains("debug session ended"), "{stderr}");
    let o = common::run(&["replay", "--verify", "-q", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("verified {} steps", num(&end[0]))),
        "{}",
        common::text(&o)
    );
}
