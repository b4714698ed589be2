//! The committed bug traces (tests/traces/, recorded by scripts/record-traces.sh) replay
//! bit-for-bit, `ttvm check` confirms their recorded outcome, and gdb finds each bug's root
//! cause at exactly the same place every time: these tests fail if any stop moves.
//!
//! Since trace format 3 one set serves every host, AMD and Intel: the exact engine
//! canonicalises undefined flags and the sample kernels see a vendor-neutral CPU. The
//! traces say where they were recorded (`ttvm info`: "recorded on").

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use std::path::PathBuf;

use common::{require_kvm, run, text};
use harness::{gdb, mark, marks};

/// Pinned positions of the stops in the committed traces: re-recording the traces
/// (scripts/record-traces.sh) means updating these.
const MEMCORRUPT_CULPRIT: u64 = 0x44d0;
/// (the victim's read of COUNTER, the other thread's write it lost, the stale write).
const THREADS_INTERLEAVING: (u64, u64, u64) = (0x5571d, 0x55e17, 0x55ff0);

fn trace(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/traces").join(name)
}

/// The line of a sample kernel's source that starts with `code`.
fn source_line(file: &str, code: &str) -> usize {
    let src = std::fs::read_to_string(format!("{}/sample-kernels/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    src.lines().position(|l| l.trim_start().starts_with(code)).unwrap_or_else(|| panic!("{code} not in {file}")) + 1
}

#[test]
fn committed_traces_replay_and_check() {
    if !require_kvm("committed_traces_replay_and_check") {
        return;
    }
    let cases = [
        ("threads-lost-update.ttvm", "13", "PANIC: lost update: counter=[0-9]+ done=[0-9]+"),
        ("memcorrupt.ttvm", "13", "PANIC: config corrupted: magic=0x8"),
        ("timer.ttvm", "0", "timer: 20 ticks"),
    ];
    for (name, exit, output) in cases {
        let t = trace(name);
        let o = run(&["replay", "--verify", "-q", t.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
        let o = run(&["check", t.to_str().unwrap(), "--expect-exit", exit, "--expect-output", output]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
        // And the check is not a rubber stamp.
        let o = run(&["check", t.to_str().unwrap(), "--expect-exit", "42"]);
        assert_eq!(o.status.code(), Some(77), "{name}: {}", text(&o));
    }
}

#[test]
fn memcorrupt_culprit_is_found_by_watch_and_reverse_continue() {
    if !require_kvm("memcorrupt_culprit_is_found_by_watch_and_reverse_continue") {
        return;
    }
    let dir = common::tempdir();
    let elf = dir.path().join("memcorrupt.elf");
    let server = harness::serve(&trace("memcorrupt.ttvm"), &["--write-kernel", elf.to_str().unwrap()]);
    let out = gdb(&server, &[], "ci_memcorrupt.py");
    let end = mark(&out, "end");
    assert_eq!(end[0], end[1], "continue reaches the end of history\n{out}");
    let culprit = mark(&out, "culprit");
    let stray = source_line("memcorrupt/main.rs", "*slot = Event { seq, code };");
    assert_eq!(culprit[0], format!("{MEMCORRUPT_CULPRIT:x}"), "the stop moved\n{out}");
    assert!(culprit[2].ends_with(&format!("memcorrupt/main.rs:{stray}")), "not the stray write\n{out}");
    assert!(culprit[3].contains("log_event"), "{out}");
    assert_eq!(mark(&out, "magic-before")[0], "c0f160005afe0001", "{out}");
    assert_eq!(mark(&out, "earlier")[1], "plain", "nothing earlier wrote the field\n{out}");
}

#[test]
fn threads_lost_update_interleaving_is_found() {
    if !require_kvm("threads_lost_update_interleaving_is_found") {
        return;
    }
    let dir = common::tempdir();
    let elf = dir.path().join("threads.elf");
    let server = harness::serve(&trace("threads-lost-update.ttvm"), &["--write-kernel", elf.to_str().unwrap()]);
    let out = gdb(&server, &[], "ci_threads.py");
    let at = |line: usize| format!("threads/main.rs:{line}");
    let write_line = at(source_line("threads/main.rs", "COUNTER = v + 1"));
    let read_line = at(source_line("threads/main.rs", "let v = addr_of!(COUNTER).read_volatile();"));
    let victim = &mark(&out, "panicking-thread")[0];
    let hex = |s: &String| u64::from_str_radix(s, 16).unwrap();
    // (icount, file:line, thread, COUNTER before the access), newest first.
    let accesses = marks(&out, "access");
    assert!(accesses.len() >= 4, "{out}");
    let first = accesses.last().unwrap();
    assert!(
        first[1].ends_with(&read_line) && &first[2] == victim,
        "going back ends at the panicking thread's read\n{out}"
    );
    let stale = accesses.iter().find(|a| a[1].ends_with(&write_line) && &a[2] == victim).expect("the stale write");
    let lost: Vec<_> = accesses.iter().filter(|a| a[1].ends_with(&write_line) && &a[2] != victim).collect();
    assert!(!lost.is_empty(), "another thread wrote COUNTER between the read and the stale write\n{out}");
    for w in &lost {
        assert!(hex(&first[0]) < hex(&w[0]) && hex(&w[0]) < hex(&stale[0]), "{out}");
    }
    // The stale write stores what the thread read, plus one, over the other threads' work.
    let v = hex(&first[3]);
    assert_eq!(hex(&stale[3]), v + lost.len() as u64, "COUNTER before the stale write\n{out}");
    // Pinned: the stops must not move.
    let pinned = THREADS_INTERLEAVING;
    assert_eq!((hex(&first[0]), hex(&lost[0][0]), hex(&stale[0])), pinned, "the stops moved\n{out}");
}

/// CI can pin a committed trace by the SHA-256 of the whole file (`ttvm info` prints it,
/// as `sha256sum` would): `check --expect-sha256` refuses any other file before replaying.
#[test]
fn committed_traces_can_be_pinned_by_digest() {
    if !require_kvm("committed_traces_can_be_pinned_by_digest") {
        return;
    }
    let t = trace("timer.ttvm");
    let t = t.to_str().unwrap();
    let o = run(&["info", "--json", t]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let digest = info["sha256"].as_str().expect("sha256 in info").to_string();
    assert_eq!(digest.len(), 64, "{digest}");
    let o = run(&["check", t, "--expect-exit", "0", "--expect-sha256", &digest]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // One hex digit off: another file, refused without replaying.
    let last = if digest.ends_with('0') { "1" } else { "0" };
    let other = format!("{}{last}", &digest[..63]);
    let o = run(&["check", t, "--expect-sha256", &other]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not the trace that was pinned"), "{}", text(&o));
    let o = run(&["check", t, "--expect-sha256", "xyz"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// The committed network bug trace (ping's retransmission bug, recorded by
/// scripts/record-traces.sh with `record --until-failure`): every VM's trace replays
/// bit-for-bit, every frame is where the manifest says, and the outcome is the failure.
#[test]
fn committed_network_trace_checks() {
    if !require_kvm("committed_network_trace_checks") {
        return;
    }
    let dir = trace("ping-retransmit");
    let dir = dir.to_str().unwrap();
    let o = run(&["check", dir, "--expect-exit", "1", "--expect-output", "ping: replies out of step"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("check ok: ") && text(&o).contains("2 VMs and"), "{}", text(&o));
    let o = run(&["replay", dir, "--verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
