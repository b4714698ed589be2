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

/// The file names in `dir`, sorted (none before it exists).
fn names(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// The tick numbers of complete `tick N` lines.
fn ticks(out: &str) -> Vec<u64> {
    out.lines().filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok()).collect()
}

/// A live-checkpoint directory of a run killed with SIGKILL starts a recording from its
/// newest checkpoint, as a `--save-state` snapshot does: the trace goes on exactly where
/// the checkpoint's serial output ends, runs to the guest's exit and verifies, and the
/// directory is left as it was.
#[test]
fn a_live_checkpoint_directory_is_recorded_from_its_newest_checkpoint() {
    if !require_kvm("a_live_checkpoint_directory_is_recorded_from_its_newest_checkpoint") {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("ckpts");
    let mut child = common::ttvm()
        .args(["run", "timer", "--cmdline", TICKS, "--checkpoint-every", "100ms", "--checkpoints"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn ttvm");
    let started = std::time::Instant::now();
    while !names(&dir).iter().any(|n| n.starts_with("ckpt-0000000003")) {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "no checkpoint 3 in 60 s");
        assert!(child.try_wait().expect("wait").is_none(), "the run ended before it was killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let before = names(&dir);
    assert!(before.contains(&"origin.ttvmlo".to_string()), "{before:?}");

    // The newest checkpoint and how much serial output it counted, as `ttvm info` lists them.
    let o = run(&["info", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    let newest = listing.lines().rfind(|l| l.contains("guest device time")).expect("a checkpoint");
    let seq: u64 = newest.trim().strip_prefix("checkpoint ").unwrap().split(':').next().unwrap().parse().unwrap();
    let serial_len: usize = newest.split("serial byte ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();

    let trace = tmp.path().join("from-dir.ttvm");
    let o = run(&["record", "--from", dir.to_str().unwrap(), "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains(&format!("recording from checkpoint {seq} of")), "{}", text(&o));
    let recorded = out(&o);
    assert!(recorded.ends_with("timer: 3000 ticks\n"), "the recording runs to the guest's exit: {recorded}");
    // The run's output up to the checkpoint and the recording's are one run: every tick once.
    let log = std::fs::read(dir.join("serial.log")).unwrap();
    let mut both = String::from_utf8_lossy(&log[..serial_len]).replace("\r\n", "\n");
    both.push_str(&recorded);
    assert_eq!(ticks(&both), (1..=300).map(|i| i * 10).collect::<Vec<_>>(), "{both}");
    assert_eq!(both.matches("pit divisor").count(), 1, "booted once: {both}");
    assert_eq!(names(&dir), before, "recording from a directory changes nothing in it");

    let o = run(&["replay", "--verify", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(out(&o), recorded, "replay regenerates exactly the recorded output");
    // The CPU the run showed its guest (vendor-neutral for every kernel but Linux), not the
    // host's: the directory's origin says which.
    let o = run(&["info", trace.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("CPUID model ttvm-x86-64-v3 (ttvm-neutral)"), "{}", text(&o));

    // A damaged origin file is reported, not guessed around.
    let origin = dir.join("origin.ttvmlo");
    let mut bytes = std::fs::read(&origin).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&origin, &bytes).unwrap();
    let o = run(&["record", "--from", dir.to_str().unwrap(), "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    assert!(text(&o).contains("origin.ttvmlo: damaged: checksum mismatch"), "{}", text(&o));
}

/// A directory an older ttvm wrote (no origin file: tests/fixtures/live-v1) cannot start a
/// self-contained recording, and says so.
#[test]
fn an_older_checkpoint_directory_without_its_kernel_is_refused() {
    if !require_kvm("an_older_checkpoint_directory_without_its_kernel_is_refused") {
        return;
    }
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live-v1");
    let tmp = common::tempdir();
    let trace = tmp.path().join("x.ttvm");
    let o = run(&["record", "--from", fixture.to_str().unwrap(), "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("written by an older ttvm, it does not hold the kernel it booted"), "{}", text(&o));
    assert!(text(&o).contains("--checkpoints DIR"), "{}", text(&o));
    assert!(!trace.exists(), "no trace is written");
}

/// What the free run dirtied before the switch is in the trace's first checkpoint; the
/// next checkpoint holds only what the recorded steps wrote (it used to hold every page
/// the boot had dirtied again, 2 059 here, 18 134 for a Linux boot).
#[test]
fn the_first_checkpoint_after_a_free_boot_holds_only_recorded_writes() {
    if !require_kvm("the_first_checkpoint_after_a_free_boot_holds_only_recorded_writes") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("dirty.ttvm");
    let o = run(&[
        "run",
        "dirty",
        "--cmdline",
        "mib=8 passes=1",
        "--record-from-output",
        "^dirty: done",
        "-o",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["info", trace.to_str().unwrap(), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("info --json");
    let checkpoints = info["checkpoints"].as_array().expect("checkpoints");
    assert!(checkpoints[0]["dirty_pages"].as_u64().unwrap() > 2048, "the 8 MiB the boot wrote: {info}");
    let later: u64 = checkpoints[1..].iter().map(|c| c["dirty_pages"].as_u64().unwrap()).sum();
    assert!(later < 16, "{later} pages after the switch, of a guest that only exits: {info}");
    let o = run(&["replay", "--verify", "-q", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
