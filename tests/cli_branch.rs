//! `ttvm branch`: going on from any step of a recorded history, as a user runs it.

mod common;

use common::{require_kvm, run, text};

fn json(args: &[&str]) -> serde_json::Value {
    let o = run(args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).expect("json")
}

#[test]
fn a_branch_goes_on_exactly_replays_alone_and_names_its_family() {
    if !require_kvm("a_branch_goes_on_exactly_replays_alone_and_names_its_family") {
        return;
    }
    let dir = common::tempdir();
    let parent = dir.path().join("parent.ttvm");
    let p = parent.to_str().unwrap();
    let o = run(&["record", "memcorrupt", "--cmdline", "work=2000", "-o", p, "-q"]);
    let status = o.status.code().expect("exit status");
    assert_ne!(status, 0, "memcorrupt panics: {}", text(&o));
    let steps = json(&["info", "--json", p])["steps"].as_u64().expect("steps");
    let at = steps / 2;

    // Unchanged, the branch goes on as the parent did: same status, same end.
    let child = dir.path().join("child.ttvm");
    let c = child.to_str().unwrap();
    let o = run(&["branch", p, "--at", &at.to_string(), "-o", c, "-q"]);
    assert_eq!(o.status.code(), Some(status), "the guest's status, as ttvm record: {}", text(&o));
    let v = json(&["info", "--json", c]);
    assert_eq!(v["format_version"], ttvm_replay::trace::FORMAT_VERSION);
    assert_eq!(v["steps"].as_u64(), Some(steps - at), "{v}");
    assert_eq!(v["lineage"]["parent_file"], "parent.ttvm");
    assert_eq!(v["lineage"]["branch_icount"].as_u64(), Some(at));
    assert_eq!(v["ancestors"][0]["found"], true);

    // A branch of the branch: the family is followed through both.
    let grandchild = dir.path().join("grandchild.ttvm");
    let g = grandchild.to_str().unwrap();
    let o = run(&["branch", c, "--at", "100", "-o", g, "-q"]);
    assert_eq!(o.status.code(), Some(status), "{}", text(&o));
    let o = run(&["info", g]);
    let info = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(info.contains("branched:    from child.ttvm at icount 100 (found)"), "{info}");
    assert!(info.contains(&format!("from parent.ttvm at icount {at} (found)")), "{info}");

    // Self-contained: it verifies and checks with no parent next to it, and says so.
    let alone = common::tempdir();
    let moved = alone.path().join("child.ttvm");
    std::fs::copy(&child, &moved).expect("copy");
    let m = moved.to_str().unwrap();
    let o = run(&["replay", "--verify", "-q", m]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["check", m, "--expect-exit", &status.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&["info", "--json", m]);
    assert_eq!(v["ancestors"][0]["found"], false);
    assert_eq!(v["ancestors"][0]["status"], "not found next to it");
}

#[test]
fn a_branch_past_the_end_of_history_is_refused() {
    if !require_kvm("a_branch_past_the_end_of_history_is_refused") {
        return;
    }
    let dir = common::tempdir();
    let parent = dir.path().join("hello.ttvm");
    let p = parent.to_str().unwrap();
    let o = run(&["record", "hello", "-o", p, "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let steps = json(&["info", "--json", p])["steps"].as_u64().expect("steps");
    let out = dir.path().join("never.ttvm");
    for at in [steps, steps + 1, u64::MAX] {
        let o = run(&["branch", p, "--at", &at.to_string(), "-o", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "--at {at}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("--at {at} is")) && err.contains(&format!("{steps} steps")), "{err}");
        assert!(!out.exists(), "nothing written for --at {at}");
    }
    // Into the parent itself: refused before anything is written.
    let before = std::fs::read(&parent).unwrap();
    let o = run(&["branch", p, "--at", "1", "-o", p]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(std::fs::read(&parent).unwrap(), before, "the parent is untouched");
    // Not a trace at all.
    let o = run(&["branch", dir.path().join("missing.ttvm").to_str().unwrap(), "--at", "1", "--run"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_branch_can_go_on_as_a_free_run() {
    if !require_kvm("a_branch_can_go_on_as_a_free_run") {
        return;
    }
    let dir = common::tempdir();
    let parent = dir.path().join("hello.ttvm");
    let p = parent.to_str().unwrap();
    let o = run(&["record", "hello", "--cmdline", "branch-me", "-o", p, "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // At step 1000 hello has not printed its command line yet: the free run prints it.
    let o = run(&["branch", p, "--at", "1000", "--run", "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("cmdline: branch-me"), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("running free from there"), "{}", text(&o));
}

#[test]
fn a_branch_takes_new_serial_input_and_keeps_the_recorded_time() {
    if !require_kvm("a_branch_takes_new_serial_input_and_keeps_the_recorded_time") {
        return;
    }
    let dir = common::tempdir();
    let (old_in, new_in) = (dir.path().join("old.txt"), dir.path().join("new.txt"));
    std::fs::write(&old_in, "alpha\nbeta\n").unwrap();
    std::fs::write(&new_in, "gamma\ndelta\n").unwrap();
    let parent = dir.path().join("entropy.ttvm");
    let p = parent.to_str().unwrap();
    let o = run(&["record", "entropy", "--cmdline", "lines=2", "--serial-in", old_in.to_str().unwrap(), "-o", p, "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let recorded = String::from_utf8_lossy(&run(&["info", "--console", p]).stdout).into_owned();
    assert!(recorded.contains("echo: alpha"), "{recorded}");
    // Step 2000 is before the guest read anything, and before it read the TSC and the RTC.
    let child = dir.path().join("child.ttvm");
    let o = run(&["branch", p, "--at", "2000", "-o", child.to_str().unwrap(), "--serial-in", new_in.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("echo: gamma") && out.contains("echo: delta") && !out.contains("alpha"), "{out}");
    // Device time and the emulated TSC go on from the parent's: the same readings.
    for key in ["rdtsc: ", "rtc: "] {
        let line =
            |text: &str| text.lines().find(|l| l.contains(key)).map(|l| l.split(key).nth(1).unwrap().to_string());
        assert_eq!(line(&out), line(&recorded), "{key}: {out}\n{recorded}");
    }
}
