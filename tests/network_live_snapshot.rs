//! Live consistent snapshots of a running network, driven as a user would: `ttvm run
//! --snapshot-every 50ms --snapshots DIR --vm ping … --vm pong`, then `ttvm resume` of
//! snapshots from the middle and the end (and of DIR after a SIGKILL): the network must
//! finish as the uninterrupted run did. ping waits for each reply before sending the next
//! frame and says so when a reply has the wrong number; pong counts every frame it gets:
//! a frame lost across the cut leaves ping waiting (the timeout's status 73), one delivered
//! twice shows as an "ignored" reply or one frame too many at pong.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{require_kvm, run, text};
use ttvm_replay::network::snapshot::{NetSnapshotManifestV1, NET_SNAPSHOT_FILE};

const ROUNDS: u32 = 4000;

/// The committed snapshots of DIR (those with a manifest), oldest first.
fn committed(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join(NET_SNAPSHOT_FILE).exists())
                .filter_map(|e| Some((e.file_name().to_string_lossy().parse().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn manifest(snap: &Path) -> NetSnapshotManifestV1 {
    NetSnapshotManifestV1::decode(&std::fs::read(snap.join(NET_SNAPSHOT_FILE)).unwrap()).unwrap()
}

fn live_run(dir: &Path, rounds: u32, keep: &str) -> Vec<String> {
    let cmdline = format!("rounds={rounds}");
    let args = ["run", "--timeout", "60", "--snapshot-every", "50ms", "--snapshots", dir.to_str().unwrap()];
    let mut args: Vec<&str> = args.to_vec();
    args.extend(["--keep", keep, "--vm", "ping", "--cmdline", &cmdline, "--vm", "pong"]);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("[0 ping] ping: {rounds} replies")), "{}", text(&o));
    String::from_utf8_lossy(&o.stderr).lines().map(str::to_string).collect()
}

/// Resumes `target` (a snapshot, or a directory of them) and checks the network ends as
/// the uninterrupted run: status 0, nothing received twice, and (unless the cut may fall
/// inside the guests' last lines, `near_end`) every VM still running at the cut finishes
/// with its line.
fn resume_and_check(target: &Path, snap: &NetSnapshotManifestV1, rounds: u32, near_end: bool) -> String {
    let o = run(&["resume", target.to_str().unwrap(), "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "resume {}: {}", target.display(), text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(!stdout.contains("ignored"), "a reply arrived twice: {}", text(&o));
    if snap.vms[0].ended.is_none() && !near_end {
        assert!(stdout.contains(&format!("[0 ping] ping: {rounds} replies")), "{}", text(&o));
    }
    if snap.vms[1].ended.is_none() && !near_end {
        assert!(stdout.contains(&format!("[1 pong] pong: {} frames", rounds + 1)), "{}", text(&o));
    }
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let delivered = snap.in_flight.iter().filter(|f| snap.vms[f.to as usize].ended.is_none()).count();
    assert!(stderr.contains(&format!("{delivered} frames in flight queued for delivery")), "{}", text(&o));
    stderr
}

#[test]
fn live_network_snapshots_resume_without_losing_or_duplicating_a_frame() {
    if !require_kvm("live_network_snapshots_resume_without_losing_or_duplicating_a_frame") {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("snaps");
    let stderr = live_run(&dir, ROUNDS, "1000");
    for (vm, name) in [(0, "ping"), (1, "pong")] {
        let line = stderr.iter().find(|l| l.starts_with(&format!("ttvm: VM {vm} ({name}): "))).map(String::as_str);
        assert!(
            stderr
                .iter()
                .any(|l| l.starts_with(&format!("ttvm: VM {vm} ({name}): ")) && l.contains("snapshot pauses: median")),
            "no pause summary for VM {vm}: {line:?}\n{}",
            stderr.join("\n")
        );
    }
    let snaps = committed(&dir);
    assert!(snaps.len() >= 4, "only {} snapshots in a run of {ROUNDS} rounds: {}", snaps.len(), stderr.join("\n"));
    let summary = format!("ttvm: {} consistent network snapshots committed", snaps.len());
    assert!(stderr.iter().any(|l| l.starts_with(&summary)), "want {summary:?}: {}", stderr.join("\n"));
    // Nothing half-written is left behind: every numbered directory is committed.
    let all = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(all, snaps.len(), "uncommitted directories left in {}", dir.display());

    let manifests: Vec<NetSnapshotManifestV1> = snaps.iter().map(|(_, p)| manifest(p)).collect();
    for (m, (_, p)) in manifests.iter().zip(&snaps) {
        assert_eq!(m.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["ping", "pong"]);
        for v in &m.vms {
            assert!(p.join(&v.snapshot).is_file(), "{}: {}", p.display(), v.snapshot);
        }
        for f in &m.in_flight {
            assert!(f.from != f.to && f.to < 2, "{}: frame {} from {} to {}", p.display(), f.id, f.from, f.to);
        }
    }

    // One from the middle, one with a frame in flight (if any was caught), the last few
    // (quick to finish: a cut that let one VM go on before another had stopped would
    // show up as a frame delivered twice or never in some of them), the newest.
    let middle = snaps.len() / 2;
    resume_and_check(&snaps[middle].1, &manifests[middle], ROUNDS, false);
    let newest = snaps.len() - 1;
    if let Some(i) = manifests.iter().position(|m| !m.in_flight.is_empty()) {
        resume_and_check(&snaps[i].1, &manifests[i], ROUNDS, i + 1 >= newest);
    }
    for i in newest.saturating_sub(8).max(middle + 1)..newest {
        resume_and_check(&snaps[i].1, &manifests[i], ROUNDS, i + 1 >= newest);
    }
    let stderr = resume_and_check(&dir, &manifests[newest], ROUNDS, true);
    assert!(stderr.contains(&format!("resuming {}", snaps[newest].1.display())), "{stderr}");
}

#[test]
fn a_killed_network_resumes_from_its_newest_complete_snapshot() {
    if !require_kvm("a_killed_network_resumes_from_its_newest_complete_snapshot") {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("snaps");
    let rounds = 8000;
    let mut child = common::ttvm()
        .args(["run", "--snapshot-every", "50ms", "--snapshots"])
        .arg(&dir)
        .args(["--keep", "3", "--vm", "ping", "--cmdline", &format!("rounds={rounds}"), "--vm", "pong"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ttvm");
    let started = Instant::now();
    while committed(&dir).last().map_or(0, |s| s.0) < 4 {
        assert!(started.elapsed() < Duration::from_secs(60), "no snapshots in 60 s");
        assert!(child.try_wait().expect("wait").is_none(), "the network ended before it was killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Land the kill anywhere in an interval, maybe inside a write.
    std::thread::sleep(Duration::from_millis(70));
    assert!(child.try_wait().expect("wait").is_none(), "the network ended before it was killed");
    child.kill().expect("SIGKILL");
    let killed = child.wait_with_output().expect("wait");
    assert!(!String::from_utf8_lossy(&killed.stdout).contains("replies"), "ping had finished: {}", text(&killed));
    let snaps = committed(&dir);
    assert!(!snaps.is_empty() && snaps.len() <= 3, "--keep 3: {snaps:?}");
    let (newest_seq, newest) = snaps.last().unwrap();
    // `ttvm info DIR` lists them and names the one `resume` takes; `ttvm info SNAP` one.
    let o = run(&["info", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let info = String::from_utf8_lossy(&o.stdout);
    let chosen = info.lines().find(|l| l.contains("`ttvm resume` takes this one")).unwrap_or_default();
    assert!(chosen.trim_start().starts_with(&format!("{newest_seq:06}")), "{info}");
    let o = run(&["info", "--json", dir.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(j["resume_takes"], serde_json::json!(newest_seq), "{j}");
    let o = run(&["info", newest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(info.contains("VM 0 ping") && info.contains("VM 1 pong") && info.contains("a free run"), "{info}");

    let stderr = resume_and_check(&dir, &manifest(newest), rounds, false);
    assert!(stderr.contains(&format!("resuming {}", newest.display())), "{stderr}");

    // With every snapshot damaged there is nothing to resume, and info says so.
    for (_, snap) in &snaps {
        std::fs::write(snap.join("vm1-pong.snap"), b"damaged").expect("write");
    }
    let o = run(&["info", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no complete snapshot"), "{}", text(&o));
}

#[test]
fn bad_live_snapshot_options_are_refused_before_booting() {
    let tmp = common::tempdir();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let new = tmp.path().join("new");
    let (file, full, new) = (file.to_str().unwrap(), full.to_str().unwrap(), new.to_str().unwrap());
    let cases: [(&[&str], &str); 6] = [
        (&["run", "--snapshots", new, "--vm", "ping", "--vm", "pong"], "--snapshot-every"),
        (&["run", "--snapshot-every", "50ms", "--vm", "ping", "--vm", "pong"], "--snapshots"),
        (&["run", "--snapshot-every", "0ms", "--snapshots", new, "--vm", "ping"], "1ms to 24h"),
        (
            &["run", "--snapshot-every", "50ms", "--snapshots", file, "--vm", "ping", "--vm", "pong"],
            "not an empty directory",
        ),
        (
            &["run", "--snapshot-every", "50ms", "--snapshots", full, "--vm", "ping", "--vm", "pong"],
            "not an empty directory",
        ),
        (
            &["record", "--snapshot-every", "50ms", "--snapshots", new, "--vm", "ping", "-o", new],
            "ttvm snapshot DIR --at",
        ),
    ];
    for (args, why) in cases {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{args:?}: want {why:?}: {}", text(&o));
        assert!(o.stdout.is_empty(), "{args:?}: a VM ran: {}", text(&o));
    }
    assert!(!Path::new(new).exists(), "nothing was created");
    assert_eq!(std::fs::read(file).unwrap(), b"not a directory");

    // A directory whose only snapshot was never committed (no manifest) has none to resume.
    let torn = tmp.path().join("torn");
    std::fs::create_dir_all(torn.join("000001")).unwrap();
    std::fs::write(torn.join("000001").join("vm0-ping.snap"), b"half").unwrap();
    let o = run(&["resume", torn.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no complete live network snapshot"), "{}", text(&o));
}

/// `ttvm run` of ping (`rounds`) and pong, plus `more` VMs, with live snapshots into `dir`
/// that are never due (only a stop takes one), stopped by `--timeout 1` when `timeout`.
fn stopping_network(dir: &Path, rounds: u32, timeout: bool, more: &[&str]) -> std::process::Command {
    let mut cmd = common::ttvm();
    cmd.arg("run");
    if timeout {
        cmd.args(["--timeout", "1"]);
    }
    cmd.args(["--snapshot-every", "60m", "--snapshots"]).arg(dir);
    cmd.args(["--vm", "ping", "--cmdline", &format!("rounds={rounds}"), "--vm", "pong"]).args(more);
    cmd
}

/// Ctrl-C and the timeout stop a network with a last consistent snapshot, whatever the
/// schedule (here never due): the network as it stopped resumes to the end, no frame lost
/// or duplicated.
#[test]
fn ctrl_c_and_the_timeout_take_a_last_snapshot() {
    if !require_kvm("ctrl_c_and_the_timeout_take_a_last_snapshot") {
        return;
    }
    let tmp = common::tempdir();
    let rounds = 8000;
    for stop in ["timeout", "SIGINT"] {
        let dir = tmp.path().join(stop);
        let mut cmd = stopping_network(&dir, rounds, stop == "timeout", &[]);
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn ttvm");
        if stop == "SIGINT" {
            std::thread::sleep(Duration::from_millis(1000));
            // SAFETY: kill(2) on our own child's pid.
            let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            assert_eq!(r, 0, "SIGINT");
        }
        let o = child.wait_with_output().expect("wait");
        let want = if stop == "timeout" { 73 } else { 130 };
        assert_eq!(o.status.code(), Some(want), "{stop}: {}", text(&o));
        assert!(!String::from_utf8_lossy(&o.stdout).contains("replies"), "ping had finished: {}", text(&o));
        let snaps = committed(&dir);
        assert_eq!(snaps.len(), 1, "{stop}: one snapshot, the last: {snaps:?}\n{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("1 consistent network snapshots committed"),
            "{}",
            text(&o)
        );
        let (_, last) = &snaps[0];
        resume_and_check(&dir, &manifest(last), rounds, false);
    }
}

/// A resumed network takes live snapshots too (`ttvm resume SNAP --snapshot-every D
/// --snapshots DIR`), so a long run can be stopped and resumed more than once; a single
/// machine's resume refuses the option, naming its own.
#[test]
fn a_resumed_network_takes_snapshots_and_resumes_again() {
    if !require_kvm("a_resumed_network_takes_snapshots_and_resumes_again") {
        return;
    }
    let tmp = common::tempdir();
    let rounds = 8000;
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    let (f, s) = (first.to_str().unwrap(), second.to_str().unwrap());
    let o = stopping_network(&first, rounds, true, &[]).output().expect("spawn ttvm");
    assert_eq!(o.status.code(), Some(73), "{}", text(&o));
    let o = run(&["resume", f, "--timeout", "1", "--snapshot-every", "60m", "--snapshots", s]);
    assert_eq!(o.status.code(), Some(73), "the resumed network stopped at its timeout: {}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("replies"), "ping had finished: {}", text(&o));
    let snaps = committed(&second);
    assert_eq!(snaps.len(), 1, "{snaps:?}: {}", text(&o));
    resume_and_check(&second, &manifest(&snaps[0].1), rounds, false);

    let o =
        run(&["resume", tmp.path().join("missing.snap").to_str().unwrap(), "--snapshot-every", "1s", "--snapshots", s]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--checkpoint-every"), "{}", text(&o));
}

/// A VM that ended before any snapshot held its machine (`hello`, done at once) still
/// stands in the last snapshot a timeout takes: its machine as it ended is kept for that;
/// without it the last snapshot was dropped without a word.
#[test]
fn a_vm_that_ended_before_any_snapshot_is_in_the_last_one() {
    if !require_kvm("a_vm_that_ended_before_any_snapshot_is_in_the_last_one") {
        return;
    }
    let tmp = common::tempdir();
    let dir = tmp.path().join("snaps");
    let d = dir.to_str().unwrap();
    let o = stopping_network(&dir, 5000, true, &["--vm", "hello"]).output().expect("spawn ttvm");
    assert_eq!(o.status.code(), Some(73), "{}", text(&o));
    let snaps = committed(&dir);
    assert_eq!(snaps.len(), 1, "the last snapshot is kept: {snaps:?}\n{}", text(&o));
    let m = manifest(&snaps[0].1);
    assert!(m.vms[2].ended.is_some() && m.vms[0].ended.is_none(), "{:?}", m.vms);
    assert!(snaps[0].1.join(&m.vms[2].snapshot).is_file(), "hello's machine is in it");
    assert!(!dir.join("ended").exists(), "the ended images' directory is gone");
    let o = run(&["resume", d, "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("[0 ping] ping: 5000 replies"), "{}", text(&o));
}
