//! Choosing each interval's landmark while recording (see
//! [`IntervalLandmark`](crate::trace::IntervalLandmark)).
//!
//! The recorder already single-steps, so counting, per interval, how many steps start at
//! each address and where the last did is a hash-map update next to a ~7 µs exit. At the
//! interval's end the landmark is the address a replay reaches cheapest: each hit of a
//! hardware breakpoint costs an exit and a step over it (measured: about as much as
//! [`HIT_COST`] single steps), and the steps after the landmark's last hit are single-stepped.

use std::collections::HashMap;

use crate::trace::IntervalLandmark;

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

    /// The landmark of the interval ending at checkpoint `checkpoint` (at step `end`), and
    /// a fresh count for the next; `None` for an interval with no step.
    pub fn take(&mut self, checkpoint: u32, end: u64) -> Option<IntervalLandmark> {
        let seen = std::mem::take(&mut self.seen);
        let cost = |&(hits, last): &(u64, u64)| hits.saturating_mul(HIT_COST) + end.saturating_sub(last);
        // Ties go to the lower address, so the choice does not depend on hash order.
        let (rip, (hits, icount)) = seen.into_iter().min_by(|a, b| cost(&a.1).cmp(&cost(&b.1)).then(a.0.cmp(&b.0)))?;
        Some(IntervalLandmark { checkpoint, rip, hits, icount })
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
        let l = c.take(5, 320).unwrap();
        assert_eq!(l, IntervalLandmark { checkpoint: 5, rip: 0x2000, hits: 1, icount: 300 });
        assert_eq!(c.take(6, 320), None, "the count starts again");
    }

    #[test]
    fn with_only_a_hot_loop_its_last_address_before_the_end_wins() {
        let mut c = LandmarkCounter::default();
        for i in 0..90 {
            c.note(0x1000 + (i % 3), i);
        }
        // 30 hits each; the one hit last (89, address 0x1002) leaves the fewest steps.
        let l = c.take(1, 90).unwrap();
        assert_eq!((l.rip, l.hits, l.icount), (0x1002, 30, 89));
    }
}
