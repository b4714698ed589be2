//! "Who wrote this?" with the real gdb: `watch` + `reverse-continue` from the panic of the
//! `threads` kernel lands on the stale write that lost an update, and `monitor last-write`
//! agrees.

mod common;
#[path = "gdb/harness.rs"]
mod harness;
#[path = "watch/words.rs"]
mod words;

use std::rc::Rc;

use harness::{gdb, hex, mark, serve};
use ttvm_replay::recording::Recording;
use ttvm_replay::stepping::host_signature;
use ttvm_replay::timeline::{Stop, Timeline, WatchKind, Watchpoint};

/// Fails deterministically in icount mode within ~40 000 steps: with a tick every 5000
/// steps and a long read-to-write window, a preemption soon lands inside the window.
const THREADS_CMDLINE: &str = "hz=20000 window=50 work=0 iters=2000";

/// The line of a sample kernel's source that starts with `code` (comments excluded).
fn source_line(file: &str, code: &str) -> usize {
    let src = std::fs::read_to_string(format!("{}/sample-kernels/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    src.lines().position(|l| l.trim_start().starts_with(code)).unwrap_or_else(|| panic!("{code} not in {file}")) + 1
}

#[test]
fn watch_and_reverse_continue_find_the_lost_update() {
    if !common::require_kvm("watch_and_reverse_continue_find_the_lost_update") {
        return;
    }
    let dir = common::tempdir();
    let trace = harness::record(dir.path(), "threads", THREADS_CMDLINE);
    let info = common::run(&["info", trace.to_str().unwrap()]);
    let info = common::text(&info);
    assert!(info.contains("PANIC: lost update"), "the recording should end in the lost-update panic:\n{info}");

    let server = serve(&trace, &[]);
    let out = gdb(&server, &[], "watch_threads.py");
    let end = mark(&out, "end");
    assert_eq!(end[0], end[1], "continue did not reach the end of history\n{out}");
    assert_eq!(mark(&out, "panicking")[0], "yes", "{out}");
    let final_counter = hex(&mark(&out, "counter")[1]);

    let stale_line = source_line("threads/main.rs", "COUNTER = v + 1");
    let lw = mark(&out, "lastwrite");
    let w = mark(&out, "watch");
    assert_eq!(w[3], "breakpoint", "reverse-continue did not stop on the watchpoint\n{out}");
    assert!(w[2].ends_with(&format!("threads/main.rs:{stale_line}")), "watchpoint stop is not the stale write\n{out}");
    assert_eq!(lw[..3], w[..3], "monitor last-write and watch + reverse-continue disagree\n{out}");
    let back = mark(&out, "back");
    assert_eq!(back[0], end[0], "monitor goto did not return to the end\n{out}");

    // Before the stale write the counter held the other threads' increments; the write
    // takes it back down to the value the panic reported.
    let before = hex(&w[4]);
    let after = mark(&out, "after");
    assert_eq!(hex(&after[0]), hex(&w[0]) + 1, "{out}");
    assert_eq!(hex(&after[1]), final_counter, "{out}");
    assert!(before > final_counter, "the write did not lose updates ({before} -> {final_counter})\n{out}");
}

/// `watch` + `reverse-continue` / `continue` through gdb on a trace with many checkpoint
/// intervals: the stops are where single-stepping every interval (the Timeline with skips
/// off, in this process) puts them, and the server passed intervals over unreplayed.
#[test]
fn watchpoints_pass_over_unwritten_intervals_through_gdb() {
    if !common::require_kvm("watchpoints_pass_over_unwritten_intervals_through_gdb") {
        return;
    }
    let dir = common::tempdir();
    let trace = common::record_bench_free_intervals(dir.path());
    let rec = Rc::new(Recording::open(&trace).unwrap());
    let (far, never) = (words::changed_far_back(&rec).1, words::never_written(&rec));
    let mut stepped = Timeline::new(rec.clone(), &host_signature()).unwrap();
    stepped.set_free_runs(false);
    stepped.seek(rec.length()).unwrap();
    let watch = Watchpoint::new(far, 8, WatchKind::Write).unwrap();
    stepped.add_watchpoint(watch);
    assert_eq!(stepped.run_backward().unwrap(), Stop::Watchpoint { watch });

    let server = serve(&trace, &[]);
    let pre = [format!("python FAR = {far:#x}"), format!("python NEVER = {never:#x}")];
    let out = gdb(&server, &[&pre[0], &pre[1]], "watch_skip.py");
    let end = mark(&out, "end");
    assert_eq!(end[0], end[1], "continue did not reach the end of history\n{out}");
    let f = mark(&out, "far");
    assert_eq!(hex(&f[0]), stepped.icount(), "reverse-continue to {far:#x}\n{out}");
    assert_eq!(f[1], "breakpoint", "reverse-continue did not stop on the watchpoint\n{out}");
    assert_eq!(hex(&mark(&out, "never_back")[0]), 0, "a watchpoint that never fires: back to the start\n{out}");
    let fwd = mark(&out, "never_forward");
    assert_eq!(fwd[0], fwd[1], "a watchpoint that never fires: on to the end\n{out}");
    let skips: u64 = mark(&out, "skips")[0].parse().unwrap();
    assert!(skips > 0, "no interval was passed over\n{out}");
}

/// `rwatch` + `reverse-continue` through gdb: the stop is where single-stepping every
/// interval puts it (the last read of a quadword read far back), and the server passed
/// intervals over with free runs that looked out for the read (data breakpoints, or page
/// holes where those do not fire: `replay/src/free_watch.rs`).
#[test]
fn read_watchpoints_pass_over_untouched_intervals_through_gdb() {
    if !common::require_kvm("read_watchpoints_pass_over_untouched_intervals_through_gdb") {
        return;
    }
    let dir = common::tempdir();
    let trace = common::record_bench_free_intervals(dir.path());
    let rec = Rc::new(Recording::open(&trace).unwrap());
    let (last, _) = words::reads(&rec, 0);
    let (far, far_step) = last
        .iter()
        .filter(|(_, &at)| at < rec.length() / 2)
        .max_by_key(|(_, &at)| at)
        .map(|(&q, &at)| (q, at))
        .unwrap();
    let mut stepped = Timeline::new(rec.clone(), &host_signature()).unwrap();
    stepped.set_free_runs(false);
    stepped.seek(rec.length()).unwrap();
    let watch = Watchpoint::new(far, 8, WatchKind::Read).unwrap();
    stepped.add_watchpoint(watch);
    assert_eq!(stepped.run_backward().unwrap(), Stop::Watchpoint { watch });
    assert_eq!(stepped.icount(), far_step);

    let server = serve(&trace, &[]);
    let pre = format!("python FAR = {far:#x}");
    let out = gdb(&server, &[&pre], "rwatch_skip.py");
    let f = mark(&out, "far");
    assert_eq!(hex(&f[0]), far_step, "reverse-continue to the last read of {far:#x}\n{out}");
    assert_eq!(f[1], "breakpoint", "reverse-continue did not stop on the read watchpoint\n{out}");
    let skips: u64 = mark(&out, "skips")[0].parse().unwrap();
    assert!(skips > 0, "no interval was passed over\n{out}");
}

/// A read watchpoint fires on reads the CPU makes: the `ring3` kernel's user code ends with
/// a read of a supervisor-only page (0x100000, the kernel's first page), which faults, and
/// the kernel exits. Stepping decoded that instruction as a read before reads had to run;
/// through gdb, `rwatch` on it now reaches the start of history, while a quadword that was
/// read stops reverse-continue on its last read.
#[test]
fn a_read_that_faults_is_no_hit_through_gdb() {
    if !common::require_kvm("a_read_that_faults_is_no_hit_through_gdb") {
        return;
    }
    const PROBE: u64 = 0x10_0000;
    let dir = common::tempdir();
    let trace = harness::record(dir.path(), "ring3", "spin=100");
    let info = common::text(&common::run(&["info", trace.to_str().unwrap()]));
    assert!(info.contains(&format!("user read of kernel page {PROBE:#x} faulted")), "{info}");
    let rec = Rc::new(Recording::open(&trace).unwrap());
    let (last, _) = words::reads(&rec, 0);
    assert!(!last.contains_key(&PROBE), "stepping counts the faulting read at step {:?}", last.get(&PROBE));
    let (&control, &control_step) = last.iter().max_by_key(|(_, &at)| at).unwrap();

    let server = serve(&trace, &[]);
    let pre = format!("python LAST = {control:#x}");
    let out = gdb(&server, &[&pre], "rwatch_fault.py");
    let probe = mark(&out, "probe");
    assert_eq!(hex(&probe[0]), 0, "rwatch on the faulting read stopped inside history\n{out}");
    let l = mark(&out, "last");
    assert_eq!((hex(&l[0]), l[1].as_str()), (control_step, "breakpoint"), "control read of {control:#x}\n{out}");
}
