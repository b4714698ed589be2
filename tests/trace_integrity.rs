//! Damaged traces are detected (with the chunk and offset, or a divergence at the right
//! icount), never replayed wrongly; a killed recording leaves a readable trace.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{require_kvm, run, text};
use ttvm_replay::events::{EventKind, IoData};
use ttvm_replay::trace::{ChunkKind, TraceFile};

fn record_hello(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("hello.ttvm");
    let o = run(&["record", "hello", "-q", "-o", p.to_str().unwrap(), "--checkpoint-every", "4000"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    p
}

fn first_chunk(path: &Path, kind: ChunkKind) -> (u64, u64) {
    let t = TraceFile::open(path).unwrap();
    let c = t.chunks.iter().find(|c| c.kind == kind).unwrap();
    (c.offset, c.payload_start)
}

#[test]
fn flipped_byte_in_an_event_chunk_is_reported_with_its_offset() {
    if !require_kvm("flipped_byte_in_an_event_chunk_is_reported_with_its_offset") {
        return;
    }
    let dir = common::tempdir();
    let p = record_hello(dir.path());
    let (chunk, payload) = first_chunk(&p, ChunkKind::Events);
    let mut b = std::fs::read(&p).unwrap();
    b[payload as usize + 3] ^= 0x40;
    std::fs::write(&p, &b).unwrap();
    for args in [vec!["replay", "--verify", "-q"], vec!["info"], vec!["check", "--expect-exit", "0"]] {
        let mut a = args.clone();
        a.insert(1, p.to_str().unwrap());
        let o = run(&a);
        assert_eq!(o.status.code(), Some(76), "{:?}: {}", args, text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("corrupted") && err.contains("events chunk #0") && err.contains(&format!("offset {chunk}")),
            "{:?}: {}",
            args,
            text(&o)
        );
    }
}

#[test]
fn truncation_is_reported_never_silent() {
    if !require_kvm("truncation_is_reported_never_silent") {
        return;
    }
    let dir = common::tempdir();
    let p = record_hello(dir.path());
    let full = std::fs::read(&p).unwrap();
    // Cut inside the index: the end record survives, so everything is still checked.
    let cut = dir.path().join("cut.ttvm");
    std::fs::write(&cut, &full[..full.len() - 40]).unwrap();
    let o = run(&["replay", "--verify", "-q", cut.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not finalised") && err.contains("discarded"), "truncation must be reported: {}", text(&o));
    assert!(o.status.code() == Some(0) && err.contains("final state digest match"), "{}", text(&o));
    // Cut inside the end record: the complete prefix replays, the report says what it
    // could not check, and the status is not a clean verify's; `check` refuses a trace
    // without an outcome.
    let (end_chunk, _) = first_chunk(&p, ChunkKind::End);
    std::fs::write(&cut, &full[..end_chunk as usize + 10]).unwrap();
    let o = run(&["replay", "--verify", "-q", cut.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not finalised"), "truncation must be reported: {}", text(&o));
    assert!(o.status.code() == Some(77) && err.contains("cannot be checked"), "{}", text(&o));
    let o = run(&["check", cut.to_str().unwrap(), "--expect-exit", "0"]);
    assert_eq!(o.status.code(), Some(77), "check must not pass a trace without an outcome: {}", text(&o));
    // Cut inside the header: unusable.
    let tiny = dir.path().join("tiny.ttvm");
    std::fs::write(&tiny, &full[..60]).unwrap();
    let o = run(&["replay", "--verify", tiny.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated at byte offset 60"), "{}", text(&o));
}

#[test]
fn not_a_trace_and_newer_format_are_refused_by_name() {
    let dir = common::tempdir();
    let p = dir.path().join("x.ttvm");
    std::fs::write(&p, b"hello").unwrap();
    let o = run(&["info", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a ttvm trace"), "{}", text(&o));
    // A preamble claiming format version 99.
    let mut b = ttvm_replay::trace::format::MAGIC.to_vec();
    b.extend_from_slice(&99u32.to_le_bytes());
    b.extend_from_slice(&[0u8; 12]);
    std::fs::write(&p, &b).unwrap();
    let o = run(&["replay", "--verify", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("format version 99 is newer"), "{}", text(&o));
}

#[test]
fn edited_logged_value_diverges_at_its_icount() {
    if !require_kvm("edited_logged_value_diverges_at_its_icount") {
        return;
    }
    let dir = common::tempdir();
    let p = record_hello(dir.path());
    let bad = dir.path().join("edited.ttvm");
    // The guest polls the UART's line status register before each byte; claim the
    // transmitter is busy (bit 5 clear) the first time.
    let mut at = 0;
    common::rewrite_events(&p, &bad, |e| match &mut e.kind {
        EventKind::PortIn { port: 0x3fd, data } => {
            *data = IoData::from_slice(&[0x00]);
            at = e.icount;
            true
        }
        _ => false,
    });
    // The untouched copy still verifies (the rewrite itself is faithful).
    let same = dir.path().join("same.ttvm");
    common::rewrite_events(&p, &same, |_| true);
    let o = run(&["replay", "--verify", "-q", same.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["replay", "--verify", "-q", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("diverged"), "{}", text(&o));
    // The guest reads LSR again right after seeing "busy", so the divergence is within a few
    // steps of the edited event.
    let icount: u64 = err
        .split("at icount ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("icount in report");
    assert!(icount >= at && icount <= at + 20, "diverged at {icount}, edited event at {at}: {err}");

    // `--verify --to` checks a prefix: the history before the edit still verifies, and a
    // prefix that takes in the edit does not.
    let o = run(&["replay", "--verify", "-q", "--to", &at.to_string(), bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["replay", "--verify", "-q", "--to", &(icount + 1).to_string(), bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("diverged"), "{}", text(&o));

    // In pieces at once, the piece holding the edit fails the whole verify with its report.
    let o = run(&["replay", "--verify", "--jobs", "3", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("piece from checkpoint") && err.contains("diverged"), "{}", text(&o));
    let o = run(&["replay", "--verify", "--jobs", "3", same.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in 3 pieces"), "{}", text(&o));
}

#[test]
fn killed_recording_leaves_a_readable_verifiable_trace() {
    if !require_kvm("killed_recording_leaves_a_readable_verifiable_trace") {
        return;
    }
    let dir = common::tempdir();
    let p = dir.path().join("killed.ttvm");
    // bench runs for several seconds: kill it in the middle.
    let mut child = common::ttvm()
        .args(["record", "bench", "-q", "-o", p.to_str().unwrap(), "--checkpoint-every", "50000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let o = run(&["info", "--json", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["finalised"], false);
    let steps = info["steps"].as_u64().unwrap();
    assert!(steps > 10_000, "the killed recording should have kept its progress, got {steps} steps");
    // Everything it holds verifies, but its end is unknown: not a clean verify.
    let o = run(&["replay", "--verify", "-q", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("verified {steps} steps")) && err.contains("not finalised"), "{}", text(&o));
}
