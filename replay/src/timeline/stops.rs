//! What stops a run: breakpoints (RIP compare, guest memory is never patched) and
//! watchpoints of any number and length (write: the watched bytes compared before and after
//! each step; read/access: capstone operand analysis plus implicit stack accesses in
//! `mem_access.rs`). The rule for which ranges can be watched lives here too, so gdb and the
//! UI refuse the same ones.

use std::collections::BTreeSet;

use ttvm_vmm::paging::AddressSpace;

use std::rc::Rc;

use super::{Stepped, Timeline, TimelineError};
use crate::free_hits::MAX_COUNTED_BREAKPOINTS;
use crate::free_watch::DataWatch;
use crate::mem_access::{Access, AccessDecoder, NextStep};

/// Longest watched range. Every watched byte is read before and after each step, so
/// watching megabytes would make runs crawl.
pub const MAX_WATCH_LEN: u64 = 64 * 1024;

/// Kinds of watchpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchKind {
    /// Stops when the watched bytes change.
    Write,
    /// Stops when an instruction reads them.
    Read,
    /// Stops on reads and changes.
    Access,
}

impl WatchKind {
    /// Whether an access that touches the watched bytes fires a watchpoint of this kind:
    /// a read one needs the access to read them, an access one fires on any, a write one on
    /// none (it fires on a change of value instead).
    pub fn fires_on_access(self, reads: bool) -> bool {
        match self {
            WatchKind::Read => reads,
            WatchKind::Access => true,
            WatchKind::Write => false,
        }
    }

    /// Lower-case name, as people type it.
    pub fn name(self) -> &'static str {
        match self {
            WatchKind::Write => "write",
            WatchKind::Read => "read",
            WatchKind::Access => "access",
        }
    }
}

/// A watched range of guest-virtual memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Watchpoint {
    /// Start (guest-virtual).
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Kind.
    pub kind: WatchKind,
}

/// Why a range cannot be watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchRangeError {
    /// Zero bytes.
    #[error("a watchpoint needs a length of at least one byte")]
    Empty,
    /// More than [`MAX_WATCH_LEN`] bytes.
    #[error("{len} bytes is longer than the {MAX_WATCH_LEN} a watchpoint can cover")]
    TooLong {
        /// The length asked for.
        len: u64,
    },
    /// The range runs past the top of the address space.
    #[error("the range {addr:#x}+{len} wraps around the address space")]
    Wraps {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },
}

impl Watchpoint {
    /// A watchpoint over `[addr, addr + len)`, if the timeline can watch that range.
    pub fn new(addr: u64, len: u64, kind: WatchKind) -> Result<Self, WatchRangeError> {
        if len == 0 {
            return Err(WatchRangeError::Empty);
        }
        if len > MAX_WATCH_LEN {
            return Err(WatchRangeError::TooLong { len });
        }
        if addr.checked_add(len).is_none() {
            return Err(WatchRangeError::Wraps { addr, len });
        }
        Ok(Self { addr, len, kind })
    }
}

impl Watchpoint {
    /// Whether an instruction with these memory accesses triggers it by touching it: a
    /// read of its bytes for a read watchpoint, any access for an access watchpoint (a
    /// write watchpoint fires on a change of value instead).
    pub fn touched_by(&self, accesses: &[Access]) -> bool {
        accesses.iter().any(|a| {
            let overlaps = a.addr < self.addr.wrapping_add(self.len) && self.addr < a.addr.wrapping_add(a.size);
            overlaps && self.kind.fires_on_access(a.read)
        })
    }
}

impl std::fmt::Display for Watchpoint {
    /// `write 0x1234+8`: how stop notes and lists name it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:#x}+{}", self.kind.name(), self.addr, self.len)
    }
}

/// The breakpoints and watchpoints of a timeline.
#[derive(Debug, Default)]
pub(super) struct StopPoints {
    pub(super) breakpoints: BTreeSet<u64>,
    pub(super) watchpoints: Vec<Watchpoint>,
    access: Option<Rc<AccessDecoder>>,
    /// The debug registers' lookout for the read and access watchpoints in free runs, for
    /// the generation it was made for (`free_watch.rs`).
    data_watch: Option<(u64, Option<Rc<DataWatch>>)>,
    /// Bumped by every change, so a paused run notices that what stops it changed.
    pub(super) generation: u64,
}

impl StopPoints {
    pub(super) fn is_empty(&self) -> bool {
        self.breakpoints.is_empty() && self.watchpoints.is_empty()
    }
}

impl Timeline {
    /// Adds a breakpoint at guest-virtual `addr`.
    pub fn add_breakpoint(&mut self, addr: u64) {
        if self.stops.breakpoints.insert(addr) {
            self.stops.generation += 1;
        }
    }

    /// Removes a breakpoint; returns whether it existed.
    pub fn remove_breakpoint(&mut self, addr: u64) -> bool {
        let existed = self.stops.breakpoints.remove(&addr);
        if existed {
            self.stops.generation += 1;
        }
        existed
    }

    /// Adds a watchpoint.
    pub fn add_watchpoint(&mut self, w: Watchpoint) {
        if w.kind != WatchKind::Write && self.stops.access.is_none() {
            self.stops.access = AccessDecoder::new().map(Rc::new);
        }
        self.stops.watchpoints.push(w);
        self.stops.generation += 1;
    }

    /// Removes a watchpoint; returns whether it existed.
    pub fn remove_watchpoint(&mut self, w: Watchpoint) -> bool {
        match self.stops.watchpoints.iter().position(|x| *x == w) {
            Some(i) => {
                self.stops.watchpoints.remove(i);
                self.stops.generation += 1;
                true
            }
            None => false,
        }
    }

    /// Current breakpoints.
    pub fn breakpoints(&self) -> &BTreeSet<u64> {
        &self.stops.breakpoints
    }

    /// Current watchpoints.
    pub fn watchpoints(&self) -> &[Watchpoint] {
        &self.stops.watchpoints
    }

    /// The lookout free runs use for the read and access watchpoints beside the
    /// breakpoints: in the debug registers left, if this host's data breakpoints fire (and
    /// they hold them all), else for page holes (`free_watch.rs`).
    pub(super) fn data_watch(&mut self) -> Option<Rc<DataWatch>> {
        let generation = self.stops.generation;
        if let Some((g, watch)) = &self.stops.data_watch {
            if *g == generation {
                return watch.clone();
            }
        }
        let slots = crate::stepping::data_breakpoints_fire()
            .then(|| MAX_COUNTED_BREAKPOINTS.saturating_sub(self.stops.breakpoints.len()));
        let decoder = self.stops.access.clone()?;
        let watch = DataWatch::new(&self.stops.watchpoints, slots, decoder).map(Rc::new);
        self.stops.data_watch = Some((generation, watch.clone()));
        watch
    }

    /// The breakpoint at the current RIP, if there is one.
    pub(super) fn breakpoint_here(&self) -> Option<u64> {
        let rip = self.machine().vm.vcpu().rip();
        self.stops.breakpoints.contains(&rip).then_some(rip)
    }

    fn read_virt(&self, addr: u64, len: u64) -> Option<Vec<u8>> {
        let m = self.machine();
        let space = AddressSpace::from_sregs(&m.vm.vcpu().sregs());
        let mut buf = vec![0u8; len as usize];
        space.read_virt(m.vm.ram(), addr, &mut buf).ok().map(|_| buf)
    }

    fn watched_values(&self) -> Vec<Option<Vec<u8>>> {
        self.stops
            .watchpoints
            .iter()
            .map(|w| if w.kind == WatchKind::Read { None } else { self.read_virt(w.addr, w.len) })
            .collect()
    }

    fn next_step(&self) -> NextStep {
        self.stops.access.as_ref().map_or_else(NextStep::default, |dec| dec.next_step(self.machine()))
    }

    /// Steps once and reports the first watchpoint the step triggered.
    pub(super) fn step_watching(&mut self) -> Result<(Stepped, Option<Watchpoint>), TimelineError> {
        if self.stops.watchpoints.is_empty() {
            return Ok((self.step_once()?, None));
        }
        let before = self.watched_values();
        let next = if self.stops.watchpoints.iter().any(|w| w.kind != WatchKind::Write) {
            self.next_step()
        } else {
            NextStep::default()
        };
        let r = self.step_once()?;
        if r == Stepped::AtEnd {
            return Ok((r, None));
        }
        let after = self.watched_values();
        // Asked only when an access would fire: reading the IDT is not free.
        let ran = || next.ran(self.machine(), self.engine().last_step_injected());
        for (i, w) in self.stops.watchpoints.iter().enumerate() {
            let changed = w.kind != WatchKind::Read && before[i] != after[i];
            if changed || (w.touched_by(&next.accesses) && ran()) {
                return Ok((r, Some(*w)));
            }
        }
        Ok((r, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_a_watchpoint_cannot_cover_are_refused() {
        assert_eq!(Watchpoint::new(0x1000, 0, WatchKind::Write), Err(WatchRangeError::Empty));
        assert_eq!(
            Watchpoint::new(0x1000, MAX_WATCH_LEN + 1, WatchKind::Read),
            Err(WatchRangeError::TooLong { len: MAX_WATCH_LEN + 1 })
        );
        assert_eq!(
            Watchpoint::new(u64::MAX - 3, 8, WatchKind::Write),
            Err(WatchRangeError::Wraps { addr: u64::MAX - 3, len: 8 })
        );
        let w = Watchpoint::new(0x1234, 8, WatchKind::Write).map(|w| w.to_string());
        assert_eq!(w.as_deref(), Ok("write 0x1234+8"));
        assert!(Watchpoint::new(0x1000, MAX_WATCH_LEN, WatchKind::Access).is_ok());
    }
}
