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
    assert_eq!(end[1], "1", "never reached the end of history:\n{out}");
    let rc = mark(&out, "rc");
    assert_eq!(hex(&rc[1]), pcs[9], "reverse-continue from the end did not stop at the last PC\n{out}");
    assert_eq!(rc[2], "breakpoint", "{out}");
    assert_eq!(hex(&rc[0]), start + 9, "the last of the ten steps is at icount start+9\n{out}");
    drop(server);
}
