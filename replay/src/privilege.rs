//! Where a recorded guest ran in user mode (CPL 3): the stretches [from, to) of positions
//! whose state is in ring 3, for the UI's timeline and its jumps between user mode and the
//! kernel.
//!
//! A trace does not list privilege changes, so they are found by replaying; but only the
//! intervals that can hold user mode are replayed. An interval whose executed code the trace
//! lists (format 4 on: `IntervalCode`) and which ran only kernel-half code (addresses with
//! bit 63 set, where Linux and every higher-half kernel live) and starts in ring 0 holds
//! none. Kernels that keep their code in the lower half (the sample kernels, identity
//! mapped) cannot be told apart that way, and their intervals are all replayed.

use std::rc::Rc;

use crate::recording::Recording;
use crate::replay::{ReplayError, ReplaySession, ReplayStep};

/// A stretch of user mode: the positions `from..to` are in ring 3.
pub type UserSpan = (u64, u64);

/// Whether the interval that starts at checkpoint `k` can hold a user-mode position.
pub fn interval_may_hold_user_mode(rec: &Recording, k: usize) -> bool {
    let starts_in_user_mode = rec.checkpoints.get(k).is_some_and(|c| c.vcpu.sregs.cs.dpl == 3);
    let kernel_half_only = match rec.interval_code.get(k) {
        Some(Some(code)) => code.pages.iter().all(|&(page, _)| page << 12 >> 63 == 1),
        _ => false,
    };
    starts_in_user_mode || !kernel_half_only
}

/// Finds the user-mode stretches of `rec`, interval by interval in order, calling
/// `found(k, spans)` with each replayed interval's (empty too) so a caller can show them as
/// they come; `stop()` is asked between intervals. Returns every stretch, adjacent ones
/// across interval boundaries merged.
pub fn user_spans(
    rec: Rc<Recording>,
    host_stepping: &str,
    mut found: impl FnMut(usize, &[UserSpan]),
    mut stop: impl FnMut() -> bool,
) -> Result<Vec<UserSpan>, ReplayError> {
    let mut session = ReplaySession::new(rec.clone(), host_stepping)?;
    let mut all: Vec<UserSpan> = Vec::new();
    for k in 0..rec.checkpoints.len() {
        if stop() {
            break;
        }
        if !interval_may_hold_user_mode(&rec, k) {
            continue;
        }
        let end = rec.checkpoints.get(k + 1).map_or(rec.length(), |c| c.engine.icount);
        session.restore_checkpoint(k)?;
        let mut spans: Vec<UserSpan> = Vec::new();
        loop {
            let at = session.icount();
            if at >= end {
                break;
            }
            if session.engine.machine.vm.vcpu().sregs().cs.dpl == 3 {
                match spans.last_mut() {
                    Some(last) if last.1 == at => last.1 = at + 1,
                    _ => spans.push((at, at + 1)),
                }
            }
            if session.step()? != ReplayStep::Stepped {
                break;
            }
        }
        found(k, &spans);
        for s in spans {
            match all.last_mut() {
                Some(last) if last.1 == s.0 => last.1 = s.1,
                _ => all.push(s),
            }
        }
    }
    Ok(all)
}

/// The first position after `at` where the privilege level changes (the start or end of a
/// stretch), in `spans` (sorted, disjoint).
pub fn next_transition(spans: &[UserSpan], at: u64) -> Option<u64> {
    spans.iter().flat_map(|&(a, b)| [a, b]).find(|&p| p > at)
}

/// The last position before `at` where the privilege level changes.
pub fn prev_transition(spans: &[UserSpan], at: u64) -> Option<u64> {
    spans.iter().rev().flat_map(|&(a, b)| [b, a]).find(|&p| p < at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_both_ends_of_each_stretch() {
        let spans = [(10, 20), (30, 31)];
        assert_eq!(next_transition(&spans, 0), Some(10));
        assert_eq!(next_transition(&spans, 10), Some(20));
        assert_eq!(next_transition(&spans, 25), Some(30));
        assert_eq!(next_transition(&spans, 30), Some(31));
        assert_eq!(next_transition(&spans, 31), None);
        assert_eq!(prev_transition(&spans, 40), Some(31));
        assert_eq!(prev_transition(&spans, 31), Some(30));
        assert_eq!(prev_transition(&spans, 15), Some(10));
        assert_eq!(prev_transition(&spans, 10), None);
    }
}
