//! Divergence reports: where and how a replay stopped matching its recording.

use crate::events::Event;

/// A replay that no longer matches the recording, with enough context to start debugging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Step at which the mismatch was seen.
    pub icount: u64,
    /// What the log says should happen here (None: the log has nothing here).
    pub expected: Option<Event>,
    /// What the guest did.
    pub actual: String,
    /// Guest RIP.
    pub rip: u64,
    /// Disassembly of the instruction at RIP (empty if not available).
    pub disassembly: String,
    /// The last events replayed before the mismatch, oldest first.
    pub recent: Vec<Event>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "replay diverged from the recording at icount {}", self.icount)?;
        match &self.expected {
            Some(e) => writeln!(f, "  expected: {} (icount {})", e.kind.describe(), e.icount)?,
            None => writeln!(f, "  expected: no event")?,
        }
        writeln!(f, "  actual:   {}", self.actual)?;
        write!(f, "  at RIP {:#x}", self.rip)?;
        if !self.disassembly.is_empty() {
            write!(f, ": {}", self.disassembly)?;
        }
        if !self.recent.is_empty() {
            writeln!(f)?;
            write!(f, "  last events:")?;
            for e in &self.recent {
                write!(f, "\n    {:>12}  {}", e.icount, e.kind.describe())?;
            }
        }
        Ok(())
    }
}
