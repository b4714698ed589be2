//! Consistent snapshots of a recorded network as a user takes them: `ttvm record --vm ping
//! … --vm pong -o DIR`, then `ttvm snapshot DIR --at VM:ICOUNT -o SNAP` at several points
//! (before any frame, with a frame in flight each way, at a VM's end) and `ttvm resume
//! SNAP`, which must finish the exchange exactly as the uninterrupted run did: every frame
//! sent after the cut or in flight at it delivered once, none lost, none twice.

mod common;

use std::path::Path;

use common::{require_kvm, run, tempdir, text};
use ttvm_replay::network::cut::consistent_cut;
use ttvm_replay::network::manifest::{NetworkManifestV1, MANIFEST_FILE};
use ttvm_replay::network::snapshot::{NetSnapshotManifestV1, NET_SNAPSHOT_FILE};
use ttvm_vmm::devices::virtio_net::mac_for;

const ROUNDS: u32 = 5;

fn record(dir: &Path) -> NetworkManifestV1 {
    let cmdline = format!("rounds={ROUNDS}");
    let o = run(&[
        "record",
        "--timeout",
        "60",
        "--vm",
        "ping",
        "--cmdline",
        &cmdline,
        "--vm",
        "pong",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    NetworkManifestV1::decode(&std::fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap()
}

/// Snapshots `net` at `vm:icount` into `snap`, checks what it printed and wrote against the
/// cut the manifest gives, resumes it and checks both guests finish as the uninterrupted
/// run did. Returns the snapshot's manifest.
fn snapshot_and_resume(net: &Path, m: &NetworkManifestV1, snap: &Path, vm: &str, icount: u64) -> NetSnapshotManifestV1 {
    let at = format!("{vm}:{icount}");
    let o = run(&["snapshot", net.to_str().unwrap(), "--at", &at, "-o", snap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "snapshot --at {at}: {}", text(&o));
    let s = NetSnapshotManifestV1::decode(&std::fs::read(snap.join(NET_SNAPSHOT_FILE)).unwrap()).unwrap();
    let index = m.vms.iter().position(|v| v.name == vm).or_else(|| vm.parse().ok()).unwrap();
    let cut = consistent_cut(m, index, icount).unwrap();
    let positions: Vec<u64> = s.vms.iter().map(|v| v.icount).collect();
    assert_eq!(positions, cut.positions, "--at {at}");
    assert_eq!(s.at, (index as u32, icount));
    let flying: Vec<(u64, u32)> = s.in_flight.iter().map(|f| (f.id, f.to)).collect();
    let expected: Vec<(u64, u32)> = cut.in_flight.iter().map(|f| (f.frame, f.to)).collect();
    assert_eq!(flying, expected, "--at {at}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("frames in flight: {}", s.in_flight.len())), "{}", text(&o));
    for (i, p) in positions.iter().enumerate() {
        assert!(stdout.contains(&format!("at icount {p} of {}", m.vms[i].steps)), "VM {i}: {}", text(&o));
    }
    for f in &s.in_flight {
        // The bytes are the frame the sender sent: its length, from its MAC, to the
        // destination's MAC or to everyone (ping broadcasts).
        let entry = m.frames.iter().find(|e| e.id == f.id).unwrap();
        assert_eq!((f.from, f.sent_at, f.data.len() as u32), (entry.from, entry.sent_at, entry.len));
        assert_eq!(f.data[6..12], mac_for(f.from as u8), "frame {} comes from VM {}", f.id, f.from);
        assert!(
            f.data[..6] == mac_for(f.to as u8) || f.data[..6] == [0xff; 6],
            "frame {}: {:02x?}",
            f.id,
            &f.data[..6]
        );
        assert!(stdout.contains(&format!("#{:<5} VM {} @{} -> VM {}", f.id, f.from, f.sent_at, f.to)), "{}", text(&o));
    }
    for v in &s.vms {
        assert!(snap.join(&v.snapshot).is_file(), "{}", v.snapshot);
    }
    // `ttvm info SNAP` describes it: the cut, each VM's position, the frames in flight.
    let o = run(&["info", snap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(info.contains(&format!("through VM {index} @ {icount}")), "{info}");
    for (i, v) in s.vms.iter().enumerate() {
        let state = match &v.ended {
            Some(e) => format!("had ended: {}", e.outcome),
            None => format!("@ {} of {} recorded steps", positions[i], m.vms[i].steps),
        };
        assert!(info.contains(&state), "VM {i}: {info}");
    }
    assert_eq!(info.matches("in flight: #").count(), s.in_flight.len(), "{info}");
    assert!(info.contains("complete: continue with `ttvm resume"), "{info}");

    let o = run(&["resume", snap.to_str().unwrap(), "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "resume of --at {at}: {}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("[0 ping] ping: {ROUNDS} replies")), "resume of --at {at}: {}", text(&o));
    assert!(stdout.contains(&format!("[1 pong] pong: {} frames", ROUNDS + 1)), "resume of --at {at}: {}", text(&o));
    // No frame lost or duplicated: the switch carries exactly the frames in flight plus
    // those each VM sends after its position, and the guests (which count their frames
    // and check each one's number) still finish as they did.
    let after_cut = m.frames.iter().filter(|f| f.sent_at >= positions[f.from as usize]).count();
    let total = after_cut + s.in_flight.len();
    let line = format!("switch: {total} frames sent, {total} delivered to ports, 0 dropped");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&line), "resume of --at {at}: want {line:?}: {}", text(&o));
    s
}

#[test]
fn a_network_cut_anywhere_resumes_to_the_same_end() {
    if !require_kvm("a_network_cut_anywhere_resumes_to_the_same_end") {
        return;
    }
    let tmp = tempdir();
    let net = tmp.path().join("net");
    let m = record(&net);
    assert_eq!(m.frames.len() as u32, 2 * (ROUNDS + 1));

    // Before ping has run at all: pong is cut before the first frame reaches it.
    let s = snapshot_and_resume(&net, &m, &tmp.path().join("start"), "ping", 0);
    assert!(s.in_flight.is_empty());
    assert_eq!(s.vms[1].icount, m.frames[0].to[0].at.unwrap());

    // ping exactly where pong's third answer reaches it: that answer is in flight to ping.
    // (A recording takes a frame at a boundary only if it entered the network before that
    // boundary's own sends, `replay/src/network/record.rs`; before, under load, an answer
    // could be logged as taken at the boundary that sent what it answered, and the cut then
    // had to leave these frames out or was refused as acausal.)
    let answer = m.frames.iter().filter(|f| f.from == 1).nth(2).unwrap();
    let s = snapshot_and_resume(&net, &m, &tmp.path().join("to-ping"), "ping", answer.to[0].at.unwrap());
    assert!(
        s.in_flight.iter().any(|f| f.id == answer.id && f.to == 0),
        "{:?}\n{}",
        s.in_flight,
        text(&run(&["info", net.to_str().unwrap()]))
    );

    // pong (by position) where ping's fourth frame reaches it: in flight the other way.
    let request = m.frames.iter().filter(|f| f.from == 0).nth(3).unwrap();
    let s = snapshot_and_resume(&net, &m, &tmp.path().join("to-pong"), "1", request.to[0].at.unwrap());
    assert!(
        s.in_flight.iter().any(|f| f.id == request.id && f.to == 1),
        "{:?}\n{}",
        s.in_flight,
        text(&run(&["info", net.to_str().unwrap()]))
    );

    // ping just before it sends its second frame: nothing of it is out yet.
    let second = m.frames.iter().filter(|f| f.from == 0).nth(1).unwrap();
    let s = snapshot_and_resume(&net, &m, &tmp.path().join("before-send"), "ping", second.sent_at);
    assert!(s.in_flight.iter().all(|f| f.id != second.id));
}

#[test]
fn a_vm_that_had_ended_at_the_cut_is_not_run_again() {
    if !require_kvm("a_vm_that_had_ended_at_the_cut_is_not_run_again") {
        return;
    }
    let tmp = tempdir();
    let net = tmp.path().join("net");
    let m = record(&net);
    // pong after its last frame went out: ping runs to its end (it exited there).
    let last = m.frames.last().unwrap();
    assert_eq!(last.from, 1);
    let snap = tmp.path().join("snap");
    let o = run(&[
        "snapshot",
        net.to_str().unwrap(),
        "--at",
        &format!("pong:{}", last.sent_at + 1),
        "-o",
        snap.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = NetSnapshotManifestV1::decode(&std::fs::read(snap.join(NET_SNAPSHOT_FILE)).unwrap()).unwrap();
    assert_eq!(s.vms[0].icount, m.vms[0].steps);
    assert_eq!(s.vms[0].ended.as_ref().map(|e| e.status), Some(0));
    assert!(s.vms[1].ended.is_none());
    assert!(String::from_utf8_lossy(&o.stdout).contains("(had ended: "), "{}", text(&o));
    let o = run(&["resume", snap.to_str().unwrap(), "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("VM 0 (ping): had ended before the cut"), "{}", text(&o));
    assert!(stderr.contains("VM 1 (pong): guest exited with status 0"), "{}", text(&o));
}

#[test]
fn bad_points_and_directories_are_refused() {
    if !require_kvm("bad_points_and_directories_are_refused") {
        return;
    }
    let tmp = tempdir();
    let net = tmp.path().join("net");
    let m = record(&net);
    let n = net.to_str().unwrap();
    let out = tmp.path().join("out");
    let o_ = out.to_str().unwrap();
    let refused = |args: &[&str], code: i32, what: &str| {
        let o = run(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(what), "{args:?}: want {what:?}: {}", text(&o));
    };
    let past = format!("ping:{}", m.vms[0].steps + 1);
    refused(&["snapshot", n, "--at", &past, "-o", o_], 2, "is past its end");
    refused(
        &["snapshot", n, "--at", "web:5", "-o", o_],
        2,
        "no VM is called \"web\"; the network's VMs are 0 ping, 1 pong",
    );
    refused(&["snapshot", n, "--at", "2:5", "-o", o_], 2, "there is no VM 2");
    refused(&["snapshot", n, "--at", "ping", "-o", o_], 2, "give VM:ICOUNT");
    refused(&["snapshot", n, "--at", "ping:x", "-o", o_], 2, "is not a step number");
    let trace = net.join(&m.vms[0].trace);
    refused(&["snapshot", trace.to_str().unwrap(), "--at", "0:5", "-o", o_], 2, "not a network recording");
    refused(&["snapshot", tmp.path().to_str().unwrap(), "--at", "0:5", "-o", o_], 2, "not a network recording");
    assert!(!out.exists(), "nothing written for a refused snapshot");

    // An existing snapshot is not overwritten; a newer or damaged one is not resumed.
    let o = run(&["snapshot", n, "--at", "ping:0", "-o", o_]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    refused(&["snapshot", n, "--at", "ping:0", "-o", o_], 2, "exists and is not an empty directory");
    refused(&["resume", o_, "--slowdown", "2"], 2, "--slowdown is for one machine's snapshot");
    let manifest = out.join(NET_SNAPSHOT_FILE);
    let good = std::fs::read(&manifest).unwrap();
    let mut newer = good.clone();
    newer[8] = 2;
    std::fs::write(&manifest, &newer).unwrap();
    refused(&["resume", o_], 76, "network snapshot version 2 is newer than this ttvm reads (up to 1)");
    std::fs::write(&manifest, &good[..good.len() - 1]).unwrap();
    refused(&["resume", o_], 76, "damaged network snapshot manifest");
    std::fs::write(&manifest, &good).unwrap();
    let s = NetSnapshotManifestV1::decode(&good).unwrap();
    std::fs::remove_file(out.join(&s.vms[1].snapshot)).unwrap();
    refused(&["resume", o_], 2, "VM 1's snapshot");
}
