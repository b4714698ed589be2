//! Choosing landmarks while recording: for each stretch before an anchor (see
//! [`AnchorLandmark`](crate::trace::AnchorLandmark); formats 4-6 had one per interval,
//! [`IntervalLandmark`](crate::trace::IntervalLandmark)).
//!
//! The recorder already single-steps, so counting, per stretch, how many steps start at
//! each address and where the last did is a hash-map update next to a ~7 µs exit. At the
//! stretch's end the landmark is the address a replay reaches cheapest: each hit of a
//! hardware breakpoint costs an exit and a step over it (measured: about as much as
//! [`HIT_COST`] single steps), and the steps after the landmark's last hit are single-stepped.

use std::collections::{HashMap, VecDeque};

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

    /// Starts a fresh count.
    pub fn clear(&mut self) {
        self.seen.clear();
    }

    /// The address a replay reaches step `end` from cheapest (address, hits, step of its
    /// last hit); `None` if no step was noted.
    pub fn cheapest(&self, end: u64) -> Option<(u64, u64, u64)> {
        self.cheapest_until(end, u64::MAX, &VecDeque::new())
    }

    /// [`LandmarkCounter::cheapest`] among the positions at or before step `limit`.
    /// `recent` lists every noted step after `limit` (and perhaps some before), as (step,
    /// address): it tells how many of an address's hits come after `limit`, and the step of
    /// its last hit before (an address whose last hit before lies before `recent` is left
    /// out).
    pub fn cheapest_until(&self, end: u64, limit: u64, recent: &VecDeque<(u64, u64)>) -> Option<(u64, u64, u64)> {
        let mut after: HashMap<u64, u64> = HashMap::new();
        let mut last_before: HashMap<u64, u64> = HashMap::new();
        for &(step, rip) in recent {
            if step > limit {
                *after.entry(rip).or_default() += 1;
            } else {
                last_before.insert(rip, step);
            }
        }
        let cost = |&(hits, last): &(u64, u64)| hits.saturating_mul(HIT_COST) + end.saturating_sub(last);
        // Ties go to the lower address, so the choice does not depend on hash order.
        let (rip, (hits, icount)) = self
            .seen
            .iter()
            .map(|(&rip, &count)| (rip, count))
            .filter_map(|(rip, (hits, last))| match after.get(&rip).copied().unwrap_or(0) {
                0 => Some((rip, (hits, last))),
                later if later < hits => Some((rip, (hits - later, *last_before.get(&rip)?))),
                _ => None,
            })
            .min_by(|a, b| cost(&a.1).cmp(&cost(&b.1)).then(a.0.cmp(&b.0)))?;
        Some((rip, hits, icount))
    }
}

/// An anchor this close after a step that left a flag undefined, with no later step that
/// left that flag undefined again, gets a landmark at or before that step: the replay then
/// single-steps it and the engine clears the flag, where a native run would leave whatever
/// the host computes (the flag may still be as the step left it at the anchor: DIV's AF
/// survives the ROL after it, which does not write AF).
pub const UNDEFINED_FLAGS_REACH: u64 = 64;

/// The six arithmetic flags, in the order of [`AnchorCounter`]'s per-flag steps.
const ARITHMETIC_FLAGS: [u64; 6] = [
    ttvm_vmm::undefined_flags::CF,
    ttvm_vmm::undefined_flags::PF,
    ttvm_vmm::undefined_flags::AF,
    ttvm_vmm::undefined_flags::ZF,
    ttvm_vmm::undefined_flags::SF,
    ttvm_vmm::undefined_flags::OF,
];

/// Collects an interval's anchors while recording (see
/// [`AnchorLandmark`](crate::trace::AnchorLandmark)): steps the engine carried out itself
/// end a stretch, and the stretch's kernel-mode steps are counted for its landmark.
///
/// It also places waypoints (format 8 on, [`IntervalAnchors::waypoints`]): when
/// [`WAYPOINT_EVERY`] steps have passed since the last waypoint or checkpoint and the stretch
/// has a kernel-mode step to stop at, the next kernel-mode step is a waypoint: its landmark
/// is chosen among the stretch's steps so far, as an anchor's would be, and the recorder
/// adds the register digest there. The stretch goes on: `replay --verify` runs past it.
///
/// [`IntervalAnchors::waypoints`]: crate::trace::IntervalAnchors::waypoints
/// [`WAYPOINT_EVERY`]: crate::trace::WAYPOINT_EVERY
///
/// A step that left arithmetic flags undefined shortly before an anchor is kept out of the
/// native part of its stretch ([`UNDEFINED_FLAGS_REACH`]).
#[derive(Debug, Default)]
pub struct AnchorCounter {
    stretch: LandmarkCounter,
    /// The first step of the current stretch.
    stretch_start: u64,
    /// The stretch's kernel-mode steps of the last [`UNDEFINED_FLAGS_REACH`] steps.
    recent: VecDeque<(u64, u64)>,
    /// Per arithmetic flag, the last step that left it undefined, plus one (0: none).
    undefined_at: [u64; 6],
    anchors: Vec<crate::trace::AnchorLandmark>,
    waypoints: Vec<crate::trace::Waypoint>,
    /// The last waypoint's or checkpoint's step. Anchors do not count: a seek runs natively
    /// only to waypoints, whose register digest proves where it arrived, so a stretch of
    /// frequent anchors (a line of serial output, a busy timer) still gets waypoints.
    last_stop: u64,
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
            self.recent.push_back((icount, rip));
            while self.recent.front().is_some_and(|&(s, _)| s + UNDEFINED_FLAGS_REACH < icount) {
                self.recent.pop_front();
            }
        }
    }

    /// Step `icount`, just noted (not an anchor), left the flags in `mask` undefined.
    pub fn note_undefined_flags(&mut self, icount: u64, mask: u64) {
        for (at, flag) in self.undefined_at.iter_mut().zip(ARITHMETIC_FLAGS) {
            if mask & flag != 0 {
                *at = icount + 1;
            }
        }
    }

    /// Whether step `icount`, about to run (in kernel mode if `kernel`), should be a
    /// waypoint: the recorder then passes the register digest before it to
    /// [`AnchorCounter::note_waypoint`] once it ran.
    pub fn wants_waypoint(&self, icount: u64, kernel: bool) -> bool {
        kernel && icount.saturating_sub(self.last_stop) >= crate::trace::WAYPOINT_EVERY && !self.stretch.is_empty()
    }

    /// Step `icount`, which [`AnchorCounter::wants_waypoint`] asked for, is about to run
    /// (nothing of it noted yet); `digest` is the register digest now. Keeps the waypoint if
    /// the stretch has a landmark for it.
    pub fn note_waypoint(&mut self, icount: u64, digest: u64) {
        if let Some((rip, hits, at)) = self.landmark_for(icount) {
            self.waypoints.push(crate::trace::Waypoint { step: icount, rip, hits, at, digest });
            self.last_stop = icount;
        }
    }

    /// The landmark for stopping right before step `stop` among the stretch's steps so far:
    /// the cheapest, at or before the first step within reach whose undefined flag no later
    /// step left undefined again.
    fn landmark_for(&self, stop: u64) -> Option<(u64, u64, u64)> {
        let limit = self
            .undefined_at
            .iter()
            .filter_map(|&at| at.checked_sub(1))
            .filter(|&u| u >= self.stretch_start && stop - u <= UNDEFINED_FLAGS_REACH)
            .min();
        self.stretch.cheapest_until(stop, limit.unwrap_or(u64::MAX), &self.recent)
    }

    fn close_stretch(&mut self, anchor: u64) {
        let (rip, hits, at) = self.landmark_for(anchor).unwrap_or((0, 0, anchor));
        self.anchors.push(crate::trace::AnchorLandmark { anchor, rip, hits, at });
        self.stretch.clear();
        self.recent.clear();
        self.stretch_start = anchor + 1;
    }

    /// The anchors of the interval ending at checkpoint `checkpoint` (at step `end`, the
    /// last anchor), and a fresh list for the next.
    pub fn take(&mut self, checkpoint: u32, end: u64) -> crate::trace::IntervalAnchors {
        self.close_stretch(end);
        // A checkpoint is a better place to start from than any waypoint.
        self.last_stop = end;
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
        assert_eq!(c.cheapest(320), Some((0x2000, 1, 300)));
        c.clear();
        assert_eq!(c.cheapest(320), None, "the count starts again");
    }

    #[test]
    fn with_only_a_hot_loop_its_last_address_before_the_end_wins() {
        let mut c = LandmarkCounter::default();
        for i in 0..90 {
            c.note(0x1000 + (i % 3), i);
        }
        // 30 hits each; the one hit last (89, address 0x1002) leaves the fewest steps.
        assert_eq!(c.cheapest(90), Some((0x1002, 30, 89)));
    }

    #[test]
    fn a_step_that_left_flags_undefined_near_the_anchor_is_single_stepped() {
        use ttvm_vmm::undefined_flags::{AF, ARITHMETIC, OF};
        let mut c = AnchorCounter::default();
        // A loop over 0x1000..0x1003 for 100 steps; step 90 leaves all six flags undefined
        // (a DIV), step 95 only OF (a ROL): AF from 90 may still be live at the anchor at
        // 100, so the landmark is at or before 90.
        for i in 0..100 {
            c.note(0x1000 + (i % 4), i, true, false);
            match i {
                90 => c.note_undefined_flags(i, ARITHMETIC),
                95 => c.note_undefined_flags(i, OF),
                _ => {}
            }
        }
        let l = c.take(1, 100).anchors[0];
        assert!(l.at <= 90 && l.hits > 0, "{l:?}");
        // The count as of its step: the landmark's address hit that often up to there.
        let hits = (0..=l.at).filter(|i| 0x1000 + (i % 4) == l.rip).count() as u64;
        assert_eq!(l.hits, hits, "{l:?}");
        assert_eq!(0x1000 + (l.at % 4), l.rip, "{l:?}");
        // Out of reach, or left undefined again later (AF again at 398), the limit moves.
        let mut c = AnchorCounter::default();
        for i in 101..300 {
            c.note(0x1000 + (i % 4), i, true, false);
            if i == 110 {
                c.note_undefined_flags(i, ARITHMETIC);
            }
        }
        assert!(c.take(1, 300).anchors[0].at > 290, "not limited by step 110");
        let mut c = AnchorCounter::default();
        for i in 301..400 {
            c.note(0x1000 + (i % 4), i, true, false);
            match i {
                390 => c.note_undefined_flags(i, AF),
                398 => c.note_undefined_flags(i, AF),
                _ => {}
            }
        }
        let l = c.take(1, 400).anchors[0];
        assert!(l.at <= 398 && l.at > 390, "{l:?}");
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
        let mut asked = Vec::new();
        // Kernel steps only, except user-mode steps around 1.5 W (no waypoint there).
        for i in 0..3 * W + 10 {
            let kernel = !(W + W / 2..2 * W + 10).contains(&i);
            if c.wants_waypoint(i, kernel) {
                c.note_waypoint(i, 0xd000 + i);
                asked.push(i);
            }
            c.note(0x1000 + (i % 7), i, kernel, false);
        }
        let a = c.take(1, 3 * W + 10);
        // The first at W; the next kernel step after 2 W (the user-mode stretch waits).
        assert_eq!(asked, vec![W, 2 * W + 10]);
        let steps: Vec<(u64, u64)> = a.waypoints.iter().map(|w| (w.step, w.digest)).collect();
        assert_eq!(steps, vec![(W, 0xd000 + W), (2 * W + 10, 0xd000 + 2 * W + 10)]);
        // Waypoints are no anchors; their landmarks count from the stretch's start.
        assert_eq!(a.anchors.len(), 1);
        for w in &a.waypoints {
            assert!(w.at < w.step && w.hits > 0 && 0x1000 + (w.at % 7) == w.rip, "{w:?}");
            assert_eq!(w.hits, (0..=w.at).filter(|i| 0x1000 + (i % 7) == w.rip).count() as u64, "{w:?}");
        }
    }

    #[test]
    fn frequent_anchors_do_not_keep_waypoints_away() {
        use crate::trace::WAYPOINT_EVERY as W;
        let mut c = AnchorCounter::default();
        let mut asked = Vec::new();
        // An anchor every 30 steps (a line of serial output), all in kernel mode.
        for i in 0..3 * W {
            if c.wants_waypoint(i, true) {
                c.note_waypoint(i, i);
                asked.push(i);
            }
            c.note(0x1000 + (i % 5), i, true, i % 30 == 29);
        }
        let a = c.take(1, 3 * W);
        assert_eq!(a.waypoints.len(), 2, "{:?}", a.waypoints);
        // Each W steps after the last (neither W nor 2 W follows an anchor directly, which
        // would leave no stretch to count a landmark in).
        const { assert!((W - 1) % 30 != 29 && (2 * W - 1) % 30 != 29) };
        assert_eq!(asked, vec![W, 2 * W]);
        for w in &a.waypoints {
            assert!(w.at < w.step && w.at / 30 == w.step / 30, "landmark in the waypoint's stretch: {w:?}");
        }
        // The next interval counts from its checkpoint.
        assert!(!c.wants_waypoint(3 * W + 5, true));
    }
}
