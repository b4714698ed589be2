//! Choosing landmarks while recording: for each stretch before an anchor (see
//! [`AnchorLandmark`](crate::trace::AnchorLandmark); formats 4-6 had one per interval,
//! [`IntervalLandmark`](crate::trace::IntervalLandmark)).
//!
//! The recorder already single-steps, so counting, per stretch, how many steps start at
//! each address and where the last did is a hash-map update next to a ~7 µs exit. At the
//! stretch's end the landmark is the address a replay reaches cheapest: each hit of a
//! hardware breakpoint costs an exit and a step over it (measured: about as much as
//! [`HIT_COST`] single steps), and the steps after the landmark's last hit are single-stepped.

use std::collections::HashMap;

/// What a breakpoint hit costs a replay, in single steps.
pub const HIT_COST: u64 = 8;

/// Per address: steps of this interval that started there, and the last one.
#[derive(Debug, Default)]
pub struct LandmarkCounter {
    seen: HashMap<u64, (u64, u64)>,
}

impl LandmarkCounter {
    /// Step `icount` starts at `rip`.
    pub fn note(&mut self, rip: u64, icount: u64) {
        let e = self.seen.entry(rip).or_insert((0, icount));
        e.0 += 1;
        e.1 = icount;
    }

    /// Whether no step was noted since the last count was taken.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The address a replay reaches step `end` from cheapest (address, hits, step of its
    /// last hit), and a fresh count; `None` if no step was noted.
    pub fn take_cheapest(&mut self, end: u64) -> Option<(u64, u64, u64)> {
        let seen = std::mem::take(&mut self.seen);
        let cost = |&(hits, last): &(u64, u64)| hits.saturating_mul(HIT_COST) + end.saturating_sub(last);
        // Ties go to the lower address, so the choice does not depend on hash order.
        let (rip, (hits, icount)) = seen.into_iter().min_by(|a, b| cost(&a.1).cmp(&cost(&b.1)).then(a.0.cmp(&b.0)))?;
        Some((rip, hits, icount))
    }
}

/// Collects an interval's anchors while recording (see
/// [`AnchorLandmark`](crate::trace::AnchorLandmark)): steps the engine carried out itself
/// end a stretch, and the stretch's kernel-mode steps are counted for its landmark.
///
/// It also places waypoints (format 8 on, [`IntervalAnchors::waypoints`]): when a stretch
/// has run [`WAYPOINT_EVERY`] steps with a kernel-mode step to stop at, the next kernel-mode
/// step becomes an anchor, with the register digest before it.
///
/// [`IntervalAnchors::waypoints`]: crate::trace::IntervalAnchors::waypoints
/// [`WAYPOINT_EVERY`]: crate::trace::WAYPOINT_EVERY
#[derive(Debug, Default)]
pub struct AnchorCounter {
    stretch: LandmarkCounter,
    /// The first step of the current stretch.
    stretch_start: u64,
    anchors: Vec<crate::trace::AnchorLandmark>,
    waypoints: Vec<(u64, u64)>,
}

impl AnchorCounter {
    /// Step `icount` started at `rip` (in kernel mode if `kernel`); `anchor` if the engine
    /// carried it out itself (it logged an event or halted).
    pub fn note(&mut self, rip: u64, icount: u64, kernel: bool, anchor: bool) {
        if anchor {
            self.close_stretch(icount);
        } else if kernel {
            // A hardware breakpoint on a user-mode address does not exit on every host.
            self.stretch.note(rip, icount);
        }
    }

    /// Whether step `icount`, about to run (in kernel mode if `kernel`), should be a
    /// waypoint: the recorder then passes the register digest before it to
    /// [`AnchorCounter::note_waypoint`] once it ran.
    pub fn wants_waypoint(&self, icount: u64, kernel: bool) -> bool {
        kernel && icount.saturating_sub(self.stretch_start) >= crate::trace::WAYPOINT_EVERY && !self.stretch.is_empty()
    }

    /// Step `icount` (at `rip`, in kernel mode) ran as a waypoint; `digest` is the register
    /// digest before it.
    pub fn note_waypoint(&mut self, icount: u64, digest: u64) {
        self.close_stretch(icount);
        self.waypoints.push((icount, digest));
    }

    fn close_stretch(&mut self, anchor: u64) {
        let (rip, hits, at) = self.stretch.take_cheapest(anchor).unwrap_or((0, 0, anchor));
        self.anchors.push(crate::trace::AnchorLandmark { anchor, rip, hits, at });
        self.stretch_start = anchor + 1;
    }

    /// The anchors of the interval ending at checkpoint `checkpoint` (at step `end`, the
    /// last anchor), and a fresh list for the next.
    pub fn take(&mut self, checkpoint: u32, end: u64) -> crate::trace::IntervalAnchors {
        self.close_stretch(end);
        crate::trace::IntervalAnchors {
            checkpoint,
            anchors: std::mem::take(&mut self.anchors),
            waypoints: std::mem::take(&mut self.waypoints),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheapest_address_to_stop_at_is_chosen() {
        let mut c = LandmarkCounter::default();
        // A loop of three instructions for 300 steps, then a one-off call near the end.
        for i in 0..300 {
            c.note(0x1000 + (i % 3), i);
        }
        c.note(0x2000, 300);
        for i in 301..320 {
            c.note(0x1000 + (i % 3), i);
        }
        assert_eq!(c.take_cheapest(320), Some((0x2000, 1, 300)));
        assert_eq!(c.take_cheapest(320), None, "the count starts again");
    }

    #[test]
    fn with_only_a_hot_loop_its_last_address_before_the_end_wins() {
        let mut c = LandmarkCounter::default();
        for i in 0..90 {
            c.note(0x1000 + (i % 3), i);
        }
        // 30 hits each; the one hit last (89, address 0x1002) leaves the fewest steps.
        assert_eq!(c.take_cheapest(90), Some((0x1002, 30, 89)));
    }

    #[test]
    fn anchors_end_stretches_and_user_steps_are_not_landmarks() {
        use crate::trace::AnchorLandmark;
        let mut c = AnchorCounter::default();
        // Steps 0-9 in the kernel, 10 an anchor, 11 an anchor, 12-19 in user mode, 20 an
        // anchor, 21-24 in the kernel, the checkpoint at 25.
        for i in 0..10 {
            c.note(0x1000 + i, i, true, false);
        }
        c.note(0x5000, 10, true, true);
        c.note(0x5000, 11, true, true);
        for i in 12..20 {
            c.note(0x40_0000 + i, i, false, false);
        }
        c.note(0x6000, 20, true, true);
        for i in 21..25 {
            c.note(0x2000, i, true, false);
        }
        let a = c.take(3, 25);
        assert_eq!(a.checkpoint, 3);
        assert_eq!(
            a.anchors,
            vec![
                AnchorLandmark { anchor: 10, rip: 0x1009, hits: 1, at: 9 },
                AnchorLandmark { anchor: 11, rip: 0, hits: 0, at: 11 },
                AnchorLandmark { anchor: 20, rip: 0, hits: 0, at: 20 },
                AnchorLandmark { anchor: 25, rip: 0x2000, hits: 4, at: 24 },
            ]
        );
        assert_eq!(c.take(4, 30).anchors, vec![AnchorLandmark { anchor: 30, rip: 0, hits: 0, at: 30 }]);
    }

    #[test]
    fn waypoints_come_every_so_many_kernel_steps_with_their_digest() {
        use crate::trace::WAYPOINT_EVERY as W;
        let mut c = AnchorCounter::default();
        let mut digests = Vec::new();
        // Kernel steps only, except user-mode steps around 1.5 W (no waypoint there).
        for i in 0..3 * W + 10 {
            let kernel = !(W + W / 2..2 * W + 10).contains(&i);
            if c.wants_waypoint(i, kernel) {
                c.note_waypoint(i, 0xd000 + i);
                digests.push((i, 0xd000 + i));
            } else {
                c.note(0x1000 + (i % 7), i, kernel, false);
            }
        }
        let a = c.take(1, 3 * W + 10);
        // The first at W; the next kernel step after 2 W (the user-mode stretch waits).
        assert_eq!(digests, vec![(W, 0xd000 + W), (2 * W + 10, 0xd000 + 2 * W + 10)]);
        assert_eq!(a.waypoints, digests);
        let anchors: Vec<u64> = a.anchors.iter().map(|l| l.anchor).collect();
        assert_eq!(anchors, vec![W, 2 * W + 10, 3 * W + 10]);
        assert!(a.anchors.iter().all(|l| l.hits > 0), "{a:?}");
    }
}
