//! Carries out the app's actions on the timeline, in time slices so the UI keeps drawing
//! progress and reading Esc during long moves.
//!
//! Every move to a position N goes through N-1: the driver seeks to N-1, reads the registers
//! and executes one step. The register pane can then highlight what the instruction at N-1
//! changed, and the screen at N is the same however N was reached (stepping back then forward
//! redraws it identically). A single step forward needs nothing more than the step itself.
//!
//! Breakpoint runs are step loops over the timeline (`step_forward` and a RIP check), not
//! `Timeline::run_forward/run_backward`: those cannot report progress, and an interrupted
//! `run_backward` loses the part of the window it had scanned (see the report's API wishes).
//! The stop rule is the timeline's: a breakpoint at A stops at position q when RIP(q) = A.

use std::time::{Duration, Instant};

use ttvm_replay::replay::ReplayError;
use ttvm_replay::timeline::{Stop, Timeline, TimelineError};

use crate::app::Action;
use crate::parse::MemTarget;
use crate::symbols::Symbols;
use crate::trace_info::TraceInfo;
use crate::view::{Regs, View};

/// How long one slice of a long operation runs before the screen is redrawn.
pub const SLICE: Duration = Duration::from_millis(40);
/// Steps of a breakpoint run between looks at the clock.
const CHECK_EVERY: u64 = 256;

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
    Backward { addr: u64, from: u64, hi: u64, lo: u64, restored: bool, last: Option<u64> },
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
            Action::RunBackward(addr) => Some(Job::Backward {
                addr,
                from: cursor,
                hi: cursor,
                lo: checkpoint_before(info, cursor.saturating_sub(1)),
                restored: false,
                last: None,
            }),
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
            Job::Backward { addr, from, hi, lo, .. } => Progress {
                what: format!("running backward to breakpoint {addr:#x} (scanning {lo}..{hi})"),
                at,
                fraction: frac(from - hi + at.saturating_sub(*lo).min(hi - lo), *from),
            },
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

    fn work_forward(&mut self, addr: u64, deadline: Instant, env: Env<'_>) -> Result<Option<Outcome>, TimelineError> {
        let mut n = 0u64;
        loop {
            if self.timeline.icount() >= self.timeline.length() {
                let note = format!("no hit of breakpoint {addr:#x} before the end of the history");
                return Ok(Some(self.arrive(None, Some(note), env)));
            }
            let prev = Regs::of(self.timeline.machine());
            self.timeline.step_forward()?;
            if self.timeline.machine().vm.vcpu().rip() == addr {
                let note = format!("breakpoint {addr:#x} hit at icount {}", self.timeline.icount());
                return Ok(Some(self.arrive(Some(prev), Some(note), env)));
            }
            n += 1;
            if n.is_multiple_of(CHECK_EVERY) && Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    fn work_backward(&mut self, deadline: Instant, env: Env<'_>) -> Result<Option<Outcome>, TimelineError> {
        let Some(Job::Backward { addr, from, mut hi, mut lo, mut restored, mut last }) = self.job.clone() else {
            return Ok(None);
        };
        let info = env.info;
        if hi == 0 {
            let note = Some(format!("no hit of breakpoint {addr:#x} before icount {from}: start of the history"));
            self.job = Some(self.seek_job(0, note, info));
            return Ok(None);
        }
        if !restored {
            let budget = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            if !self.sliced_seek(lo, budget)? {
                return Ok(None);
            }
            restored = true;
        }
        let mut n = 0u64;
        let window_done = loop {
            let q = self.timeline.icount();
            if self.timeline.machine().vm.vcpu().rip() == addr {
                last = Some(q);
            }
            if q + 1 >= hi {
                break true;
            }
            self.timeline.step_forward()?;
            n += 1;
            if n.is_multiple_of(CHECK_EVERY) && Instant::now() >= deadline {
                break false;
            }
        };
        if !window_done {
            self.job = Some(Job::Backward { addr, from, hi, lo, restored, last });
            return Ok(None);
        }
        if let Some(q) = last {
            let note = Some(format!("breakpoint {addr:#x} hit at icount {q} (running backward)"));
            self.job = Some(self.seek_job(q, note, info));
            return Ok(None);
        }
        hi = lo;
        lo = checkpoint_before(info, hi.saturating_sub(1));
        self.job = Some(Job::Backward { addr, from, hi, lo, restored: false, last: None });
        Ok(None)
    }
}
