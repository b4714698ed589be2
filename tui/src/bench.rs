//! Measurements for docs/PERFORMANCE.md: frame render time, and keypress-to-screen latency
//! (handling the key, the replay it starts, reading the machine and drawing the frame) for
//! single steps and whole-trace jumps. Drawn into a `TestBackend` of a typical terminal size,
//! so the numbers exclude only the terminal's own write of the changed cells.
//!
//! The benchmark harness (`ttvm-bench`, run by `scripts/bench.sh`) calls [`measure`] and
//! computes the statistics.

use std::path::Path;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use crate::error::TuiError;
use crate::session::Session;

/// The samples of one timed interaction (statistics are the harness's: `ttvm-bench`).
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    /// What was timed.
    pub what: String,
    /// Each time it took.
    pub times: Vec<Duration>,
}

impl Samples {
    fn of(what: &str, times: Vec<Duration>) -> Self {
        Self { what: what.into(), times }
    }
}

/// The measurements.
#[derive(Clone, Debug)]
pub struct Report {
    /// Trace length in steps.
    pub length: u64,
    /// Terminal size used.
    pub size: (u16, u16),
    /// One entry per interaction.
    pub samples: Vec<Samples>,
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn draw(term: &mut Terminal<TestBackend>, s: &mut Session) -> Result<(), TuiError> {
    term.draw(|f| s.render(f)).map_err(|e| TuiError::Terminal(std::io::Error::other(e.to_string())))?;
    Ok(())
}

/// Keypress to drawn frame.
fn latency(term: &mut Terminal<TestBackend>, s: &mut Session, keys: &[KeyEvent]) -> Result<Duration, TuiError> {
    let t = Instant::now();
    for &k in keys {
        s.press(k);
    }
    draw(term, s)?;
    Ok(t.elapsed())
}

/// Opens `path` and measures; `reps` samples each.
pub fn measure(path: &Path, size: (u16, u16), reps: usize) -> Result<Report, TuiError> {
    let mut s = Session::open(path, None)?;
    let mut term = Terminal::new(TestBackend::new(size.0, size.1))
        .map_err(|e| TuiError::Terminal(std::io::Error::other(e.to_string())))?;
    let length = s.info.length;
    // Half way between the two checkpoints around the middle: a typical jump replays half a
    // checkpoint interval (landing on a checkpoint would replay nothing).
    let cps = &s.info.checkpoints;
    let k = cps.partition_point(|&c| c <= length / 2);
    let (lo, hi) = (cps.get(k.saturating_sub(1)).copied().unwrap_or(0), cps.get(k).copied().unwrap_or(length));
    let mid = (lo + hi) / 2;
    let mut samples = Vec::new();
    let goto = |t: u64| -> Vec<KeyEvent> {
        let mut v = vec![key(KeyCode::Char('g'))];
        v.extend(t.to_string().chars().map(|c| key(KeyCode::Char(c))));
        v.push(key(KeyCode::Enter));
        v
    };

    // Cold jumps first: nothing cached yet.
    samples.push(Samples::of(
        "jump start -> end (G), cold",
        vec![latency(&mut term, &mut s, &[key(KeyCode::Char('G'))])?],
    ));
    samples.push(Samples::of("jump end -> middle (g), cold", vec![latency(&mut term, &mut s, &goto(mid))?]));

    let mut frames = Vec::new();
    for _ in 0..reps.max(1) * 4 {
        let t = Instant::now();
        // A fresh terminal each time, so every frame is drawn in full (no diffing shortcut).
        term.clear().map_err(|e| TuiError::Terminal(std::io::Error::other(e.to_string())))?;
        draw(&mut term, &mut s)?;
        frames.push(t.elapsed());
    }
    samples.push(Samples::of("frame render (full redraw)", frames));

    let mut fwd = Vec::new();
    let mut back = Vec::new();
    for _ in 0..reps {
        fwd.push(latency(&mut term, &mut s, &[key(KeyCode::Right)])?);
    }
    for _ in 0..reps {
        back.push(latency(&mut term, &mut s, &[key(KeyCode::Left)])?);
    }
    samples.push(Samples::of("step forward (→)", fwd));
    samples.push(Samples::of("step back (←)", back));

    let mut big = Vec::new();
    for _ in 0..reps.min(10) {
        big.push(latency(&mut term, &mut s, &[KeyEvent::new(KeyCode::Left, KeyModifiers::SHIFT)])?);
    }
    samples.push(Samples::of("1000 steps back (Shift+←)", big));

    let (mut to_end, mut to_start, mut to_mid) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps.min(5) {
        to_end.push(latency(&mut term, &mut s, &[key(KeyCode::Char('G'))])?);
        to_start.push(latency(&mut term, &mut s, &[key(KeyCode::Char('0'))])?);
        to_mid.push(latency(&mut term, &mut s, &goto(mid))?);
    }
    samples.push(Samples::of("jump to end (G), warm", to_end));
    samples.push(Samples::of("jump end -> start (0), warm", to_start));
    samples.push(Samples::of("jump start -> middle (g), warm", to_mid));
    Ok(Report { length, size, samples })
}
