//! Runs with write watchpoints pass over the intervals that provably leave the watched
//! bytes alone (issue 23, items 2 and 3; `replay/src/watch_quiet.rs`): they must stop
//! exactly where single-stepping every interval stops, in both directions, and must
//! actually pass intervals over. The `bench` kernel identity-maps its memory, so a
//! guest-physical word the trace shows written is watched at the same virtual address.

mod common;
#[path = "watch/words.rs"]
mod words;

use std::collections::HashSet;
use std::rc::Rc;

use common::{record_bench_free_intervals, require_kvm};
use ttvm_replay::recording::Recording;
use ttvm_replay::replay::{ReplaySession, ReplayStep};
use ttvm_replay::stepping::host_signature;
use ttvm_replay::timeline::{Stop, Timeline, WatchKind, Watchpoint};

/// Where a run from `from` stops with `watch` (and the breakpoint `bp`, if any) set, and
/// how many intervals it passed over (all of them, and by free breakpoint counts).
fn stop(tl: &mut Timeline, from: u64, watch: Watchpoint, bp: Option<u64>, backward: bool) -> ((u64, Stop), u64, u64) {
    tl.seek(from).unwrap();
    tl.add_watchpoint(watch);
    if let Some(a) = bp {
        tl.add_breakpoint(a);
    }
    let before = tl.stats();
    let t = std::time::Instant::now();
    let stop = if backward { tl.run_backward() } else { tl.run_forward() }.unwrap();
    let after = tl.stats();
    eprintln!(
        "{} from {from} watching {watch} (breakpoint {bp:x?}): {stop:?} at {} in {:?}, {} intervals passed over",
        if backward { "back" } else { "forward" },
        tl.icount(),
        t.elapsed(),
        after.skipped_intervals - before.skipped_intervals,
    );
    tl.remove_watchpoint(watch);
    if let Some(a) = bp {
        tl.remove_breakpoint(a);
    }
    (
        (tl.icount(), stop),
        after.skipped_intervals - before.skipped_intervals,
        after.free_counted_intervals - before.free_counted_intervals,
    )
}

/// Every address a step of the history starts at.
fn step_starts(rec: &Rc<Recording>) -> HashSet<u64> {
    let mut s = ReplaySession::new(rec.clone(), &host_signature()).unwrap();
    let mut starts = HashSet::new();
    loop {
        starts.insert(s.engine.machine.vm.vcpu().rip());
        match s.step().unwrap() {
            ReplayStep::Stepped => {}
            ReplayStep::Stopped(_) | ReplayStep::AtEnd => break,
        }
    }
    starts
}

#[test]
fn write_watchpoints_pass_over_unwritten_intervals_and_stop_where_stepping_does() {
    if !require_kvm("write_watchpoints_pass_over_unwritten_intervals_and_stop_where_stepping_does") {
        return;
    }
    let dir = common::tempdir();
    let trace = record_bench_free_intervals(dir.path());
    let rec = Rc::new(Recording::open(&trace).unwrap());
    let (length, n) = (rec.length(), rec.checkpoints.len());
    let far = words::changed_far_back(&rec);
    let never = words::never_written(&rec);
    let far_watch = Watchpoint::new(far.1, 8, WatchKind::Write).unwrap();
    let never_watch = Watchpoint::new(never, 16, WatchKind::Write).unwrap();
    let (lo, hi) = (rec.checkpoints[far.0 - 1].engine.icount, rec.checkpoints[far.0].engine.icount);

    let mut skip = Timeline::new(rec.clone(), &host_signature()).unwrap();
    let mut stepped = Timeline::new(rec.clone(), &host_signature()).unwrap();
    stepped.set_free_runs(false);
    let mut passed = 0;
    let from_start = rec.checkpoints[1].engine.icount;
    for (watch, back_from) in [(far_watch, length), (never_watch, length)] {
        for (from, backward) in [(back_from, true), (from_start, false)] {
            let (want, none, _) = stop(&mut stepped, from, watch, None, backward);
            assert_eq!(none, 0, "single-stepping passes nothing over with a watchpoint set");
            let (got, n, _) = stop(&mut skip, from, watch, None, backward);
            assert_eq!(got, want, "{watch} from {from} (backward: {backward}): the skip stops where stepping does");
            passed += n;
        }
    }
    // The stepped answers are the ones the recording implies.
    stepped.seek(length).unwrap();
    stepped.add_watchpoint(far_watch);
    let back = stepped.run_backward().unwrap();
    assert_eq!(back, Stop::Watchpoint { watch: far_watch });
    assert!((lo..hi).contains(&stepped.icount()), "the last change of {far_watch} is in [{lo}, {hi})");
    stepped.remove_watchpoint(far_watch);
    stepped.seek(length).unwrap();
    stepped.add_watchpoint(never_watch);
    assert_eq!(stepped.run_backward().unwrap(), Stop::HistoryStart, "{never_watch} never changes");
    stepped.remove_watchpoint(never_watch);
    assert!(passed > 0, "no interval was passed over");

    // Both kinds of stop point at once: a breakpoint on an address inside an instruction
    // whose block runs in most intervals (so no step starts there, but the code lists
    // cannot rule it out) with the watchpoint that never fires. Free runs count the
    // breakpoint in the intervals the watchpoint cannot fire in.
    let starts = step_starts(&rec);
    let inside = starts
        .iter()
        .filter(|&&a| a & 0xf != 0xf && !starts.contains(&(a + 1)))
        .map(|&a| ((1..n).filter(|&k| rec.interval_may_reach(k - 1, [a])).count(), a + 1))
        .max()
        .expect("an instruction longer than a byte")
        .1;
    let (want, _, _) = stop(&mut stepped, length, never_watch, Some(inside), true);
    let (got, _, counted) = stop(&mut skip, length, never_watch, Some(inside), true);
    assert_eq!(got, want, "breakpoint and watchpoint together");
    assert_eq!(want, (0, Stop::HistoryStart));
    assert!(counted > 0, "free runs counted no interval with the watchpoint set");
}

/// Read and access watchpoints are looked out for by the debug registers in free runs
/// (`replay/src/free_watch.rs`): runs pass over the intervals in which nothing touched the
/// watched bytes and stop exactly where single-stepping every interval stops.
#[test]
fn read_watchpoints_pass_over_untouched_intervals_and_stop_where_stepping_does() {
    if !require_kvm("read_watchpoints_pass_over_untouched_intervals_and_stop_where_stepping_does") {
        return;
    }
    let dir = common::tempdir();
    let trace = record_bench_free_intervals(dir.path());
    let rec = Rc::new(Recording::open(&trace).unwrap());
    let length = rec.length();
    // Runs forward start here, past the intervals free runs cannot take (early boot).
    let from_start = rec.checkpoints[2].engine.icount;
    let (last, first) = words::reads(&rec, from_start);
    // A quadword last read in the first half of the history, as late as possible there.
    let (far, far_step) =
        last.iter().filter(|(_, &at)| at < length / 2).max_by_key(|(_, &at)| at).map(|(&q, &at)| (q, at)).unwrap();
    // One first read after `from_start` as late as possible before the last quarter: a
    // forward run passes the intervals before it over and meets it in a native run.
    let (late, late_step) =
        first.iter().filter(|(_, &at)| at < length * 3 / 4).max_by_key(|(_, &at)| at).map(|(&q, &at)| (q, at)).unwrap();
    // 8 bytes across two quadwords of a page stored at boot that nothing writes or reads.
    let never = (0..rec.pages.frames() as u32)
        .filter(|&f| rec.pages.version_at(f, 0).is_some() && words::written(&rec, f).is_empty())
        .flat_map(|f| (0..511u64).map(move |i| u64::from(f) * 4096 + i * 8))
        .find(|q| !last.contains_key(q) && !last.contains_key(&(q + 8)))
        .expect("a quadword pair never read nor written")
        + 4;
    let watches = [
        Watchpoint::new(far + 2, 4, WatchKind::Read).unwrap(),
        Watchpoint::new(late, 8, WatchKind::Read).unwrap(),
        Watchpoint::new(never, 8, WatchKind::Read).unwrap(),
        Watchpoint::new(never, 8, WatchKind::Access).unwrap(),
    ];
    let mut free = Timeline::new(rec.clone(), &host_signature()).unwrap();
    let mut stepped = Timeline::new(rec.clone(), &host_signature()).unwrap();
    stepped.set_free_runs(false);
    let mut counted = 0;
    for watch in watches {
        for (from, backward) in [(length, true), (from_start, false)] {
            let (want, _, _) = stop(&mut stepped, from, watch, None, backward);
            let (got, _, n) = stop(&mut free, from, watch, None, backward);
            assert_eq!(got, want, "{watch} from {from} (backward: {backward}): free runs stop where stepping does");
            counted += n;
        }
    }
    // The stepped answers are the ones the decoder implies.
    stepped.seek(length).unwrap();
    stepped.add_watchpoint(watches[0]);
    assert_eq!(stepped.run_backward().unwrap(), Stop::Watchpoint { watch: watches[0] });
    assert_eq!(stepped.icount(), far_step, "the last read of {:#x}", far);
    stepped.remove_watchpoint(watches[0]);
    stepped.seek(from_start).unwrap();
    stepped.add_watchpoint(watches[1]);
    assert_eq!(stepped.run_forward().unwrap(), Stop::Watchpoint { watch: watches[1] });
    assert_eq!(stepped.icount(), late_step + 1, "the first read of {late:#x} (a forward run stops after it)");
    stepped.remove_watchpoint(watches[1]);
    let stats = free.session().free_stats;
    assert!(counted > 0, "free runs passed no interval over with read watchpoints set");
    // A read was seen by the native run itself (a data breakpoint, or where those do not
    // fire the page hole), not only by decoding a stepped position.
    assert!(stats.touched > 0, "{stats:?}");
    eprintln!(
        "read watchpoints in free runs by {}: {stats:?}",
        if ttvm_replay::stepping::data_breakpoints_fire() { "data breakpoints" } else { "page holes" }
    );
}

/// The measurement behind docs/PERFORMANCE.md's watchpoint rows (`TTVM_LONG_TESTS=1`):
/// `bench size=64 rounds=4` (about 1.1 M steps, a checkpoint every 25 000), write
/// watchpoints that fire far back and never, each run on a fresh `Timeline` stepped and
/// with the skip; the stops must agree.
#[test]
fn write_watchpoint_runs_on_a_million_steps_stepped_and_skipping() {
    if std::env::var("TTVM_LONG_TESTS").as_deref() != Ok("1") {
        eprintln!("write_watchpoint_runs_on_a_million_steps_stepped_and_skipping: runs only with TTVM_LONG_TESTS=1");
        return;
    }
    if !require_kvm("write_watchpoint_runs_on_a_million_steps_stepped_and_skipping") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("bench-l.ttvm");
    let o = common::run(&["record", "bench", "--cmdline", "size=64 rounds=4", "-q", "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let rec = Rc::new(Recording::open(&trace).unwrap());
    let length = rec.length();
    let far = words::changed_far_back(&rec);
    let watches = [
        ("fires far back", Watchpoint::new(far.1, 8, WatchKind::Write).unwrap()),
        ("never fires", Watchpoint::new(words::never_written(&rec), 16, WatchKind::Write).unwrap()),
    ];
    eprintln!("{length} steps, {} checkpoints", rec.checkpoints.len());
    for (what, watch) in watches {
        for (from, backward) in [(length, true), (rec.checkpoints[1].engine.icount, false)] {
            let mut answers = Vec::new();
            for skipping in [false, true] {
                let mut tl = Timeline::new(rec.clone(), &host_signature()).unwrap();
                tl.set_free_runs(skipping);
                let t = std::time::Instant::now();
                let ((at, stop), passed, _) = self::stop(&mut tl, from, watch, None, backward);
                let took = t.elapsed();
                eprintln!(
                    "MEASURE {what} {}: {} from {from}: {stop:?} at {at}, {took:.2?}, {passed} intervals passed over, {} steps replayed",
                    if skipping { "skip" } else { "stepped" },
                    if backward { "reverse-continue" } else { "continue" },
                    tl.stats().replayed_steps
                );
                answers.push((at, stop));
            }
            assert_eq!(answers[0], answers[1], "{watch} from {from}: the skip stops where stepping does");
        }
    }
}
