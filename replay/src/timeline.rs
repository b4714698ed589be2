//! The timeline: moving to any point of a recorded history, forwards and backwards, and
//! running to breakpoints and watchpoints in either direction (modelled on rr's
//! ReplayTimeline: the timeline owns checkpoints and seeking, the session owns execution).
//!
//! Positions are icounts: position p is the state before step p executes. Moving backwards
//! means restoring a checkpoint before the target and replaying forward. Seeks leave
//! in-memory checkpoints near their target (bounded by a memory budget, least recently
//! used first out), so a run of reverse-stepi replays a few thousand steps each, not a
//! whole checkpoint interval.
//!
//! Stop semantics, shared by both directions so they agree:
//! - a breakpoint at address A stops at position q when RIP(q) = A;
//! - a write watchpoint is triggered by step q when it changes the watched bytes; read and
//!   access watchpoints when step q reads (or touches) them. Running forward stops after
//!   the step (position q+1, as hardware watchpoints do); running backward stops before it
//!   (position q, "on the instruction that wrote", as gdb expects of reverse execution).
//! - at the same position a watchpoint is reported in preference to a breakpoint.
//!
//! This module seeks and steps; `stops.rs` holds the breakpoints and watchpoints and decides
//! whether a step triggers one; `run.rs` holds the runs to them, which can be paused and
//! resumed, and which gdb and the UI both use, so they stop at the same places.

mod branch;
mod run;
mod skip;
mod stops;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ttvm_vmm::machine::Machine;

pub use self::run::{Direction, Run, RunProgress};
use self::stops::StopPoints;
pub use self::stops::{WatchKind, WatchRangeError, Watchpoint, MAX_WATCH_LEN};
use crate::engine::StepOutcome;
use crate::events::StopKind;
use crate::record::{RecordError, RecordSession};
use crate::recording::Recording;
use crate::replay::{MemoryCheckpoint, ReplayError, ReplaySession, ReplayStep};
use crate::trace::TraceError;

/// Spacing of in-memory checkpoints near a seek target, in steps. At 7-8 µs per replayed
/// step this bounds a repeated reverse-stepi to about 16 ms of replay (8 ms on average).
pub const DEFAULT_TEMP_SPACING: u64 = 2048;
/// Memory budget for in-memory checkpoints.
pub const DEFAULT_TEMP_BUDGET: usize = 256 << 20;
/// In-memory checkpoints are made only this many spacings before a seek target.
const TEMP_WINDOW: u64 = 64;
/// Within the last spacing before a seek's target, in-memory checkpoints are this many
/// times denser, so that the reverse-stepis after it replay an eighth of a spacing at most
/// (about 2 ms); eight more captures (some 0.1 ms each) on the way to the target.
const FINE_TEMPS_PER_SPACING: u64 = 8;
/// How often long runs look at the interrupt flag.
const INTERRUPT_CHECK_EVERY: u64 = 1024;

/// Why a timeline operation stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The requested step or seek completed.
    Done,
    /// A breakpoint at `addr`.
    Breakpoint {
        /// RIP.
        addr: u64,
    },
    /// A watchpoint triggered.
    Watchpoint {
        /// The watchpoint.
        watch: Watchpoint,
    },
    /// Reached the beginning of the history.
    HistoryStart,
    /// Reached the end of the history.
    HistoryEnd,
    /// The interrupt flag was raised (Ctrl-C in gdb, Esc in the UI).
    Interrupted,
}

/// Errors of timeline operations.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// Replaying failed (divergence, damaged trace, KVM).
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// Recording new history (live debugging) failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Re-reading the growing trace failed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// Branching history failed (`Timeline::start_branch`).
    #[error(transparent)]
    Branch(#[from] crate::branch::BranchError),
    /// A change to the machine that only a branch about to start may make.
    #[error("{0}")]
    NotABranchPoint(String),
}

/// Live debugging: the recording session at the frontier of history. Going back replays
/// the trace it is writing; going forward past the frontier records new steps.
struct Live {
    session: RecordSession,
    trace: std::path::PathBuf,
    /// Whether the current position is the frontier (the live machine), rather than a
    /// replayed point of the past.
    at_frontier: bool,
    /// The guest stopped: history can no longer grow.
    stopped: Option<StopKind>,
}

/// What a single step did.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stepped {
    /// One step executed.
    Yes,
    /// One step executed and the guest stopped in it.
    GuestStopped,
    /// Nothing executed: at the end of history.
    AtEnd,
}

/// Counters for benchmarks and `monitor info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimelineStats {
    /// Steps replayed.
    pub replayed_steps: u64,
    /// Checkpoint restores (persistent or in-memory).
    pub restores: u64,
    /// In-memory checkpoints made.
    pub temp_checkpoints_made: u64,
    /// Checkpoint intervals a run passed over because nothing in them could stop it.
    pub skipped_intervals: u64,
    /// Of those, intervals a free run showed no breakpoint hit in (`free_hits.rs`).
    pub free_counted_intervals: u64,
}

struct TempCheckpoint {
    cp: MemoryCheckpoint,
    last_used: u64,
}

/// Where a replay starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Current,
    Temp(u64),
    Persistent(usize),
}

/// The timeline over one recording.
pub struct Timeline {
    session: ReplaySession,
    live: Option<Live>,
    temps: BTreeMap<u64, TempCheckpoint>,
    temp_bytes: usize,
    temp_budget: usize,
    temp_spacing: u64,
    use_counter: u64,
    stops: StopPoints,
    interrupt: Arc<AtomicBool>,
    stats: TimelineStats,
    /// Whether runs may count breakpoint hits with free runs and pass over intervals that
    /// leave write watchpoints unchanged (off: every interval that may stop a run is
    /// single-stepped, as before; for comparing the two).
    free_runs: bool,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field("icount", &self.icount())
            .field("temps", &self.temps.len())
            .field("breakpoints", &self.stops.breakpoints)
            .field("watchpoints", &self.stops.watchpoints)
            .finish()
    }
}

impl Timeline {
    /// Opens a timeline at icount 0.
    pub fn new(rec: Rc<Recording>, host_stepping: &str) -> Result<Self, TimelineError> {
        let session = ReplaySession::new(rec, host_stepping)?;
        Ok(Self::from_session(session))
    }

    /// Wraps an existing replay session.
    pub fn from_session(session: ReplaySession) -> Self {
        Self {
            session,
            live: None,
            temps: BTreeMap::new(),
            temp_bytes: 0,
            temp_budget: DEFAULT_TEMP_BUDGET,
            temp_spacing: DEFAULT_TEMP_SPACING,
            use_counter: 0,
            stops: StopPoints::default(),
            interrupt: Arc::new(AtomicBool::new(false)),
            stats: TimelineStats::default(),
            free_runs: true,
        }
    }

    /// A timeline for live debugging: `recording` is writing `trace`; the position starts at
    /// its frontier.
    pub fn live(
        mut recording: RecordSession,
        trace: &std::path::Path,
        host_stepping: &str,
    ) -> Result<Self, TimelineError> {
        recording.flush().map_err(RecordError::from)?;
        let rec = Rc::new(Recording::open(trace)?);
        let mut t = Self::new(rec, host_stepping)?;
        t.live = Some(Live { session: recording, trace: trace.to_path_buf(), at_frontier: true, stopped: None });
        Ok(t)
    }

    /// Whether this is a live-debugging timeline.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Whether the current position is the live frontier.
    pub fn at_frontier(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.at_frontier)
    }

    /// The recording session of a live timeline (to finish it when debugging ends).
    pub fn live_session(&mut self) -> Option<&mut RecordSession> {
        self.live.as_mut().map(|l| &mut l.session)
    }

    /// How the guest stopped during live recording, if it did.
    pub fn live_stop(&self) -> Option<&StopKind> {
        self.live.as_ref().and_then(|l| l.stopped.as_ref())
    }

    /// Re-reads the trace a live session is writing so replay covers the whole history.
    fn refresh(&mut self) -> Result<(), TimelineError> {
        let Some(live) = &mut self.live else { return Ok(()) };
        if self.session.rec.length() >= live.session.icount() {
            return Ok(());
        }
        live.session.flush().map_err(RecordError::from)?;
        let rec = Rc::new(Recording::open(&live.trace)?);
        self.session.set_recording(rec);
        Ok(())
    }

    /// Whether runs may count breakpoint hits in intervals by free runs and pass over
    /// intervals that provably leave write watchpoints unchanged (default on). Off, they
    /// single-step every interval that may stop them (with a watchpoint set, every
    /// interval): the same stops, slower.
    pub fn set_free_runs(&mut self, on: bool) {
        self.free_runs = on;
    }

    /// Whether runs and seeks may use free runs ([`Timeline::set_free_runs`]).
    pub fn free_runs(&self) -> bool {
        self.free_runs
    }

    /// Sets the in-memory checkpoint spacing and budget.
    pub fn set_temp_policy(&mut self, spacing: u64, budget_bytes: usize) {
        self.temp_spacing = spacing.max(1);
        self.temp_budget = budget_bytes;
        self.evict();
    }

    /// The recording.
    pub fn recording(&self) -> &Rc<Recording> {
        &self.session.rec
    }

    /// The machine at the current position (registers, RAM).
    pub fn machine(&self) -> &Machine {
        &self.engine().machine
    }

    /// The engine that runs the current position: the live recording's at its frontier.
    pub(crate) fn engine(&self) -> &crate::engine::Engine {
        match &self.live {
            Some(l) if l.at_frontier => &l.session.engine,
            _ => &self.session.engine,
        }
    }

    /// The replay session.
    pub fn session(&self) -> &ReplaySession {
        &self.session
    }

    /// Current position.
    pub fn icount(&self) -> u64 {
        match &self.live {
            Some(l) if l.at_frontier => l.session.icount(),
            _ => self.session.icount(),
        }
    }

    /// Steps in the history (for live debugging: up to the frontier, which moves).
    pub fn length(&self) -> u64 {
        match &self.live {
            Some(l) => l.session.icount(),
            None => self.session.rec.length(),
        }
    }

    /// Whether history can still grow (live debugging of a guest that has not stopped).
    pub fn can_grow(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.stopped.is_none())
    }

    /// A flag that, when set, makes long operations stop promptly with `Stop::Interrupted`.
    pub fn interrupt_handle(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    /// Counters.
    pub fn stats(&self) -> TimelineStats {
        self.stats
    }

    /// Number and total size of in-memory checkpoints.
    pub fn temp_checkpoints(&self) -> (usize, usize) {
        (self.temps.len(), self.temp_bytes)
    }

    /// Positions of in-memory checkpoints.
    pub fn temp_checkpoint_positions(&self) -> Vec<u64> {
        self.temps.keys().copied().collect()
    }

    fn interrupted(&self) -> bool {
        self.interrupt.swap(false, Ordering::SeqCst)
    }

    /// Leaves the frontier for a replayed position.
    fn leave_frontier(&mut self) -> Result<(), TimelineError> {
        if self.at_frontier() {
            self.refresh()?;
            if let Some(l) = &mut self.live {
                l.at_frontier = false;
            }
        }
        Ok(())
    }

    /// One step forward from wherever the position is: replayed history, or new history at
    /// the frontier.
    fn step_once(&mut self) -> Result<Stepped, TimelineError> {
        if let Some(l) = &mut self.live {
            if !l.at_frontier && self.session.icount() >= l.session.icount() {
                // The replay caught up with the frontier: the states are identical.
                l.at_frontier = true;
            }
            if l.at_frontier {
                if l.stopped.is_some() {
                    return Ok(Stepped::AtEnd);
                }
                return Ok(match l.session.step()? {
                    StepOutcome::Continue => Stepped::Yes,
                    StepOutcome::Stopped(s) => {
                        l.stopped = Some(s);
                        Stepped::GuestStopped
                    }
                });
            }
        }
        self.refresh()?;
        self.stats.replayed_steps += 1;
        Ok(match self.session.step()? {
            ReplayStep::Stepped => Stepped::Yes,
            ReplayStep::Stopped(_) => Stepped::GuestStopped,
            ReplayStep::AtEnd => {
                self.stats.replayed_steps -= 1;
                Stepped::AtEnd
            }
        })
    }

    // ----- checkpoints -----

    fn best_start(&self, target: u64) -> Start {
        let mut best = (
            self.session.rec.checkpoints[self.session.rec.checkpoint_before(target)].engine.icount,
            Start::Persistent(self.session.rec.checkpoint_before(target)),
        );
        if let Some((&at, _)) = self.temps.range(..=target).next_back() {
            if at > best.0 {
                best = (at, Start::Temp(at));
            }
        }
        let cur = self.icount();
        if cur <= target && cur >= best.0 {
            best = (cur, Start::Current);
        }
        best.1
    }

    /// The position a start point is at.
    fn start_icount(&self, start: Start) -> u64 {
        match start {
            Start::Current => self.icount(),
            Start::Persistent(k) => self.session.rec.checkpoints[k].engine.icount,
            Start::Temp(at) => at,
        }
    }

    fn go_to_start(&mut self, start: Start) -> Result<(), TimelineError> {
        match start {
            Start::Current => {}
            Start::Persistent(k) => {
                self.session.restore_checkpoint(k)?;
                self.stats.restores += 1;
            }
            Start::Temp(at) => {
                self.use_counter += 1;
                let t = self.temps.get_mut(&at).expect("temp checkpoint chosen from the map");
                t.last_used = self.use_counter;
                let cp = t.cp.clone();
                self.session.restore_memory(&cp)?;
                self.stats.restores += 1;
            }
        }
        Ok(())
    }

    /// On the way to `target` from `start_at`: leaves an in-memory checkpoint here if the
    /// position is on the spacing grid near the target (with `fine`, on the finer grid in
    /// the last spacing before it: a seek, which reverse-stepis follow).
    fn maybe_make_temp(&mut self, target: u64, start_at: u64, fine: bool) -> Result<(), TimelineError> {
        let x = self.icount();
        let left = target.saturating_sub(x);
        if x == start_at || left > TEMP_WINDOW * self.temp_spacing {
            return Ok(());
        }
        let grid = match fine && left < self.temp_spacing {
            true => (self.temp_spacing / FINE_TEMPS_PER_SPACING).max(1),
            false => self.temp_spacing,
        };
        self.make_temp_on(grid)?;
        Ok(())
    }

    /// Leaves an in-memory checkpoint at the current position if it is on the spacing grid
    /// and none is there yet (persistent or in memory). Returns whether it made one.
    fn make_temp_here(&mut self) -> Result<bool, TimelineError> {
        self.make_temp_on(self.temp_spacing)
    }

    /// [`Timeline::make_temp_here`] on a grid of `grid` steps.
    fn make_temp_on(&mut self, grid: u64) -> Result<bool, TimelineError> {
        let x = self.icount();
        if !x.is_multiple_of(grid) || self.temps.contains_key(&x) || self.at_frontier() {
            return Ok(false);
        }
        let rec = &self.session.rec;
        if rec.checkpoints[rec.checkpoint_before(x)].engine.icount == x {
            return Ok(false);
        }
        let cp = self.session.capture()?;
        self.use_counter += 1;
        self.temp_bytes += cp.bytes();
        self.temps.insert(x, TempCheckpoint { cp, last_used: self.use_counter });
        self.stats.temp_checkpoints_made += 1;
        self.evict();
        Ok(true)
    }

    /// Drops an in-memory checkpoint (one a forward run left and no longer needs).
    fn drop_temp(&mut self, at: u64) {
        if let Some(t) = self.temps.remove(&at) {
            self.temp_bytes -= t.cp.bytes();
        }
    }

    fn evict(&mut self) {
        while self.temp_bytes > self.temp_budget && !self.temps.is_empty() {
            let oldest = self.temps.iter().min_by_key(|(_, t)| t.last_used).map(|(&k, _)| k);
            if let Some(k) = oldest {
                if let Some(t) = self.temps.remove(&k) {
                    self.temp_bytes -= t.cp.bytes();
                }
            }
        }
    }

    /// Replays forward from the current position to `target` (≤ length), leaving in-memory
    /// checkpoints near it. Returns false if interrupted.
    fn replay_to(&mut self, target: u64, interruptible: bool) -> Result<bool, TimelineError> {
        let start_at = self.icount();
        while self.icount() < target {
            self.maybe_make_temp(target, start_at, true)?;
            if interruptible
                && (self.icount() - start_at) % INTERRUPT_CHECK_EVERY == INTERRUPT_CHECK_EVERY - 1
                && self.interrupted()
            {
                return Ok(false);
            }
            match self.session.step()? {
                ReplayStep::Stepped | ReplayStep::Stopped(_) => self.stats.replayed_steps += 1,
                ReplayStep::AtEnd => break,
            }
        }
        Ok(true)
    }

    /// Moves to position `target`. Returns `Done`, or `Interrupted` (the position is then
    /// somewhere between the start point and the target).
    pub fn seek(&mut self, target: u64) -> Result<Stop, TimelineError> {
        let length = self.length();
        if target > length {
            return Err(ReplayError::PastEnd { requested: target, length }.into());
        }
        if self.live.is_some() {
            if target == length {
                if let Some(l) = &mut self.live {
                    l.at_frontier = true;
                }
                return Ok(Stop::Done);
            }
            self.leave_frontier()?;
            self.refresh()?;
        }
        let mut start = self.best_start(target);
        // A waypoint past the start may be reached sooner by restoring the checkpoint
        // before it and running there natively (format 8, `free_seek.rs`). A short seek
        // backwards (at most a spacing) is likely followed by more of its size (reverse
        // steps, the TUI's Shift+←): it prefers a waypoint up to four times its distance
        // (two spacings at most) short of its target, so the steps from there leave
        // in-memory checkpoints where the next three land.
        let k = self.session.rec.checkpoint_before(target);
        let back = self.icount().saturating_sub(target);
        let lead = if back <= self.temp_spacing { (4 * back).min(2 * self.temp_spacing) } else { 0 };
        let from = self.start_icount(start);
        let worth_it = |w: &crate::trace::Waypoint| w.step > from && self.session.free_seek_cost(w) < w.step - from;
        let waypoint = [target.saturating_sub(lead), target]
            .into_iter()
            .filter(|&goal| self.free_runs && self.session.rec.checkpoint_before(goal) == k)
            .filter_map(|goal| self.session.seek_waypoint(goal))
            .find(worth_it);
        if waypoint.is_some() {
            start = Start::Persistent(k);
        }
        self.go_to_start(start)?;
        // From the persistent checkpoint, a native run to the waypoint saves most of the
        // single steps.
        if let Some(w) = waypoint {
            self.session.free_seek(&w)?;
        }
        Ok(if self.replay_to(target, true)? { Stop::Done } else { Stop::Interrupted })
    }

    // ----- stepping -----

    /// Executes one step forward; reports a watchpoint the step triggered.
    pub fn step_forward(&mut self) -> Result<Stop, TimelineError> {
        if self.icount() >= self.length() && !self.can_grow() {
            return Ok(Stop::HistoryEnd);
        }
        Ok(match self.step_watching()? {
            (Stepped::AtEnd, _) => Stop::HistoryEnd,
            (_, Some(watch)) => Stop::Watchpoint { watch },
            _ => Stop::Done,
        })
    }

    /// Makes `recording()` cover the whole history of a live session (it lags behind the
    /// frontier until the trace is re-read).
    pub fn refresh_recording(&mut self) -> Result<(), TimelineError> {
        self.refresh()
    }

    /// Goes back one step.
    pub fn step_backward(&mut self) -> Result<Stop, TimelineError> {
        let p = self.icount();
        if p == 0 {
            return Ok(Stop::HistoryStart);
        }
        self.seek(p - 1)
    }

    /// "Who wrote this?": moves to the most recent step before the current position that
    /// changed any byte of `[addr, addr+len)`, and returns its icount; None (and position 0)
    /// when nothing in the history changed it.
    pub fn last_write(&mut self, addr: u64, len: u64) -> Result<Option<u64>, TimelineError> {
        let saved_bp = std::mem::take(&mut self.stops.breakpoints);
        let saved_wp =
            std::mem::replace(&mut self.stops.watchpoints, vec![Watchpoint { addr, len, kind: WatchKind::Write }]);
        let r = self.run_backward();
        self.stops.breakpoints = saved_bp;
        self.stops.watchpoints = saved_wp;
        Ok(match r? {
            Stop::Watchpoint { .. } => Some(self.icount()),
            _ => None,
        })
    }
}

impl ttvm_vmm::error_kind::Classify for TimelineError {
    fn kind(&self) -> ttvm_vmm::error_kind::ErrorKind {
        match self {
            Self::Replay(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Record(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Trace(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Branch(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::NotABranchPoint(_) => ttvm_vmm::error_kind::ErrorKind::BadInput,
        }
    }
}
