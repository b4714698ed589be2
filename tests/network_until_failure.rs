//! `ttvm record --until-failure --vm … --vm …`: the network is recorded again and again
//! until a VM fails, and only the failing recording is kept. `ping retransmit=T` has the
//! timing-dependent bug (its retransmission flag is never reset), so whether a run fails
//! depends on how the VMs' threads were scheduled. Here `pong delay=N` answers slowly, so
//! every frame is sent again and the first run already fails, on any host.

mod common;

use common::{require_kvm, run, text};

const PING: &str = "rounds=3 retransmit=1";
const SLOW_PONG: &str = "delay=20000";

#[test]
fn a_network_is_recorded_until_a_vm_fails() {
    if !require_kvm("a_network_is_recorded_until_a_vm_fails") {
        return;
    }
    let dir = common::tempdir();
    let out = dir.path().join("bug");
    let o = run(&[
        "record",
        "--until-failure",
        "--runs",
        "3",
        "--vm",
        "ping",
        "--cmdline",
        PING,
        "--vm",
        "pong",
        "--cmdline",
        SLOW_PONG,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "ping's status is the network's:\n{}", text(&o));
    assert!(text(&o).contains("the failure was recorded on run"), "{}", text(&o));
    assert!(!dir.path().join("bug.until-failure.tmp").exists(), "the scratch recording is gone");
    let o = run(&["check", out.to_str().unwrap(), "--expect-exit", "1", "--expect-output", "replies out of step"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["check", out.to_str().unwrap(), "--expect-exit", "0"]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));

    // The kept recording is not overwritten by another search.
    let o = run(&["record", "--until-failure", "--vm", "ping", "--vm", "pong", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A network that never fails: nothing is kept, and the status says so.
    let calm = dir.path().join("calm");
    let o = run(&[
        "record",
        "--until-failure",
        "--runs",
        "2",
        "--vm",
        "ping",
        "--cmdline",
        "rounds=3",
        "--vm",
        "pong",
        "-o",
        calm.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    assert!(text(&o).contains("no failure in 2 runs"), "{}", text(&o));
    assert!(!calm.exists());
}
