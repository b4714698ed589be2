//! Branching a replay timeline in place (gdb's `monitor branch FILE`).
//!
//! Until a branch starts, the timeline is the recorded history and nothing may change it.
//! Once the debugger asked for a branch, it may edit the machine at the current position
//! (memory, general registers): the edits go into the replay's machine, which then no longer
//! matches its recording, so the next move must be [`Timeline::start_branch`], which copies
//! that machine into a new recording and turns the timeline into a live one over it. From
//! there history is the branch's own: going back stops at its first step (the branch point),
//! going forward records, as `ttvm debug` does.

use std::path::Path;

use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::paging::AddressSpace;

use super::{Timeline, TimelineError};
use crate::branch::{start_branch, BranchTo};
use crate::record::DEFAULT_CHECKPOINT_EVERY;

impl Timeline {
    fn refuse_unless_replaying(&self, what: &str) -> Result<(), TimelineError> {
        if self.is_live() {
            return Err(TimelineError::NotABranchPoint(format!(
                "{what}: this timeline is already recording (a branch or a live session); \
                 changes are made at a branch point, before its first step"
            )));
        }
        Ok(())
    }

    /// Writes guest-virtual memory at the current position, for a branch about to start.
    /// The replay no longer matches its recording afterwards: start the branch before
    /// moving.
    pub fn write_virt_for_branch(&mut self, vaddr: u64, data: &[u8]) -> Result<(), TimelineError> {
        self.refuse_unless_replaying("a memory write")?;
        let machine = &mut self.session.engine.machine;
        let space = AddressSpace::from_sregs(&machine.vm.vcpu().sregs());
        space.write_virt(machine.vm.ram_mut(), vaddr, data).map_err(|e| {
            TimelineError::NotABranchPoint(format!("cannot write {} bytes at {vaddr:#x}: {e}", data.len()))
        })?;
        // In-memory checkpoints were taken from the unedited history.
        self.drop_temps();
        Ok(())
    }

    /// Sets the general registers at the current position, for a branch about to start.
    pub fn set_regs_for_branch(&mut self, regs: &kvm_bindings::kvm_regs) -> Result<(), TimelineError> {
        self.refuse_unless_replaying("a register write")?;
        self.session.engine.machine.vm.vcpu_mut().set_regs(regs);
        self.drop_temps();
        Ok(())
    }

    /// Changes the rest of the vCPU at the current position (x87/SSE, segment bases,
    /// MSRs), for a branch about to start: `edit` gets the vCPU.
    pub fn edit_vcpu_for_branch(
        &mut self,
        edit: impl FnOnce(&mut ttvm_vmm::vcpu::Vcpu) -> Result<(), ttvm_vmm::vcpu::VcpuError>,
    ) -> Result<(), TimelineError> {
        self.refuse_unless_replaying("a register write")?;
        edit(self.session.engine.machine.vm.vcpu_mut()).map_err(crate::replay::ReplayError::from)?;
        self.drop_temps();
        Ok(())
    }

    /// Starts recording a branch of `parent` (the trace this timeline replays) from the
    /// current position into `path`; the timeline becomes a live one over the new trace, at
    /// its first step.
    pub fn start_branch(
        &mut self,
        parent: &Path,
        path: &Path,
        output: ConsoleOutput,
        input: ConsoleInput,
    ) -> Result<(), TimelineError> {
        self.refuse_unless_replaying("monitor branch")?;
        let stepping = crate::stepping::host_signature();
        let to = BranchTo {
            parent,
            path,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            stepping: stepping.clone(),
            output,
            input,
            // gdb's branch starts from what the trace holds of the disk (no image).
            disk_image: None,
        };
        let recording = start_branch(&mut self.session, to)?;
        let live = Timeline::live(recording, path, &stepping)?;
        // Breakpoints and watchpoints carry over: they are addresses, not positions.
        let stops = std::mem::take(&mut self.stops);
        let interrupt = self.interrupt.clone();
        *self = live;
        self.stops = stops;
        self.interrupt = interrupt;
        Ok(())
    }

    fn drop_temps(&mut self) {
        self.temps.clear();
        self.temp_bytes = 0;
    }
}
