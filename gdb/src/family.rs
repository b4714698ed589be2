//! After `monitor branch`: one history over the family, the parent's steps up to the
//! branch point followed by the branch's.
//!
//! The session records the branch with a live timeline of its own (icount 0 = the branch
//! point). To keep the parent's past reachable, the target holds a second timeline over the
//! parent's trace, cut at the branch point (`Recording::truncate_to`), built the first time
//! the session goes back past the branch point. Exactly one of the two is in use (`tl`);
//! the other waits here, and they are swapped when a move crosses the branch point:
//! - going back from the branch's first step (its history starts there) continues in the
//!   parent from the branch point;
//! - going forward from the parent's branch point (its history, as cut, ends there)
//!   continues in the branch from its first step.
//!
//! Positions are the family's: the parent's icounts up to the branch point B, then B + k for
//! the branch's step k, so `monitor goto` and `monitor when` see one history. Position B is
//! the branch point in both: reached from the parent it shows the parent's machine there,
//! reached from the branch (or by `goto`, which goes to the parent for B) it is where the
//! branch started, with the edits made for it. Breakpoints and watchpoints are copied to
//! the timeline that takes over. The parent's history stays read-only: writes there are
//! refused as in any replay, and a session branches once.

use std::path::PathBuf;
use std::rc::Rc;

use ttvm_replay::recording::Recording;
use ttvm_replay::timeline::{Stop, Timeline, TimelineError};

use crate::target::TtvmTarget;

/// The family of a session that branched.
pub(crate) struct Family {
    /// The parent trace.
    parent: PathBuf,
    /// The branch point: the parent's icount there, the branch's 0.
    at: u64,
    /// The timeline not in use: the parent's (once built) while in the branch, the
    /// branch's while in the parent.
    other: Option<Timeline>,
    /// Whether the session is in the parent's history.
    in_parent: bool,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family")
            .field("parent", &self.parent)
            .field("at", &self.at)
            .field("in_parent", &self.in_parent)
            .finish_non_exhaustive()
    }
}

impl Family {
    /// The family of a branch of `parent` at its icount `at`, the session in the branch.
    pub(crate) fn new(parent: PathBuf, at: u64) -> Self {
        Self { parent, at, other: None, in_parent: false }
    }
}

/// Makes `to` stop where `from` stops.
fn copy_stops(from: &Timeline, to: &mut Timeline) {
    for addr in to.breakpoints().clone() {
        to.remove_breakpoint(addr);
    }
    for w in to.watchpoints().to_vec() {
        to.remove_watchpoint(w);
    }
    for &addr in from.breakpoints() {
        to.add_breakpoint(addr);
    }
    for &w in from.watchpoints() {
        to.add_watchpoint(w);
    }
}

impl TtvmTarget<'_> {
    /// The current position in the family's numbering.
    pub(crate) fn position(&self) -> u64 {
        match &self.family {
            Some(f) if !f.in_parent => f.at + self.tl.icount(),
            _ => self.tl.icount(),
        }
    }

    /// The family's length: the branch point plus the branch's steps.
    pub(crate) fn history_length(&self) -> u64 {
        match &self.family {
            None => self.tl.length(),
            Some(f) if f.in_parent => f.at + f.other.as_ref().map_or(0, Timeline::length),
            Some(f) => f.at + self.tl.length(),
        }
    }

    /// Where the session is in the family, for monitor output (empty without a branch).
    pub(crate) fn family_note(&self) -> String {
        match &self.family {
            None => String::new(),
            Some(f) if f.in_parent => {
                format!("; in the parent's history ({} up to the branch point, icount {})", f.parent.display(), f.at)
            }
            Some(f) => format!("; in the branch, which starts at icount {} of {}", f.at, f.parent.display()),
        }
    }

    /// Moves to family position `n`: the parent's history up to the branch point, the
    /// branch's after it.
    pub(crate) fn seek_family(&mut self, n: u64) -> Result<Stop, TimelineError> {
        let Some(at) = self.family.as_ref().map(|f| f.at) else { return self.tl.seek(n) };
        if n <= at {
            self.enter_parent()?;
            self.tl.seek(n)
        } else {
            self.enter_branch()?;
            self.tl.seek(n - at)
        }
    }

    /// Whether a move that ended with `stop` in direction `forward` ran into the branch
    /// point and must go on in the other timeline; if so, switches to it, positioned at the
    /// branch point.
    pub(crate) fn crossed_branch_point(&mut self, stop: &Stop, forward: bool) -> Result<bool, TimelineError> {
        let Some(f) = &self.family else { return Ok(false) };
        match (stop, forward, f.in_parent) {
            (Stop::HistoryStart, false, false) => self.enter_parent().map(|()| true),
            (Stop::HistoryEnd, true, true) => self.enter_branch().map(|()| true),
            _ => Ok(false),
        }
    }

    /// Switches to the parent's history at the branch point (building it the first time).
    fn enter_parent(&mut self) -> Result<(), TimelineError> {
        let Some(f) = self.family.as_mut() else { return Ok(()) };
        if f.in_parent {
            return Ok(());
        }
        let mut parent = match f.other.take() {
            Some(t) => t,
            None => {
                let mut rec = Recording::open(&f.parent)?;
                rec.truncate_to(f.at);
                Timeline::new(Rc::new(rec), &ttvm_replay::stepping::host_signature())?
            }
        };
        copy_stops(self.tl, &mut parent);
        parent.seek(f.at)?;
        std::mem::swap(self.tl, &mut parent);
        f.other = Some(parent);
        f.in_parent = true;
        eprintln!("ttvm: back in the parent's history at the branch point (icount {})", f.at);
        Ok(())
    }

    /// Puts the branch's timeline back in use where it was, for whoever uses the timeline
    /// after this session (the server finalises the branch's trace through it).
    pub(crate) fn leave_family(&mut self) {
        let Some(mut f) = self.family.take() else { return };
        if f.in_parent {
            if let Some(mut branch) = f.other.take() {
                std::mem::swap(self.tl, &mut branch);
            }
        }
    }

    /// Switches to the branch's history at its first step.
    fn enter_branch(&mut self) -> Result<(), TimelineError> {
        let Some(f) = self.family.as_mut() else { return Ok(()) };
        if !f.in_parent {
            return Ok(());
        }
        let Some(mut branch) = f.other.take() else { return Ok(()) };
        copy_stops(self.tl, &mut branch);
        branch.seek(0)?;
        std::mem::swap(self.tl, &mut branch);
        f.other = Some(branch);
        f.in_parent = false;
        eprintln!("ttvm: in the branch's history from its first step (icount {})", f.at);
        Ok(())
    }
}
