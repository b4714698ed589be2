//! Recording a network as a user drives it: `ttvm record --vm ping … --vm pong -o DIR`
//! writes one trace per VM and the manifest; `replay DIR --verify`, `info DIR` and `check
//! DIR` use them; a VM's trace alone still replays; damaged directories are refused.

mod common;

use std::path::Path;

use common::{require_kvm, run, tempdir, text};
use ttvm_replay::network::manifest::{NetworkManifestV1, MANIFEST_FILE};

fn json(o: &std::process::Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    serde_json::from_slice(&o.stdout).expect("json")
}

/// Records ping with `rounds` rounds and pong into `dir`; the command's output.
fn record(dir: &Path, rounds: u32) -> std::process::Output {
    let cmdline = format!("rounds={rounds}");
    run(&[
        "record",
        "--timeout",
        "60",
        "--vm",
        "ping",
        "--cmdline",
        &cmdline,
        "--vm",
        "pong",
        "-o",
        dir.to_str().unwrap(),
    ])
}

fn manifest(dir: &Path) -> NetworkManifestV1 {
    NetworkManifestV1::decode(&std::fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap()
}

#[test]
fn a_recorded_network_verifies_lists_and_checks() {
    if !require_kvm("a_recorded_network_verifies_lists_and_checks") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path().join("net");
    let rounds = 4;
    let o = record(&dir, rounds);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("[0 ping] ping: {rounds} replies")), "{}", text(&o));
    let d = dir.to_str().unwrap();

    // ping sends 1..=rounds and then 0; pong answers each: 2 (rounds + 1) frames, every
    // one delivered to the other VM, alternating senders.
    let info = json(&run(&["info", "--json", d]));
    let frames = info["frames"].as_array().unwrap();
    assert_eq!(frames.len() as u32, 2 * (rounds + 1), "{info}");
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["id"], i, "{f}");
        assert_eq!(f["from"], i % 2, "{f}");
        let to = f["to"].as_array().unwrap();
        assert_eq!(to.len(), 1, "{f}");
        assert_eq!(to[0]["vm"], 1 - i % 2, "{f}");
        assert!(to[0]["at"].is_u64(), "every frame delivered: {f}");
    }
    let vms = info["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 2);
    for (vm, name) in vms.iter().zip(["ping", "pong"]) {
        assert_eq!(vm["name"], name);
        assert_eq!(vm["exit_status"], 0, "{vm}");
        assert!(vm["steps"].as_u64().unwrap() > 10_000, "{vm}");
    }
    let human = run(&["info", d]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("2 VMs, 10 frames"), "{}", text(&human));

    let o = run(&["replay", d, "--verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("verified 2 VMs"), "{}", text(&o));
    let o = run(&["check", d, "--expect-exit", "0"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["check", d, "--expect-exit", "3"]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));

    // One VM's trace alone: it replays from its own log, no switch and no other VM.
    let pong = dir.join(vms[1]["trace"].as_str().unwrap());
    let o = run(&["replay", "--verify", "-q", pong.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let one = json(&run(&["info", "--json", pong.to_str().unwrap()]));
    assert_eq!(one["format_version"], ttvm_replay::trace::FORMAT_VERSION);
    assert_eq!(one["steps"], vms[1]["steps"]);
    assert!(one["serial_output"].as_str().unwrap().contains(&format!("pong: {} frames", rounds + 1)), "{one}");

    // A manifest that disagrees with the traces about one frame: verify names the frame.
    let mut m = manifest(&dir);
    let at = m.frames[3].to[0].at.unwrap();
    m.frames[3].to[0].at = Some(at + 1);
    std::fs::write(dir.join(MANIFEST_FILE), m.encode()).unwrap();
    let o = run(&["replay", d, "--verify"]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let want = format!("frame 3: VM 0 received it at icount {at}, the manifest says at icount {}", at + 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains(&want), "{}", text(&o));
    let mut m = manifest(&dir);
    m.frames[3].to[0].at = Some(at);
    m.frames[5].len += 1;
    std::fs::write(dir.join(MANIFEST_FILE), m.encode()).unwrap();
    let o = run(&["check", d]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("frame 5: the manifest says VM 1 sent 61 bytes"),
        "{}",
        text(&o)
    );
}

#[test]
fn bad_network_directories_are_refused_with_the_reason() {
    let tmp = tempdir();
    let d = tmp.path().to_str().unwrap();
    let o = run(&["replay", d, "--verify"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a network recording"), "{}", text(&o));

    // A manifest naming a trace that is not there.
    let m = NetworkManifestV1 {
        vms: vec![ttvm_replay::network::manifest::VmEntryV1 {
            name: "ping".into(),
            kernel: "ping".into(),
            trace: "vm0-ping.ttvm".into(),
            mac: [0x52, 0x54, 0, 0x74, 0x74, 1],
            steps: 5,
            exit_status: Some(0),
            outcome: "exited".into(),
        }],
        frames: vec![],
    };
    std::fs::write(tmp.path().join(MANIFEST_FILE), m.encode()).unwrap();
    for args in [&["replay", d, "--verify"][..], &["info", d], &["check", d]] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("vm0-ping.ttvm is missing"), "{}", text(&o));
    }

    // A damaged manifest.
    let bytes = m.encode();
    std::fs::write(tmp.path().join(MANIFEST_FILE), &bytes[..bytes.len() - 3]).unwrap();
    let o = run(&["info", d]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("damaged manifest"), "{}", text(&o));
}

#[test]
fn a_timeout_leaves_complete_replayable_traces_and_a_manifest() {
    if !require_kvm("a_timeout_leaves_complete_replayable_traces_and_a_manifest") {
        return;
    }
    let tmp = tempdir();
    let d = tmp.path().join("net");
    let d = d.to_str().unwrap();
    // Long enough for frames to flow on an idle host (boot is ~120k steps); the frames
    // recorded, however many, must verify.
    let o = run(&["record", "--timeout", "5", "--vm", "ping", "--cmdline", "rounds=1000000", "--vm", "pong", "-o", d]);
    assert_eq!(o.status.code(), Some(73), "{}", text(&o));
    let info = json(&run(&["info", "--json", d]));
    eprintln!("{} frames before the timeout", info["frames"].as_array().unwrap().len());
    for vm in info["vms"].as_array().unwrap() {
        assert_eq!(vm["outcome"], "timeout", "{vm}");
        assert!(vm["exit_status"].is_null(), "{vm}");
    }
    let o = run(&["replay", d, "--verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[path = "gdb/harness.rs"]
mod harness;

#[test]
fn gdb_steps_back_and_forth_across_a_delivered_frame_in_one_vms_trace() {
    if !require_kvm("gdb_steps_back_and_forth_across_a_delivered_frame_in_one_vms_trace") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path().join("net");
    let o = record(&dir, 2);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = manifest(&dir);
    // Frame 2 (ping's second request) delivered into pong.
    let at = m.frames[2].to[0].at.expect("delivered");
    let server = harness::serve(&dir.join(&m.vms[1].trace), &[]);
    let out = harness::gdb(&server, &[&format!("python NET_AT = {at}")], "net_reverse.py");
    assert_eq!(harness::hex(&harness::mark(&out, "start")[0]), at + 8, "{out}");
    let rev = harness::marks(&out, "rev");
    let fwd = harness::marks(&out, "fwd");
    assert_eq!(rev.len(), 8, "{out}");
    assert_eq!(fwd.len(), 8, "{out}");
    // rev holds icounts at+7 … at, fwd at+1 … at+8 (hex): the shared positions agree.
    for r in &rev {
        if let Some(f) = fwd.iter().find(|f| f[0] == r[0]) {
            assert_eq!(f, r, "the same state at icount {} both ways: {out}", r[0]);
        }
    }
    assert_eq!(harness::hex(&rev.last().unwrap()[0]), at, "back to the delivery boundary: {out}");
    let shared = rev.iter().filter(|r| fwd.iter().any(|f| f[0] == r[0])).count();
    assert_eq!(shared, 7, "positions at+1 … at+7 seen both ways: {out}");
}
