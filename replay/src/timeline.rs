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

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ttvm_vmm::insn::fetch_at_rip;
use ttvm_vmm::machine::Machine;
use ttvm_vmm::paging::AddressSpace;

use crate::engine::StepOutcome;
use crate::events::StopKind;
use crate::mem_access::AccessDecoder;
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
/// How often long runs look at the interrupt flag.
const INTERRUPT_CHECK_EVERY: u64 = 1024;

/// Kinds of watchpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchKind {
    /// Stops when the watched bytes change.
    Write,
    /// Stops when an instruction reads them.
    Read,
    /// Stops on reads and changes.
    Access,
}

/// A watched range of guest-virtual memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Watchpoint {
    /// Start (guest-virtual).
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Kind.
    pub kind: WatchKind,
}

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

/// A backward run in progress ([`Timeline::continue_backward`]): everything at or above
/// `hi` has been scanned; the window below it may be partly scanned.
#[derive(Clone, Debug)]
pub struct ReverseRun {
    from: u64,
    hi: u64,
    window: Option<Window>,
}

/// The part of a scan window done so far: from `lo` up to `at`, with the last stop seen.
#[derive(Clone, Debug)]
struct Window {
    lo: u64,
    at: u64,
    last: Option<(u64, Stop)>,
}

impl ReverseRun {
    /// A backward run from position `from`.
    pub fn new(from: u64) -> Self {
        Self { from, hi: from, window: None }
    }

    /// (where the run started, the boundary above which all is scanned, the start of the
    /// window being scanned if one is): for a progress display.
    pub fn progress(&self) -> (u64, u64, Option<u64>) {
        (self.from, self.hi, self.window.as_ref().map(|w| w.lo))
    }
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
    /// Checkpoint intervals a run skipped because nothing in them could stop it.
    pub skipped_intervals: u64,
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
    breakpoints: BTreeSet<u64>,
    watchpoints: Vec<Watchpoint>,
    interrupt: Arc<AtomicBool>,
    access: Option<AccessDecoder>,
    stats: TimelineStats,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field("icount", &self.icount())
            .field("temps", &self.temps.len())
            .field("breakpoints", &self.breakpoints)
            .field("watchpoints", &self.watchpoints)
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
            breakpoints: BTreeSet::new(),
            watchpoints: Vec::new(),
            interrupt: Arc::new(AtomicBool::new(false)),
            access: None,
            stats: TimelineStats::default(),
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
        match &self.live {
            Some(l) if l.at_frontier => &l.session.engine.machine,
            _ => &self.session.engine.machine,
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

    /// Adds a breakpoint at guest-virtual `addr`.
    pub fn add_breakpoint(&mut self, addr: u64) {
        self.breakpoints.insert(addr);
    }

    /// Removes a breakpoint; returns whether it existed.
    pub fn remove_breakpoint(&mut self, addr: u64) -> bool {
        self.breakpoints.remove(&addr)
    }

    /// Adds a watchpoint.
    pub fn add_watchpoint(&mut self, w: Watchpoint) {
        if w.kind != WatchKind::Write && self.access.is_none() {
            self.access = AccessDecoder::new();
        }
        self.watchpoints.push(w);
    }

    /// Removes a watchpoint; returns whether it existed.
    pub fn remove_watchpoint(&mut self, w: Watchpoint) -> bool {
        match self.watchpoints.iter().position(|x| *x == w) {
            Some(i) => {
                self.watchpoints.remove(i);
                true
            }
            None => false,
        }
    }

    /// Current breakpoints.
    pub fn breakpoints(&self) -> &BTreeSet<u64> {
        &self.breakpoints
    }

    /// Current watchpoints.
    pub fn watchpoints(&self) -> &[Watchpoint] {
        &self.watchpoints
    }

    fn interrupted(&self) -> bool {
        self.interrupt.swap(false, Ordering::SeqCst)
    }

    fn rip(&self) -> u64 {
        self.machine().vm.vcpu().rip()
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

    fn maybe_make_temp(&mut self, target: u64, start_at: u64) -> Result<(), TimelineError> {
        let x = self.icount();
        if x == start_at || target.saturating_sub(x) > TEMP_WINDOW * self.temp_spacing {
            return Ok(());
        }
        self.make_temp_here()?;
        Ok(())
    }

    /// Leaves an in-memory checkpoint at the current position if it is on the spacing grid
    /// and none is there yet (persistent or in memory). Returns whether it made one.
    fn make_temp_here(&mut self) -> Result<bool, TimelineError> {
        let x = self.icount();
        if !x.is_multiple_of(self.temp_spacing) || self.temps.contains_key(&x) || self.at_frontier() {
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
            self.maybe_make_temp(target, start_at)?;
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
        let start = self.best_start(target);
        self.go_to_start(start)?;
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

    // ----- watchpoints -----

    fn read_virt(&self, addr: u64, len: u64) -> Option<Vec<u8>> {
        let m = self.machine();
        let space = AddressSpace::from_sregs(&m.vm.vcpu().sregs());
        let mut buf = vec![0u8; len as usize];
        space.read_virt(m.vm.ram(), addr, &mut buf).ok().map(|_| buf)
    }

    fn watched_values(&self) -> Vec<Option<Vec<u8>>> {
        self.watchpoints
            .iter()
            .map(|w| if w.kind == WatchKind::Read { None } else { self.read_virt(w.addr, w.len) })
            .collect()
    }

    fn accesses_at_rip(&self) -> Vec<crate::mem_access::Access> {
        let Some(dec) = &self.access else { return Vec::new() };
        let m = self.machine();
        let (regs, sregs) = (m.vm.vcpu().regs(), m.vm.vcpu().sregs());
        let (bytes, n) = fetch_at_rip(m.vm.ram(), &regs, &sregs);
        dec.accesses(&bytes[..n], &regs, &sregs)
    }

    /// Steps once and reports the first watchpoint the step triggered.
    fn step_watching(&mut self) -> Result<(Stepped, Option<Watchpoint>), TimelineError> {
        if self.watchpoints.is_empty() {
            return Ok((self.step_once()?, None));
        }
        let before = self.watched_values();
        let accesses = if self.watchpoints.iter().any(|w| w.kind != WatchKind::Write) {
            self.accesses_at_rip()
        } else {
            Vec::new()
        };
        let r = self.step_once()?;
        if r == Stepped::AtEnd {
            return Ok((r, None));
        }
        let after = self.watched_values();
        for (i, w) in self.watchpoints.iter().enumerate() {
            let changed = w.kind != WatchKind::Read && before[i] != after[i];
            let touched = accesses.iter().any(|a| {
                let overlaps = a.addr < w.addr.wrapping_add(w.len) && w.addr < a.addr.wrapping_add(a.size);
                overlaps
                    && match w.kind {
                        WatchKind::Read => a.read,
                        WatchKind::Access => true,
                        WatchKind::Write => false,
                    }
            });
            if changed || touched {
                return Ok((r, Some(*w)));
            }
        }
        Ok((r, None))
    }

    // ----- running -----

    /// Whether a run could stop anywhere in persistent-checkpoint interval `k`: false only
    /// when no watchpoint is set and the trace's list of the code the interval executed has
    /// none of the breakpoints' pages (format 3). Such intervals are skipped by running to or
    /// from their checkpoints instead of replaying them.
    fn interval_may_stop(&self, k: usize) -> bool {
        !self.watchpoints.is_empty() || self.session.rec.interval_may_reach(k, self.breakpoints.iter().copied())
    }

    /// The first persistent checkpoint after interval `k` from which the run can stop again
    /// (or the last one), if interval `k` cannot stop it: one restore skips them all.
    fn skippable_to(&self, k: usize) -> Option<usize> {
        let last = self.session.rec.checkpoints.len() - 1;
        if k >= last || self.interval_may_stop(k) {
            return None;
        }
        Some((k + 1..last).find(|&j| self.interval_may_stop(j)).unwrap_or(last))
    }

    /// Runs forward until a breakpoint, a watchpoint, the end of history or an interrupt.
    /// Leaves the last two in-memory checkpoints on the spacing grid behind wherever it
    /// stops, so the first reverse step after it replays at most one spacing, like the
    /// ones after it (rather than up to a whole persistent-checkpoint interval).
    pub fn run_forward(&mut self) -> Result<Stop, TimelineError> {
        let start = self.icount();
        let mut trailing = std::collections::VecDeque::with_capacity(3);
        loop {
            if self.icount() != start && self.make_temp_here()? {
                trailing.push_back(self.icount());
                if trailing.len() > 2 {
                    if let Some(old) = trailing.pop_front() {
                        self.drop_temp(old);
                    }
                }
            }
            if self.icount() >= self.length() && !self.can_grow() {
                return Ok(Stop::HistoryEnd);
            }
            if (self.icount() - start) % INTERRUPT_CHECK_EVERY == INTERRUPT_CHECK_EVERY - 1 && self.interrupted() {
                return Ok(Stop::Interrupted);
            }
            if !self.is_live() {
                let k = self.session.rec.checkpoint_before(self.icount());
                if let Some(next) = self.skippable_to(k) {
                    // Nothing in the rest of this interval can stop the run.
                    self.session.restore_checkpoint(next)?;
                    self.stats.restores += 1;
                    self.stats.skipped_intervals += 1;
                    // The checkpoint's own position starts the next interval: it can stop.
                    if self.breakpoints.contains(&self.rip()) {
                        return Ok(Stop::Breakpoint { addr: self.rip() });
                    }
                    continue;
                }
            }
            let (r, watch) = self.step_watching()?;
            if r == Stepped::AtEnd {
                return Ok(Stop::HistoryEnd);
            }
            if let Some(watch) = watch {
                return Ok(Stop::Watchpoint { watch });
            }
            if r == Stepped::GuestStopped {
                return Ok(Stop::HistoryEnd);
            }
            if self.breakpoints.contains(&self.rip()) {
                return Ok(Stop::Breakpoint { addr: self.rip() });
            }
        }
    }

    /// Runs backward to the most recent position before the current one where a
    /// breakpoint or watchpoint stops, or to the start of history. Interrupted, it ends at
    /// the boundary above which everything was scanned, so a later reverse run from there
    /// skips nothing (gdb's Ctrl-C).
    pub fn run_backward(&mut self) -> Result<Stop, TimelineError> {
        let mut run = ReverseRun::new(self.icount());
        let stop = self.continue_backward(&mut run)?;
        if stop == Stop::Interrupted {
            self.seek(run.hi)?;
        }
        Ok(stop)
    }

    /// Works on a backward run until it stops at a breakpoint or watchpoint, reaches the
    /// start of history, or the interrupt flag is raised. Interrupted, the run is paused
    /// where it was (the position is inside the window being scanned): calling this again
    /// with the same `run` goes on without rescanning anything, as a UI that works in time
    /// slices needs. If the position was moved in between, the current window is scanned
    /// again from its start.
    pub fn continue_backward(&mut self, run: &mut ReverseRun) -> Result<Stop, TimelineError> {
        self.leave_frontier()?;
        if self.breakpoints.is_empty() && self.watchpoints.is_empty() {
            // Nothing can stop the run: no need to scan the history.
            if self.seek(0)? == Stop::Interrupted {
                return Ok(Stop::Interrupted);
            }
            return Ok(Stop::HistoryStart);
        }
        loop {
            let window = match run.window.take() {
                Some(w) if self.icount() == w.at => w,
                Some(_) | None => {
                    if run.hi == 0 {
                        self.seek(0)?;
                        return Ok(Stop::HistoryStart);
                    }
                    let k = self.session.rec.checkpoint_before(run.hi - 1);
                    if !self.interval_may_stop(k) {
                        // Nothing in [checkpoint k, hi) can stop the run: go below it unreplayed.
                        run.hi = self.session.rec.checkpoints[k].engine.icount;
                        self.stats.skipped_intervals += 1;
                        continue;
                    }
                    let start = self.best_start(run.hi - 1);
                    self.go_to_start(start)?;
                    Window { lo: self.icount(), at: self.icount(), last: None }
                }
            };
            let Window { lo, at: resumed_at, mut last } = window;
            let hi = run.hi;
            while self.icount() < hi {
                let q = self.icount();
                self.maybe_make_temp(hi, lo)?;
                // (Not where it resumed: a run paused there must make progress first.)
                if q != resumed_at
                    && (q - lo) % INTERRUPT_CHECK_EVERY == INTERRUPT_CHECK_EVERY - 1
                    && self.interrupted()
                {
                    run.window = Some(Window { lo, at: q, last });
                    return Ok(Stop::Interrupted);
                }
                if self.breakpoints.contains(&self.rip()) {
                    last = Some((q, Stop::Breakpoint { addr: self.rip() }));
                }
                let (r, watch) = self.step_watching()?;
                if let Some(watch) = watch {
                    last = Some((q, Stop::Watchpoint { watch }));
                }
                if r != Stepped::Yes {
                    break;
                }
            }
            if let Some((q, stop)) = last {
                self.seek(q)?;
                return Ok(stop);
            }
            run.hi = lo;
        }
    }

    /// "Who wrote this?": moves to the most recent step before the current position that
    /// changed any byte of `[addr, addr+len)`, and returns its icount; None (and position 0)
    /// when nothing in the history changed it.
    pub fn last_write(&mut self, addr: u64, len: u64) -> Result<Option<u64>, TimelineError> {
        let saved_bp = std::mem::take(&mut self.breakpoints);
        let saved_wp = std::mem::replace(&mut self.watchpoints, vec![Watchpoint { addr, len, kind: WatchKind::Write }]);
        let r = self.run_backward();
        self.breakpoints = saved_bp;
        self.watchpoints = saved_wp;
        Ok(match r? {
            Stop::Watchpoint { .. } => Some(self.icount()),
            _ => None,
        })
    }
}
