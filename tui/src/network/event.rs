//! The network view's loop: draw, wait for a key, handle it. Nothing runs in the
//! background (positions come from the manifest), so there is no work between keys.
//! Generic over the backend and the input, like the single-trace loop, so tests drive it
//! with a `TestBackend` and scripted keys.

use std::time::Duration;

use ratatui::backend::Backend;
use ratatui::Terminal;

use super::app::NetAction;
use super::NetSession;
use crate::error::TuiError;
use crate::event::Input;

/// How long the loop waits for input before looking at signals again.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetLoopEnd {
    /// The user quit.
    Quit,
    /// A signal asked the process to stop.
    Signal(i32),
    /// Scripted input ran out (tests).
    InputEnded,
    /// The user asked to open a VM's trace at an icount.
    Open {
        /// The VM.
        vm: usize,
        /// Where.
        icount: u64,
    },
}

/// Draws the view once.
pub fn draw<B: Backend>(terminal: &mut Terminal<B>, s: &mut NetSession) -> Result<(), TuiError> {
    terminal.draw(|f| s.render(f)).map_err(|e| TuiError::Terminal(std::io::Error::other(e.to_string())))?;
    Ok(())
}

/// Runs the view until the user quits or opens a VM, a signal arrives, or scripted input
/// ends (when `stop_when_idle`).
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    s: &mut NetSession,
    input: &mut dyn Input,
    signal: &dyn Fn() -> Option<i32>,
    stop_when_idle: bool,
) -> Result<NetLoopEnd, TuiError> {
    loop {
        if let Some(sig) = signal() {
            return Ok(NetLoopEnd::Signal(sig));
        }
        draw(terminal, s)?;
        match input.next(IDLE_POLL)? {
            Some(ev) => match s.handle(&ev) {
                NetAction::None => {}
                NetAction::Quit => return Ok(NetLoopEnd::Quit),
                NetAction::Open { vm, icount } => return Ok(NetLoopEnd::Open { vm, icount }),
            },
            None if stop_when_idle => return Ok(NetLoopEnd::InputEnded),
            None => {}
        }
    }
}
