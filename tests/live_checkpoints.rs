//! Live checkpoints and restart, driven as a user would: `ttvm run --checkpoint-every
//! --checkpoints DIR` killed with SIGKILL in the middle of the run, then `ttvm resume DIR`;
//! a damaged newest checkpoint falls back to the previous one; a frozen version-1 directory
//! still resumes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{require_kvm, run, text};

/// The tick numbers of complete `tick N` lines (the timer kernel prints one every 10 ticks).
fn ticks(out: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(out)
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect()
}

fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "ttvmlc")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Starts `ttvm run timer` with checkpoints every 100 ms and kills it with SIGKILL once it
/// has committed at least `min_checkpoints` checkpoints (and at least `at_least` later).
fn run_and_kill(dir: &Path, ticks_arg: &str, min_checkpoints: usize) -> std::process::Output {
    let mut child = common::ttvm()
        .args(["run", "timer", "--cmdline", ticks_arg, "--checkpoint-every", "100ms", "--checkpoints"])
        .arg(dir)
        .args(["--keep", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ttvm");
    let started = Instant::now();
    // Checkpoint numbers only grow; the newest one's number tells how many were taken.
    while checkpoint_files(dir).last().map_or(0, |p| seq_of(p) as usize) < min_checkpoints {
        assert!(started.elapsed() < Duration::from_secs(60), "no checkpoints in 60 s");
        assert!(child.try_wait().expect("wait").is_none(), "the run ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A little more, so the kill lands anywhere in an interval (maybe inside a write).
    std::thread::sleep(Duration::from_millis(150));
    child.kill().expect("SIGKILL");
    child.wait_with_output().expect("wait")
}

fn seq_of(ckpt: &Path) -> u64 {
    let name = ckpt.file_name().unwrap().to_string_lossy();
    name.trim_start_matches("ckpt-").trim_end_matches(".ttvmlc").parse().unwrap()
}

/// The whole serial history in DIR/serial.log: every tick line once, in order, to the end.
fn assert_serial_log_is_one_run(dir: &Path, last: u64) {
    let log = std::fs::read(dir.join("serial.log")).expect("serial.log");
    let expected: Vec<u64> = (1..=last / 10).map(|i| i * 10).collect();
    assert_eq!(ticks(&log), expected, "serial.log:\n{}", String::from_utf8_lossy(&log));
    assert_eq!(
        String::from_utf8_lossy(&log).matches("pit divisor").count(),
        1,
        "booted once: {}",
        String::from_utf8_lossy(&log)
    );
}

#[test]
fn a_killed_run_resumes_from_its_newest_checkpoint_without_a_gap() {
    if !require_kvm("a_killed_run_resumes_from_its_newest_checkpoint_without_a_gap") {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("ckpts");
    let killed = run_and_kill(&dir, "ticks=3000", 6);
    assert_eq!(killed.status.code(), None, "killed by a signal: {}", text(&killed));
    let before = ticks(&killed.stdout);
    let printed = *before.last().expect("the killed run ticked");
    assert!(printed < 3000, "killed mid-run: {}", text(&killed));
    assert!(checkpoint_files(&dir).len() <= 3, "--keep 3: {:?}", checkpoint_files(&dir));
    // What a kill between writing a checkpoint and renaming it leaves: half a file under its
    // temporary name, never taken for a checkpoint.
    let newest = std::fs::read(checkpoint_files(&dir).last().unwrap()).unwrap();
    let half = dir.join("ckpt-9999999999.ttvmlc.tmp");
    std::fs::write(&half, &newest[..newest.len() / 2]).unwrap();

    let o = run(&["resume", dir.to_str().unwrap(), "--timeout", "120"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("from checkpoint"), "{}", text(&o));
    assert!(stderr.contains("live checkpoints: downtime median"), "it goes on checkpointing: {}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("timer: 3000 ticks"), "{}", text(&o));
    assert!(!stdout.contains("pit divisor"), "no reboot: {}", text(&o));
    // The resumed guest goes on from the checkpoint, taken before the kill: its first tick
    // follows one the killed run had already printed, and from there every tick once.
    let after = ticks(&o.stdout);
    let first = *after.first().expect("the resumed run ticks");
    assert!(first <= printed + 10 && first > 10, "resumed at {first}, killed after {printed}: {}", text(&o));
    assert!(before.contains(&(first - 10)), "no gap: {first} follows a printed tick");
    assert_eq!(after, (first / 10..=300).map(|i| i * 10).collect::<Vec<_>>(), "{}", text(&o));
    assert_serial_log_is_one_run(&dir, 3000);
    assert!(!half.exists(), "the uncommitted checkpoint was cleared away");
    assert!(!stderr.contains("9999999999"), "and not considered: {}", text(&o));
}

#[test]
fn a_damaged_newest_checkpoint_is_reported_and_the_previous_one_used() {
    if !require_kvm("a_damaged_newest_checkpoint_is_reported_and_the_previous_one_used") {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("ckpts");
    run_and_kill(&dir, "ticks=2000", 4);
    let files = checkpoint_files(&dir);
    assert!(files.len() >= 2, "{files:?}");
    let newest = files.last().unwrap();
    let previous = seq_of(&files[files.len() - 2]);
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(newest, &bytes).unwrap();

    let o = run(&["info", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let listing = String::from_utf8_lossy(&o.stdout);
    assert!(listing.contains(&format!("checkpoint {}: DAMAGED: checksum mismatch", seq_of(newest))), "{}", text(&o));
    assert!(listing.contains(&format!("checkpoint {previous}: guest device time")), "{}", text(&o));

    let o = run(&["resume", dir.to_str().unwrap(), "--timeout", "120"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let report =
        format!("checkpoint {}: checksum mismatch (truncated or corrupted); using an older checkpoint", seq_of(newest));
    assert!(stderr.contains(&report), "{}", text(&o));
    assert!(stderr.contains(&format!("from checkpoint {previous} ")), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("timer: 2000 ticks"), "{}", text(&o));
    assert_serial_log_is_one_run(&dir, 2000);
    assert!(newest.with_extension("damaged").exists(), "the damaged file is set aside");

    // With every checkpoint damaged, nothing is run.
    for f in checkpoint_files(&dir) {
        let mut bytes = std::fs::read(&f).unwrap();
        bytes.truncate(bytes.len() - 1);
        std::fs::write(&f, &bytes).unwrap();
    }
    let o = run(&["resume", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no usable checkpoint"), "{}", text(&o));
    assert!(o.stdout.is_empty(), "{}", text(&o));
}

#[test]
fn a_damaged_page_is_found_by_its_hash() {
    if !require_kvm("a_damaged_page_is_found_by_its_hash") {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("ckpts");
    let o = run(&["run", "hello", "--checkpoint-every", "1s", "--checkpoints", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The base checkpoint's pack holds the kernel; a flipped byte inside a page record.
    let pack = dir.join("pack-0000000000.ttvmlp");
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x20;
    std::fs::write(&pack, &bytes).unwrap();
    let o = run(&["resume", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("pack-0000000000.ttvmlp at offset"), "names the page: {}", text(&o));
}

#[test]
fn checkpoint_options_are_checked_before_booting() {
    if !require_kvm("checkpoint_options_are_checked_before_booting") {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("ckpts");
    let d = dir.to_str().unwrap();
    for bad in [
        vec!["run", "hello", "--checkpoint-every", "0s", "--checkpoints", d],
        vec!["run", "hello", "--checkpoint-every", "100ms"],
        vec!["run", "hello", "--checkpoints", d],
        vec!["run", "hello", "--checkpoint-every", "1s", "--checkpoints", d, "--keep", "0"],
    ] {
        let o = run(&bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", text(&o));
        assert!(o.stdout.is_empty(), "{}", text(&o));
    }
    std::fs::create_dir(&dir).unwrap();
    let o = run(&["resume", d]);
    assert_eq!(o.status.code(), Some(2), "an empty directory: {}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a directory without live checkpoints"), "{}", text(&o));
    let o = run(&["run", "hello", "--checkpoint-every", "1s", "--checkpoints", d]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A second run would mix its checkpoints with the first one's.
    let o = run(&["run", "hello", "--checkpoint-every", "1s", "--checkpoints", d]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds checkpoints"), "{}", text(&o));
    let o = run(&["resume", d, "--checkpoint-every", "1s", "--checkpoints", d]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("on its own schedule"), "{}", text(&o));
}

/// A version-1 checkpoint directory frozen in the repository (tests/fixtures/live-v1: the
/// timer kernel stopped by --timeout 0.3 with ticks=600, one checkpoint kept) still resumes
/// and finishes: old checkpoint files stay readable.
#[test]
fn the_frozen_version_1_directory_still_resumes() {
    if !require_kvm("the_frozen_version_1_directory_still_resumes") {
        return;
    }
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live-v1");
    let tmp = common::tempdir();
    let dir = tmp.path().join("live-v1");
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(&fixture).unwrap().flatten() {
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let o = run(&["resume", dir.to_str().unwrap(), "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("timer: 600 ticks"), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("pit divisor"), "no reboot: {}", text(&o));
    assert_serial_log_is_one_run(&dir, 600);
}

/// Starts `ttvm run timer` with checkpoints far apart (only the base one would be taken)
/// plus `extra`, and waits until the guest has printed `tick 500` into `serial.log`.
fn run_until_tick_500(dir: &Path, extra: &[&str]) -> std::process::Child {
    let child = common::ttvm()
        .args(["run", "timer", "--cmdline", "ticks=3000", "--checkpoint-every", "60s", "--checkpoints"])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ttvm");
    let started = Instant::now();
    while !std::fs::read(dir.join("serial.log")).is_ok_and(|log| ticks(&log).contains(&500)) {
        assert!(started.elapsed() < Duration::from_secs(60), "no tick 500 in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A stopped run's output and the resumed run's, together, are one run: every tick once,
/// in order, one boot. The stop may fall inside a line, so the two are joined first.
fn assert_one_run(stopped: &std::process::Output, resumed: &std::process::Output) {
    let mut both = stopped.stdout.clone();
    both.extend_from_slice(&resumed.stdout);
    let expected: Vec<u64> = (1..=300).map(|i| i * 10).collect();
    assert_eq!(ticks(&both), expected, "stopped: {}\nresumed: {}", text(stopped), text(resumed));
    assert_eq!(String::from_utf8_lossy(&both).matches("pit divisor").count(), 1, "{}", text(resumed));
}

/// Ctrl-C (SIGINT) ends a checkpointed run with a last checkpoint where it stopped: with one
/// checkpoint a minute, `ttvm resume DIR` still goes on from the stop, not from the boot.
#[test]
fn ctrl_c_takes_a_final_checkpoint_that_resume_goes_on_from() {
    if !require_kvm("ctrl_c_takes_a_final_checkpoint_that_resume_goes_on_from") {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("ckpts");
    let child = run_until_tick_500(&dir, &[]);
    // SAFETY: kill(2) with a child's pid and a signal number has no memory preconditions.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let stopped = child.wait_with_output().expect("wait");
    assert_eq!(stopped.status.code(), Some(130), "{}", text(&stopped));
    assert!(text(&stopped).contains("a final checkpoint where the run was stopped"), "{}", text(&stopped));
    assert!(!String::from_utf8_lossy(&stopped.stdout).contains("timer: 3000 ticks"), "stopped mid-run");
    assert_eq!(checkpoint_files(&dir).len(), 2, "the base and the final one: {:?}", checkpoint_files(&dir));

    let resumed = run(&["resume", dir.to_str().unwrap(), "--timeout", "120"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert!(text(&resumed).contains("from checkpoint 1 "), "{}", text(&resumed));
    assert!(ticks(&resumed.stdout).first().is_some_and(|&t| t > 500), "after tick 500: {}", text(&resumed));
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("timer: 3000 ticks"), "{}", text(&resumed));
    assert_one_run(&stopped, &resumed);
    assert_serial_log_is_one_run(&dir, 3000);
}

/// The same for a run that reaches its --timeout.
#[test]
fn a_timeout_takes_a_final_checkpoint_too() {
    if !require_kvm("a_timeout_takes_a_final_checkpoint_too") {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("ckpts");
    let o = run(&[
        "run",
        "timer",
        "--cmdline",
        "ticks=3000",
        "--checkpoint-every",
        "60s",
        "--checkpoints",
        dir.to_str().unwrap(),
        "--timeout",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(73), "{}", text(&o));
    assert!(text(&o).contains("a final checkpoint where the run was stopped"), "{}", text(&o));
    let printed = ticks(&o.stdout);
    assert!(printed.last().is_some_and(|&t| t < 3000), "stopped mid-run: {}", text(&o));
    let resumed = run(&["resume", dir.to_str().unwrap(), "--timeout", "120"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_one_run(&o, &resumed);
}

/// Copy-on-write capture (`cow.rs`): checkpoints taken while the guest rewrites its pages
/// right after each pause hold every page as it was at the pause. `dirty check=1` verifies its
/// whole buffer before each pass, so a resume from a checkpoint that caught a page too early
/// or too late panics naming the page.
#[test]
fn checkpoints_copied_on_write_hold_each_page_as_it_was_at_the_pause() {
    if !require_kvm("checkpoints_copied_on_write_hold_each_page_as_it_was_at_the_pause") {
        return;
    }
    let dir = common::tempdir();
    let live = dir.path().join("live");
    let d = live.to_str().unwrap();
    let cmdline = "mib=2 passes=500 gap=1 check=1";
    let o = run(&[
        "run",
        "dirty",
        "--cmdline",
        cmdline,
        "--checkpoint-every",
        "20ms",
        "--checkpoints",
        d,
        "--keep",
        "3",
        "--timeout",
        "1",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    // A host without userfaultfd write protection copies in the pause, and says so: the
    // resumes below then check that path instead.
    if !err.contains("pages copied on write") {
        assert!(err.contains("pages copied in the pause (no userfaultfd write protection"), "{err}");
        eprintln!("NOTE: this host cannot write-protect guest RAM; checking checkpoints copied in the pause");
    }
    let kept = checkpoint_files(&live);
    assert!(kept.len() >= 3, "{err}");
    // Every kept checkpoint but the final one was taken with the guest running on at once.
    for (n, ckpt) in kept[..kept.len() - 1].iter().enumerate() {
        let copy = dir.path().join(format!("from-{n}"));
        std::fs::create_dir(&copy).unwrap();
        for entry in std::fs::read_dir(&live).unwrap().flatten() {
            let p = entry.path();
            if checkpoint_files(&live).contains(&p) && p > *ckpt {
                continue;
            }
            std::fs::copy(&p, copy.join(entry.file_name())).unwrap();
        }
        let o = run(&["resume", copy.to_str().unwrap(), "--timeout", "60"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "resumed from {}: {}", ckpt.display(), text(&o));
        assert!(out.contains("dirty: done passes=500"), "{out}");
    }
}
