//! User mode on the timeline: over a trace of the `ring3` kernel, which goes back and forth
//! between ring 0 and ring 3, the background search fills the "user" lane, `u`/`U` jump
//! between the switches, and the registers pane says which ring the cursor is in. Checked
//! against the stretches `ttvm_replay::privilege::user_spans` finds on its own.

mod common;

use std::rc::Rc;

use common::{draw, key, require_kvm, rows, shift, tempdir};
use crossterm::event::KeyCode;
use ttvm_replay::recording::Recording;
use ttvm_tui::Session;

const W: u16 = 150;
const H: u16 = 45;

#[test]
fn user_mode_is_marked_and_u_jumps_between_rings() {
    if !require_kvm("user_mode_is_marked_and_u_jumps_between_rings") {
        return;
    }
    let dir = tempdir();
    let (path, _) = ttvm_test_support::record_sample(dir.path(), "ring3", "spin=50", 5_000, 64 << 20, None);
    let rec = Rc::new(Recording::open(&path).expect("open"));
    let host = ttvm_replay::stepping::host_signature();
    let want = ttvm_replay::privilege::user_spans(rec, &host, |_, _| {}, || false).expect("spans");
    assert!(want.len() > 2, "{want:?}");

    let mut s = Session::open(&path, None).expect("open");
    s.wait_background();
    assert!(s.app.user_scan_done);
    assert_eq!(s.app.user_spans, want);
    let lines = rows(&draw(&mut s, W, H));
    let user = lines.iter().find(|l| l.starts_with("│user ")).expect("the user lane").clone();
    assert!(user.contains('▀'), "{user}");
    assert!(lines.iter().any(|l| l.contains("user mode (u/U)")), "the legend names it");
    assert!(lines.iter().any(|l| l.contains("Registers · ring 0, kernel")), "{}", lines.join("\n"));

    // u: to where user mode starts, then to where it ends.
    s.press(key(KeyCode::Char('u')));
    assert_eq!(s.app.cursor, want[0].0);
    assert!(rows(&draw(&mut s, W, H)).iter().any(|l| l.contains("Registers · ring 3, user")));
    s.press(key(KeyCode::Char('u')));
    assert_eq!(s.app.cursor, want[0].1);
    assert!(rows(&draw(&mut s, W, H)).iter().any(|l| l.contains("Registers · ring 0, kernel")));
    // U: back to the start of that stretch.
    s.press(shift(KeyCode::Char('U')));
    assert_eq!(s.app.cursor, want[0].0);
    // Past the last switch: a message, no move.
    s.press(shift(KeyCode::Char('G')));
    let end = s.app.cursor;
    s.press(key(KeyCode::Char('u')));
    assert_eq!(s.app.cursor, end);
    assert!(s.app.status.as_deref().is_some_and(|m| m.contains("no later switch")), "{:?}", s.app.status);
}
