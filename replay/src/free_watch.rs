//! Read and access watchpoints in free runs (issue 23, item 2): whether a checkpoint
//! interval touched a watched range at all, asked of the CPU's debug registers.
//!
//! Stepping decides whether step q reads (or touches) a watched range by decoding the
//! instruction at q (`mem_access.rs`). A free run cannot decode what it does not stop at,
//! so it sets data breakpoints (DR7 R/W = 11b: reads and writes) on aligned quadwords
//! covering the ranges, beside the landmark's instruction breakpoint, and decodes only the
//! positions it single-steps (the stretches after landmarks, the anchors' own steps, which
//! the engine may carry out itself). The first access either way ends the run as a hit and
//! the interval is single-stepped, which pins the exact step as before; a run without one,
//! checked against the next checkpoint, lets the interval be passed over.
//!
//! The debug registers fire on every access the CPU makes to a covered byte, a superset of
//! what the decoder counts (a neighbouring byte, an event's stack push, every byte of an
//! XSAVE image), which only costs a stepped interval. What they do not see, and what keeps
//! an interval from being passed over:
//! - user mode on hosts whose debug registers do not fire there (the interval's code must
//!   be supervisor-only, as for breakpoints, `free_hits.rs`);
//! - accesses by the engine or devices rather than an instruction: those are anchors'
//!   steps, decoded like every stepped position, or DMA, which is a write (access
//!   watchpoints also need the interval to leave their bytes provably unchanged,
//!   `watch_quiet.rs`);
//! - an instruction the decoder counts but that does not reach memory: the decoder leaves
//!   out the known ones (`mem_access.rs`: LEA, NOP and PREFETCH forms, string instructions
//!   repeated zero times); an access that faults is counted by the decoder and, as the
//!   CPU retries it after the fault, usually seen then too.

use ttvm_vmm::insn::fetch_at_rip;
use ttvm_vmm::machine::Machine;
use ttvm_vmm::x86::data_breakpoints::{covering, DataBreakpoint};

use crate::mem_access::AccessDecoder;
use crate::timeline::{WatchKind, Watchpoint};

/// The read and access watchpoints a free run looks out for.
pub struct DataWatch {
    watches: Vec<Watchpoint>,
    breakpoints: Vec<DataBreakpoint>,
    decoder: AccessDecoder,
}

impl std::fmt::Debug for DataWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataWatch").field("watches", &self.watches).field("breakpoints", &self.breakpoints).finish()
    }
}

impl DataWatch {
    /// A lookout for `watches` (read and access kinds; write watchpoints are left to the
    /// dirty log) in at most `slots` debug registers; `None` if they need more, or there
    /// is nothing to look out for.
    pub fn new(watches: &[Watchpoint], slots: usize) -> Option<Self> {
        let watches: Vec<Watchpoint> = watches.iter().filter(|w| w.kind != WatchKind::Write).copied().collect();
        if watches.is_empty() {
            return None;
        }
        let mut breakpoints: Vec<DataBreakpoint> = Vec::new();
        for w in &watches {
            for d in covering(w.addr, w.len, slots)? {
                if !breakpoints.contains(&d) {
                    breakpoints.push(d);
                }
            }
        }
        if breakpoints.len() > slots {
            return None;
        }
        Some(Self { watches, breakpoints, decoder: AccessDecoder::new()? })
    }

    /// The data breakpoints covering the watched ranges.
    pub fn breakpoints(&self) -> &[DataBreakpoint] {
        &self.breakpoints
    }

    /// Whether the instruction at `machine`'s RIP touches a watched range the way stepping
    /// counts it ([`Watchpoint::touched_by`]).
    pub fn next_step_touches(&self, machine: &Machine) -> bool {
        let (regs, sregs) = (machine.vm.vcpu().regs(), machine.vm.vcpu().sregs());
        let (bytes, n) = fetch_at_rip(machine.vm.ram(), &regs, &sregs);
        let accesses = self.decoder.accesses(&bytes[..n], &regs, &sregs);
        self.watches.iter().any(|w| w.touched_by(&accesses))
    }
}
