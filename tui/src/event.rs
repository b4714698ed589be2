//! The event loop: draw, then either work on the operation in progress for one slice (and
//! read any keys that arrived, so Esc cancels) or wait for input. Generic over the ratatui
//! backend and the input source, so tests drive it with a `TestBackend` and scripted keys.

use std::time::Duration;

use crossterm::event::Event;
use ratatui::backend::Backend;
use ratatui::Terminal;

use crate::driver::SLICE;
use crate::error::TuiError;
use crate::session::{Flow, Session};

/// How long the idle loop waits for input before looking at signals again.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Where input comes from.
pub trait Input {
    /// The next event, waiting at most `timeout` (None: nothing arrived).
    fn next(&mut self, timeout: Duration) -> Result<Option<Event>, TuiError>;
}

/// The real terminal.
#[derive(Debug, Default)]
pub struct CrosstermInput;

/// Waits up to `timeout` for stdin: Ok(true) when it is readable, Ok(false) on timeout, an
/// error when the terminal hung up (its pty was closed: reads would return end-of-file
/// forever, and crossterm would spin on them).
fn wait_stdin(timeout: Duration) -> Result<bool, TuiError> {
    let mut p = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd on fd 0.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(TuiError::Terminal(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the terminal hung up")));
    }
    Ok(n > 0)
}

impl Input for CrosstermInput {
    fn next(&mut self, timeout: Duration) -> Result<Option<Event>, TuiError> {
        // Events crossterm already has (a burst read earlier, a resize) come first.
        // The zero-time poll of fd 0 is there to notice a hang-up before crossterm spins on it.
        wait_stdin(Duration::ZERO)?;
        if crossterm::event::poll(Duration::ZERO)? {
            return Ok(Some(crossterm::event::read()?));
        }
        if wait_stdin(timeout)? && crossterm::event::poll(Duration::ZERO)? {
            return Ok(Some(crossterm::event::read()?));
        }
        Ok(None)
    }
}

/// Scripted input (tests): the events in order, then `None` forever. Keys are typed when
/// the UI waits for input, except Esc, which is also typed while an operation runs (that is
/// what Esc is for), so a script is not at the mercy of how long operations take.
#[derive(Debug, Default)]
pub struct ScriptedInput(pub std::collections::VecDeque<Event>);

impl Input for ScriptedInput {
    fn next(&mut self, timeout: Duration) -> Result<Option<Event>, TuiError> {
        let esc = matches!(self.0.front(), Some(Event::Key(k)) if k.code == crossterm::event::KeyCode::Esc);
        if timeout.is_zero() && !esc {
            return Ok(None);
        }
        Ok(self.0.pop_front())
    }
}

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopEnd {
    /// The user quit.
    Quit,
    /// A signal (SIGINT, SIGTERM, SIGHUP) asked the process to stop.
    Signal(i32),
    /// Scripted input ran out (tests).
    InputEnded,
}

fn draw<B: Backend>(terminal: &mut Terminal<B>, s: &mut Session) -> Result<(), TuiError> {
    terminal.draw(|f| s.render(f)).map_err(|e| TuiError::Terminal(std::io::Error::other(e.to_string())))?;
    Ok(())
}

/// Runs the UI until the user quits, a signal arrives (`signal` returns it), or scripted
/// input ends (when `stop_when_idle`).
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    s: &mut Session,
    input: &mut dyn Input,
    signal: &dyn Fn() -> Option<i32>,
    stop_when_idle: bool,
) -> Result<LoopEnd, TuiError> {
    loop {
        if let Some(sig) = signal() {
            return Ok(LoopEnd::Signal(sig));
        }
        s.poll_background();
        draw(terminal, s)?;
        if s.busy() {
            s.work(SLICE);
            // Keys that came in meanwhile: Esc cancels, q quits; the rest wait.
            while let Some(ev) = input.next(Duration::ZERO)? {
                if s.handle(&ev) == Flow::Quit {
                    return Ok(LoopEnd::Quit);
                }
            }
            continue;
        }
        match input.next(IDLE_POLL)? {
            Some(ev) if s.handle(&ev) == Flow::Quit => return Ok(LoopEnd::Quit),
            Some(_) => {}
            None if stop_when_idle => return Ok(LoopEnd::InputEnded),
            None => {}
        }
    }
}
