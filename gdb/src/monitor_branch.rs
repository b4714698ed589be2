//! `monitor branch FILE`: go back, change something, and record what happens instead.
//!
//! Recorded history is read-only: register and memory writes are refused, since they would
//! fork the timeline. `monitor branch FILE` arms a branch at the current position: from then
//! on writes are allowed there (they edit the machine the branch will start from), and the
//! next `continue` or step starts recording the branch into FILE, a new self-contained trace
//! that names its parent and the branch icount. The session then works like `ttvm debug`
//! over one history, the family's: the parent's steps up to the branch point, then the
//! branch's (`family.rs`), so reverse execution and `monitor goto` reach back into the
//! parent's history, and forward again into the branch. While a branch is armed and nothing was written yet, going
//! back is allowed (the branch point moves with the position); once something was written,
//! going back is refused, since it would replay the edited machine as if it were recorded.

use std::path::PathBuf;

use ttvm_replay::timeline::TimelineError;

use crate::target::TtvmTarget;

/// A branch asked for and not started yet.
#[derive(Debug)]
pub struct PendingBranch {
    /// Where the branch is recorded.
    pub path: PathBuf,
    /// The parent trace.
    pub parent: PathBuf,
    /// Whether the machine was edited since (then only going forward is allowed).
    pub edited: bool,
}

impl TtvmTarget<'_> {
    /// `monitor branch FILE`.
    pub(crate) fn monitor_branch(&mut self, path: PathBuf) -> String {
        if self.family.is_some() {
            return "error: this session has branched already; one branch per session (replay the branch \
                    with `ttvm replay BRANCH --gdb PORT` to branch it again)"
                .into();
        }
        if self.tl.is_live() {
            return "error: this session is already recording (a branch or `ttvm debug`); \
                    branch from a replay: ttvm replay TRACE --gdb PORT"
                .into();
        }
        let rec = self.tl.recording();
        let Some(parent) = rec.path.clone() else {
            return "error: this replay does not know its trace file, which a branch must name".into();
        };
        // The branch's disk is what the trace holds at this point (no image here): a sector
        // the parent never touched stops the branch with a message naming `ttvm branch --disk`.
        let disk_note = if rec.header().disk.is_some() {
            "; the disk is as the trace holds it here (for sectors it never touched use `ttvm branch TRACE --at N --disk IMAGE`)"
        } else {
            ""
        };
        if path == parent || std::fs::canonicalize(&path).ok() == std::fs::canonicalize(&parent).ok() {
            return format!("error: {} is the trace being replayed; give a new file", path.display());
        }
        let at = self.tl.icount();
        let text = format!(
            "branch into {} armed at icount {at}: register and memory writes are allowed here now; \
             `continue` or a step records the branch from here (its history starts at this point){disk_note}",
            path.display()
        );
        self.branch = Some(PendingBranch { path, parent, edited: false });
        text
    }

    /// Whether writes are allowed now: a branch is armed and has not started.
    pub(crate) fn may_edit(&self) -> bool {
        self.branch.is_some() && !self.tl.is_live()
    }

    /// Before a move: an armed branch starts on a forward move; going back from an edited
    /// machine is refused.
    pub(crate) fn before_move(&mut self, forward: bool) -> Result<(), TimelineError> {
        let Some(pending) = &self.branch else { return Ok(()) };
        if !forward {
            if pending.edited {
                return Err(TimelineError::NotABranchPoint(format!(
                    "the machine was changed for the branch into {}: `continue` or step to record it; \
                     going back would replay the changed machine as if it were recorded",
                    pending.path.display()
                )));
            }
            return Ok(());
        }
        let Some(pending) = self.branch.take() else { return Ok(()) };
        let output = ttvm_vmm::console::ConsoleOutput::Stdout;
        let input = ttvm_vmm::console::ConsoleInput::none();
        let at = self.tl.icount();
        self.tl.start_branch(&pending.parent, &pending.path, output, input)?;
        self.family = Some(crate::family::Family::new(pending.parent.clone(), at));
        eprintln!(
            "ttvm: recording the branch of {} at icount {at} into {}",
            pending.parent.display(),
            pending.path.display()
        );
        Ok(())
    }

    /// A memory write from gdb while a branch is armed.
    pub(crate) fn branch_write(&mut self, start: u64, data: &[u8]) -> Result<(), TimelineError> {
        self.tl.write_virt_for_branch(start, data)?;
        if let Some(p) = &mut self.branch {
            p.edited = true;
        }
        Ok(())
    }

    /// A change to the rest of the vCPU from gdb while a branch is armed (see
    /// `branch_regs.rs`).
    pub(crate) fn branch_edit_vcpu(
        &mut self,
        edit: impl FnOnce(&mut ttvm_vmm::vcpu::Vcpu) -> Result<(), ttvm_vmm::vcpu::VcpuError>,
    ) -> Result<(), String> {
        self.tl.edit_vcpu_for_branch(edit).map_err(|e| e.to_string())?;
        if let Some(p) = &mut self.branch {
            p.edited = true;
        }
        Ok(())
    }

    /// A register write from gdb while a branch is armed: the general registers.
    pub(crate) fn branch_set_regs(&mut self, regs: &kvm_bindings::kvm_regs) -> Result<(), TimelineError> {
        self.tl.set_regs_for_branch(regs)?;
        if let Some(p) = &mut self.branch {
            p.edited = true;
        }
        Ok(())
    }
}
