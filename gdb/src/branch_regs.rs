//! Register writes from gdb at an armed branch point (`monitor branch FILE`).
//!
//! gdb writes registers with a `G` packet holding every register it knows, so a change to
//! one arrives as the whole set: the write is compared with the registers now, and each
//! group that differs goes to the vCPU its own way. General registers, RIP and RFLAGS;
//! x87/SSE through the FXSAVE image; FS/GS bases and CR2 through the segment registers;
//! KERNEL_GS_BASE as its MSR. Segment selectors, CR0/CR3/CR4/CR8 and EFER are refused: a
//! selector means nothing without the descriptor the CPU would load with it, and a new mode
//! or address space is not a change gdb can describe consistently. A refused write changes
//! nothing, and says which register.

use crate::regs::KernelRegs;
use crate::target::TtvmTarget;

impl TtvmTarget<'_> {
    /// Applies `regs` (gdb's whole register set) at the branch point; `Err` names what was
    /// refused or failed.
    pub(crate) fn write_registers_for_branch(&mut self, regs: &KernelRegs) -> Result<(), String> {
        let now = self.registers();
        if let Some(name) = refused_change(&now, regs) {
            return Err(format!(
                "{name} cannot be changed in a branch (general registers, RIP, RFLAGS, x87/SSE, FS/GS base, KERNEL_GS_BASE and CR2 can)"
            ));
        }
        let (a, b) = (&now.core, &regs.core);
        if (a.regs, a.rip, a.eflags) != (b.regs, b.rip, b.eflags) {
            let mut r = self.tl.machine().vm.vcpu().regs();
            let g = &b.regs;
            (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp) = (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]);
            (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) =
                (g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
            r.rip = b.rip;
            // The upper half of RFLAGS is reserved (zero); gdb's eflags is its lower half.
            r.rflags = u64::from(b.eflags);
            self.branch_set_regs(&r).map_err(|e| e.to_string())?;
        }
        if now.fpu_valid && (a.st, &a.fpu, a.xmm, a.mxcsr) != (b.st, &b.fpu, b.xmm, b.mxcsr) {
            self.branch_edit_vcpu(|vcpu| vcpu.update_fxsave(|image| crate::fpu::store_fxsave(b, image)))?;
        }
        if (now.fs_base, now.gs_base, now.cr2) != (regs.fs_base, regs.gs_base, regs.cr2) {
            self.branch_edit_vcpu(|vcpu| {
                let mut s = vcpu.sregs();
                (s.fs.base, s.gs.base, s.cr2) = (regs.fs_base, regs.gs_base, regs.cr2);
                vcpu.set_sregs(&s);
                Ok(())
            })?;
        }
        if now.k_gs_base != regs.k_gs_base {
            self.branch_edit_vcpu(|vcpu| vcpu.set_msr(ttvm_vmm::msr::KERNEL_GS_BASE, regs.k_gs_base))?;
        }
        Ok(())
    }
}

/// The first register `new` changes that a branch cannot change.
fn refused_change(now: &KernelRegs, new: &KernelRegs) -> Option<&'static str> {
    let (s, t) = (&now.core.segments, &new.core.segments);
    let checks = [
        ("cs", s.cs == t.cs),
        ("ss", s.ss == t.ss),
        ("ds", s.ds == t.ds),
        ("es", s.es == t.es),
        ("fs", s.fs == t.fs),
        ("gs", s.gs == t.gs),
        ("cr0", now.cr0 == new.cr0),
        ("cr3", now.cr3 == new.cr3),
        ("cr4", now.cr4 == new.cr4),
        ("cr8", now.cr8 == new.cr8),
        ("efer", now.efer == new.efer),
    ];
    checks.into_iter().find(|(_, same)| !same).map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_control_registers_are_refused_by_name() {
        let now = KernelRegs { cr3: 0x1000, ..Default::default() };
        assert_eq!(refused_change(&now, &now.clone()), None);
        let mut new = now.clone();
        new.core.regs[0] = 5;
        new.fs_base = 0x7000;
        new.core.xmm[2] = 9;
        assert_eq!(refused_change(&now, &new), None, "these a branch may change");
        new.cr3 = 0x2000;
        assert_eq!(refused_change(&now, &new), Some("cr3"));
        new.core.segments.ss = 0x2b;
        assert_eq!(refused_change(&now, &new), Some("ss"));
    }
}
