//! `ttvm replay DIR --gdb PORT` on a network recording (issue 22 item 4): one gdb port per
//! VM, and `monitor goto` on one VM moves the others to the consistent cut, the same cut
//! `ttvm snapshot DIR --at` takes. Two real gdbs at once on the committed `ping-retransmit`
//! recording: pong's gdb is connected while ping's moves, and sees its own position change.

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use std::time::Duration;

use common::{require_kvm, run, text};

/// Where `ttvm snapshot DIR --at ping:AT` puts pong (its listing's "VM 1 pong at icount N").
fn pong_at_the_cut(dir: &std::path::Path, at: u64) -> u64 {
    let snap = common::tempdir();
    let out = snap.path().join("snap");
    let o = run(&["snapshot", dir.to_str().unwrap(), "--at", &format!("ping:{at}"), "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let all = text(&o);
    let line = all.lines().find(|l| l.trim_start().starts_with("VM 1 pong")).unwrap_or_else(|| panic!("{all}"));
    line.split("at icount ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap()
}

#[test]
fn goto_on_one_vm_moves_the_other_to_the_consistent_cut() {
    if !require_kvm("goto_on_one_vm_moves_the_other_to_the_consistent_cut") {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces/ping-retransmit");
    // After ping received frame #4 (128 205) and before it sent #6 (128 816).
    let at = 128_300u64;
    let expected = pong_at_the_cut(&dir, at);
    assert!(expected > 0 && expected < 127_164, "pong is cut inside its history: {expected}");

    let sync = common::tempdir();
    std::env::set_var("TTVM_NET_SYNC", sync.path());
    std::env::set_var("TTVM_NET_AT", at.to_string());
    let (server, vms) = harness::serve_network(&dir, 2);
    assert_eq!(vms.len(), 2);
    assert_ne!(vms[0].0, vms[1].0, "a port per VM");
    let follower = {
        let (addr, server_ref) = (vms[1].0.clone(), &server);
        std::thread::scope(|s| {
            let f = s.spawn(move || harness::gdb_at(server_ref, &addr, &[], "net_goto_follower.py", None));
            let mover = harness::gdb_at(&server, &vms[0].0, &[], "net_goto_mover.py", Some(&vms[0].1));
            assert!(mover.contains(&format!("VM 1 (pong) moves to icount {expected}")), "{mover}");
            assert!(mover.contains(&format!("now at icount {at},")), "{mover}");
            f.join().expect("follower gdb")
        })
    };
    let (before, after) = follower.split_once("AFTER").expect("both positions");
    assert!(before.contains("icount 0"), "pong starts at 0:\n{follower}");
    assert!(after.contains(&format!("icount {expected}")), "pong moved to the cut:\n{follower}");
    assert_eq!(harness::mark(&follower, "follower-rip").len(), 1, "{follower}");
    // Both gdbs detached: the server ends.
    let (status, stderr) = server.wait(Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains(&format!("VM 1 (pong) moved to icount {expected}, the consistent cut")), "{stderr}");
}

#[test]
fn network_gdb_options_are_checked() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces/ping-retransmit");
    let d = dir.to_str().unwrap();
    let o = run(&["replay", d, "--gdb", "127.0.0.1:65535"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("VM 1 would need port 65536"), "{}", text(&o));
    let o = run(&["replay", d, "--gdb", "0", "--write-kernel", "/tmp/never-written"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--write-kernel takes one trace"), "{}", text(&o));
    // A busy port is refused before anything is served.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let o = run(&["replay", d, "--gdb", &format!("127.0.0.1:{}", port - 1)]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains(&port.to_string()), "the busy port is named: {}", text(&o));
}
