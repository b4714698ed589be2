//! Linux under live checkpoints and restart: Debian's kernel runs with `--checkpoints`, is
//! killed with SIGKILL once its printk clock has started, and `ttvm resume DIR` goes on: the
//! kernel is not booted again and its printk timestamps in `serial.log` never go back.
//! Reaching a running printk clock takes minutes of emulated ring 0 on these hosts, so the
//! boot runs only with `TTVM_LONG_TESTS=1`.

mod common;
mod linux_support;

use std::ffi::OsStr;

/// The printk timestamps (seconds) of complete `[ secs.micros] ...` lines.
fn stamps(out: &str) -> Vec<f64> {
    out.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| l.strip_prefix('[')?.split_once(']')?.0.trim().parse().ok())
        .collect()
}

fn last_stamp(out: &str) -> f64 {
    stamps(out).last().copied().unwrap_or(0.0)
}

#[test]
fn linux_killed_mid_boot_resumes_with_its_clock_going_on() {
    if !common::require_kvm("linux_killed_mid_boot_resumes_with_its_clock_going_on") {
        return;
    }
    if std::env::var("TTVM_LONG_TESTS").as_deref() != Ok("1") {
        eprintln!("linux_killed_mid_boot_resumes_with_its_clock_going_on: takes many minutes; runs only with TTVM_LONG_TESTS=1");
        return;
    }
    let k = linux_support::debian_kernel();
    let tmp = common::tempdir();
    let dir = tmp.path().join("ckpts");
    let args: [&OsStr; 8] = [
        "run".as_ref(),
        k.bzimage.as_os_str(),
        "--checkpoint-every".as_ref(),
        "5s".as_ref(),
        "--checkpoints".as_ref(),
        dir.as_os_str(),
        "--timeout".as_ref(),
        "3600".as_ref(),
    ];
    // Killed (SIGKILL) once printk time has visibly started.
    let first = linux_support::run_until(&args, |o| last_stamp(o) > 0.2);
    assert_eq!(first.status, None, "killed, not ended: {}", first.text());
    let killed_at = last_stamp(&first.stdout);

    let args: [&OsStr; 4] = ["resume".as_ref(), dir.as_os_str(), "--timeout".as_ref(), "3600".as_ref()];
    let second = linux_support::run_until(&args, |o| last_stamp(o) > killed_at + 0.5);
    assert_eq!(second.status, None, "it went on until the later timestamp: {}", second.text());
    assert!(second.stderr.contains("from checkpoint"), "{}", second.text());
    assert!(!second.stdout.contains("Linux version"), "not booted again: {}", second.text());

    let log = String::from_utf8_lossy(&std::fs::read(dir.join("serial.log")).expect("serial.log")).into_owned();
    assert_eq!(log.matches("Linux version").count(), 1, "one boot in serial.log");
    let all = stamps(&log);
    assert!(all.windows(2).all(|w| w[0] <= w[1]), "printk time never goes back: {all:?}");
    assert!(all.last().is_some_and(|&t| t > killed_at), "past where the first run was killed: {all:?}");
    // serial.log is the output up to the checkpoint, then the resumed run's: its stdout (but
    // the line the second kill may have cut between stdout and the log) is all in it.
    let lines: Vec<&str> = second.stdout.split_inclusive('\n').collect();
    let resumed = lines[..lines.len().saturating_sub(2)].concat();
    assert!(resumed.len() > 100 && log.contains(&resumed), "{}\n--- serial.log\n{log}", second.text());
}
