//! The user-mode stretches `privilege::user_spans` finds are exactly those of a step-by-step
//! scan of the whole trace (the `ring3` kernel goes back and forth between ring 0 and 3).

use std::rc::Rc;

use ttvm_replay::privilege::{next_transition, prev_transition, user_spans};
use ttvm_replay::recording::Recording;
use ttvm_replay::replay::{ReplaySession, ReplayStep};
use ttvm_replay::stepping::host_signature;
use ttvm_test_support::require_kvm;

#[test]
fn user_spans_match_a_scan_of_every_step() {
    if !require_kvm("user_spans_match_a_scan_of_every_step") {
        return;
    }
    let dir = ttvm_test_support::tempdir();
    let (path, _) = ttvm_test_support::record_sample(dir.path(), "ring3", "spin=50", 5_000, 64 << 20, None);
    let rec = Rc::new(Recording::open(&path).unwrap());
    let mut seen = Vec::new();
    let spans = user_spans(rec.clone(), &host_signature(), |k, _| seen.push(k), || false).unwrap();

    let mut s = ReplaySession::new(rec.clone(), &host_signature()).unwrap();
    let mut scan: Vec<(u64, u64)> = Vec::new();
    loop {
        let at = s.icount();
        if s.engine.machine.vm.vcpu().sregs().cs.dpl == 3 {
            match scan.last_mut() {
                Some(last) if last.1 == at => last.1 = at + 1,
                _ => scan.push((at, at + 1)),
            }
        }
        if s.step().unwrap() != ReplayStep::Stepped {
            break;
        }
    }
    assert!(scan.len() > 3, "the ring3 kernel enters user mode several times: {scan:?}");
    assert_eq!(spans, scan);
    assert_eq!(seen.len(), rec.checkpoints.len(), "a lower-half kernel's intervals are all replayed");
    let first = scan[0];
    assert_eq!(next_transition(&spans, 0), Some(first.0));
    assert_eq!(next_transition(&spans, first.0), Some(first.1));
    assert_eq!(prev_transition(&spans, first.1), Some(first.0));
}
