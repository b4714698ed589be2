//! One UI session over a trace: the app state, the trace index, the kernel's symbols and the
//! driver, wired together. The terminal loop and the tests both talk to this.

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use crossterm::event::{Event, KeyEvent};
use ratatui::Frame;
use ttvm_replay::recording::Recording;
use ttvm_replay::timeline::Timeline;

use crate::app::{Action, App, Ctx};
use crate::driver::{Driver, Env, Outcome, Progress};
use crate::error::TuiError;
use crate::symbols::Symbols;
use crate::trace_info::TraceInfo;
use crate::ui;
use crate::user_mode_scan::{ScanState, UserModeScan};

/// In-memory checkpoint spacing: denser than gdb's default, because stepping back is what
/// people do most in the UI and each step back replays up to one spacing.
pub const TEMP_SPACING: u64 = 1024;

/// What handling an input asks of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Leave the UI.
    Quit,
}

/// A trace open in the UI.
#[derive(Debug)]
pub struct Session {
    /// UI state.
    pub app: App,
    /// The trace, indexed.
    pub info: TraceInfo,
    /// The kernel's symbols.
    pub symbols: Symbols,
    /// The timeline and the machine view.
    pub driver: Driver,
    /// The background search for user mode, while it runs.
    pub user_scan: Option<UserModeScan>,
}

impl Session {
    /// Opens a trace: decodes it, indexes it, parses the kernel's symbols and builds the
    /// machine at icount 0. Fails the way `ttvm replay` fails (damaged trace, no KVM,
    /// incompatible host).
    /// `extra` (from `--symbols`) replaces the symbols of the kernel image when given.
    pub fn open(path: &Path, extra: Option<&ttvm_vmm::symbols::SymbolTable>) -> Result<Self, TuiError> {
        let rec = Rc::new(Recording::open(path)?);
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let info = TraceInfo::from_recording(&rec, &name);
        let (symbols, sym_note) = match (extra, Symbols::parse(&rec.header().machine.kernel)) {
            (Some(table), _) => (Symbols::from_table(table), None),
            (None, Ok(s)) => (s, None),
            (None, Err(e)) => (Symbols::empty(), Some(format!("no symbols: {e} (try --symbols System.map)"))),
        };
        let mut timeline = Timeline::new(rec, &ttvm_replay::stepping::host_signature())?;
        timeline.set_temp_policy(TEMP_SPACING, ttvm_replay::timeline::DEFAULT_TEMP_BUDGET);
        let mut s = Self::from_parts(info, symbols, timeline);
        s.user_scan = Some(UserModeScan::start(path));
        if s.app.status.is_none() {
            s.app.status = sym_note;
        }
        Ok(s)
    }

    /// Wires up already-opened parts.
    pub fn from_parts(info: TraceInfo, symbols: Symbols, timeline: Timeline) -> Self {
        let app = App::new(&info);
        let driver = Driver::new(timeline, Self::env_of(&app, &info, &symbols));
        Self { app, info, symbols, driver, user_scan: None }
    }

    /// Takes in what the background search for user mode found since the last call.
    pub fn poll_background(&mut self) {
        let Some(scan) = &mut self.user_scan else { return };
        let state = scan.poll(&mut self.app.user_spans);
        self.note_scan(state);
    }

    /// Waits for the background search to end (tests).
    pub fn wait_background(&mut self) {
        let Some(scan) = &mut self.user_scan else { return };
        let state = scan.wait(&mut self.app.user_spans);
        self.note_scan(state);
    }

    fn note_scan(&mut self, state: ScanState) {
        match state {
            ScanState::Running => return,
            ScanState::Done => {}
            ScanState::Failed(e) => self.app.status = Some(format!("finding user mode in the trace failed: {e}")),
        }
        self.app.user_scan_done = true;
        self.user_scan = None;
    }

    /// Handles one input event: updates the state and starts (or cancels) an operation.
    pub fn handle(&mut self, ev: &Event) -> Flow {
        let ctx = Ctx { info: &self.info, symbols: &self.symbols };
        let action = match ev {
            Event::Key(k) => self.app.on_key(*k, ctx),
            Event::Mouse(m) => self.app.on_mouse(*m, ctx),
            _ => Action::None,
        };
        self.apply(action)
    }

    /// Shorthand for a key press.
    pub fn key(&mut self, key: KeyEvent) -> Flow {
        self.handle(&Event::Key(key))
    }

    fn apply(&mut self, action: Action) -> Flow {
        match action {
            Action::None => {}
            Action::Quit => return Flow::Quit,
            Action::Cancel => {
                let o = self.driver.cancel(Self::env_of(&self.app, &self.info, &self.symbols));
                self.report(o);
            }
            Action::RefreshMemory => {
                self.driver.refresh_memory(Self::env_of(&self.app, &self.info, &self.symbols));
            }
            Action::AddStop(target) => self.driver.set_stop(target, true),
            Action::RemoveStops(targets) => {
                for t in targets {
                    self.driver.set_stop(t, false);
                }
            }
            Action::Seek(_) | Action::Run(_) => {
                self.app.error = None;
                self.driver.start(&action, &self.info);
                self.app.started();
            }
        }
        Flow::Continue
    }

    fn report(&mut self, o: Outcome) {
        match o {
            Outcome::Arrived { icount, note } => self.app.arrived(icount, note),
            Outcome::Failed { icount, message, divergence } => self.app.failed(icount, message, divergence),
        }
    }

    /// Whether an operation is in progress.
    pub fn busy(&self) -> bool {
        self.driver.busy()
    }

    /// What the driver needs to read the machine once a move ends.
    fn env_of<'a>(app: &'a App, info: &'a TraceInfo, symbols: &'a Symbols) -> Env<'a> {
        Env { info, symbols, mem: &app.mem, stops: &app.stops }
    }

    /// Works on the operation in progress for about `budget`.
    pub fn work(&mut self, budget: Duration) {
        if let Some(o) = self.driver.work(budget, Self::env_of(&self.app, &self.info, &self.symbols)) {
            self.report(o);
        }
    }

    /// Runs the operation in progress to its end.
    pub fn finish(&mut self) {
        if let Some(o) = self.driver.finish(Self::env_of(&self.app, &self.info, &self.symbols)) {
            self.report(o);
        }
    }

    /// Starts moving to `icount` (the network view opens a VM's trace at its cursor).
    pub fn seek(&mut self, icount: u64) -> Flow {
        if icount == self.app.cursor {
            return Flow::Continue;
        }
        self.apply(Action::Seek(icount.min(self.app.length)))
    }

    /// Presses a key and waits for what it started (tests, benchmarks).
    pub fn press(&mut self, key: KeyEvent) -> Flow {
        let f = self.key(key);
        self.finish();
        f
    }

    /// The operation in progress.
    pub fn progress(&self) -> Option<Progress> {
        self.driver.progress()
    }

    /// Draws the UI.
    pub fn render(&mut self, frame: &mut Frame<'_>) {
        let model =
            ui::Model { app: &self.app, info: &self.info, view: self.driver.view(), progress: self.driver.progress() };
        self.app.layout = ui::render(frame, &model);
    }
}
