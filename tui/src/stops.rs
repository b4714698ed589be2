//! The breakpoints and watchpoints the user set, numbered as gdb numbers them, with what was
//! typed for each. The timeline holds the same set (the app asks the driver to add and
//! remove them there) and decides when one stops a run; this list is what the screen shows
//! and what turns a timeline stop back into the name the user gave it.

use ttvm_replay::timeline::{Stop, Watchpoint};

/// What stops a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopTarget {
    /// RIP reaching this address.
    Breakpoint(u64),
    /// A watched range.
    Watchpoint(Watchpoint),
}

impl StopTarget {
    fn is_breakpoint(&self) -> bool {
        matches!(self, StopTarget::Breakpoint(_))
    }
}

/// One breakpoint or watchpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopPoint {
    /// Its number (never reused in a session).
    pub id: u32,
    /// What it stops on.
    pub target: StopTarget,
    /// How the address was typed (a symbol, `kmain+0x10`, `0x100150`).
    pub text: String,
}

impl StopPoint {
    /// Whether the address was typed as a number (then it is not shown twice).
    pub fn typed_as_address(&self) -> bool {
        self.text.starts_with("0x") || self.text.starts_with("0X")
    }

    /// `breakpoint 2 on_tick (0x100234)`, `watchpoint 3 write TICKS (0x104000+8)`; the
    /// address alone when that is what was typed.
    pub fn describe(&self) -> String {
        let typed_address = self.typed_as_address();
        match self.target {
            StopTarget::Breakpoint(a) if typed_address => format!("breakpoint {} {a:#x}", self.id),
            StopTarget::Breakpoint(a) => format!("breakpoint {} {} ({a:#x})", self.id, self.text),
            StopTarget::Watchpoint(w) if typed_address => format!("watchpoint {} {w}", self.id),
            StopTarget::Watchpoint(w) => {
                format!("watchpoint {} {} {} ({:#x}+{})", self.id, w.kind.name(), self.text, w.addr, w.len)
            }
        }
    }
}

/// Which stop points a command is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopPointKind {
    /// Breakpoints only.
    Breakpoints,
    /// Watchpoints only.
    Watchpoints,
}

/// The user's breakpoints and watchpoints, in the order they were set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopList {
    points: Vec<StopPoint>,
    last_id: u32,
}

impl StopList {
    /// Adds one; refuses a second copy of the same breakpoint or watchpoint (naming the
    /// first).
    pub fn add(&mut self, target: StopTarget, text: &str) -> Result<&StopPoint, String> {
        if let Some(p) = self.points.iter().find(|p| p.target == target) {
            return Err(format!("already set: {}", p.describe()));
        }
        self.last_id += 1;
        self.points.push(StopPoint { id: self.last_id, target, text: text.to_string() });
        Ok(&self.points[self.points.len() - 1])
    }

    /// Removes the one numbered `id`.
    pub fn remove(&mut self, id: u32) -> Option<StopPoint> {
        let i = self.points.iter().position(|p| p.id == id)?;
        Some(self.points.remove(i))
    }

    /// Removes every one of `kind` (all of them for `None`).
    pub fn remove_all(&mut self, kind: Option<StopPointKind>) -> Vec<StopPoint> {
        let wanted = |p: &StopPoint| match kind {
            None => true,
            Some(StopPointKind::Breakpoints) => p.target.is_breakpoint(),
            Some(StopPointKind::Watchpoints) => !p.target.is_breakpoint(),
        };
        let (gone, kept) = std::mem::take(&mut self.points).into_iter().partition(wanted);
        self.points = kept;
        gone
    }

    /// All of them, in the order they were set.
    pub fn iter(&self) -> impl Iterator<Item = &StopPoint> {
        self.points.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Whether a breakpoint is set at `addr`.
    pub fn has_breakpoint(&self, addr: u64) -> bool {
        self.points.iter().any(|p| p.target == StopTarget::Breakpoint(addr))
    }

    /// The one that made the timeline stop with `stop`, if `stop` is a breakpoint or
    /// watchpoint stop.
    pub fn find(&self, stop: &Stop) -> Option<&StopPoint> {
        let target = match stop {
            Stop::Breakpoint { addr } => StopTarget::Breakpoint(*addr),
            Stop::Watchpoint { watch } => StopTarget::Watchpoint(*watch),
            _ => return None,
        };
        self.points.iter().find(|p| p.target == target)
    }
}

#[cfg(test)]
mod tests {
    use ttvm_replay::timeline::WatchKind;

    use super::*;

    fn watch(addr: u64) -> StopTarget {
        StopTarget::Watchpoint(Watchpoint { addr, len: 8, kind: WatchKind::Write })
    }

    #[test]
    fn numbers_are_never_reused_and_duplicates_are_refused() {
        let mut l = StopList::default();
        assert_eq!(l.add(StopTarget::Breakpoint(0x10), "kmain").map(|p| p.id), Ok(1));
        assert_eq!(l.add(watch(0x2000), "0x2000").map(|p| p.id), Ok(2));
        assert!(l.add(StopTarget::Breakpoint(0x10), "0x10").is_err_and(|e| e.contains("breakpoint 1 kmain")));
        assert_eq!(l.remove(1).map(|p| p.text), Some("kmain".to_string()));
        assert_eq!(l.add(StopTarget::Breakpoint(0x10), "0x10").map(|p| p.id), Ok(3));
        assert!(l.has_breakpoint(0x10) && !l.has_breakpoint(0x2000));
        let gone = l.remove_all(Some(StopPointKind::Watchpoints));
        assert_eq!(gone.iter().map(|p| p.id).collect::<Vec<_>>(), vec![2]);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn stops_are_named_as_they_were_typed() {
        let mut l = StopList::default();
        let _ = l.add(StopTarget::Breakpoint(0x100234), "on_tick");
        let _ = l.add(watch(0x1234), "0x1234");
        let _ = l.add(watch(0x4000), "TICKS");
        let name = |s: Stop| l.find(&s).map(StopPoint::describe);
        assert_eq!(name(Stop::Breakpoint { addr: 0x100234 }).as_deref(), Some("breakpoint 1 on_tick (0x100234)"));
        let w = Watchpoint { addr: 0x1234, len: 8, kind: WatchKind::Write };
        assert_eq!(name(Stop::Watchpoint { watch: w }).as_deref(), Some("watchpoint 2 write 0x1234+8"));
        let w = Watchpoint { addr: 0x4000, len: 8, kind: WatchKind::Write };
        assert_eq!(name(Stop::Watchpoint { watch: w }).as_deref(), Some("watchpoint 3 write TICKS (0x4000+8)"));
        assert_eq!(name(Stop::HistoryEnd), None);
    }
}
