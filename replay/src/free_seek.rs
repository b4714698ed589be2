//! Seeking into a checkpoint interval at free-run speed (issue 23, item 2): `monitor goto`,
//! the TUI's jumps and every other [`Timeline::seek`](crate::timeline::Timeline::seek) that
//! lands inside an interval.
//!
//! A native run can stop exactly only at a landmark, and its state is proven only where it
//! is compared with the recording. From format 8 on the recorder places waypoints
//! (`IntervalAnchors::waypoints`): positions about every `WAYPOINT_EVERY` kernel steps,
//! each with a landmark in its stretch and the register digest there. A seek to step T of
//! interval k, from checkpoint k, runs natively between the anchors as `replay --verify`
//! does, then to the landmark of the last waypoint at or before T, single-steps to the
//! waypoint, compares every register with the digest there, and single-steps the rest. A waypoint whose registers differ (the native run left
//! an undefined flag the engine would have cleared, or took another path), or any run that
//! does not go as recorded, puts the replay back at checkpoint k and the whole distance is
//! single-stepped, as before; the interval is not tried natively again.
//!
//! What the digest does not cover is memory: a native run stores what the host computes,
//! and where that differs from the exact engine (an undefined flag pushed by PUSHF or an
//! exception frame inside the stretch, overwritten before the interval's end) the RAM shown
//! at T could differ from a single-stepped replay's with the registers equal. The
//! interval's end state is compared as always when a replay passes it.

use crate::checkpoint::register_digest;
use crate::replay::{ReplayError, ReplaySession};
use crate::trace::{AnchorLandmark, Waypoint};

/// Steps a native run covers in the time of one single step, about.
const NATIVE_STEPS_PER_STEP: u64 = 3;

/// What seeks into intervals did (for `monitor info`).
#[derive(Clone, Copy, Debug, Default)]
pub struct FreeSeekStats {
    /// Seeks that ran natively to a waypoint.
    pub arrived: u64,
    /// Steps they ran natively.
    pub steps: u64,
    /// Seeks whose native run did not reach its waypoint as recorded.
    pub fell_back: u64,
}

impl ReplaySession {
    /// The waypoint a seek to `target` would run to natively from the checkpoint before it
    /// (the last one at or before `target` in its interval); `None` if there is none, or
    /// that interval's native run failed before.
    pub fn seek_waypoint(&self, target: u64) -> Option<Waypoint> {
        let k = self.rec.checkpoint_before(target);
        if self.free_failed.contains(&k) {
            return None;
        }
        let start = self.rec.checkpoints[k].engine.icount;
        let anchors = self.rec.interval_anchors.get(k)?.as_ref()?;
        anchors.waypoints.iter().rev().find(|w| w.step <= target && w.step > start).copied()
    }

    /// What a native run from the checkpoint before `target` to waypoint `w` (from
    /// [`ReplaySession::seek_waypoint`]) costs, in single steps' time: the steps each
    /// stretch single-steps from its landmark to its anchor, a third of a step for each
    /// step run natively (bench: 1.3-1.8 µs against 7.4) and half a step for each
    /// breakpoint exit on a landmark. Where anchors are dense (a line of serial output, a
    /// busy timer) this is not much cheaper than stepping.
    pub fn free_seek_cost(&self, w: &Waypoint) -> u64 {
        let mut from = self.rec.checkpoints[self.rec.checkpoint_before(w.step)].engine.icount;
        let mut cost = 0;
        for l in self.stretches_to(w) {
            let native = if l.hits > 0 { l.at.saturating_sub(from) } else { 0 };
            cost += native / NATIVE_STEPS_PER_STEP + l.hits / 2 + (l.anchor - from - native);
            from = l.anchor + 1;
        }
        cost
    }

    /// The stretches a native run from the checkpoint before waypoint `w` runs to reach it:
    /// the interval's anchors before it (a waypoint comes from the interval's anchors), then
    /// the waypoint as the end of a last stretch.
    fn stretches_to(&self, w: &Waypoint) -> Vec<AnchorLandmark> {
        let k = self.rec.checkpoint_before(w.step);
        let anchors = self.rec.interval_anchors.get(k).and_then(Option::as_ref).map_or(&[][..], |a| &a.anchors[..]);
        let mut stretches: Vec<_> = anchors.iter().take_while(|l| l.anchor < w.step).copied().collect();
        stretches.push(AnchorLandmark { anchor: w.step, rip: w.rip, hits: w.hits, at: w.at });
        stretches
    }

    /// At the persistent checkpoint before waypoint `w` (from
    /// [`ReplaySession::seek_waypoint`], just restored), moves to `w` by a native run, if
    /// its registers there match the recorded digest. Returns whether it moved; if not,
    /// the position is that checkpoint.
    pub fn free_seek(&mut self, w: &Waypoint) -> Result<bool, ReplayError> {
        let icount = self.engine.icount();
        let k = self.rec.checkpoint_before(icount);
        if self.rec.checkpoints[k].engine.icount != icount
            || self.next_checkpoint != k + 1
            || self.rec.checkpoint_before(w.step) != k
        {
            return Ok(false);
        }
        let (goal, digest) = (w.step, w.digest);
        let stretches = self.stretches_to(w);
        self.env.held_echo = Some(Vec::new());
        self.free_fallback = None;
        let run = self.run_stretches(&stretches, goal, &[], crate::free_interval::Lookout::default());
        let held = self.env.held_echo.take().unwrap_or_default();
        let cleanup = self.engine.machine.vm.vcpu_mut().set_debug(true, [None; 4]);
        let run = run?;
        let arrived = run.is_none() && self.engine.icount() == goal;
        cleanup?;
        if arrived && register_digest(&self.engine.machine.vm.vcpu_mut().save_state()?) == digest {
            if let (Some(echo), false) = (&mut self.env.echo, held.is_empty()) {
                echo.write(&held);
            }
            self.free_seek_stats.arrived += 1;
            self.free_seek_stats.steps += goal - icount;
            return Ok(true);
        }
        self.free_seek_stats.fell_back += 1;
        self.free_failed.insert(k);
        self.restore_checkpoint(k)?;
        // As after a free interval that fell back: stepping must meet the page faults the
        // recording took (`free_interval.rs`).
        self.engine.machine.vm.drop_guest_mappings().map_err(|e| self.kvm_error(e.to_string()))?;
        Ok(false)
    }
}
