//! `ttvm run --save-state` and `ttvm resume`: a stopped free run continues where it was, as
//! often as it is saved, and damaged or foreign snapshot files are refused clearly.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{require_kvm, run, text};

/// The tick numbers the `timer` kernel printed ("tick N" every 10 ticks) in `out`, complete
/// lines only: a run stopped in the middle of printing a line holds only its start ("tick 9"
/// of "tick 90"), and the resumed run the rest (which does not start with "tick ").
fn ticks_in(out: &str) -> Vec<u64> {
    out.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .collect()
}

/// The tick numbers in a run's output; continuity across parts is checked on their outputs
/// joined.
fn ticks(o: &Output) -> Vec<u64> {
    ticks_in(&String::from_utf8_lossy(&o.stdout))
}

fn resume_interrupted(snapshot: &Path, save: &Path) -> Output {
    let child = common::ttvm()
        .arg("resume")
        .arg(snapshot)
        .arg("--save-state")
        .arg(save)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ttvm");
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    child.wait_with_output().expect("wait for ttvm")
}

/// The timer kernel counts PIT interrupts at 1 kHz: stopped after 1 s by --timeout, saved,
/// resumed, interrupted with Ctrl-C, saved again and resumed to the end, its count goes on
/// from where each part stopped, without a reboot in between.
#[test]
fn a_saved_run_resumes_where_it_stopped() {
    if !require_kvm("a_saved_run_resumes_where_it_stopped") {
        return;
    }
    let dir = common::tempdir();
    let (first, second) = (dir.path().join("first.snap"), dir.path().join("second.snap"));
    let o =
        run(&["run", "timer", "--cmdline", "ticks=4000", "--timeout", "1", "--save-state", first.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(73), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("machine state saved to"), "{}", text(&o));
    let mut all = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(ticks(&o).last().is_some_and(|&t| t < 4000), "some ticks in 1 s, not all: {}", text(&o));

    let o = resume_interrupted(&first, &second);
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("ttvm: resuming"), "{}", text(&o));
    assert!(stderr.contains("machine state saved to"), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("pit divisor"), "no reboot: {}", text(&o));
    assert!(!ticks(&o).is_empty(), "the resumed part ticks: {}", text(&o));
    all.push_str(&String::from_utf8_lossy(&o.stdout));

    let o = run(&["resume", second.to_str().unwrap(), "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("timer: 4000 ticks"), "{}", text(&o));
    all.push_str(&String::from_utf8_lossy(&o.stdout));
    // Every tick line exactly once, in order, across the three parts: the count went on
    // from where each part stopped.
    let expected: Vec<u64> = (1..=400).map(|i| i * 10).collect();
    assert_eq!(ticks_in(&all), expected, "{all}");
}

#[test]
fn a_slowed_clock_stays_slow_across_resume() {
    if !require_kvm("a_slowed_clock_stays_slow_across_resume") {
        return;
    }
    let dir = common::tempdir();
    let snap = dir.path().join("slow.snap");
    let snap_arg = snap.to_str().unwrap();
    let o = run(&[
        "run",
        "timer",
        "--cmdline",
        "ticks=4000",
        "--slowdown",
        "10",
        "--timeout",
        "1",
        "--save-state",
        snap_arg,
    ]);
    assert_eq!(o.status.code(), Some(73), "{}", text(&o));
    let last1 = ticks(&o).last().copied().unwrap_or(0);
    assert!(last1 <= 100, "at most 100 ms of device time in 1 s: {}", text(&o));

    let o = run(&["resume", snap_arg, "--timeout", "1"]);
    assert_eq!(o.status.code(), Some(73), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("running 10 times slower than host time"), "{}", text(&o));
    let part2 = ticks(&o);
    let last2 = part2.last().copied().unwrap_or(last1);
    assert!(last2 <= last1 + 110, "still slowed after resume: {} -> {}\n{}", last1, last2, text(&o));

    // Resumed at another rate on request: host speed gives several hundred ticks a second.
    let o = run(&["resume", snap_arg, "--slowdown", "1", "--timeout", "1"]);
    assert_eq!(o.status.code(), Some(73), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("(running at host speed)"), "{}", text(&o));
    let part3 = ticks(&o);
    assert!(part3.first().is_some_and(|&t| t <= last1 + 20), "from the snapshot again: {}", text(&o));
    assert!(part3.last().is_some_and(|&t| t > last1 + 150), "at host speed: {}", text(&o));

    let o = run(&["run", "timer", "--slowdown", "0"]);
    assert_eq!(o.status.code(), Some(2), "a slowdown below 1 is refused: {}", text(&o));
}

#[test]
fn bad_snapshots_and_paths_are_refused() {
    if !require_kvm("bad_snapshots_and_paths_are_refused") {
        return;
    }
    let dir = common::tempdir();
    // Not written at all when the guest ends the run itself.
    let none = dir.path().join("none.snap");
    let o = run(&["run", "hello", "--save-state", none.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no snapshot written"), "{}", text(&o));
    assert!(!none.exists());

    // An unwritable path fails before booting.
    let o = run(&["run", "hello", "--save-state", "/nonexistent/dir/s.snap"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--save-state /nonexistent/dir/s.snap"), "{}", text(&o));
    assert!(o.stdout.is_empty(), "nothing booted: {}", text(&o));

    let good = dir.path().join("good.snap");
    let o =
        run(&["run", "timer", "--cmdline", "ticks=100000", "--timeout", "0.3", "--save-state", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(73), "{}", text(&o));
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.path().join("truncated.snap");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let o = run(&["resume", truncated.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("damaged snapshot"), "{}", text(&o));

    let mut newer = bytes.clone();
    newer[8] = newer[8].wrapping_add(1);
    let newer_path = dir.path().join("newer.snap");
    std::fs::write(&newer_path, &newer).unwrap();
    let o = run(&["resume", newer_path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("use a newer ttvm"), "{}", text(&o));

    let elf = common::kernel_path("hello");
    let o = run(&["resume", elf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a ttvm snapshot"), "{}", text(&o));

    let o = run(&["resume", "/nonexistent.snap"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.snap"), "{}", text(&o));
}
