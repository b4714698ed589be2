//! Reverse execution driven by the real gdb against `ttvm replay --gdb`: QEMU's own
//! reverse-debugging check, reverse-continue over repeated breakpoint hits and to the
//! start of history, reverse-finish and reverse-next.

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use harness::{gdb, hex, mark, marks, serve, shared_trace};

/// ~140 000 steps: small enough to replay in a second or two.
const BENCH: (&str, &str) = ("bench", "size=16 rounds=1");

fn regs(m: &[String]) -> (u64, Vec<u64>) {
    (hex(&m[1]), m[2..].iter().map(|v| hex(v)).collect())
}

#[test]
fn qemu_reverse_debugging_check() {
    if !common::require_kvm("qemu_reverse_debugging_check") {
        return;
    }
    let server = serve(&shared_trace(BENCH.0, BENCH.1), &[]);
    let out = gdb(&server, &[], "reverse_stepi.py");
    let fwd = marks(&out, "fwd");
    let rev = marks(&out, "rev");
    let again = marks(&out, "again");
    assert_eq!((fwd.len(), rev.len(), again.len()), (11, 10, 10), "{out}");
    let start = hex(&mark(&out, "start")[0]);
    assert!(start > 0, "kmain is not at the start of history");

    // Stepping forward moves: every stepi is one instruction (distinct states).
    let pcs: Vec<u64> = fwd.iter().map(|m| hex(&m[1])).collect();
    assert!(pcs.windows(2).all(|w| w[0] != w[1]), "stepi did not move: {pcs:x?}");

    // reverse-stepi visits the same states in reverse order: PC and every GPR.
    for r in &rev {
        let i = hex(&r[0]) as usize;
        assert_eq!(regs(r), regs(&fwd[i]), "reverse-stepi to step {i} differs from the forward state\n{out}");
    }
    let order: Vec<u64> = rev.iter().map(|r| hex(&r[0])).collect();
    assert_eq!(order, (0..10).rev().collect::<Vec<_>>());
    // And stepi again replays them in order.
    for a in &again {
        let i = hex(&a[0]) as usize;
        assert_eq!(regs(a), regs(&fwd[i]), "second forward pass differs at step {i}\n{out}");
    }

    // Breakpoints on the ten PCs, run to the end, reverse-continue: the most recent of them.
    let end = mark(&out, "end");
    assert_eq!(end[0], end[1], "never reached the end of history:\n{out}");
    let last_cont = marks(&out, "cont").pop().unwrap();
    assert_eq!(last_cont[2], "plain", "the end of history is not a breakpoint or signal stop\n{out}");
    assert!(out.contains("No more reverse-execution history."), "{out}");
    let rc = mark(&out, "rc");
    assert_eq!(hex(&rc[1]), pcs[9], "reverse-continue from the end did not stop at the last PC\n{out}");
    assert_eq!(rc[2], "breakpoint", "{out}");
    assert_eq!(hex(&rc[0]), start + 9, "the last of the ten steps is at icount start+9\n{out}");
    drop(server);
}

#[test]
fn reverse_continue_stops_at_most_recent_hit_then_at_history_start() {
    if !common::require_kvm("reverse_continue_stops_at_most_recent_hit_then_at_history_start") {
        return;
    }
    let server = serve(&shared_trace(BENCH.0, BENCH.1), &[]);
    let out = gdb(&server, &[], "reverse_continue.py");
    let hits = marks(&out, "hit");
    assert!(hits.len() >= 3, "write_str should be hit several times:\n{out}");
    let bp = hex(&hits[0][1]);
    let fwd: Vec<u64> = hits.iter().map(|h| hex(&h[0])).collect();
    assert!(fwd.windows(2).all(|w| w[0] < w[1]), "forward hits not increasing: {fwd:?}");
    assert!(hits.iter().all(|h| hex(&h[1]) == bp && h[2] == "breakpoint"), "{out}");
    let end = mark(&out, "end");
    assert_eq!(end[0], end[1]);

    // Backwards: each reverse-continue stops at the most recent earlier hit.
    let back = marks(&out, "back");
    let icounts: Vec<u64> = back.iter().map(|b| hex(&b[0])).collect();
    let mut expected = fwd.clone();
    expected.reverse();
    assert_eq!(icounts, expected, "reverse-continue hits differ from the forward ones\n{out}");
    assert!(back.iter().all(|b| hex(&b[1]) == bp && b[2] == "breakpoint"), "{out}");

    // No breakpoints: to the start, reported as end of history, not a breakpoint or signal.
    let start = mark(&out, "start");
    assert_eq!(hex(&start[0]), 0, "{out}");
    assert_eq!(start[2], "plain", "{out}");
    let after = out.split("MARK-BEFORE-START").nth(1).unwrap();
    assert!(after.contains("No more reverse-execution history."), "{out}");
    let again = mark(&out, "again");
    assert_eq!((hex(&again[0]), again[2].as_str()), (0, "plain"), "{out}");
}

/// The line of `bench/main.rs` holding `needle`.
fn bench_line(needle: &str) -> usize {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sample-kernels/bench/main.rs")).unwrap();
    src.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} not in bench/main.rs")) + 1
}

#[test]
fn reverse_next_and_reverse_finish_undo_their_forward_counterparts() {
    if !common::require_kvm("reverse_next_and_reverse_finish_undo_their_forward_counterparts") {
        return;
    }
    let rounds_line = bench_line("cmdline.u64(\"rounds\"");
    let server = serve(&shared_trace(BENCH.0, BENCH.1), &[]);
    let out = gdb(&server, &[&format!("python ROUNDS_LINE = {rounds_line}")], "reverse_finish_next.py");

    // `next` x3 from the `rounds` line (each of the first two lines is a call to
    // Cmdline::u64), then `reverse-next` x3: back through the same (pc, line) states.
    let next = marks(&out, "next");
    let rnext = marks(&out, "rnext");
    assert_eq!((next.len(), rnext.len()), (4, 3), "{out}");
    assert!(next[0][2].ends_with(&format!("main.rs:{rounds_line}")), "{out}");
    let lines: Vec<&str> = next.iter().map(|n| n[2].as_str()).collect();
    assert!(lines.windows(2).all(|w| w[0] != w[1]), "next did not change lines: {lines:?}");
    for r in &rnext {
        let i = hex(&r[0]) as usize;
        assert_eq!(r[1..], next[i][1..], "reverse-next to step {i} differs from where `next` started\n{out}");
    }

    // reverse-finish from inside Cmdline::get stops on the call instruction in its caller,
    // right before the return address; stepping forward from there re-enters get, and
    // `finish` comes back to the return address.
    let inside = mark(&out, "inside");
    let ret = hex(&inside[1]);
    assert!(inside[2].ends_with("Cmdline::get"), "{out}");
    let rf = mark(&out, "rfinish");
    assert!(rf[1].ends_with("Cmdline::u64"), "reverse-finish did not return to the caller\n{out}");
    assert!(rf[3].starts_with("call"), "reverse-finish did not stop on the call instruction\n{out}");
    assert_eq!(hex(&rf[2]), ret, "the instruction after the call is not the return address\n{out}");
    let st = mark(&out, "stepi");
    assert_eq!((hex(&st[1]), st[2].as_str()), (ret, inside[2].as_str()), "{out}");
    let fin = mark(&out, "finish");
    assert_eq!(hex(&fin[0]), ret, "{out}");
}
