//! `ttvm tui` end to end: the real binary in a real terminal (tmux), driven with keys and
//! read back with `tmux capture-pane`. Also: the terminal is restored on quit and on
//! SIGTERM, and traces that cannot be opened exit with ttvm's statuses.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{require_kvm, run, tempdir, text};

/// Runs `ttvm tui`, then shows its exit status and keeps the pane alive.
fn tui_cmd(trace: &Path) -> String {
    format!("'{}' tui '{}'; echo EXIT=$?; sleep 600", env!("CARGO_BIN_EXE_ttvm"), trace.display())
}

fn record(dir: &Path, kernel: &str, cmdline: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{kernel}.ttvm"));
    let o = run(&["record", kernel, "-q", "--cmdline", cmdline, "-o", p.to_str().unwrap_or_default()]);
    // The guest's own exit status passes through (13 for a panic); the trace must exist.
    assert!(p.exists() && o.status.code().is_some(), "{}", text(&o));
    p
}

/// The console pane's rows (the lower-left pane, below its title).
fn console_rows(screen: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    // Not drawn yet (capture-pane can catch a frame half written): no rows.
    let Some(top) = lines.iter().position(|l| l.contains("Console ·")) else { return Vec::new() };
    lines[top + 1..]
        .iter()
        .take_while(|l| l.starts_with('│') || l.starts_with('┃'))
        .map(|l| l.chars().skip(1).take_while(|&c| c != '│' && c != '┃').collect::<String>())
        .collect()
}

#[test]
fn threads_failure_jump_to_the_panic_and_read_it_in_the_console() {
    if !require_kvm("threads_failure_jump_to_the_panic_and_read_it_in_the_console") {
        return;
    }
    let dir = tempdir();
    // These knobs make the race lose an update deterministically (sample-kernels/README.md).
    let trace = record(dir.path(), "threads", "hz=1000 window=8 work=0 iters=20000");
    let t = Tmux::start(&tui_cmd(&trace));
    // The key bar is the last row drawn: once it is there, the whole frame is.
    let s = t.wait("the UI", |s| s.contains("end: panic (exit 13)") && s.contains("? help"));
    assert!(s.contains("icount 0 /"), "{s}");
    assert!(!console_rows(&s).iter().any(|l| l.contains("PANIC")), "nothing printed at icount 0:\n{s}");

    t.keys(&["/", "PANIC", "Enter"]);
    let s = t.wait("the panic in the console", |s| console_rows(s).iter().any(|l| l.starts_with("PANIC: lost update")));
    let line = console_rows(&s).into_iter().find(|l| l.starts_with("PANIC")).unwrap_or_default();
    assert!(line.contains("counter=") && line.contains("done=") && line.contains("threads/main.rs"), "{line}");
    // The cursor is where the line was printed: close to the end, not at it (the exit
    // follows), and the console shows nothing after it.
    let title = s.lines().next().unwrap_or_default();
    let (at, len) = title
        .split("icount ")
        .nth(1)
        .and_then(|r| {
            let mut it = r.split_whitespace();
            let at = it.next()?.parse::<u64>().ok()?;
            it.next();
            Some((at, it.next()?.parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no position in the title: {title}"));
    assert!(at < len && len - at < 2000, "panic printed at {at} of {len}");
    let last = console_rows(&s).into_iter().rev().find(|l| !l.trim().is_empty() && !l.contains('▏'));
    assert!(last.as_deref().is_some_and(|l| l.starts_with("PANIC")), "last console line {last:?}:\n{s}");

    // The end of the history: the guest's exit; then quit.
    t.keys(&["G"]);
    t.wait("the end", |s| s.contains(&format!("icount {len} / {len}")));
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    t.assert_restored();
}

/// A `ring3` recording on a real terminal: the user lane fills in, `u` jumps to where
/// user mode starts and the registers pane says so.
#[test]
fn user_mode_shows_on_the_timeline_and_u_jumps_to_it() {
    if !require_kvm("user_mode_shows_on_the_timeline_and_u_jumps_to_it") {
        return;
    }
    let dir = tempdir();
    let trace = record(dir.path(), "ring3", "spin=50");
    let t = Tmux::start(&tui_cmd(&trace));
    let s = t.wait("the user lane", |s| {
        s.contains("? help") && s.lines().any(|l| l.starts_with("│user ") && l.contains('▀'))
    });
    assert!(s.contains("Registers · ring 0, kernel"), "{s}");
    t.keys(&["u"]);
    t.wait("ring 3 at the cursor", |s| s.contains("Registers · ring 3, user"));
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    t.assert_restored();
}

#[test]
fn sigterm_restores_the_terminal() {
    if !require_kvm("sigterm_restores_the_terminal") {
        return;
    }
    let dir = tempdir();
    let trace = record(dir.path(), "hello", "");
    let t = Tmux::start(&tui_cmd(&trace));
    t.wait("the UI", |s| s.contains("end: exit 0") && s.contains("? help"));
    assert_eq!(t.var("alternate_on"), "1", "the UI is full-screen");
    let pid = t.ttvm_pid();
    let ok = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(ok.success());
    assert_eq!(t.wait_exit(), 128 + 15);
    t.assert_restored();
}

#[test]
fn closing_the_terminal_ends_the_ui() {
    if !require_kvm("closing_the_terminal_ends_the_ui") {
        return;
    }
    let dir = tempdir();
    let trace = record(dir.path(), "hello", "");
    let t = Tmux::start(&tui_cmd(&trace));
    t.wait("the UI", |s| s.contains("end: exit 0") && s.contains("? help"));
    let pid = t.ttvm_pid();
    // Closing the window closes the pty: reads return end-of-file from then on.
    t.tmux(&["kill-server"]);
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("Z") {
            break; // exited, not yet reaped
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "ttvm tui kept running after its terminal closed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn traces_that_cannot_be_opened_exit_with_ttvm_statuses() {
    let dir = tempdir();
    let junk = dir.path().join("junk.ttvm");
    std::fs::write(&junk, b"not a trace at all").expect("write");
    let o = run(&["tui", junk.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a ttvm trace"), "{}", text(&o));
    let o = run(&["tui", dir.path().join("missing.ttvm").to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn damaged_traces_and_missing_terminals_are_reported() {
    if !require_kvm("damaged_traces_and_missing_terminals_are_reported") {
        return;
    }
    let dir = tempdir();
    let trace = record(dir.path(), "hello", "");
    // Without a terminal: a clear message, not a garbled screen.
    let o = run(&["tui", trace.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs a terminal"), "{}", text(&o));
    // A flipped byte in the first events chunk: reported with its chunk and offset.
    let mut bytes = std::fs::read(&trace).expect("read");
    let t = ttvm_replay::trace::TraceFile::open(&trace).expect("open");
    let c = t.chunks.iter().find(|c| c.kind == ttvm_replay::trace::ChunkKind::Events).expect("events chunk");
    bytes[c.payload_start as usize + 3] ^= 0x40;
    let bad = dir.path().join("bad.ttvm");
    std::fs::write(&bad, &bytes).expect("write");
    let o = run(&["tui", bad.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("corrupted"), "{}", text(&o));
}
