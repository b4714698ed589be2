//! Branching history from gdb: in a replay of `memcorrupt`, stop at the stray write,
//! `monitor branch FILE`, undo the write with `set var`, `continue`: the branch records a
//! guest that exits with status 0 where the recording panicked, and `ttvm check` agrees.

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use harness::{gdb, mark};

#[test]
fn a_branch_that_undoes_the_stray_write_exits_cleanly_and_checks() {
    if !common::require_kvm("a_branch_that_undoes_the_stray_write_exits_cleanly_and_checks") {
        return;
    }
    let dir = common::tempdir();
    let parent = harness::record(dir.path(), "memcorrupt", "work=2000");
    let info = common::run(&["info", "--json", parent.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info json");
    assert_ne!(v["exit_code"], 0, "the recording panics: {}", common::text(&info));
    let branch = dir.path().join("fixed.ttvm");
    std::env::set_var("TTVM_BRANCH_FILE", &branch);
    let server = harness::serve(&parent, &[]);
    let out = gdb(&server, &[], "branch_memcorrupt.py");
    assert_eq!(mark(&out, "write-before-branch"), ["refused"], "{out}");
    let stray = mark(&out, "stray");
    assert_ne!(stray[1], "c0f160005afe0001", "stopped after the stray write\n{out}");
    assert!(out.contains("branch into"), "monitor branch armed\n{out}");
    assert_eq!(mark(&out, "regwrite-after-branch"), ["allowed", "same"], "{out}");
    assert_eq!(mark(&out, "other-regs"), ["1234567890abcdef", "5000"], "{out}");
    assert_eq!(mark(&out, "cr3-write"), ["refused", "same"], "{out}");
    assert!(server.stderr().contains("cr3 cannot be changed in a branch"), "{}", server.stderr());
    assert_eq!(mark(&out, "undone"), ["c0f160005afe0001", "1000"], "{out}");
    let refused = mark(&out, "back-after-edit");
    assert_eq!(refused[0], refused[1], "going back from an edited machine does not move\n{out}");
    assert!(server.stderr().contains("going back would replay the changed machine"), "{}", server.stderr());
    let continued = mark(&out, "continued");
    assert_eq!(continued[0], continued[1], "continue ran the branch to its end\n{out}");
    // One history over the family (hex icounts): the parent's up to the branch point, then
    // the branch's after it.
    let family = mark(&out, "family");
    let (end, length, at) = (harness::hex(&family[0]), harness::hex(&family[1]), harness::hex(&family[2]));
    assert!(end == length && at > 0 && at < end, "the branch's end is the family's end\n{out}");
    let parent = mark(&out, "parent-at-branch-point");
    assert_eq!(harness::hex(&parent[0]), at, "{out}");
    assert_eq!((parent[1].as_str(), parent[2].as_str()), (stray[1].as_str(), "parent"), "the parent's machine\n{out}");
    let forward = mark(&out, "across-forward");
    assert_eq!(harness::hex(&forward[0]), at + 1, "{out}");
    assert_eq!((forward[1].as_str(), forward[2].as_str()), ("c0f160005afe0001", "branch"), "the branch's\n{out}");
    let back_across = mark(&out, "across-back");
    assert_eq!(harness::hex(&back_across[0]), at - 1, "{out}");
    assert_eq!(back_across[1], "parent", "{out}");
    let watch = mark(&out, "watch-back");
    assert!(harness::hex(&watch[0]) <= harness::hex(&stray[0]), "the stray write, found from the branch\n{out}");
    assert_eq!(watch[1], "parent", "{out}");
    let forward_end = mark(&out, "forward-to-end");
    assert_eq!((harness::hex(&forward_end[0]), harness::hex(&forward_end[1])), (end, length), "{out}");
    let back = mark(&out, "back");
    assert_eq!(back[0], "0", "reverse execution runs back into the parent's history to its start\n{out}");
    let (status, stderr) = server.wait(std::time::Duration::from_secs(60));
    assert!(status.success(), "ttvm replay --gdb: {stderr}");
    assert!(stderr.contains("the branch ended (guest exit, status 0)"), "{stderr}");

    // The branch is a trace of its own: it checks without its parent, as a clean exit.
    let moved = common::tempdir();
    let alone = moved.path().join("fixed.ttvm");
    std::fs::copy(&branch, &alone).expect("copy");
    let o = common::run(&["check", alone.to_str().unwrap(), "--expect-exit", "0"]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    // …and names where it came from.
    let o = common::run(&["info", "--json", branch.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("info json");
    assert_eq!(v["lineage"]["parent_file"], "memcorrupt.ttvm", "{}", common::text(&o));
    let at = v["lineage"]["branch_icount"].as_u64().expect("branch icount");
    assert!(at >= harness::hex(&stray[0]), "the branch starts at or after the stray write: {at}\n{out}");
    assert_eq!(v["ancestors"][0]["found"], true, "{}", common::text(&o));
}
