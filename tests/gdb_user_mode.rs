//! Real gdb against `ttvm replay --gdb` on a trace that steps user mode (the `ring3`
//! kernel): stepi and reverse-stepi across SYSCALL, SYSRETQ and a user page fault give the
//! same state at every position in both directions, every register gdb knows included
//! (CS and SS, segment bases, CR2, x87/SSE), and never show the TF the engine uses.

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use std::collections::BTreeMap;

use harness::{gdb, hex, marks, serve, shared_trace};

/// A marked position: its icount and every register by name.
#[derive(Debug, PartialEq)]
struct State {
    icount: u64,
    regs: BTreeMap<String, String>,
}

impl State {
    fn reg(&self, name: &str) -> u64 {
        hex(self.regs.get(name).unwrap_or_else(|| panic!("no register {name} in {self:?}")))
    }
}

/// Marks `key` (index, icount, name=value...) in order.
fn states(out: &str, key: &str) -> Vec<(i64, State)> {
    marks(out, key)
        .into_iter()
        .map(|m| {
            let index: i64 = m[0].parse().unwrap_or_else(|_| panic!("bad index in {m:?}"));
            let regs = m[2..]
                .iter()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("bad register {kv}"));
                    (k.to_string(), v.to_string())
                })
                .collect();
            (index, State { icount: hex(&m[1]), regs })
        })
        .collect()
}

const TF: u64 = 1 << 8;
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// The positions of one crossing (by offset from the breakpoint stop), each reached more
/// than once, forwards and backwards, with the same state every time, one step apart.
fn crossing(out: &str, name: &str) -> BTreeMap<i64, State> {
    let mut visits: BTreeMap<i64, Vec<State>> = BTreeMap::new();
    for kind in ["at", "fwd", "rev"] {
        for (i, s) in states(out, &format!("{name}-{kind}")) {
            visits.entry(i).or_default().push(s);
        }
    }
    assert!(visits.len() >= 4, "{name}: too few positions:\n{out}");
    let mut all = BTreeMap::new();
    for (i, v) in visits {
        assert!(v.len() >= 2, "{name}: position {i} visited once:\n{out}");
        assert!(v.iter().all(|s| *s == v[0]), "{name}: the visits of position {i} differ: {v:#?}");
        all.insert(i, v.into_iter().next().unwrap());
    }
    let base = all.get(&0).unwrap_or_else(|| panic!("{name}: no stop at the breakpoint\n{out}")).icount as i64;
    for (i, s) in &all {
        assert_eq!(s.icount as i64 - base, *i, "{name}: position {i} is not {i} steps away");
        assert_eq!(s.reg("eflags") & TF, 0, "{name}: TF visible at position {i}: {s:?}");
    }
    all
}

#[test]
fn reverse_stepi_across_syscall_sysret_and_a_user_page_fault() {
    if !common::require_kvm("reverse_stepi_across_syscall_sysret_and_a_user_page_fault") {
        return;
    }
    let server = serve(&shared_trace("ring3", "spin=3"), &[]);
    let out = gdb(&server, &[], "ring3_reverse.py");

    // SYSCALL: from user mode at it to the kernel entry at LSTAR, with the return address
    // and the user RFLAGS (no TF) in RCX and R11.
    let sc = crossing(&out, "syscall");
    assert_eq!((sc[&0].reg("cs"), sc[&0].reg("ss"), sc[&0].reg("rip")), (0x33, 0x2b, 0x20_0013), "{out}");
    assert_eq!((sc[&1].reg("cs"), sc[&1].reg("ss")), (0x10, 0x18), "SYSCALL enters with STAR's selectors\n{out}");
    assert!(sc[&1].reg("rip") >= KERNEL_HALF, "not at the kernel entry: {:?}", sc[&1]);
    assert_eq!((sc[&1].reg("rcx"), sc[&1].reg("r11")), (0x20_0015, sc[&0].reg("eflags")), "{out}");
    assert_eq!(sc[&1].reg("rsp"), sc[&0].reg("rsp"), "SYSCALL keeps the user stack\n{out}");
    assert_eq!(sc[&1].reg("cr2"), sc[&0].reg("cr2"), "the fault ttvm completes SYSCALL from leaves no CR2\n{out}");

    // SYSRETQ: two kernel steps before the user instruction it returns to, the last of them
    // SYSRETQ itself (still ring 0); then user mode again.
    let sr = crossing(&out, "sysret");
    assert_eq!((sr[&-1].reg("cs"), sr[&0].reg("cs"), sr[&0].reg("ss")), (0x10, 0x33, 0x2b), "{out}");
    assert_eq!((sr[&0].reg("rip"), sr[&0].reg("rax")), (0x20_0015, 7), "the system call returned 7 in RAX\n{out}");
    assert_eq!(sr[&0].reg("eflags"), sr[&-1].reg("r11") & !0x1_0000, "RFLAGS from R11\n{out}");

    // The user read of a kernel page: the #PF is delivered (with its handler's first
    // instruction, as every delivery) on the kernel stack, CR2 names the page.
    let pf = crossing(&out, "fault");
    assert_eq!((pf[&0].reg("cs"), pf[&0].reg("rip")), (0x33, 0x20_001e), "{out}");
    assert_eq!(pf[&1].reg("cs") & 3, 0, "the handler runs in ring 0\n{out}");
    assert_eq!(pf[&1].reg("cr2"), 0x10_0000, "{out}");
    assert!(pf[&1].reg("rsp") != pf[&0].reg("rsp"), "delivery switched to the kernel stack\n{out}");
    drop(server);
}
