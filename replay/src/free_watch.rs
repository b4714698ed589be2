//! Read and access watchpoints in free runs (issue 23, item 2): whether a checkpoint
//! interval touched a watched range at all, asked of the CPU.
//!
//! Stepping decides whether step q reads (or touches) a watched range by decoding the
//! instruction at q (`mem_access.rs`). A free run cannot decode what it does not stop at,
//! so it decodes only the positions it single-steps (the stretches after landmarks, the
//! anchors' own steps, which the engine may carry out itself) and asks the CPU about the
//! native parts, one of two ways:
//! - where this host's data breakpoints fire (`stepping::data_breakpoints_fire`, a probe),
//!   DR7 R/W = 11b breakpoints on aligned quadwords covering the ranges, beside the
//!   landmark's instruction breakpoint ([`DataWatch`]);
//! - where they do not (the PVM hosts), the frames the watched pages translate to are taken
//!   out of KVM's memory slots for each native stretch ([`PageHole`]): every access to them
//!   exits as MMIO, and one that misses the watched bytes is completed from ttvm's RAM. That
//!   needs the translation fixed over the interval (`watch_quiet.rs`), and stretches long
//!   enough to pay for KVM rebuilding its mappings ([`PageHole::pays_off`]).
//!
//! The first access either way ends the run as a hit and the interval is single-stepped,
//! which pins the exact step as before; a run without one, checked against the next
//! checkpoint, lets the interval be passed over.
//!
//! The CPU sees every access it makes to a covered byte, a superset of what the decoder
//! counts (a neighbouring byte, an event's stack push, every byte of an XSAVE image), which
//! only costs a stepped interval. What it does not see, and what keeps an interval from
//! being passed over:
//! - user mode on hosts whose debug registers do not fire there (the interval's code must
//!   be supervisor-only, as for breakpoints, `free_hits.rs`);
//! - accesses by the engine or devices rather than an instruction: those are anchors'
//!   steps, decoded like every stepped position, or DMA, which is a write (access
//!   watchpoints also need the interval to leave their bytes provably unchanged,
//!   `watch_quiet.rs`);
//! - an instruction the decoder counts but that does not reach memory: the decoder leaves
//!   out the known ones (`mem_access.rs`: LEA, NOP and PREFETCH forms, string instructions
//!   repeated zero times), and stepping counts nothing for an instruction that did not
//!   run to its end: one whose access the page tables refuse (not mapped, or its rights),
//!   one that raised another exception, one an injected interrupt pre-empted
//!   (`NextStep::ran`). What is left: an exception raised by a control transfer after its
//!   memory read (RET to a non-canonical address) is seen by stepping only; and the
//!   handler's first instruction, which runs inside the step that delivers an exception or
//!   interrupt, is seen by the CPU only.

use std::rc::Rc;

use ttvm_vmm::machine::Machine;
use ttvm_vmm::x86::data_breakpoints::{covering, DataBreakpoint};

use crate::mem_access::AccessDecoder;
use crate::recording::Recording;
use crate::timeline::{WatchKind, Watchpoint};

/// The read and access watchpoints a free run looks out for.
pub struct DataWatch {
    watches: Vec<Watchpoint>,
    breakpoints: Vec<DataBreakpoint>,
    /// Stepping's decoder (`Timeline`'s), for the positions a free run single-steps.
    decoder: Rc<AccessDecoder>,
}

impl std::fmt::Debug for DataWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataWatch").field("watches", &self.watches).field("breakpoints", &self.breakpoints).finish()
    }
}

impl DataWatch {
    /// A lookout for `watches` (read and access kinds; write watchpoints are left to the
    /// dirty log) in at most `slots` debug registers, or (`None`: this host's data
    /// breakpoints do not fire) none, for runs that hide the watched pages instead
    /// ([`PageHole`]); `None` if they need more registers, or there is nothing to look out
    /// for. `decoder` decides, as for stepping, what the positions a free run single-steps
    /// access.
    pub fn new(watches: &[Watchpoint], slots: Option<usize>, decoder: Rc<AccessDecoder>) -> Option<Self> {
        let watches: Vec<Watchpoint> = watches.iter().filter(|w| w.kind != WatchKind::Write).copied().collect();
        if watches.is_empty() {
            return None;
        }
        let Some(slots) = slots else { return Some(Self { watches, breakpoints: Vec::new(), decoder }) };
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
        Some(Self { watches, breakpoints, decoder })
    }

    /// The watchpoints looked out for.
    pub fn watches(&self) -> &[Watchpoint] {
        &self.watches
    }

    /// The data breakpoints covering the watched ranges (none where they do not fire).
    pub fn breakpoints(&self) -> &[DataBreakpoint] {
        &self.breakpoints
    }

    /// Whether the instruction at `machine`'s RIP touches a watched range the way stepping
    /// counts it ([`Watchpoint::touched_by`]).
    pub fn next_step_touches(&self, machine: &Machine) -> bool {
        let next = self.decoder.next_step(machine);
        self.watches.iter().any(|w| w.touched_by(&next.accesses))
    }
}

/// Steps an interval needs per native stretch for a page hole to pay off
/// ([`PageHole::pays_off`]).
pub const STEPS_PER_HIDDEN_STRETCH: u64 = 1000;

/// The pages holding watched bytes, taken out of KVM's memory during native runs on hosts
/// whose data breakpoints do not fire ([`Vm::hide_frames`]): every access to them exits as
/// MMIO, is checked against the watched bytes and, if it misses them, completed from
/// ttvm's copy of RAM.
///
/// [`Vm::hide_frames`]: ttvm_vmm::vm::Vm::hide_frames
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageHole {
    frames: Vec<u32>,
    /// The watched bytes in guest-physical memory: (start, length, kind).
    watched: Vec<(u64, u64, WatchKind)>,
}

impl PageHole {
    /// The hole for the read and access watchpoints among `watches`, whose virtual pages
    /// translate as `translation` says ((virtual page, physical page), for the whole run);
    /// `None` if a page is missing from it or there is nothing to watch.
    pub fn new(watches: &[Watchpoint], translation: &[(u64, u64)]) -> Option<Self> {
        const PAGE: u64 = 4096;
        let mut watched = Vec::new();
        for w in watches.iter().filter(|w| w.kind != WatchKind::Write) {
            let end = w.addr.checked_add(w.len)?;
            let mut at = w.addr;
            while at < end {
                let page = at & !(PAGE - 1);
                let until = end.min(page.saturating_add(PAGE));
                let &(_, phys) = translation.iter().find(|&&(v, _)| v == page)?;
                watched.push((phys | (at & (PAGE - 1)), until - at, w.kind));
                at = until;
            }
        }
        let mut frames: Vec<u32> = watched.iter().filter_map(|&(p, _, _)| u32::try_from(p >> 12).ok()).collect();
        frames.sort_unstable();
        frames.dedup();
        (!watched.is_empty()).then_some(Self { frames, watched })
    }

    /// The hole for `watches` in persistent-checkpoint interval `k` of `rec`: `None` unless
    /// the translation of their ranges is proved fixed over the interval
    /// ([`Recording::interval_translation_fixed`]).
    pub fn for_interval(rec: &Recording, k: usize, watches: &[Watchpoint]) -> Option<Self> {
        let ranges: Vec<(u64, u64)> = watches.iter().map(|w| (w.addr, w.len)).collect();
        Self::new(watches, &rec.interval_translation_fixed(k, &ranges)?)
    }

    /// Whether hiding the pages pays off for an interval of `steps` steps whose free run
    /// has `native_stretches` native stretches: the pages are hidden and shown again around
    /// each (the stepped parts between them must see RAM), and each time KVM rebuilds its
    /// mappings, about 0.75 ms measured on the AMD EPYC (a `timer` recording, an anchor
    /// every ~50 steps: 4.8 s with holes against 3.0 s stepped), the time of some 100
    /// single steps. So at least [`STEPS_PER_HIDDEN_STRETCH`] steps per stretch.
    pub fn pays_off(steps: u64, native_stretches: u64) -> bool {
        native_stretches.saturating_mul(STEPS_PER_HIDDEN_STRETCH) <= steps
    }

    /// The frames to hide.
    pub fn frames(&self) -> &[u32] {
        &self.frames
    }

    /// Whether an access of `len` bytes at guest-physical `addr` touches a watched range as
    /// stepping would count it ([`Watchpoint::touched_by`]).
    pub fn touched(&self, addr: u64, len: u64, write: bool) -> bool {
        self.watched.iter().any(|&(start, n, kind)| {
            let overlaps = addr < start + n && start < addr.saturating_add(len);
            // An MMIO exit is either a read or a write (a read-modify-write exits twice).
            overlaps && kind.fires_on_access(!write)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hole_holds_the_watched_pages_and_tells_reads_from_writes() {
        let read = Watchpoint::new(0xffff_8000_0000_1ffc, 8, WatchKind::Read).unwrap();
        let access = Watchpoint::new(0x5000, 4, WatchKind::Access).unwrap();
        let write = Watchpoint::new(0x9000, 4, WatchKind::Write).unwrap();
        let translation =
            [(0xffff_8000_0000_1000, 0x7000), (0xffff_8000_0000_2000, 0x3000), (0x5000, 0x5000), (0x9000, 0x9000)];
        let hole = PageHole::new(&[read, access, write], &translation).unwrap();
        // The read watch spans two virtual pages, mapped to frames 7 and 3.
        assert_eq!(hole.frames(), &[3, 5, 7]);
        let holds = |addr: u64| hole.frames().contains(&((addr >> 12) as u32));
        assert!(holds(0x7ffc) && holds(0x3000) && !holds(0x9000));
        assert!(hole.touched(0x7ff8, 8, false) && hole.touched(0x3002, 1, false));
        assert!(!hole.touched(0x7ff8, 4, false), "the bytes before the range");
        assert!(!hole.touched(0x7ffc, 4, true), "a write does not fire a read watchpoint");
        assert!(hole.touched(0x5002, 2, true) && !hole.touched(0x5004, 4, false));
        assert!(PageHole::new(&[read], &translation[2..]).is_none(), "a page without its translation");
        assert!(PageHole::new(&[write], &translation).is_none(), "nothing to watch");
    }

    #[test]
    fn holes_are_used_only_where_native_stretches_are_long() {
        // `bench`: a stretch or two per 25 000-step interval; `timer`: one per ~50 steps.
        assert!(PageHole::pays_off(25_000, 2));
        assert!(!PageHole::pays_off(5_000, 100));
        assert!(
            PageHole::pays_off(STEPS_PER_HIDDEN_STRETCH, 1) && !PageHole::pays_off(STEPS_PER_HIDDEN_STRETCH - 1, 1)
        );
    }
}
