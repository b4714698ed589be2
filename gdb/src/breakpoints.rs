//! Breakpoints and watchpoints live in the timeline: the step engine stops when RIP reaches
//! a breakpoint address (guest memory is never patched, so a checkpoint or a memory read
//! never sees an `int3`), and watchpoints are checked on every step for any number of
//! ranges of any length, unlike the four debug registers of real hardware.

use gdbstub::target::ext::breakpoints::{
    Breakpoints, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps,
    WatchKind as GdbWatchKind,
};
use gdbstub::target::TargetResult;
use ttvm_replay::timeline::{WatchKind, Watchpoint};

use crate::target::{BpKinds, TtvmTarget};

/// Longest watched range (the timeline's rule); gdb is told longer watchpoints cannot be set.
pub use ttvm_replay::timeline::MAX_WATCH_LEN;

fn from_gdb_kind(k: GdbWatchKind) -> WatchKind {
    match k {
        GdbWatchKind::Write => WatchKind::Write,
        GdbWatchKind::Read => WatchKind::Read,
        GdbWatchKind::ReadWrite => WatchKind::Access,
    }
}

impl TtvmTarget<'_> {
    fn add_bp(&mut self, addr: u64, set: impl FnOnce(&mut BpKinds)) -> bool {
        set(self.bps.entry(addr).or_default());
        self.tl.add_breakpoint(addr);
        true
    }

    fn remove_bp(&mut self, addr: u64, clear: impl FnOnce(&mut BpKinds) -> bool) -> bool {
        let Some(k) = self.bps.get_mut(&addr) else { return false };
        let was = clear(k);
        if !k.sw && !k.hw {
            self.bps.remove(&addr);
            self.tl.remove_breakpoint(addr);
        }
        was
    }

    fn watchpoint(addr: u64, len: u64, kind: GdbWatchKind) -> Option<Watchpoint> {
        Watchpoint::new(addr, len, from_gdb_kind(kind)).ok()
    }
}

impl Breakpoints for TtvmTarget<'_> {
    #[inline(always)]
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    #[inline(always)]
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for TtvmTarget<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_bp(addr, |k| k.sw = true))
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_bp(addr, |k| std::mem::replace(&mut k.sw, false)))
    }
}

impl HwBreakpoint for TtvmTarget<'_> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_bp(addr, |k| k.hw = true))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_bp(addr, |k| std::mem::replace(&mut k.hw, false)))
    }
}

impl HwWatchpoint for TtvmTarget<'_> {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: GdbWatchKind) -> TargetResult<bool, Self> {
        let Some(w) = Self::watchpoint(addr, len, kind) else { return Ok(false) };
        self.tl.add_watchpoint(w);
        Ok(true)
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: GdbWatchKind) -> TargetResult<bool, Self> {
        let Some(w) = Self::watchpoint(addr, len, kind) else { return Ok(false) };
        Ok(self.tl.remove_watchpoint(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_watch_ranges_are_declined() {
        assert!(TtvmTarget::watchpoint(0x1000, 0, GdbWatchKind::Write).is_none());
        assert!(TtvmTarget::watchpoint(u64::MAX - 3, 8, GdbWatchKind::Write).is_none());
        assert!(TtvmTarget::watchpoint(0x1000, MAX_WATCH_LEN + 1, GdbWatchKind::Read).is_none());
        let w = TtvmTarget::watchpoint(0x1000, 3, GdbWatchKind::ReadWrite).unwrap();
        assert_eq!((w.addr, w.len, w.kind), (0x1000, 3, WatchKind::Access));
    }
}
