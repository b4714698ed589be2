//! `ttvm tui DIR` on a network recording, end to end: the real binary in a real terminal
//! (tmux) on the committed `tests/traces/ping-retransmit`, driven with keys and read back
//! with `tmux capture-pane`. The cursors it shows are checked against the manifest's
//! consistent cut (`consistent_cut`, the rule `ttvm snapshot --at` and gdb's `monitor goto`
//! use) and against the cut's defining property. Bad directories exit with ttvm's statuses.

mod common;

use std::path::{Path, PathBuf};

use common::tmux::Tmux;
use common::{run, tempdir, text};
use ttvm_replay::network::cut::consistent_cut;
use ttvm_replay::network::manifest::{NetworkManifestV1, MANIFEST_FILE};

fn recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces/ping-retransmit")
}

fn manifest() -> NetworkManifestV1 {
    let bytes = std::fs::read(recording().join(MANIFEST_FILE)).expect("the committed manifest");
    NetworkManifestV1::decode(&bytes).expect("it decodes")
}

/// VM `vm`'s position as the cut pane shows it (`VM 1 pong     @ 1234 / 5678 (…)`; the
/// frames pane shares its rows, so only what follows the VM's name counts).
fn shown_position(screen: &str, m: &NetworkManifestV1, vm: usize) -> Option<u64> {
    let label = format!("VM {vm} {}", m.vms[vm].name);
    let after = screen.lines().find_map(|l| l.split(&label).nth(1).filter(|r| r.trim_start().starts_with('@')))?;
    after.trim_start().trim_start_matches('@').split_whitespace().next()?.parse().ok()
}

/// The point the cut goes through, from the cut pane's title (`Cut through VM 0 @ 1234`).
fn shown_anchor(screen: &str) -> Option<(usize, u64)> {
    let rest = screen.split("Cut through VM ").nth(1)?;
    let mut it = rest.split_whitespace();
    let vm = it.next()?.parse().ok()?;
    it.next();
    Some((vm, it.next()?.parse().ok()?))
}

#[test]
fn moving_ping_moves_pong_to_the_consistent_cut_in_a_real_terminal() {
    let m = manifest();
    let cmd = format!("'{}' tui '{}'; echo EXIT=$?; sleep 600", env!("CARGO_BIN_EXE_ttvm"), recording().display());
    let t = Tmux::start(&cmd);
    let s = t.wait("the network view", |s| s.contains("Cut through VM 0 @ 0") && s.contains("open VM"));
    for vm in &m.vms {
        assert!(s.contains(&vm.name), "{}'s lane:\n{s}", vm.name);
    }
    assert!(s.contains('▼') || s.contains('▲'), "frames drawn as arrows:\n{s}");

    // Frame by frame through ping's history: every time, pong is where the cut puts it.
    let mut held_back = false;
    let mut previous = 0;
    for _ in 0..6 {
        t.keys(&["]"]);
        let s = t.wait("ping to move to its next frame", |s| shown_anchor(s).is_some_and(|(_, at)| at > previous));
        let (vm, at) = shown_anchor(&s).unwrap_or_default();
        assert_eq!(vm, 0, "{s}");
        previous = at;
        let cut = consistent_cut(&m, 0, at).expect("a cut");
        assert_eq!(shown_position(&s, &m, 0), Some(at), "{s}");
        assert_eq!(shown_position(&s, &m, 1), Some(cut.positions[1]), "pong at the cut through ping @ {at}:\n{s}");
        held_back |= cut.positions[1] < m.vms[1].steps;
        // No frame pong has received by then is sent by ping after `at`.
        for f in m.frames.iter().filter(|f| f.from == 0) {
            let inside = f.to.iter().any(|d| d.vm == 1 && d.at.is_some_and(|r| r < cut.positions[1]));
            assert!(!inside || f.sent_at < at, "frame {} received before the cut, sent after it", f.id);
        }
    }
    assert!(held_back, "moving ping held pong back at least once");

    // Select pong and send it to its end: ping follows to the cut through pong's end.
    t.keys(&["Tab"]);
    t.keys(&["End"]);
    let end = m.vms[1].steps;
    let s = t.wait("pong at its end", |s| shown_anchor(s) == Some((1, end)));
    let cut = consistent_cut(&m, 1, end).expect("a cut");
    assert_eq!(shown_position(&s, &m, 0), Some(cut.positions[0]), "{s}");

    t.keys(&["?"]);
    t.wait("the help", |s| s.contains("network view keys"));
    t.keys(&["Escape"]);
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    t.assert_restored();
}

#[test]
fn directories_that_are_not_recordings_exit_with_ttvm_statuses() {
    let dir = tempdir();
    // No manifest: not a network recording, and not a trace either.
    let o = run(&["tui", dir.path().to_str().unwrap_or_default()]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{}", text(&o));
    // A damaged manifest: refused before the terminal is touched.
    std::fs::write(dir.path().join(MANIFEST_FILE), b"not a manifest").expect("write");
    let o = run(&["tui", dir.path().to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("network manifest"), "{}", text(&o));
    // A manifest whose VM trace is missing.
    let good = std::fs::read(recording().join(MANIFEST_FILE)).expect("read");
    std::fs::write(dir.path().join(MANIFEST_FILE), good).expect("write");
    let o = run(&["tui", dir.path().to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is missing"), "{}", text(&o));
    // --symbols applies to one trace, not to a network.
    let o = run(&["tui", recording().to_str().unwrap_or_default(), "--symbols", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
