//! Carries out the app's actions on the timeline, in time slices so the UI keeps drawing
//! progress and reading Esc during long moves.
//!
//! Every move to a position N goes through N-1: the driver seeks to N-1, reads the registers
//! and executes one step. The register pane can then highlight what the instruction at N-1
//! changed, and the screen at N is the same however N was reached (stepping back then forward
//! redraws it identically). A single step forward needs nothing more than the step itself.
//!
//! Breakpoint runs are the timeline's own (`Timeline::run_forward`, and
//! `Timeline::continue_backward` with a `ReverseRun` kept in the job): the time slicer
//! raises the timeline's interrupt flag at the end of each slice, the run pauses, the screen
//! is redrawn and the next slice resumes it. So the stop rules (and the skipping of
//! intervals a breakpoint cannot be in) are exactly gdb's.

use std::time::{Duration, Instant};

use ttvm_replay::replay::ReplayError;
use ttvm_replay::timeline::{ReverseRun, Stop, Timeline, TimelineError};

use crate::app::Action;
use crate::parse::MemTarget;
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
    Forward { addr: u64, start: u64 },
    Backward { addr: u64, run: ReverseRun },
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
        let cursor = self.timeline.icount();
        self.job = match *action {
            Action::Seek(t) => Some(self.seek_job(t.min(info.length), None, info)),
            Action::RunForward(addr) => Some(Job::Forward { addr, start: cursor }),
            Action::RunBackward(addr) => Some(Job::Backward { addr, run: ReverseRun::new(cursor) }),
            _ => None,
        };
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
            Job::Forward { addr, start } => Progress {
                what: format!("running forward to breakpoint {addr:#x}"),
                at,
                fraction: frac(at.saturating_sub(*start), self.timeline.length().saturating_sub(*start)),
            },
            Job::Backward { addr, run } => {
                let (from, hi, lo) = run.progress();
                let lo = lo.unwrap_or(hi);
                Progress {
                    what: format!("running backward to breakpoint {addr:#x} (scanning {lo}..{hi})"),
                    at,
                    fraction: frac(from - hi + at.saturating_sub(lo).min(hi - lo), from),
                }
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
            let job = self.job.clone()?;
            let r = match job {
                Job::Seek { target, note, .. } => self.work_seek(target, note, budget, env),
                Job::Forward { addr, .. } => self.work_forward(addr, deadline, env),
                Job::Backward { .. } => self.work_backward(deadline, env),
            };
            match r {
                Err(e) => return Some(self.fail(e, env)),
                Ok(Some(outcome)) => {
                    self.job = None;
                    return Some(outcome);
                }
                // Another phase may start right away (a backward run becoming a seek).
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

    fn work_seek(
        &mut self,
        target: u64,
        note: Option<String>,
        budget: Duration,
        env: Env<'_>,
    ) -> Result<Option<Outcome>, TimelineError> {
        if target == 0 {
            self.timeline.seek(0)?;
            return Ok(Some(self.arrive(None, note, env)));
        }
        if !self.sliced_seek(target - 1, budget)? {
            return Ok(None);
        }
        let prev = Regs::of(self.timeline.machine());
        self.timeline.step_forward()?;
        Ok(Some(self.arrive(Some(prev), note, env)))
    }

    /// Makes `addr` the timeline's one breakpoint (the app has one at a time).
    fn only_breakpoint(&mut self, addr: u64) {
        for other in self.timeline.breakpoints().iter().copied().filter(|&a| a != addr).collect::<Vec<_>>() {
            self.timeline.remove_breakpoint(other);
        }
        self.timeline.add_breakpoint(addr);
    }

    /// Runs `run` for what is left of the slice; the slicer pauses it.
    fn sliced<T>(&mut self, deadline: Instant, run: impl FnOnce(&mut Timeline) -> T) -> T {
        self.slicer.arm(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
        let r = run(&mut self.timeline);
        self.slicer.disarm();
        r
    }

    fn work_forward(&mut self, addr: u64, deadline: Instant, env: Env<'_>) -> Result<Option<Outcome>, TimelineError> {
        self.only_breakpoint(addr);
        match self.sliced(deadline, |t| t.run_forward())? {
            Stop::Interrupted => Ok(None),
            Stop::Breakpoint { .. } => {
                let q = self.timeline.icount();
                let note = Some(format!("breakpoint {addr:#x} hit at icount {q}"));
                self.job = Some(self.seek_job(q, note, env.info));
                Ok(None)
            }
            _ => {
                let note = format!("no hit of breakpoint {addr:#x} before the end of the history");
                Ok(Some(self.arrive(None, Some(note), env)))
            }
        }
    }

    fn work_backward(&mut self, deadline: Instant, env: Env<'_>) -> Result<Option<Outcome>, TimelineError> {
        let Some(Job::Backward { addr, mut run }) = self.job.clone() else {
            return Ok(None);
        };
        self.only_breakpoint(addr);
        let stop = self.sliced(deadline, |t| t.continue_backward(&mut run))?;
        let from = run.progress().0;
        self.job = Some(match stop {
            Stop::Interrupted => Job::Backward { addr, run },
            Stop::Breakpoint { .. } => {
                let q = self.timeline.icount();
                let note = Some(format!("breakpoint {addr:#x} hit at icount {q} (running backward)"));
                self.seek_job(q, note, env.info)
            }
            _ => {
                let note = Some(format!("no hit of breakpoint {addr:#x} before icount {from}: start of the history"));
                self.seek_job(0, note, env.info)
            }
        });
        Ok(None)
    }
}
