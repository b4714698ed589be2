//! Runs to breakpoints count hits in intervals by free runs (issue 23, item 2: intervals
//! without events to their landmark, and from format 7 intervals with events between their
//! anchors): they must stop exactly where single-stepping every interval stops, in both
//! directions, and must actually pass intervals over that way.

mod common;

use std::collections::HashMap;
use std::rc::Rc;

use common::{record_bench_free_intervals, require_kvm};
use ttvm_replay::recording::Recording;
use ttvm_replay::replay::{ReplaySession, ReplayStep};
use ttvm_replay::stepping::host_signature;
use ttvm_replay::timeline::{Stop, Timeline};

/// Per address, the last position whose RIP it was.
fn last_positions(rec: &Rc<Recording>) -> HashMap<u64, u64> {
    let mut s = ReplaySession::new(rec.clone(), &host_signature()).unwrap();
    let mut by_addr = HashMap::new();
    loop {
        let rip = s.engine.machine.vm.vcpu().rip();
        by_addr.insert(rip, s.icount());
        match s.step().unwrap() {
            ReplayStep::Stepped => {}
            ReplayStep::Stopped(_) | ReplayStep::AtEnd => break,
        }
    }
    by_addr
}

/// Where a run from `from` in `direction` to a breakpoint on `addr` stops, and how many
/// intervals free runs passed over on the way.
fn stop(tl: &mut Timeline, from: u64, addr: u64, backward: bool) -> ((u64, Stop), u64) {
    tl.seek(from).unwrap();
    tl.add_breakpoint(addr);
    let before = tl.stats().free_counted_intervals;
    let t = std::time::Instant::now();
    let stop = if backward { tl.run_backward() } else { tl.run_forward() }.unwrap();
    eprintln!(
        "{} from {from} to {addr:#x}: {stop:?} at {} in {:?}",
        if backward { "back" } else { "forward" },
        tl.icount(),
        t.elapsed()
    );
    tl.remove_breakpoint(addr);
    ((tl.icount(), stop), tl.stats().free_counted_intervals - before)
}

#[test]
fn free_counted_runs_stop_where_stepped_runs_do() {
    if !require_kvm("free_counted_runs_stop_where_stepped_runs_do") {
        return;
    }
    let dir = common::tempdir();
    let trace = record_bench_free_intervals(dir.path());
    runs_stop_alike(&trace);
}

/// The `timer` kernel has events in most intervals (an interrupt, port accesses and output
/// every few dozen steps): only format 7's anchors let free runs count there.
#[test]
fn free_counted_runs_cross_intervals_with_events() {
    if !require_kvm("free_counted_runs_cross_intervals_with_events") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("timer.ttvm");
    let t = trace.to_str().unwrap();
    let o = common::run(&["record", "timer", "--cmdline", "ticks=300", "--checkpoint-every", "5000", "-q", "-o", t]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let rec = Recording::open(&trace).unwrap();
    let with_events = (0..rec.checkpoints.len() - 1)
        .filter(|&k| {
            let (start, end) = (rec.checkpoints[k].engine.icount, rec.checkpoints[k + 1].engine.icount);
            rec.events.get(rec.first_event_at(start)).is_some_and(|e| e.icount < end)
        })
        .count();
    let intervals = rec.checkpoints.len() - 1;
    assert!(with_events * 3 >= intervals * 2, "{with_events} of {intervals} intervals have events");
    runs_stop_alike(&trace);
}

/// Reverse-continue and continue to a few addresses stop at the same icount with free runs
/// as with every interval single-stepped, and free runs pass intervals over.
fn runs_stop_alike(trace: &std::path::Path) {
    let rec = Rc::new(Recording::open(trace).unwrap());
    let length = rec.length();
    let by_addr = last_positions(&rec);
    // Addresses the code lists cannot rule out but which no step starts at: the byte after
    // the first byte of an instruction, in the same 16-byte block, for the instruction whose
    // block the most intervals without events ran. Runs to it cross every interval; a
    // count of hits passes those over.
    let quiet = |k: usize| {
        let (start, end) = (rec.checkpoints[k].engine.icount, rec.checkpoints[k + 1].engine.icount);
        rec.interval_anchors.get(k).is_some_and(Option::is_some)
            || rec.events.get(rec.first_event_at(start)).is_none_or(|e| e.icount >= end)
    };
    let reached_quietly =
        |a: u64| (0..rec.checkpoints.len() - 1).filter(|&k| quiet(k) && rec.interval_may_reach(k, [a])).count();
    let hot = by_addr
        .keys()
        .filter(|&&a| a & 0xf != 0xf && !by_addr.contains_key(&(a + 1)))
        .map(|&a| (reached_quietly(a), a))
        .max()
        .map(|(_, a)| a)
        .expect("an instruction longer than a byte");
    let mut cases = vec![hot + 1, hot];
    // Addresses last run in the first half, nearest the middle: real stops far back.
    let mut early: Vec<(u64, u64)> = by_addr.iter().filter(|&(_, &l)| l < length / 2).map(|(&a, &l)| (l, a)).collect();
    early.sort_unstable();
    cases.extend(early.iter().rev().take(2).map(|&(_, a)| a));
    let mut free = Timeline::new(rec.clone(), &host_signature()).unwrap();
    let mut stepped = Timeline::new(rec.clone(), &host_signature()).unwrap();
    stepped.set_free_runs(false);
    let mut counted = 0;
    for &addr in &cases {
        let (want, none) = stop(&mut stepped, length, addr, true);
        assert_eq!(none, 0, "stepping counts nothing freely");
        let expected = match by_addr.get(&addr) {
            Some(&at) => (at, Stop::Breakpoint { addr }),
            None => (0, Stop::HistoryStart),
        };
        assert_eq!(want, expected, "stepped reverse-continue to {addr:#x}");
        let (got, n) = stop(&mut free, length, addr, true);
        assert_eq!(got, want, "reverse-continue to {addr:#x}: free counts stop where stepping does");
        counted += n;
        // Forward from just after the first position with a checkpoint before it: stops at
        // the next hit after that, or the end.
        let from = rec.checkpoints[1].engine.icount;
        let (want, _) = stop(&mut stepped, from, addr, false);
        let (got, n) = stop(&mut free, from, addr, false);
        assert_eq!(got, want, "continue to {addr:#x}: free counts stop where stepping does");
        counted += n;
    }
    let fs = free.session().free_stats;
    assert!(counted > 0, "free runs passed no interval over ({} tried, {} matched)", fs.tried, fs.verified);
}
