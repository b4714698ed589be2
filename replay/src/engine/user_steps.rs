//! Ring 3 under the exact engine on hosts where single-step does not exit in ring 3
//! ([`Ring3Steps::DebugTrap`], the PVM hosts of DESIGN.md).
//!
//! There ring-3 code runs natively: KVM's single-step and hardware breakpoints are not
//! honoured in it, but the guest's own TF is, and the #DB it raises is delivered to the
//! guest's ring 0, which the host emulates and where a hardware breakpoint does exit. So one
//! user instruction is one step like this (measured on the reference hosts):
//!
//! 1. TF is set in the user RFLAGS and a hardware breakpoint put on the guest's #DB handler
//!    (IDT vector 1). The 40 bytes the #DB frame will overwrite (below TSS.RSP0, or the
//!    gate's IST stack, aligned to 16) are read first, and the guest's DR6 is known.
//! 2. The instruction runs natively; the single-step trap after it is delivered to ring 0
//!    and the breakpoint exits before the handler's first instruction. The engine drops the
//!    frame: RIP, RSP and RFLAGS (TF cleared) come from it, CS and SS are the user's again,
//!    the 40 bytes and DR6 (whose BS bit the trap set) are put back. The guest sees
//!    nothing of it.
//! 3. If the instruction faulted instead (a user page fault, #GP, #UD...) or was an INT n,
//!    the exception is delivered and the handler's first instruction runs in the same step,
//!    as every delivery does in ring 0. The host hides TF in that frame while KVM
//!    single-step is on (measured: the #PF frame holds RFLAGS without TF, and with TF when
//!    single-step is off), so nothing needs fixing.
//!
//! Special cases: PUSHF would push our TF, so the pushed word's TF is cleared after it.
//! SYSCALL is left half done by these hosts (`ttvm_vmm::user_mode`): it runs without TF
//! and with the breakpoint on the #PF handler instead, and the engine completes it as the
//! CPU would (CS/SS from STAR, RIP from LSTAR) with CR2 and the fault frame's 48 bytes put
//! back. Returns to ring 3 (IRETQ, SYSRETQ) are carried out by the engine
//! ([`ttvm_vmm::user_return`]), because the host runs them together with the user code
//! after them. RDTSC, RDRAND, CPUID and the like are emulated before the step as in ring 0.
//! Interrupts are injected at user-mode boundaries like anywhere else (TF is only set for
//! an instruction step, so their frames never hold it).
//!
//! Not covered: the guest's own TF in user mode (a ptrace single-step: entries with TF in
//! the image are refused; a user POPF that sets TF is lost), a #DB trap held back by MOV SS
//! (two user instructions in one step), 32-bit user code entered by IRETD or SYSRETL.

use kvm_bindings::{kvm_regs, kvm_sregs};

use super::{Engine, EngineError, Ring3Steps, StepEnv, StepOutcome, RFLAGS_IF, RFLAGS_TF};
use ttvm_vmm::descriptors::{delivery_stack_top, idt_gate};
use ttvm_vmm::msr::STAR as MSR_STAR;
use ttvm_vmm::paging::AddressSpace;
use ttvm_vmm::user_return::{iretq_to_user, sysretq_to_user};

const DB_VECTOR: u8 = 1;
const PF_VECTOR: u8 = 14;
/// Breakpoint slots: the #DB handler for instruction steps, the #PF handler for SYSCALL.
const DB_SLOT: usize = 0;
const PF_SLOT: usize = 1;
/// DR6 bits B0-B3: which breakpoint slot fired.
const DR6_HIT: u64 = 0xf;
/// #DB frame: RIP, CS, RFLAGS, RSP, SS.
const TRAP_FRAME: usize = 40;

fn word(bytes: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

/// The opcode after any legacy or REX prefixes.
fn opcode(code: &[u8]) -> &[u8] {
    let skip = code
        .iter()
        .take_while(|&&b| {
            matches!(b, 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3) || b & 0xf0 == 0x40
        })
        .count();
    &code[skip.min(code.len())..]
}

impl Engine {
    fn unsupported(&self, rip: u64, why: &'static str) -> EngineError {
        EngineError::UserModeUnsupported { icount: self.state.icount, rip, why }
    }

    /// Carries out the IRETQ or SYSRETQ at RIP that returns to ring 3 (`code` starts with
    /// it), as one step.
    pub(super) fn return_to_user(
        &mut self,
        code: &[u8],
        regs: kvm_regs,
        sregs: &kvm_sregs,
    ) -> Result<StepOutcome, EngineError> {
        let rex_w = matches!(code.first(), Some(&b) if b & 0xf8 == 0x48);
        if !rex_w {
            return Err(self.unsupported(regs.rip, "a return to 32-bit user code (IRETD or SYSRETL)"));
        }
        let returned = if opcode(code).first() == Some(&0x0f) {
            let star = self.machine.vm.vcpu().get_msr(MSR_STAR).map_err(|e| self.kvm_err(e))?;
            sysretq_to_user(&regs, sregs, star)
        } else {
            iretq_to_user(&regs, sregs, self.machine.vm.ram())
        };
        let (r, s) = returned.map_err(|why| self.unsupported(regs.rip, why))?;
        let vcpu = self.machine.vm.vcpu_mut();
        vcpu.set_regs(&r);
        vcpu.set_sregs(&s);
        self.end_interrupt_shadow()?;
        // As after a ring-0 IRETQ: the instruction returned to runs before an interrupt.
        self.state.window_open = false;
        self.last_step_emulated = true;
        self.state.icount += 1;
        Ok(StepOutcome::Continue)
    }

    /// One ring-3 instruction (not one the engine emulates) as one step, through the
    /// guest's #DB (see the module comment).
    pub(super) fn step_user<E: StepEnv>(
        &mut self,
        env: &mut E,
        mut regs: kvm_regs,
        sregs: &kvm_sregs,
        code: &[u8],
    ) -> Result<StepOutcome, EngineError> {
        debug_assert_eq!(self.rules.ring3, Ring3Steps::DebugTrap);
        if opcode(code).starts_with(&[0x0f, 0x05]) {
            return self.step_syscall(env, regs, sregs);
        }
        let ram = self.machine.vm.ram();
        let gate =
            idt_gate(ram, sregs, DB_VECTOR).ok_or_else(|| self.unsupported(regs.rip, "the IDT has no #DB gate"))?;
        let frame_at = delivery_stack_top(ram, sregs, gate)
            .map(|top| top.wrapping_sub(TRAP_FRAME as u64))
            .ok_or_else(|| self.unsupported(regs.rip, "the TSS is not mapped"))?;
        let mut saved = [0u8; TRAP_FRAME];
        let space = AddressSpace::from_sregs(sregs);
        space
            .read_virt(ram, frame_at, &mut saved)
            .map_err(|_| self.unsupported(regs.rip, "the #DB stack is not mapped"))?;
        if self.user_debugregs.is_none() {
            self.user_debugregs = Some(self.machine.vm.vcpu().debug_regs().map_err(|e| self.kvm_err(e))?);
        }
        let mut bps = [None; 4];
        bps[DB_SLOT] = Some(gate.handler);
        let vcpu = self.machine.vm.vcpu_mut();
        vcpu.set_hw_breakpoints(bps).map_err(|e| self.kvm_err(e))?;
        let before = regs;
        regs.rflags |= RFLAGS_TF;
        self.machine.vm.vcpu_mut().set_regs(&regs);

        self.last_exit_dr6 = 0;
        let outcome = self.run_one_step(env)?;
        let (after, after_s) = (self.machine.vm.vcpu().regs(), self.machine.vm.vcpu().sregs());
        let trapped = after_s.cs.dpl == 0 && after.rip == gate.handler && self.last_exit_dr6 & DR6_HIT != 0;
        if !trapped {
            // An exception (or INT n) was delivered and its handler's first instruction ran.
            return Ok(outcome);
        }
        let mut frame = [0u8; TRAP_FRAME];
        let here = AddressSpace::from_sregs(&after_s);
        if after.rsp != frame_at || here.read_virt(self.machine.vm.ram(), after.rsp, &mut frame).is_err() {
            return Err(self.unsupported(before.rip, "the #DB frame is not where the TSS says"));
        }
        let (rip, cs, rflags, rsp, ss) =
            (word(&frame, 0), word(&frame, 1), word(&frame, 2), word(&frame, 3), word(&frame, 4));
        if cs != u64::from(sregs.cs.selector) || ss != u64::from(sregs.ss.selector) {
            return Err(self.unsupported(before.rip, "a far transfer in user mode"));
        }
        let mut r = after;
        (r.rip, r.rsp, r.rflags) = (rip, rsp, rflags & !RFLAGS_TF);
        let mut s = after_s;
        (s.cs, s.ss) = (sregs.cs, sregs.ss);
        let vm = &mut self.machine.vm;
        vm.write_guest_virt(&s, frame_at, &saved);
        vm.vcpu_mut().set_regs(&r);
        vm.vcpu_mut().set_sregs(&s);
        if let Some(dr) = &self.user_debugregs {
            vm.vcpu().set_debug_regs(dr).map_err(|e| self.kvm_err(e))?;
        }
        self.hide_pushed_tf(code, &before, &r, &s);
        self.state.window_open = r.rflags & RFLAGS_IF != 0;
        Ok(outcome)
    }

    /// After a PUSHF(Q) that completed, the word it pushed holds our TF: clear it.
    fn hide_pushed_tf(&mut self, code: &[u8], before: &kvm_regs, after: &kvm_regs, sregs: &kvm_sregs) {
        let pushf = opcode(code).first() == Some(&0x9c) && !code.starts_with(&[0x66]);
        if !pushf || after.rsp != before.rsp.wrapping_sub(8) {
            return;
        }
        let mut w = [0u8; 8];
        let space = AddressSpace::from_sregs(sregs);
        if space.read_virt(self.machine.vm.ram(), after.rsp, &mut w).is_ok() {
            let pushed = u64::from_le_bytes(w);
            if pushed & RFLAGS_TF != 0 {
                self.machine.vm.write_guest_virt(sregs, after.rsp, &(pushed & !RFLAGS_TF).to_le_bytes());
            }
        }
    }

    /// A user-mode SYSCALL: these hosts leave it half done in ring 3 and the fetch at LSTAR
    /// faults into the guest's #PF handler, where a breakpoint exits and the engine
    /// completes it (CR2 and the 48 bytes of the fault frame put back).
    fn step_syscall<E: StepEnv>(
        &mut self,
        env: &mut E,
        regs: kvm_regs,
        sregs: &kvm_sregs,
    ) -> Result<StepOutcome, EngineError> {
        let vm = &self.machine.vm;
        let handler = idt_gate(vm.ram(), sregs, PF_VECTOR)
            .ok_or_else(|| self.unsupported(regs.rip, "the IDT has no #PF gate"))?
            .handler;
        let before = vm
            .before_syscall(sregs)
            .ok_or_else(|| self.unsupported(regs.rip, "the TSS or the #PF stack is not mapped"))?;
        let mut bps = [None; 4];
        bps[PF_SLOT] = Some(handler);
        self.machine.vm.vcpu_mut().set_hw_breakpoints(bps).map_err(|e| self.kvm_err(e))?;

        self.last_exit_dr6 = 0;
        let outcome = self.run_one_step(env)?;
        let (r, s) = (self.machine.vm.vcpu().regs(), self.machine.vm.vcpu().sregs());
        if !(s.cs.dpl == 0 && r.rip == handler && self.last_exit_dr6 & DR6_HIT != 0) {
            return Err(self.unsupported(regs.rip, "SYSCALL did not end at the #PF handler as on PVM hosts"));
        }
        if !self.machine.vm.finish_stranded_syscall(&before).map_err(|e| self.kvm_err(e))? {
            return Err(self.unsupported(regs.rip, "SYSCALL faulted in an unexpected way"));
        }
        self.state.window_open = self.machine.vm.vcpu().regs().rflags & RFLAGS_IF != 0;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::opcode;

    #[test]
    fn opcodes_are_found_behind_prefixes() {
        assert_eq!(opcode(&[0x48, 0x0f, 0x07]), &[0x0f, 0x07]);
        assert_eq!(opcode(&[0x9c]), &[0x9c]);
        assert_eq!(opcode(&[0x66, 0x9c]), &[0x9c]);
        assert_eq!(opcode(&[0x0f, 0x05]), &[0x0f, 0x05]);
        assert_eq!(opcode(&[0x48]), &[] as &[u8]);
    }
}
