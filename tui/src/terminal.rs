//! Putting the terminal into full-screen mode and always getting it back: on a normal exit
//! (the guard's Drop), on a panic (a hook that restores before the panic message prints) and
//! on SIGINT/SIGTERM/SIGHUP (a flag the loop checks; a second signal restores from the
//! handler itself and exits, in case the loop is stuck).

use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static SAVED_TERMIOS: OnceLock<libc::termios> = OnceLock::new();

/// Mouse reporting off, main screen back, cursor shown: what Drop does, as raw bytes for the
/// signal handler (which may only make async-signal-safe calls).
const RESTORE: &[u8] = b"\x1b[?1006l\x1b[?1015l\x1b[?1003l\x1b[?1002l\x1b[?1000l\x1b[?1049l\x1b[?25h";

extern "C" fn on_signal(sig: libc::c_int) {
    if SIGNAL.swap(sig, Ordering::SeqCst) != 0 {
        // Second signal: the loop did not get to it. Restore and leave from here.
        // SAFETY: write, tcsetattr and _exit are async-signal-safe; the termios was saved
        // before the handler was installed and is only read.
        unsafe {
            libc::write(libc::STDOUT_FILENO, RESTORE.as_ptr().cast(), RESTORE.len());
            if let Some(t) = SAVED_TERMIOS.get() {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t);
            }
            libc::_exit(128 + sig);
        }
    }
}

/// Installs the signal handlers; `pending_signal` then reports a signal that arrived.
pub fn install_signal_handlers() {
    // SAFETY: tcgetattr writes into a zeroed termios we own; the handler only touches
    // atomics and async-signal-safe calls.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(libc::STDIN_FILENO, &mut t) == 0 {
            let _ = SAVED_TERMIOS.set(t);
        }
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The signal that asked the UI to stop, if any.
pub fn pending_signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Restores the terminal (idempotent, best effort: it runs on error paths).
pub fn restore() {
    let _ = disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = execute!(out, DisableMouseCapture, LeaveAlternateScreen, cursor::Show);
    let _ = out.flush();
}

/// Makes panics restore the terminal before their message is printed, so it is readable.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

/// Full-screen mode for as long as it lives.
#[derive(Debug)]
pub struct TerminalGuard(());

impl TerminalGuard {
    /// Enters raw mode, the alternate screen and mouse reporting.
    pub fn enter() -> std::io::Result<Self> {
        enable_raw_mode()?;
        let guard = Self(());
        execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// The process's terminal as the UI draws on it.
pub type Screen = ratatui::Terminal<ratatui::backend::CrosstermBackend<std::io::Stdout>>;

/// Runs `ui` full-screen on the process's terminal (stdin and stdout must be ttys), with the
/// signal handlers and the panic hook in place and the terminal restored afterwards,
/// whatever happens. `ui` returns the signal that stopped it, if one did; a terminal that
/// went away (its window or ssh session closed) counts as a hang-up.
pub fn run_full_screen(
    ui: impl FnOnce(&mut Screen) -> Result<Option<i32>, crate::error::TuiError>,
) -> Result<crate::TuiExit, crate::error::TuiError> {
    use crate::error::TuiError;
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(TuiError::NotATerminal);
    }
    install_signal_handlers();
    install_panic_hook();
    let guard = TerminalGuard::enter()?;
    let mut term = ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
    let end = ui(&mut term);
    drop(guard);
    Ok(match end {
        Ok(Some(sig)) => crate::TuiExit::Signal(sig),
        Ok(None) => crate::TuiExit::Quit,
        Err(TuiError::Terminal(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            crate::TuiExit::Signal(libc::SIGHUP)
        }
        Err(e) => return Err(e),
    })
}
