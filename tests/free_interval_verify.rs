//! `replay --verify` runs the checkpoint intervals without events at free-run speed and
//! checks the state reached against the checkpoint that ends each (issue 23): it still
//! verifies everything, finds the same divergences, and `--step-all` single-steps instead.

mod common;

use common::{record_bench_free_intervals, require_kvm, rewrite_trace, run, text};
use ttvm_replay::checkpoint::{register_digest, CheckpointRecord};
use ttvm_replay::trace::ChunkKind;

/// How many intervals the verify says ran freely, and of how many tried.
fn free_intervals(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().find(|l| l.contains("intervals without events ran at free-run speed"))?;
    let mut words = line.trim_start_matches("ttvm: ").split_whitespace();
    let verified = words.next()?.parse().ok()?;
    let tried = words.nth(1)?.parse().ok()?;
    Some((verified, tried))
}

#[test]
fn intervals_without_events_verify_at_free_run_speed() {
    if !require_kvm("intervals_without_events_verify_at_free_run_speed") {
        return;
    }
    let dir = common::tempdir();
    let trace = record_bench_free_intervals(dir.path());
    let o = run(&["replay", "--verify", "-q", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let (verified, tried) = free_intervals(&err).unwrap_or_else(|| panic!("no free-run note: {err}"));
    assert!(verified > 0 && verified <= tried, "{err}");
    assert!(err.contains("final state digest match"), "{err}");

    let o = run(&["replay", "--verify", "-q", "--step-all", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(free_intervals(&String::from_utf8_lossy(&o.stderr)), None, "--step-all steps everything");
}

/// A recorded state the native run cannot reach is not taken for a match: the interval is
/// single-stepped again and the divergence named as always.
#[test]
fn a_checkpoint_no_run_reaches_is_still_a_divergence() {
    if !require_kvm("a_checkpoint_no_run_reaches_is_still_a_divergence") {
        return;
    }
    let dir = common::tempdir();
    let good = record_bench_free_intervals(dir.path());
    let o = run(&["replay", "--verify", "-q", good.to_str().unwrap()]);
    let (verified, _) = free_intervals(&String::from_utf8_lossy(&o.stderr)).expect("free intervals");
    assert!(verified >= 3, "{}", text(&o));
    // Edit a late checkpoint: the ones before it still verify freely.
    let edited = dir.path().join("edited.ttvm");
    let mut k_edited = None;
    let mut seen = 0;
    rewrite_trace(&good, &edited, |kind, raw| {
        if kind != ChunkKind::Checkpoint {
            return;
        }
        seen += 1;
        let mut cp: CheckpointRecord = bincode::deserialize(raw).unwrap();
        if seen == 18 {
            cp.vcpu.regs.rbx ^= 1 << 40;
            cp.register_digest = register_digest(&cp.vcpu);
            *raw = bincode::serialize(&cp).unwrap();
            k_edited = Some(cp.index);
        }
    });
    let k = k_edited.expect("the trace has 18 checkpoints");
    let o = run(&["replay", "--verify", "-q", edited.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("state at checkpoint {k} does not match")) && err.contains("RBX"), "{err}");
}

/// Every interval of a new trace has a landmark inside it; one that a free run cannot stop
/// at as recorded (its hit count edited) costs that interval its free run, never the
/// verify its answer.
#[test]
fn landmarks_lead_to_the_recorded_step_and_a_wrong_one_only_costs_speed() {
    use ttvm_replay::trace::IntervalLandmark;
    if !require_kvm("landmarks_lead_to_the_recorded_step_and_a_wrong_one_only_costs_speed") {
        return;
    }
    let dir = common::tempdir();
    let good = record_bench_free_intervals(dir.path());
    let rec = ttvm_replay::recording::Recording::open(&good).unwrap();
    assert_eq!(rec.interval_landmarks.len(), rec.checkpoints.len() - 1, "one per interval");
    for (k, l) in rec.interval_landmarks.iter().enumerate() {
        let l = l.unwrap_or_else(|| panic!("interval {k} has no landmark"));
        let (start, end) = (rec.checkpoints[k].engine.icount, rec.checkpoints[k + 1].engine.icount);
        assert!(l.icount >= start && l.icount < end && l.hits >= 1, "interval {k}: {l:?}");
    }
    let o = run(&["replay", "--verify", "-q", good.to_str().unwrap()]);
    let (verified, tried) = free_intervals(&String::from_utf8_lossy(&o.stderr)).expect("free intervals");

    let edited = dir.path().join("wrong-landmark.ttvm");
    let mut edits = 0;
    rewrite_trace(&good, &edited, |kind, raw| {
        if kind != ChunkKind::Landmark {
            return;
        }
        let mut l: IntervalLandmark = bincode::deserialize(raw).unwrap();
        // Every landmark one hit late: each run stops one loop iteration (or more) off.
        l.hits += 1;
        *raw = bincode::serialize(&l).unwrap();
        edits += 1;
    });
    assert!(edits > 0);
    let o = run(&["replay", "--verify", "-q", edited.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "a wrong landmark is no divergence: {}", text(&o));
    let (verified_edited, tried_edited) = free_intervals(&String::from_utf8_lossy(&o.stderr)).expect("free intervals");
    assert_eq!(tried_edited, tried);
    assert!(verified_edited < verified, "{verified_edited} of {tried} still matched after the edit");
}
