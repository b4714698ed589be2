//! ttvm's terminal UI: `ttvm tui FILE` opens a recorded trace full-screen to scrub the whole
//! run: a timeline bar with the run's events, registers, disassembly with symbols and source
//! lines, the serial console as of the cursor, the event list, and memory.
//!
//! Structure (ratatui's app/ui/event split, so all of it but the terminal is testable):
//! - [`app`]: pure UI state; keys and mouse events become [`app::Action`]s.
//! - [`driver`]: carries actions out on the replay [`Timeline`](ttvm_replay::timeline::Timeline)
//!   (the same one gdb uses), in time slices ([`slicer`]) so long seeks and runs show
//!   progress and Esc cancels them. Runs to breakpoints and watchpoints are the timeline's
//!   own resumable runs; [`stops`] is the numbered list of them the screen shows.
//! - [`view`]: what the panes show of the machine, read once per move.
//! - [`ui`]: one widget per pane; [`event`]: the loop, generic over the backend;
//!   [`terminal`]: full-screen mode and its restoration on exit, panic and signals.
//! - [`trace_info`], [`symbols`], [`parse`]: the trace indexed, the kernel's ELF symbols and
//!   DWARF lines, and what prompts accept.
//! - [`network`]: `ttvm tui DIR` on a network recording: the VMs' timelines stacked with
//!   the frames as arrows, cursors kept at the consistent cut (from the manifest alone).

pub mod app;
pub mod bench;
pub mod driver;
pub mod error;
pub mod event;
pub mod network;
pub mod parse;
pub mod session;
pub mod slicer;
pub mod stops;
pub mod symbols;
pub mod terminal;
pub mod trace_info;
pub mod ui;
pub mod user_mode_scan;
pub mod view;

use std::path::Path;

pub use error::TuiError;
pub use session::Session;

/// How a UI session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuiExit {
    /// The user quit.
    Quit,
    /// A signal stopped it (the terminal was restored).
    Signal(i32),
}

/// Opens `path` and runs the UI on the process's terminal until the user quits.
///
/// The trace is opened (and the machine built) before the terminal is touched, so a trace
/// that cannot be replayed fails with a plain error on stderr.
pub fn run_tui(path: &Path, symbols: Option<&ttvm_vmm::symbols::SymbolTable>) -> Result<TuiExit, TuiError> {
    let mut session = Session::open(path, symbols)?;
    terminal::run_full_screen(|term| {
        let end = event::run_loop(term, &mut session, &mut event::CrosstermInput, &terminal::pending_signal, false)?;
        Ok(match end {
            event::LoopEnd::Signal(s) => Some(s),
            event::LoopEnd::Quit | event::LoopEnd::InputEnded => None,
        })
    })
}
