//! `monitor frames` (issue 22 item 4): gdb on one VM's trace of a network recording lists
//! the frames around the current position with both ends, from the manifest next to it.
//! Driven on the committed `ping-retransmit` recording with real gdb.

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use common::{require_kvm, run};

#[test]
fn monitor_frames_lists_both_ends_of_the_frames_around_now() {
    if !require_kvm("monitor_frames_lists_both_ends_of_the_frames_around_now") {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces/ping-retransmit");
    let o = run(&["info", dir.to_str().unwrap(), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("info --json");
    // The first frame ping (VM 0) received: pong's first answer.
    let frame = info["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["to"].as_array().is_some_and(|t| t.iter().any(|d| d["vm"] == 0 && d["at"].is_u64())))
        .expect("ping received a frame");
    let (id, sent_at) = (frame["id"].as_u64().unwrap(), frame["sent_at"].as_u64().unwrap());
    let at = frame["to"].as_array().unwrap().iter().find(|d| d["vm"] == 0).unwrap()["at"].as_u64().unwrap();
    std::env::set_var("TTVM_FRAMES_AT", (at + 1).to_string());

    let server = harness::serve(&dir.join("vm0-ping.ttvm"), &[]);
    let out = harness::gdb(&server, &[], "net_frames.py");
    let (before, after) = out.split_once("AFTER-GOTO").expect("both listings");
    assert!(before.contains("VM 0 (ping) of") && before.contains("-- now: icount 0"), "{out}");
    assert!(before.contains("sent frame #0 (60 bytes); VM 1 (pong) received it at icount"), "{out}");
    let line = format!("icount {at:>10}  received frame #{id} (60 bytes), sent by VM 1 (pong) at icount {sent_at}");
    let seen = after.find(&line).unwrap_or_else(|| panic!("{line} in:\n{out}"));
    let now = after.find(&format!("-- now: icount {}", at + 1)).expect("the position");
    assert!(seen < now, "the frame received just before now is listed before it:\n{out}");

    // A trace outside a network says so.
    let lone = common::tempdir();
    let trace = lone.path().join("vm0-ping.ttvm");
    std::fs::copy(dir.join("vm0-ping.ttvm"), &trace).expect("copy");
    let server = harness::serve(&trace, &[]);
    let out = harness::gdb(&server, &[], "net_frames.py");
    assert!(out.contains("is not part of a network recording"), "{out}");
}
