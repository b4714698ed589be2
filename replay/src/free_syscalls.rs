//! User-mode SYSCALLs in free runs of a replay, on hosts that strand them (PVM, see
//! `ttvm_vmm::user_mode`).
//!
//! There a native SYSCALL from ring 3 ends in a #PF at LSTAR with the user CS still loaded.
//! The exact engine completes it within its step (`engine/user_steps.rs`); a free run of an
//! interval (`free_interval.rs`) would deliver the fault to the guest instead, Linux would
//! kill the process with SIGSEGV and print it, and the run would leave the recorded path (a
//! native read of the UART's IER, where every Linux interval with a system call fell back).
//!
//! So a free run keeps a hardware breakpoint on the guest's #PF handler, as the free engine
//! does, in a debug register its breakpoints leave free. At a stranded SYSCALL it completes
//! it as the engine does and puts back what the fault overwrote: CR2 and the frame's 48
//! bytes below the #PF stack's top. The run cannot read those just before the SYSCALL (ring
//! 3 does not exit), so it keeps them from the last moment it saw the machine: the start of
//! each native stretch, and every ordinary page fault (which writes both). Nothing else
//! writes them while the run is in ring 3, and the kernel's own writes there (Linux copies
//! the IRET frame and RDI onto that stack on its way back to user mode) come before a return
//! to ring 3, which the recorder makes an anchor (`Engine::last_step_emulated`): the native
//! stretch after it starts in ring 3 with them in place. Traces recorded before that rule
//! lack those anchors; their intervals with SYSCALLs leave a different stack behind and
//! fall back. Anything else that invalidates this (another exception from ring 3 natively)
//! leaves a state the end checkpoint's comparison rejects: the interval falls back to
//! stepping, never verified wrongly.

use ttvm_vmm::user_mode::BeforeSyscall;

use crate::engine::Ring3Steps;
use crate::replay::{ReplayError, ReplaySession};

/// The breakpoint on the #PF handler of one native stretch, and what a stranded SYSCALL
/// would have to put back.
#[derive(Debug)]
pub(crate) struct SyscallTrap {
    /// The guest's #PF handler.
    pub handler: u64,
    before: BeforeSyscall,
}

/// What a debug exit at the trap's handler was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageFaultHit {
    /// A stranded SYSCALL, now completed: the run goes on from LSTAR.
    SyscallCompleted,
    /// An ordinary page fault: the caller steps over the handler's first instruction.
    Ordinary,
}

impl ReplaySession {
    /// The trap for a native stretch starting here: only where ring 3 is stepped through the
    /// guest's #DB (the hosts that strand SYSCALLs) and the guest has enabled SYSCALL.
    pub(crate) fn syscall_trap(&self) -> Option<SyscallTrap> {
        if self.engine.rules.ring3 != Ring3Steps::DebugTrap {
            return None;
        }
        let vm = &self.engine.machine.vm;
        let sregs = vm.vcpu().sregs();
        let handler = vm.stranded_syscall_trap(&sregs)?;
        Some(SyscallTrap { handler, before: vm.before_syscall(&sregs)? })
    }

    /// Whether the vCPU stopped at the trap's handler in ring 0.
    pub(crate) fn at_trap(&self, trap: &SyscallTrap) -> bool {
        let vcpu = self.engine.machine.vm.vcpu();
        vcpu.rip() == trap.handler && vcpu.sregs().cs.dpl == 0
    }

    /// At the trap's handler: completes a stranded SYSCALL, or (an ordinary fault) takes
    /// the CR2 and frame bytes it left as the ones a later SYSCALL must put back.
    pub(crate) fn on_page_fault(&mut self, trap: &mut SyscallTrap) -> Result<PageFaultHit, ReplayError> {
        let finished = self.engine.machine.vm.finish_stranded_syscall(&trap.before);
        if finished.map_err(|e| self.kvm_error(e.to_string()))? {
            return Ok(PageFaultHit::SyscallCompleted);
        }
        let vm = &self.engine.machine.vm;
        if let Some(before) = vm.before_syscall(&vm.vcpu().sregs()) {
            trap.before = before;
        }
        Ok(PageFaultHit::Ordinary)
    }
}
