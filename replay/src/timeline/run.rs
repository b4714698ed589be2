//! Runs to the next stop, forwards and backwards, that can be paused and resumed (after rr's
//! `ReplayTimeline::reverse_continue(stop_filter, interrupt_check)`).
//!
//! A [`Run`] holds everything a run has learnt so far. [`Timeline::continue_run`] works on it
//! until a breakpoint or watchpoint stops it, history ends, or the interrupt flag (or the
//! run's step budget) pauses it; a paused run continues exactly where it was when it is
//! continued again, so nothing is scanned twice. gdb drives a run to its end in one call
//! ([`Timeline::run_forward`], [`Timeline::run_backward`]); the UI continues it once per time
//! slice and draws [`RunProgress`] in between. Both therefore stop at the same places.
//!
//! A backward run scans the checkpoint intervals below its origin newest first: it restores
//! the checkpoint at the bottom of an interval (a window `[lo, hi)`), replays up to `hi`
//! remembering the last stop it passed, and moves there if there was one, or to the window
//! below if not.

use std::collections::VecDeque;

use super::{Stepped, Stop, Timeline, TimelineError, INTERRUPT_CHECK_EVERY};

/// Which way a run goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Towards the end of history (gdb `continue`).
    Forward,
    /// Towards its start (gdb `reverse-continue`).
    Backward,
}

/// A run to the next stop in one direction, resumable after a pause.
#[derive(Clone, Debug)]
pub struct Run {
    direction: Direction,
    origin: u64,
    /// The stop points' generation the run's findings are valid for.
    generation: u64,
    /// Where the run's own work paused, when its next step depends on the position being
    /// exactly there (anyone may move the timeline between two calls).
    paused_at: Option<u64>,
    budget: Option<u64>,
    phase: Phase,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Stepping forward. The in-memory checkpoints the run made, newest last: only the last
    /// two on the spacing grid behind where it stops are kept, so the first reverse step
    /// after it is as cheap as the next ones.
    Forward { trailing: VecDeque<u64> },
    /// About to choose the window below `hi` (everything from `hi` up to the origin has been
    /// scanned and holds no stop).
    NextWindow { hi: u64 },
    /// Scanning `[lo, hi)`: the positions below the timeline's have been examined, and
    /// `last` is the latest stop among them.
    Scanning { lo: u64, hi: u64, last: Option<(u64, Stop)> },
    /// Moving to `at`, where the run stops with `stop`; `window` is where it was found.
    Arriving { at: u64, stop: Stop, window: Option<(u64, u64)> },
    /// Over: continuing returns the stop again.
    Finished(Stop),
}

/// What a run is doing, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunProgress {
    /// Its direction.
    pub direction: Direction,
    /// Where it started.
    pub from: u64,
    /// The timeline's position.
    pub at: u64,
    /// The length of the history.
    pub length: u64,
    /// A backward run: the window `[lo, hi)` being scanned (all of `[hi, from)` has been).
    pub window: Option<(u64, u64)>,
    /// The run has found its stop and is moving to this position.
    pub arriving: Option<u64>,
}

impl RunProgress {
    /// How much of the work is done, 0..=1: for a forward run the part of the history
    /// between its start and the end that it has covered; for a backward run the part
    /// between the start of history and its origin that it has scanned.
    pub fn fraction(&self) -> f64 {
        let part = |done: u64, total: u64| if total == 0 { 1.0 } else { (done as f64 / total as f64).clamp(0.0, 1.0) };
        match (self.direction, self.window) {
            (Direction::Forward, _) => part(self.at.saturating_sub(self.from), self.length.saturating_sub(self.from)),
            (Direction::Backward, _) if self.arriving.is_some() && self.window.is_none() => 1.0,
            (Direction::Backward, Some((lo, hi))) => {
                let in_window = if self.arriving.is_some() { hi - lo } else { self.at.saturating_sub(lo).min(hi - lo) };
                part(self.from.saturating_sub(hi) + in_window, self.from)
            }
            (Direction::Backward, None) => part(0, self.from),
        }
    }
}

impl Run {
    /// Which way it goes.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The position it started from.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// Makes every `continue_run` pause (return `Stop::Interrupted`) after executing at most
    /// `steps` steps of the run's own work, as if the interrupt flag had been raised then;
    /// `None` removes the budget. For callers that slice work by steps rather than by time.
    pub fn set_step_budget(&mut self, steps: Option<u64>) {
        self.budget = steps.map(|s| s.max(1));
    }

    /// Whether the run has returned its stop.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }
}

impl Timeline {
    /// A run from the current position in `direction`; nothing happens until
    /// [`continue_run`](Self::continue_run).
    pub fn start_run(&self, direction: Direction) -> Run {
        let origin = self.icount();
        Run {
            direction,
            origin,
            generation: self.stops.generation,
            paused_at: None,
            budget: None,
            phase: self.first_phase(direction, origin),
        }
    }

    fn first_phase(&self, direction: Direction, origin: u64) -> Phase {
        match direction {
            Direction::Forward => Phase::Forward { trailing: VecDeque::with_capacity(3) },
            // Nothing can stop the run: no need to scan the history.
            Direction::Backward if self.stops.is_empty() => {
                Phase::Arriving { at: 0, stop: Stop::HistoryStart, window: None }
            }
            Direction::Backward => Phase::NextWindow { hi: origin },
        }
    }

    /// What `run` is doing, for a progress bar.
    pub fn run_progress(&self, run: &Run) -> RunProgress {
        let (window, arriving) = match &run.phase {
            Phase::Forward { .. } | Phase::Finished(_) => (None, None),
            Phase::NextWindow { hi } => (Some((*hi, *hi)), None),
            Phase::Scanning { lo, hi, .. } => (Some((*lo, *hi)), None),
            Phase::Arriving { at, window, .. } => (*window, Some(*at)),
        };
        RunProgress {
            direction: run.direction,
            from: run.origin,
            at: self.icount(),
            length: self.length(),
            window,
            arriving,
        }
    }

    /// Works on `run` until a breakpoint or watchpoint stops it, history ends in its
    /// direction, or it is paused by the interrupt flag or its step budget
    /// (`Stop::Interrupted`). A paused run continues exactly where it was when this is
    /// called again with it. If someone else moved the position in between, the run first
    /// goes back to where it was; if the breakpoints or watchpoints changed, it starts again
    /// from its origin, so what it returns is always the next stop from there. An error ends
    /// the run.
    pub fn continue_run(&mut self, run: &mut Run) -> Result<Stop, TimelineError> {
        if run.generation != self.stops.generation {
            run.generation = self.stops.generation;
            run.phase = self.first_phase(run.direction, run.origin);
            run.paused_at = (run.direction == Direction::Forward).then_some(run.origin);
        }
        if let Some(at) = run.paused_at {
            if self.icount() != at && self.seek(at)? == Stop::Interrupted {
                return Ok(Stop::Interrupted);
            }
            run.paused_at = None;
        }
        self.advance(run)
    }

    /// Whether a run with step budget `budget` should pause before its next step, `done`
    /// steps into this call.
    fn pause_due(&self, budget: Option<u64>, done: u64) -> bool {
        budget.is_some_and(|b| done >= b)
            || (done % INTERRUPT_CHECK_EVERY == INTERRUPT_CHECK_EVERY - 1 && self.interrupted())
    }

    /// The forward phase: steps until something stops the run or it pauses.
    fn step_forward_until_stop(&mut self, run: &mut Run) -> Result<Stop, TimelineError> {
        let Phase::Forward { trailing } = &mut run.phase else { return Ok(Stop::Done) };
        let mut done = 0u64;
        // The interval whose skipping was last decided: once per interval, not per step.
        let mut decided: Option<usize> = None;
        let stop = loop {
            if self.icount() != run.origin && self.make_temp_here()? {
                trailing.push_back(self.icount());
                if trailing.len() > 2 {
                    if let Some(old) = trailing.pop_front() {
                        self.drop_temp(old);
                    }
                }
            }
            if self.icount() >= self.length() && !self.can_grow() {
                break Stop::HistoryEnd;
            }
            if self.pause_due(run.budget, done) {
                run.paused_at = Some(self.icount());
                return Ok(Stop::Interrupted);
            }
            if !self.is_live() {
                let k = self.session.rec.checkpoint_before(self.icount());
                if decided != Some(k) {
                    decided = Some(k);
                    let at_checkpoint = self.session.rec.checkpoints[k].engine.icount == self.icount();
                    if at_checkpoint && self.skippable_to(k).is_none() && self.free_run_finds_no_stop(k)? {
                        // No breakpoint in the whole interval: the run is at checkpoint k+1.
                        self.stats.skipped_intervals += 1;
                        if let Some(addr) = self.breakpoint_here() {
                            break Stop::Breakpoint { addr };
                        }
                        continue;
                    }
                    if let Some(next) = self.skippable_to(k) {
                        if self.final_checkpoint_ends_history(next) {
                            // Nothing can stop the run before the end: arrive there by a
                            // seek, which leaves in-memory checkpoints just behind it, so
                            // the first reverse step is as cheap as the next ones.
                            self.stats.skipped_intervals += 1;
                            if self.seek(self.length() - 1)? == Stop::Interrupted {
                                run.paused_at = Some(self.icount());
                                return Ok(Stop::Interrupted);
                            }
                            // The last step is stepped (and watched) as usual.
                            decided = Some(self.session.rec.checkpoint_before(self.icount()));
                            continue;
                        }
                        // Nothing in the rest of this interval can stop the run.
                        self.session.restore_checkpoint(next)?;
                        self.stats.restores += 1;
                        self.stats.skipped_intervals += 1;
                        // The checkpoint's own position starts an interval that can stop.
                        if let Some(addr) = self.breakpoint_here() {
                            break Stop::Breakpoint { addr };
                        }
                        continue;
                    }
                }
            }
            let (r, watch) = self.step_watching()?;
            done += 1;
            if r == Stepped::AtEnd {
                break Stop::HistoryEnd;
            }
            if let Some(watch) = watch {
                break Stop::Watchpoint { watch };
            }
            if r == Stepped::GuestStopped {
                break Stop::HistoryEnd;
            }
            if let Some(addr) = self.breakpoint_here() {
                break Stop::Breakpoint { addr };
            }
        };
        run.phase = Phase::Finished(stop.clone());
        Ok(stop)
    }

    /// Moves `run` from phase to phase until it stops or pauses.
    fn advance(&mut self, run: &mut Run) -> Result<Stop, TimelineError> {
        let mut done = 0u64;
        loop {
            run.phase = match std::mem::replace(&mut run.phase, Phase::Finished(Stop::Done)) {
                forward @ Phase::Forward { .. } => {
                    run.phase = forward;
                    return self.step_forward_until_stop(run);
                }
                Phase::NextWindow { hi: 0 } => Phase::Arriving { at: 0, stop: Stop::HistoryStart, window: None },
                Phase::NextWindow { hi } if !self.interval_may_stop(self.session.rec.checkpoint_before(hi - 1)) => {
                    // Nothing in [checkpoint k, hi) can stop the run: go below it unreplayed.
                    self.stats.skipped_intervals += 1;
                    let k = self.session.rec.checkpoint_before(hi - 1);
                    Phase::NextWindow { hi: self.session.rec.checkpoints[k].engine.icount }
                }
                Phase::NextWindow { hi }
                    if self.ends_an_interval(hi)
                        && self.free_run_finds_no_stop(self.session.rec.checkpoint_before(hi - 1))? =>
                {
                    // A free run found no breakpoint hit in the interval [checkpoint k, hi).
                    self.stats.skipped_intervals += 1;
                    let k = self.session.rec.checkpoint_before(hi - 1);
                    Phase::NextWindow { hi: self.session.rec.checkpoints[k].engine.icount }
                }
                Phase::NextWindow { hi } => {
                    self.leave_frontier()?;
                    let start = self.best_start(hi - 1);
                    self.go_to_start(start)?;
                    Phase::Scanning { lo: self.icount(), hi, last: None }
                }
                Phase::Scanning { lo, hi, mut last } => {
                    let mut paused = false;
                    while self.icount() < hi {
                        let q = self.icount();
                        self.maybe_make_temp(hi, lo, false)?;
                        if self.pause_due(run.budget, done) {
                            paused = true;
                            break;
                        }
                        if let Some(addr) = self.breakpoint_here() {
                            last = Some((q, Stop::Breakpoint { addr }));
                        }
                        let (r, watch) = self.step_watching()?;
                        done += 1;
                        // At one position a watchpoint is reported in preference to a
                        // breakpoint.
                        if let Some(watch) = watch {
                            last = Some((q, Stop::Watchpoint { watch }));
                        }
                        if r != Stepped::Yes {
                            break;
                        }
                    }
                    if paused {
                        run.phase = Phase::Scanning { lo, hi, last };
                        run.paused_at = Some(self.icount());
                        return Ok(Stop::Interrupted);
                    }
                    match last {
                        Some((at, stop)) => Phase::Arriving { at, stop, window: Some((lo, hi)) },
                        None => Phase::NextWindow { hi: lo },
                    }
                }
                Phase::Arriving { at, stop, window } => {
                    if self.seek(at)? == Stop::Interrupted {
                        run.phase = Phase::Arriving { at, stop, window };
                        return Ok(Stop::Interrupted);
                    }
                    run.phase = Phase::Finished(stop.clone());
                    return Ok(stop);
                }
                Phase::Finished(stop) => {
                    run.phase = Phase::Finished(stop.clone());
                    return Ok(stop);
                }
            };
        }
    }

    /// Runs forward until a breakpoint, a watchpoint, the end of history or an interrupt.
    /// Leaves the last two in-memory checkpoints on the spacing grid behind wherever it
    /// stops, so the first reverse step after it replays at most one spacing, like the
    /// ones after it (rather than up to a whole persistent-checkpoint interval).
    pub fn run_forward(&mut self) -> Result<Stop, TimelineError> {
        let mut run = self.start_run(Direction::Forward);
        self.continue_run(&mut run)
    }

    /// Runs backward to the most recent position before the current one where a
    /// breakpoint or watchpoint stops, or to the start of history. Interrupted while
    /// scanning, it ends at the bottom of the part it has scanned, above which there is no
    /// stop, so a later backward run from there skips nothing; interrupted once it has found
    /// its stop, it finishes moving there and reports it.
    pub fn run_backward(&mut self) -> Result<Stop, TimelineError> {
        let mut run = self.start_run(Direction::Backward);
        loop {
            let stop = self.continue_run(&mut run)?;
            if stop != Stop::Interrupted {
                return Ok(stop);
            }
            match &run.phase {
                Phase::NextWindow { hi } | Phase::Scanning { hi, .. } => {
                    self.seek(*hi)?;
                    return Ok(Stop::Interrupted);
                }
                // Going to the start because nothing can stop the run: stop where it is.
                Phase::Arriving { window: None, .. } => return Ok(Stop::Interrupted),
                Phase::Arriving { .. } | Phase::Forward { .. } | Phase::Finished(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(direction: Direction, at: u64, window: Option<(u64, u64)>, arriving: Option<u64>) -> RunProgress {
        RunProgress { direction, from: 1000, at, length: 2000, window, arriving }
    }

    #[test]
    fn progress_fractions_count_the_work_done() {
        assert_eq!(progress(Direction::Forward, 1500, None, None).fraction(), 0.5);
        // Backward from 1000: [800, 1000) scanned, half of [600, 800) too.
        assert_eq!(progress(Direction::Backward, 700, Some((600, 800)), None).fraction(), 0.3);
        // Found a stop in [600, 800): that window counts as scanned.
        assert_eq!(progress(Direction::Backward, 10, Some((600, 800)), Some(650)).fraction(), 0.4);
        // Nothing to scan: going straight to the start.
        assert_eq!(progress(Direction::Backward, 10, None, Some(0)).fraction(), 1.0);
        let empty =
            RunProgress { direction: Direction::Backward, from: 0, at: 0, length: 0, window: None, arriving: None };
        assert_eq!(empty.fraction(), 1.0);
    }
}
