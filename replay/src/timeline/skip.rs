//! Which checkpoint intervals a run can pass over without replaying them.
//!
//! Format-3 traces list the code each interval between two persistent checkpoints executed
//! (`Recording::interval_may_reach`). With only breakpoints set, an interval in which none
//! of their code ran cannot stop a run, so a backward run moves below it and a forward run
//! restores the first checkpoint from which it can stop again. A watchpoint disables this:
//! which pages an interval writes is known, but not whether a write lands in the range
//! before the run gets there.

use super::{Timeline, TimelineError};

impl Timeline {
    /// Whether a run could stop anywhere in persistent-checkpoint interval `k`.
    pub(super) fn interval_may_stop(&self, k: usize) -> bool {
        !self.stops.watchpoints.is_empty()
            || self.session.rec.interval_may_reach(k, self.stops.breakpoints.iter().copied())
    }

    /// If interval `k` cannot stop a run, the first persistent checkpoint after it from
    /// which the run can stop again (or the last one): one restore skips them all.
    pub(super) fn skippable_to(&self, k: usize) -> Option<usize> {
        let last = self.session.rec.checkpoints.len().checked_sub(1)?;
        if k >= last || self.interval_may_stop(k) {
            return None;
        }
        Some((k + 1..last).find(|&j| self.interval_may_stop(j)).unwrap_or(last))
    }
}

impl Timeline {
    /// Whether position `hi` (> 0) is a persistent checkpoint's and a backward scan below
    /// it would start at the previous one: the window is a whole interval. (With an
    /// in-memory checkpoint in the interval the scan starts there, and is cheaper than a
    /// free run of the whole interval plus the restores around it.)
    pub(super) fn ends_an_interval(&self, hi: u64) -> bool {
        let rec = &self.session.rec;
        let k = rec.checkpoint_before(hi.saturating_sub(1));
        hi > 0
            && rec.checkpoints.get(k + 1).is_some_and(|c| c.engine.icount == hi)
            && self.best_start(hi - 1) == super::Start::Persistent(k)
    }

    /// Whether a free run shows that no breakpoint stops a run anywhere in persistent-
    /// checkpoint interval `k` (`free_hits.rs`); false when it cannot tell, or when a
    /// watchpoint is set (writes are not counted). Moves the replay to checkpoint `k+1`
    /// (when true) or `k`.
    pub(super) fn free_run_finds_no_stop(&mut self, k: usize) -> Result<bool, TimelineError> {
        if !self.free_runs || !self.stops.watchpoints.is_empty() || self.stops.breakpoints.is_empty() {
            return Ok(false);
        }
        let addrs: Vec<u64> = self.stops.breakpoints.iter().copied().collect();
        self.leave_frontier()?;
        self.stats.restores += 1;
        let none = self.session.interval_hits_freely(k, &addrs)? == Some(false);
        if none {
            self.stats.free_counted_intervals += 1;
        }
        Ok(none)
    }
}
