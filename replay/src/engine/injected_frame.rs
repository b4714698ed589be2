//! The frame of an interrupt the engine injected in ring 0 (format 7 on).
//!
//! KVM steps with TF set in the guest's RFLAGS, and an interrupt delivered during a step
//! may push that TF into the frame's RFLAGS image, or not: which depends on KVM state that
//! no checkpoint holds (measured on PVM: a replay restored from a checkpoint pushed TF where
//! the recording had not, and the frames' bytes differed). The guest never set that TF, so
//! the engine clears it from the image after the step; the frame then holds what a CPU that
//! was not being stepped would have pushed, whatever KVM did. The same TF in an IRETQ image
//! is what `StepRules::iretq_drops_stepping_tf` ignores.

use kvm_bindings::{kvm_regs, kvm_sregs};
use ttvm_vmm::descriptors::{delivery_stack_top, idt_gate};
use ttvm_vmm::paging::AddressSpace;

use super::{Engine, RFLAGS_TF};

/// RIP, CS and RFLAGS: the part of the frame that identifies it and holds the flags.
const FRAME_HEAD: usize = 24;
/// The whole frame a 64-bit delivery pushes without an error code.
const FRAME: u64 = 40;

impl Engine {
    /// After the step that delivered `vector`, injected in ring 0 with registers `before`:
    /// clears TF in the frame's RFLAGS image if the guest's own RFLAGS had it clear. A frame
    /// that is not where 64-bit delivery puts it (RIP and CS as before the step) is left.
    pub(super) fn clear_stepping_tf_in_frame(&mut self, vector: u8, before: &kvm_regs, sregs: &kvm_sregs) {
        if before.rflags & RFLAGS_TF != 0 {
            return;
        }
        let ram = self.machine.vm.ram();
        let Some(gate) = idt_gate(ram, sregs, vector) else { return };
        // Long mode aligns the stack to 16 bytes before pushing; IST gates switch stacks.
        let top = if gate.ist == 0 { Some(before.rsp & !15) } else { delivery_stack_top(ram, sregs, gate) };
        let Some(frame) = top.map(|t| t.wrapping_sub(FRAME)) else { return };
        let space = AddressSpace::from_sregs(sregs);
        let mut head = [0u8; FRAME_HEAD];
        if space.read_virt(ram, frame, &mut head).is_err() {
            return;
        }
        let word = |i: usize| u64::from_le_bytes(head[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let (rip, cs, rflags) = (word(0), word(1), word(2));
        if rip != before.rip || cs != u64::from(sregs.cs.selector) || rflags & RFLAGS_TF == 0 {
            return;
        }
        // The frame's page was just written by the delivery, so KVM's dirty log has it.
        let _ = space.write_virt(self.machine.vm.ram_mut(), frame + 16, &(rflags & !RFLAGS_TF).to_le_bytes());
    }
}
