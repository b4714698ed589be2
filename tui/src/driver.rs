//! Carries out the app's actions on the timeline, in time slices so the UI keeps drawing
//! progress and reading Esc during long moves.
//!
//! Every move to a position N goes through N-1: the driver seeks to N-1, reads the registers
//! and executes one step. The register pane can then highlight what the instruction at N-1
//! changed, and the screen at N is the same however N was reached (stepping back then forward
//! redraws it identically). A single step forward needs nothing more than the step itself.
//!
//! Runs to breakpoints and watchpoints are the timeline's own runs (the ones gdb's continue
//! and reverse-continue use, so both stop at the same places): the job holds the
//! [`Run`] and continues it for one slice at a time, the slicer pausing it; once it stops at
//! q, the driver moves to q through q-1 like any other move.

use std::time::{Duration, Instant};

use ttvm_replay::replay::ReplayError;
use ttvm_replay::timeline::{Direction, Run, Stop, Timeline, TimelineError};

use crate::app::Action;
use crate::parse::MemTarget;
use crate::stops::{StopList, StopTarget};
use crate::symbols::Symbols;
use crate::trace_info::TraceInfo;
use crate::view::{Regs, View};

/// How long one slice of a long operation runs before the screen is redrawn.
pub const SLICE: Duration = Duration::from_millis(40);

/// What the progress popup shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// What is being done.
    pub what: String,
    /// Current position of the timeline.
    pub at: u64,
    /// How far along, 0..=1.
    pub fraction: f64,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// At `icount`, with a note for the status bar.
    Arrived {
        /// Where the timeline is.
        icount: u64,
        /// What happened, if worth saying.
        note: Option<String>,
    },
    /// Replay failed; the timeline is at `icount`.
    Failed {
        /// Where it failed (the divergence point for a divergence).
        icount: u64,
        /// The error.
        message: String,
        /// Whether replay diverged from the recording (rather than e.g. a damaged page).
        divergence: bool,
    },
}

#[derive(Clone, Debug)]
enum Job {
    Seek { target: u64, origin: u64, note: Option<String> },
    Run(Run),
}

/// Owns the timeline and the view of the machine at the cursor.
#[derive(Debug)]
pub struct Driver {
    timeline: Timeline,
    slicer: crate::slicer::Slicer,
    job: Option<Job>,
    view: View,
}

/// What a finished move needs to read the machine.
#[derive(Clone, Copy, Debug)]
pub struct Env<'a> {
    /// The trace.
    pub info: &'a TraceInfo,
    /// Symbols for the code pane.
    pub symbols: &'a Symbols,
    /// The memory pane's target.
    pub mem: &'a MemTarget,
    /// The breakpoints and watchpoints, to name the one a run stopped at.
    pub stops: &'a StopList,
}

fn checkpoint_before(info: &TraceInfo, icount: u64) -> u64 {
    let k = info.checkpoints.partition_point(|&c| c <= icount);
    k.checked_sub(1).map_or(0, |k| info.checkpoints[k])
}

impl Driver {
    /// Wraps a timeline (at icount 0).
    pub fn new(timeline: Timeline, env: Env<'_>) -> Self {
        let slicer = crate::slicer::Slicer::new(timeline.interrupt_handle());
        let view = View::capture(timeline.machine(), timeline.icount(), None, env.mem, env.symbols);
        Self { timeline, slicer, job: None, view }
    }

    /// The machine as shown.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The timeline (for tests and benchmarks comparing with it).
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Whether an operation is in progress.
    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    /// Starts carrying out `action` (other actions are not the driver's).
    pub fn start(&mut self, action: &Action, info: &TraceInfo) {
        self.job = match *action {
            Action::Seek(t) => Some(self.seek_job(t.min(info.length), None, info)),
            Action::Run(direction) => Some(Job::Run(self.timeline.start_run(direction))),
            _ => None,
        };
    }

    /// Adds a breakpoint or watchpoint to the timeline (or removes it), where runs look.
    pub fn set_stop(&mut self, target: StopTarget, on: bool) {
        match (target, on) {
            (StopTarget::Breakpoint(a), true) => self.timeline.add_breakpoint(a),
            (StopTarget::Breakpoint(a), false) => {
                self.timeline.remove_breakpoint(a);
            }
            (StopTarget::Watchpoint(w), true) => self.timeline.add_watchpoint(w),
            (StopTarget::Watchpoint(w), false) => {
                self.timeline.remove_watchpoint(w);
            }
        }
    }

    fn seek_job(&self, target: u64, note: Option<String>, info: &TraceInfo) -> Job {
        let t1 = target.saturating_sub(1);
        let ck = checkpoint_before(info, t1);
        let cur = self.timeline.icount();
        let origin = if cur <= t1 && cur >= ck { cur } else { ck };
        Job::Seek { target, origin, note }
    }

    /// What the operation in progress has done so far.
    pub fn progress(&self) -> Option<Progress> {
        let at = self.timeline.icount();
        let frac = |done: u64, total: u64| if total == 0 { 1.0 } else { (done as f64 / total as f64).clamp(0.0, 1.0) };
        Some(match self.job.as_ref()? {
            Job::Seek { target, origin, .. } => Progress {
                what: format!("seeking to icount {target}"),
                at,
                fraction: frac(at.saturating_sub(*origin), target.saturating_sub(*origin)),
            },
            Job::Run(run) => {
                let p = self.timeline.run_progress(run);
                let what = match (p.direction, p.window, p.arriving) {
                    (_, _, Some(q)) => format!("moving to the stop found at icount {q}"),
                    (Direction::Forward, ..) => "running forward to the next breakpoint or watchpoint".to_string(),
                    (Direction::Backward, Some((lo, hi)), None) => {
                        format!("running backward to the previous breakpoint or watchpoint (scanning {lo}..{hi})")
                    }
                    (Direction::Backward, None, None) => "running backward".to_string(),
                };
                Progress { what, at: p.at, fraction: p.fraction() }
            }
        })
    }

    /// Stops the operation in progress where it is.
    pub fn cancel(&mut self, env: Env<'_>) -> Outcome {
        self.job = None;
        let icount = self.timeline.icount();
        self.view = View::capture(self.timeline.machine(), icount, None, env.mem, env.symbols);
        Outcome::Arrived { icount, note: Some(format!("cancelled at icount {icount}")) }
    }

    /// Reads memory again for a new memory-pane target.
    pub fn refresh_memory(&mut self, env: Env<'_>) {
        self.view.refresh_memory(self.timeline.machine(), env.mem, env.symbols);
    }

    /// Works on the operation in progress for about `budget`; returns its outcome when it
    /// has finished.
    pub fn work(&mut self, budget: Duration, env: Env<'_>) -> Option<Outcome> {
        let deadline = Instant::now() + budget;
        loop {
            let job = self.job.take()?;
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            let r = match job {
                Job::Seek { target, origin, note } => self.work_seek(target, origin, note, left, env),
                Job::Run(run) => self.work_run(run, left, env),
            };
            match r {
                Err(e) => return Some(self.fail(e, env)),
                Ok(Some(outcome)) => return Some(outcome),
                // Another phase may start right away (a run that stopped becoming a seek).
                Ok(None) if Instant::now() < deadline && self.job.is_some() => continue,
                Ok(None) => return None,
            }
        }
    }

    /// Runs the operation in progress to its end (tests, benchmarks).
    pub fn finish(&mut self, env: Env<'_>) -> Option<Outcome> {
        loop {
            if let Some(o) = self.work(Duration::from_secs(3600), env) {
                return Some(o);
            }
            self.job.as_ref()?;
        }
    }

    fn arrive(&mut self, prev: Option<Regs>, note: Option<String>, env: Env<'_>) -> Outcome {
        let icount = self.timeline.icount();
        self.view = View::capture(self.timeline.machine(), icount, prev, env.mem, env.symbols);
        Outcome::Arrived { icount, note }
    }

    fn fail(&mut self, e: TimelineError, env: Env<'_>) -> Outcome {
        self.job = None;
        let (icount, divergence) = match &e {
            TimelineError::Replay(ReplayError::Divergence(d)) => (d.icount, true),
            _ => (self.timeline.icount(), false),
        };
        let at = self.timeline.icount();
        self.view = View::capture(self.timeline.machine(), at, None, env.mem, env.symbols);
        Outcome::Failed { icount, message: e.to_string(), divergence }
    }

    /// A sliced seek: Ok(false) when the slice ended first.
    fn sliced_seek(&mut self, target: u64, budget: Duration) -> Result<bool, TimelineError> {
        if self.timeline.icount() == target {
            return Ok(true);
        }
        self.slicer.arm(budget);
        let r = self.timeline.seek(target);
        self.slicer.disarm();
        Ok(r? == Stop::Done)
    }

    /// Works on a seek for one slice; puts the job back if the slice ended first.
    fn work_seek(
        &mut self,
        target: u64,
        origin: u64,
        note: Option<String>,
        budget: Duration,
        env: Env<'_>,
    ) -> Result<Option<Outcome>, TimelineError> {
        if target == 0 {
            self.timeline.seek(0)?;
            return Ok(Some(self.arrive(None, note, env)));
        }
        if !self.sliced_seek(target - 1, budget)? {
            self.job = Some(Job::Seek { target, origin, note });
            return Ok(None);
        }
        let prev = Regs::of(self.timeline.machine());
        self.timeline.step_forward()?;
        Ok(Some(self.arrive(Some(prev), note, env)))
    }

    /// Continues a run for one slice. Once it stops at q, the move to q becomes a seek job
    /// (through q-1, so the registers the last step changed are highlighted).
    fn work_run(&mut self, mut run: Run, budget: Duration, env: Env<'_>) -> Result<Option<Outcome>, TimelineError> {
        self.slicer.arm(budget);
        let stop = self.timeline.continue_run(&mut run);
        self.slicer.disarm();
        let stop = stop?;
        let at = self.timeline.icount();
        let backward = run.direction() == Direction::Backward;
        let note = match &stop {
            Stop::Interrupted => {
                self.job = Some(Job::Run(run));
                return Ok(None);
            }
            Stop::Breakpoint { .. } | Stop::Watchpoint { .. } => {
                let what = env.stops.find(&stop).map_or_else(|| describe(&stop), |p| p.describe());
                let way = if backward { " (running backward)" } else { "" };
                format!("{what} hit at icount {at}{way}")
            }
            Stop::HistoryStart => {
                format!("no breakpoint or watchpoint hit before icount {}: start of the history", run.origin())
            }
            Stop::HistoryEnd => "no breakpoint or watchpoint hit before the end of the history".to_string(),
            Stop::Done => format!("stopped at icount {at}"),
        };
        if at == 0 {
            return Ok(Some(self.arrive(None, Some(note), env)));
        }
        self.job = Some(self.seek_job(at, Some(note), env.info));
        Ok(None)
    }
}

/// A stop the user's list does not name (it always should).
fn describe(stop: &Stop) -> String {
    match stop {
        Stop::Breakpoint { addr } => format!("breakpoint {addr:#x}"),
        Stop::Watchpoint { watch } => format!("watchpoint {watch}"),
        other => format!("{other:?}"),
    }
}
