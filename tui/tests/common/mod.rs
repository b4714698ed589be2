//! Helpers shared by the UI's integration tests: KVM gating (as the workspace's own
//! `tests/common`), recording a sample kernel through the library, reading a TestBackend
//! screen, and rewriting a trace's events so only replay can notice.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;
use ttvm_replay::events::{encode, Decoder, Event};
use ttvm_replay::record::{RecordEnd, RecordOptions, RecordSession};
use ttvm_replay::trace::{ChunkKind, TraceFile};
use ttvm_tui::Session;
use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::machine::MachineConfig;

/// Whether KVM tests should run. Without /dev/kvm they fail with a clear message, unless
/// `TTVM_SKIP_KVM=1` asks to skip them, which is announced loudly.
pub fn require_kvm(test: &str) -> bool {
    if std::env::var("TTVM_SKIP_KVM").is_ok_and(|v| v == "1") {
        eprintln!("########## SKIPPED {test}: TTVM_SKIP_KVM=1 is set; this KVM test did not run ##########");
        return false;
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        panic!("{test} needs /dev/kvm, which cannot be opened ({e}). Run on a host with KVM, or set TTVM_SKIP_KVM=1 to skip KVM tests explicitly.");
    }
    true
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Records sample kernel `name` with `cmdline` into `dir/name.ttvm` (icount clock, so the
/// trace is the same every time).
pub fn record(dir: &Path, name: &str, cmdline: &str, checkpoint_every: u64) -> PathBuf {
    let k = ttvm_sample_kernels::get(name).unwrap_or_else(|| panic!("no sample kernel {name}"));
    let out = dir.join(format!("{name}.ttvm"));
    let options = RecordOptions {
        clock: ttvm_replay::clock::ClockMode::Icount,
        checkpoint_every,
        kernel_name: name.into(),
        stepping: ttvm_replay::stepping::host_signature(),
    };
    let config = MachineConfig::new(k.elf.to_vec(), cmdline);
    let mut s = RecordSession::start(config, &out, options, ConsoleOutput::Discard, ConsoleInput::none())
        .expect("start recording");
    let end = s.run(Some(50_000_000), &AtomicBool::new(false), 0, |_| {}).expect("record");
    assert!(matches!(end, RecordEnd::Guest(_)), "{name} did not stop by itself: {end:?}");
    s.finish(&end).expect("finish trace");
    out
}

/// A `timer` trace recorded once per test binary (every test only reads it), under the
/// target's temporary directory.
pub fn timer_trace() -> PathBuf {
    static TRACE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TRACE
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tui-tests-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("trace directory");
            record(&dir, "timer", "", 100_000)
        })
        .clone()
}

/// Rewrites `src` into `dst` with `edit` applied to the first event it accepts, keeping
/// checksums valid, so only replay can notice.
pub fn rewrite_events(src: &Path, dst: &Path, mut edit: impl FnMut(&mut Event) -> bool) {
    let t = TraceFile::open(src).expect("open trace");
    let mut w = ttvm_replay::trace::TraceWriter::create(dst, &t.header).expect("create trace");
    let mut edited = false;
    for c in &t.chunks {
        let raw = t.payload(c).expect("payload").into_owned();
        let raw = if c.kind == ChunkKind::Events && !edited {
            let base = u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes"));
            let mut d = Decoder::new(&raw[20..], base);
            let mut events = Vec::new();
            while let Some(e) = d.next_event().expect("decode") {
                events.push(e);
            }
            let mut out = raw[..20].to_vec();
            let mut prev = base;
            for e in &mut events {
                if !edited && edit(e) {
                    edited = true;
                }
                encode(&mut out, e, prev);
                prev = e.icount;
            }
            out
        } else {
            raw
        };
        if c.kind == ChunkKind::End {
            let end: ttvm_replay::trace::EndRecord = bincode::deserialize(&raw).expect("end record");
            w.finish(&end).expect("finish");
        } else {
            w.write_chunk(c.kind, &raw, true).expect("write chunk");
        }
    }
    assert!(edited, "nothing to edit");
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
