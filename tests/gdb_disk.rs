//! gdb against a trace with a disk: `monitor disk-history` names the request that wrote a
//! sector and where the guest queued it, `monitor goto` there shows the driver's code, and
//! moving forwards and backwards across the disk's completions stays exact.

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use common::{require_kvm, run, text};
use harness::{gdb, hex, mark, serve};

#[test]
fn disk_history_names_the_request_and_goto_shows_the_driver() {
    if !require_kvm("disk_history_names_the_request_and_goto_shows_the_driver") {
        return;
    }
    let dir = common::tempdir();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![0x5au8; 64 * 512]).unwrap();
    let trace = dir.path().join("disk.ttvm");
    let o = run(&[
        "record",
        "disk",
        "--disk",
        img.to_str().unwrap(),
        "--cmdline",
        "read=0:1 write=2:3 read=0:8",
        "-q",
        "-o",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let server = serve(&trace, &[]);
    let out = gdb(&server, &[], "disk_history.py");
    assert!(out.contains("sector 3: 1 write(s)"), "{out}");
    let queued = hex(&mark(&out, "queued")[0]);
    assert_eq!(mark(&out, "never"), ["yes"], "{out}");
    let at = mark(&out, "at");
    assert_eq!(hex(&at[0]), queued, "{out}");
    assert!(mark(&out, "func")[0].contains("request"), "the driver's request function: {out}");
    let end = mark(&out, "end");
    assert_eq!(hex(&end[1]), hex(&end[0]) - 1, "one step back from the end: {out}");
    assert_eq!(mark(&out, "again"), at, "the same position and RIP after going back: {out}");
}

#[test]
fn monitor_branch_carries_the_disk_over() {
    if !require_kvm("monitor_branch_carries_the_disk_over") {
        return;
    }
    let dir = common::tempdir();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![0x5au8; 64 * 512]).unwrap();
    let trace = dir.path().join("disk.ttvm");
    let ops = "read=0:1 write=2:3 read=0:8";
    let o = run(&["record", "disk", "--disk", img.to_str().unwrap(), "--cmdline", ops, "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let last_read =
        String::from_utf8_lossy(&o.stdout).lines().find(|l| l.starts_with("disk: read 0:8")).map(String::from);
    let branch = dir.path().join("branch.ttvm");
    std::env::set_var("TTVM_BRANCH_FILE", &branch);
    let server = serve(&trace, &[]);
    let out = gdb(&server, &[], "branch_disk.py");
    assert!(out.contains("the disk is as the trace holds it here"), "{out}");
    assert_eq!(mark(&out, "continued"), ["done"], "{out}");
    let (status, stderr) = server.wait(std::time::Duration::from_secs(60));
    assert!(status.success() && stderr.contains("the branch ended (guest exit, status 0)"), "{stderr}");
    // The branch read back what the write left, from its own trace, which replays alone.
    let o = run(&["replay", "--verify", branch.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let replayed = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(replayed.lines().find(|l| l.starts_with("disk: read 0:8")).map(String::from), last_read, "{replayed}");
    let o = run(&["disk", branch.to_str().unwrap(), "--history", "3"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 write"), "{}", text(&o));
}
