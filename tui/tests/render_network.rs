//! The network view (`ttvm tui DIR`) drawn into ratatui's TestBackend over the committed
//! network recording `tests/traces/ping-retransmit` (ping and pong, a lost reply and its
//! retransmission). The view needs no replay: everything it shows comes from the manifest,
//! so these tests check it against the manifest's own frames and the consistency rule, not
//! against numbers copied from a run. Opening a VM's trace (Enter) replays, so that test
//! needs KVM.

mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use common::{key, require_kvm, rows, text};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;
use ttvm_replay::network::cut::Cut;
use ttvm_replay::network::manifest::NetworkManifestV1;
use ttvm_tui::event::ScriptedInput;
use ttvm_tui::network::event::NetLoopEnd;
use ttvm_tui::network::{run_views, NetSession, Network};

const W: u16 = 150;
const H: u16 = 45;

fn recording() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/traces/ping-retransmit")
}

fn open() -> NetSession {
    NetSession::new(Network::open(&recording()).expect("the committed network recording opens"))
}

fn draw(s: &mut NetSession) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(W, H)).expect("terminal");
    term.draw(|f| s.render(f)).expect("draw");
    term.backend().buffer().clone()
}

/// The cut is consistent (no frame received inside it that is sent outside it), and its
/// frames in flight are exactly those sent inside it and received outside it (or never).
fn assert_consistent(m: &NetworkManifestV1, cut: &Cut) {
    let pos = &cut.positions;
    let mut flying = Vec::new();
    for f in &m.frames {
        let sent = f.sent_at < pos[f.from as usize];
        for d in &f.to {
            let received = d.at.is_some_and(|at| at < pos[d.vm as usize]);
            assert!(
                !received || sent,
                "frame {} received by VM {} inside the cut {pos:?} but sent after it",
                f.id,
                d.vm
            );
            if sent && !received {
                flying.push((f.id, d.vm));
            }
        }
    }
    let listed: Vec<(u64, u32)> = cut.in_flight.iter().map(|x| (x.frame, x.to)).collect();
    assert_eq!(listed, flying, "frames in flight at {pos:?}");
}

/// The number after `label` after `line_has` on the screen's line that contains it.
fn number_after(screen: &str, line_has: &str, label: &str) -> u64 {
    let line = screen.lines().find(|l| l.contains(line_has)).unwrap_or_else(|| panic!("no {line_has:?}:\n{screen}"));
    // The panes share rows: read only what follows `line_has`.
    let after = line.split(line_has).nth(1).unwrap_or_default();
    let rest = after.split(label).nth(1).unwrap_or_else(|| panic!("no {label:?} in {line}"));
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn both_vms_are_drawn_on_one_scale_with_their_frames_as_arrows() {
    let mut s = open();
    let m = s.net.manifest.clone();
    assert_eq!(m.vms.len(), 2);
    let b = draw(&mut s);
    let screen = text(&b);
    for vm in &m.vms {
        assert!(screen.contains(&vm.name), "lane of {}:\n{screen}", vm.name);
    }
    // Every frame has an arrow head at its receiver (or × if never received).
    let heads = screen.matches(['▼', '▲']).count();
    assert!(heads > 0, "no arrow heads:\n{screen}");
    if m.frames.iter().any(|f| f.to.iter().any(|d| d.at.is_none())) {
        assert!(screen.contains('×'), "a frame never received is drawn with ×:\n{screen}");
    }
    assert!(screen.contains("Cut through VM 0 @ 0"), "{screen}");
    assert!(rows(&b).last().is_some_and(|l| l.contains("help") && l.contains("quit")), "the key bar:\n{screen}");
}

#[test]
fn moving_one_vm_moves_the_other_to_the_consistent_cut() {
    let mut s = open();
    let m = s.net.manifest.clone();
    // Jump VM 0 from frame to frame through its whole history, then VM 1 backwards.
    let mut seen = 0;
    loop {
        let before = s.app.cursor();
        s.key(key(KeyCode::Char(']')));
        if s.app.cursor() == before {
            break;
        }
        seen += 1;
        assert_eq!(s.app.anchor, (0, s.app.cursor()));
        assert_consistent(&m, &s.app.cut);
        // The panes say where both VMs are.
        let screen = text(&draw(&mut s));
        assert_eq!(number_after(&screen, "VM 0 ping", "@"), s.app.cut.positions[0], "{screen}");
        assert_eq!(number_after(&screen, "VM 1 pong", "@"), s.app.cut.positions[1], "{screen}");
        let flying = s.app.cut.in_flight.len();
        if flying > 0 {
            assert!(screen.contains(&format!("{flying} in flight at the cut")), "{screen}");
        } else {
            assert!(screen.contains("no frame in flight at the cut"), "{screen}");
        }
    }
    let sends_and_receptions: usize = m
        .frames
        .iter()
        .map(|f| usize::from(f.from == 0) + f.to.iter().filter(|d| d.vm == 0 && d.at.is_some()).count())
        .sum();
    assert!(seen >= sends_and_receptions.min(2) && seen > 0, "{seen} frame points of VM 0");

    // Some point of ping's history must hold pong back: pong is then before its end.
    s.key(key(KeyCode::Home));
    let mut held_back = false;
    for _ in 0..seen {
        s.key(key(KeyCode::Char(']')));
        held_back |= s.app.cut.positions[1] < m.vms[1].steps;
    }
    assert!(held_back, "moving ping never moved pong");

    // Select pong (Tab) and move it: ping follows, and the cut goes through pong now.
    s.key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    assert_eq!(s.app.selected, 1);
    s.key(key(KeyCode::End));
    assert_eq!(s.app.cursor(), m.vms[1].steps);
    for _ in 0..3 {
        s.key(key(KeyCode::Char('[')));
        assert_eq!(s.app.anchor.0, 1);
        assert_consistent(&m, &s.app.cut);
    }
    // Shift+← moves 1000 steps.
    let c = s.app.cursor();
    s.key(KeyEvent::new(KeyCode::Left, KeyModifiers::SHIFT));
    assert_eq!(s.app.cursor(), c.saturating_sub(1000));
    assert_consistent(&m, &s.app.cut);
}

#[test]
fn goto_prompt_help_and_bad_input() {
    let mut s = open();
    let m = s.net.manifest.clone();
    let target = m.vms[0].steps / 2;
    s.key(key(KeyCode::Char('g')));
    for c in target.to_string().chars() {
        s.key(key(KeyCode::Char(c)));
    }
    s.key(key(KeyCode::Enter));
    assert_eq!(s.app.cursor(), target);
    assert_consistent(&m, &s.app.cut);
    // An icount past the end is clamped by the prompt's rule or refused with a message,
    // never a panic or a wrong cut.
    s.key(key(KeyCode::Char('g')));
    for c in "zzz".chars() {
        s.key(key(KeyCode::Char(c)));
    }
    s.key(key(KeyCode::Enter));
    assert_eq!(s.app.cursor(), target, "a bad icount moves nothing");
    assert!(s.app.status.is_some(), "and says why");
    // j / k select the next / previous VM, as ↓ / ↑ and the help say; the cut stays.
    let cut = s.app.cut.clone();
    s.key(key(KeyCode::Char('j')));
    assert_eq!(s.app.selected, 1);
    s.key(key(KeyCode::Char('k')));
    assert_eq!(s.app.selected, 0);
    assert_eq!(s.app.cut, cut, "selecting moves nothing");
    s.key(key(KeyCode::Char('9')));
    assert_eq!(s.app.selected, 0, "there is no VM 9");
    assert!(s.app.status.as_deref().is_some_and(|t| t.contains("no VM 9")), "{:?}", s.app.status);

    s.key(key(KeyCode::Char('?')));
    let screen = text(&draw(&mut s));
    assert!(screen.contains("network view keys") && screen.contains("consistent cut"), "{screen}");
    assert!(screen.contains("(j / k)"), "the help names j / k:\n{screen}");
    s.key(key(KeyCode::Char('x')));
    assert!(!text(&draw(&mut s)).contains("network view keys"), "any key closes the help");

    let not_a_recording = Network::open(Path::new(env!("CARGO_MANIFEST_DIR")));
    let e = not_a_recording.expect_err("a directory without a manifest");
    assert!(e.to_string().contains("not a network recording"), "{e}");
}

/// Enter opens the selected VM's trace in the single-trace view at its cursor (a replay);
/// `q` there comes back to the network view with that VM where it was left.
#[test]
fn enter_opens_the_vm_trace_and_q_comes_back() {
    if !require_kvm("enter_opens_the_vm_trace_and_q_comes_back") {
        return;
    }
    let mut s = open();
    s.key(key(KeyCode::Char(']')));
    let at = s.app.cursor();
    let k = |c| Event::Key(key(c));
    // Enter opens VM 0 at `at`; Shift+→ moves there 1000 steps on; q comes back; q quits.
    let keys = VecDeque::from([
        k(KeyCode::Enter),
        Event::Key(KeyEvent::new(KeyCode::Right, KeyModifiers::SHIFT)),
        k(KeyCode::Char('q')),
        k(KeyCode::Char('q')),
    ]);
    let mut term = Terminal::new(TestBackend::new(W, H)).expect("terminal");
    let end = run_views(&mut term, &mut s, &mut ScriptedInput(keys), &|| None, true).expect("the views run");
    assert_eq!(end, NetLoopEnd::Quit);
    assert_eq!(s.app.selected, 0);
    assert_eq!(s.app.cursor(), at + 1000, "back at the single-trace view's cursor");
    assert!(s.app.status.as_deref().is_some_and(|t| t.contains("back from VM 0")), "{:?}", s.app.status);
    assert_consistent(&s.net.manifest.clone(), &s.app.cut);
}
