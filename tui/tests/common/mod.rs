//! Helpers of the UI's integration tests: reading a TestBackend screen and driving keys;
//! KVM gating, recording and trace editing are the test-support crate's.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use ttvm_test_support::{record_sample, require_kvm, rewrite_events, tempdir};

use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;
use ttvm_tui::Session;

/// A `timer` trace recorded once per test binary (every test only reads it), under the
/// target's temporary directory.
pub fn timer_trace() -> PathBuf {
    static TRACE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TRACE
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tui-tests-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("trace directory");
            record_sample(&dir, "timer", "", 100_000, ttvm_vmm::machine::DEFAULT_MEM_SIZE, Some(50_000_000)).0
        })
        .clone()
}

pub fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

pub fn shift(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::SHIFT)
}

/// Types a prompt key, the text and Enter, and waits for what it started.
pub fn prompt(s: &mut Session, prompt: char, text: &str) {
    s.press(key(KeyCode::Char(prompt)));
    for c in text.chars() {
        s.press(key(KeyCode::Char(c)));
    }
    s.press(key(KeyCode::Enter));
}

/// Draws the session into a `w`x`h` TestBackend.
pub fn draw(s: &mut Session, w: u16, h: u16) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    term.draw(|f| s.render(f)).expect("draw");
    term.backend().buffer().clone()
}

/// The buffer's rows as strings.
pub fn rows(b: &Buffer) -> Vec<String> {
    (0..b.area.height).map(|y| (0..b.area.width).map(|x| b[(x, y)].symbol()).collect::<String>()).collect()
}

/// The whole screen as text.
pub fn text(b: &Buffer) -> String {
    rows(b).join("\n")
}
