//! Which checkpoint intervals a run can pass over without replaying them.
//!
//! Format-3 traces list the code each interval between two persistent checkpoints executed
//! (`Recording::interval_may_reach`): an interval in which no breakpoint's code ran cannot
//! stop a run at a breakpoint. A write watchpoint cannot stop it in an interval that wrote
//! none of the watched range's pages while its translation provably stayed the same
//! (`watch_quiet.rs`). An interval that neither can stop is passed over: a backward run
//! moves below it, a forward run restores the first checkpoint from which it can stop
//! again. Read and access watchpoints make every interval one that may stop (a read leaves
//! no trace in the dirty log).

use super::{Timeline, TimelineError, WatchKind};
use crate::free_interval::Lookout;
use crate::free_watch::PageHole;

impl Timeline {
    /// Whether a run could stop anywhere in persistent-checkpoint interval `k`.
    pub(super) fn interval_may_stop(&self, k: usize) -> bool {
        let rec = &self.session.rec;
        let at_breakpoint =
            !self.stops.breakpoints.is_empty() && rec.interval_may_reach(k, self.stops.breakpoints.iter().copied());
        at_breakpoint || self.watchpoint_may_fire(k)
    }

    /// Whether a watchpoint could fire in persistent-checkpoint interval `k`: false only
    /// with no watchpoint, or only write watchpoints whose bytes the interval provably
    /// leaves unchanged (never when [`Timeline::set_free_runs`] turned skips off for them).
    pub(super) fn watchpoint_may_fire(&self, k: usize) -> bool {
        let watches = &self.stops.watchpoints;
        if watches.is_empty() {
            return false;
        }
        if !self.free_runs || watches.iter().any(|w| w.kind != WatchKind::Write) {
            return true;
        }
        self.change_may_fire(k)
    }

    /// Whether a change of watched bytes could fire a write or access watchpoint in
    /// persistent-checkpoint interval `k` (false only when the interval provably leaves
    /// them all unchanged, or none watches changes).
    fn change_may_fire(&self, k: usize) -> bool {
        let ranges: Vec<(u64, u64)> =
            self.stops.watchpoints.iter().filter(|w| w.kind != WatchKind::Read).map(|w| (w.addr, w.len)).collect();
        !ranges.is_empty() && (!self.free_runs || !self.session.rec.interval_keeps_unchanged(k, &ranges))
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
    /// Whether persistent checkpoint `k` is the last one and is taken at the end of the
    /// history (a recording that ended, rather than one cut short).
    pub(super) fn final_checkpoint_ends_history(&self, k: usize) -> bool {
        let rec = &self.session.rec;
        k + 1 == rec.checkpoints.len() && rec.checkpoints[k].engine.icount == self.length() && self.length() > 0
    }

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

    /// Whether a free run shows that nothing stops a run anywhere in persistent-checkpoint
    /// interval `k`: no breakpoint hit (`free_hits.rs`), no read or access of a watched
    /// range (data breakpoints, `free_watch.rs`); false when it cannot tell, or when a
    /// watched value may change in it (changes are not counted, the dirty log rules them
    /// out). Moves the replay to checkpoint `k+1` (when true) or `k`.
    pub(super) fn free_run_finds_no_stop(&mut self, k: usize) -> Result<bool, TimelineError> {
        if !self.free_runs || self.stops.is_empty() || self.change_may_fire(k) {
            return Ok(false);
        }
        let addrs: Vec<u64> = self.stops.breakpoints.iter().copied().collect();
        let watch = self.data_watch();
        let hole = match &watch {
            // More ranges than debug registers.
            None if self.stops.watchpoints.iter().any(|w| w.kind != WatchKind::Write) => return Ok(false),
            // Data breakpoints do not fire here: the watched pages are hidden from the run.
            Some(w) if w.breakpoints().is_empty() => match PageHole::for_interval(&self.session.rec, k, w.watches()) {
                Some(h) => Some(h),
                None => return Ok(false),
            },
            _ => None,
        };
        self.leave_frontier()?;
        self.stats.restores += 1;
        let lookout = Lookout { watch: watch.as_deref(), hole: hole.as_ref() };
        let none = self.session.interval_hits_freely(k, &addrs, lookout)? == Some(false);
        if none {
            self.stats.free_counted_intervals += 1;
        }
        Ok(none)
    }
}
