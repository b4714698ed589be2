//! The host's fields of the FPU state, shown to the guest as one value on every host.
//!
//! Two parts of the 512-byte FXSAVE image in KVM's XSAVE region are not guest state but
//! facts about the host, and they differ between hosts:
//! - MXCSR_MASK (bytes 28-31) says which MXCSR bits the CPU accepts: Intel Xeons report
//!   0x0000ffff, AMD EPYC family 25 reports 0x0002ffff (bit 17 is AMD's misaligned-SSE
//!   exception mask). The guest sees it in the vCPU state (every checkpoint) and in the
//!   image every FXSAVE stores to memory (Linux reads it at boot,
//!   `fpu__init_system_mxcsr`; the sample kernels save the FPU in their handlers).
//! - Bytes 464-511, which the CPU leaves to software: KVM_GET_XSAVE fills them with the
//!   host kernel's `fpx_sw_bytes` (among them the host's XSAVE features: 0x600e7 on the
//!   Intel Xeon, 0xe7 on the AMD EPYC). The guest never sees them; KVM_SET_XSAVE ignores
//!   them; but they are in every checkpoint's register digest.
//!
//! A trace that keeps the recording host's values replays only where the host reports the
//! same: the committed traces, recorded on an Intel Xeon, diverged on an AMD EPYC at their
//! first checkpoint ("MXCSR_MASK 0x0002ffff vs recorded 0x0000ffff").
//!
//! So a vCPU *shows* one set of these fields ([`ShownFpuFields`]): [`crate::vcpu::Vcpu`]
//! puts them into every XSAVE region it reads from KVM, and the exact engine writes the
//! shown mask over the mask of every FXSAVE image the guest stores
//! ([`Vm::show_mxcsr_mask_after_fxsave`]), in recording and replay alike. A new machine
//! shows [`ShownFpuFields::CANONICAL`]: the mask every host of the CPUID model accepts and
//! zeroes. A restored state shows the fields it was saved with, so a trace recorded before
//! this rule (trace format 7 and older: its first checkpoint holds the recording host's
//! fields) replays with what its guest saw, on any host.
//!
//! Left as it is: a guest that sets an MXCSR bit its mask does not offer (it would have to
//! ignore the mask it was shown) gets the host's answer; native free runs of replay store
//! the host's mask, so an interval with an FXSAVE falls back to single-stepping on hosts
//! whose mask is not the one shown (`free_interval.rs`). The CPUID model offers no XSAVE,
//! so FXSAVE is the only instruction that stores the mask.

use crate::fxsave::MXCSR_MASK;
use crate::insn::code_mode;
use crate::operand::decode_memory;
use crate::paging::AddressSpace;
use crate::vcpu::VcpuError;
use crate::vm::Vm;

/// The first 32-bit word of the bytes the CPU leaves to software (byte 464).
const SOFTWARE_WORDS: usize = 464 / 4;
/// How many words they are (bytes 464-511).
const SOFTWARE_WORD_COUNT: usize = 12;

/// The fields of the FXSAVE image that the host fills in, as a vCPU shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShownFpuFields {
    /// MXCSR_MASK.
    pub mxcsr_mask: u32,
    /// Bytes 464-511, as 32-bit words.
    pub software: [u32; SOFTWARE_WORD_COUNT],
}

impl ShownFpuFields {
    /// What new machines show: Intel's mask, which is also the part of AMD's that both offer
    /// (every architectural MXCSR bit, DAZ included), and zeroes.
    pub const CANONICAL: Self = Self { mxcsr_mask: 0x0000_ffff, software: [0; SOFTWARE_WORD_COUNT] };

    /// The fields of an XSAVE region given as 32-bit words (zeroes past a short region).
    pub fn of(region: &[u32]) -> Self {
        let word = |i: usize| region.get(i).copied().unwrap_or(0);
        Self { mxcsr_mask: word(MXCSR_MASK / 4), software: std::array::from_fn(|i| word(SOFTWARE_WORDS + i)) }
    }

    /// Puts these fields into an XSAVE region given as 32-bit words (as far as it reaches).
    pub fn show_in(&self, region: &mut [u32]) {
        if let Some(w) = region.get_mut(MXCSR_MASK / 4) {
            *w = self.mxcsr_mask;
        }
        for (w, v) in region.iter_mut().skip(SOFTWARE_WORDS).zip(self.software) {
            *w = v;
        }
    }
}

/// 0F AE /0: FXSAVE (FXSAVE64 with REX.W; the mask is at the same offset in both).
const FXSAVE: (u16, u8) = (0x0fae, 0);

/// Where the FXSAVE at `code` (the bytes at RIP, with `regs`/`sregs` before it runs)
/// stores its image: the linear address of the image's MXCSR_MASK and the instruction's
/// length. `None` for any other instruction.
pub fn fxsave_mask_address(
    code: &[u8],
    regs: &kvm_bindings::kvm_regs,
    sregs: &kvm_bindings::kvm_sregs,
) -> Option<(u64, usize)> {
    // Cheap test first: this runs before every step.
    if !code.windows(2).take(6).any(|w| w == [0x0f, 0xae]) {
        return None;
    }
    let m = decode_memory(code, code_mode(sregs), regs, sregs)?;
    ((m.opcode, m.reg) == FXSAVE).then(|| (m.linear.wrapping_add(MXCSR_MASK as u64), m.len))
}

impl Vm {
    /// After an FXSAVE whose image's MXCSR_MASK is at `mask_at` (see
    /// [`fxsave_mask_address`]), writes the mask this vCPU shows over the one stored there.
    /// When it is not known whether the FXSAVE `completed` (an FXSAVE that faulted stored
    /// nothing), only if what is stored is the host's mask. Returns whether it changed
    /// memory (never on a host whose mask is the one shown).
    pub fn show_mxcsr_mask_after_fxsave(
        &mut self,
        sregs: &kvm_bindings::kvm_sregs,
        mask_at: u64,
        completed: bool,
    ) -> Result<bool, VcpuError> {
        let shown = self.vcpu().shown_fpu_fields().mxcsr_mask.to_le_bytes();
        let space = AddressSpace::from_sregs(sregs);
        let mut stored = [0u8; 4];
        if space.read_virt(self.ram(), mask_at, &mut stored).is_err() || stored == shown {
            return Ok(false);
        }
        if !completed && self.vcpu().host_mxcsr_mask()?.to_le_bytes() != stored {
            return Ok(false);
        }
        Ok(self.write_guest_virt(sregs, mask_at, &shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::{kvm_regs, kvm_sregs};

    fn long_mode() -> kvm_sregs {
        let mut s = kvm_sregs { cr0: 0x8000_0011, cr4: 0x20, efer: 0x500, ..Default::default() };
        s.cs.l = 1;
        s
    }

    #[test]
    fn fxsave_forms_are_found_with_their_mask_address() {
        let regs = kvm_regs { rdi: 0x1000, rax: 0x40, ..Default::default() };
        let s = long_mode();
        // fxsave (%rdi); fxsave64 (%rdi); fxsave 0x10(%rdi,%rax)
        assert_eq!(fxsave_mask_address(&[0x0f, 0xae, 0x07], &regs, &s), Some((0x1000 + 28, 3)));
        assert_eq!(fxsave_mask_address(&[0x48, 0x0f, 0xae, 0x07], &regs, &s), Some((0x1000 + 28, 4)));
        assert_eq!(fxsave_mask_address(&[0x0f, 0xae, 0x44, 0x07, 0x10], &regs, &s), Some((0x1050 + 28, 5)));
    }

    #[test]
    fn shown_fields_replace_the_hosts_and_nothing_else() {
        let mut region: Vec<u32> = (0..1024).collect();
        let hosts = ShownFpuFields::of(&region);
        assert_eq!(hosts.mxcsr_mask, 7);
        assert_eq!(hosts.software, std::array::from_fn(|i| 116 + i as u32));
        ShownFpuFields::CANONICAL.show_in(&mut region);
        for (i, &w) in region.iter().enumerate() {
            let expect = match i {
                7 => 0xffff,
                116..=127 => 0,
                _ => i as u32,
            };
            assert_eq!(w, expect, "word {i}");
        }
        assert_eq!(ShownFpuFields::of(&region), ShownFpuFields::CANONICAL);
        let mut short = vec![1u32; 8];
        ShownFpuFields::CANONICAL.show_in(&mut short);
        assert_eq!(short, [1, 1, 1, 1, 1, 1, 1, 0xffff]);
    }

    #[test]
    fn other_instructions_are_not_fxsave() {
        let regs = kvm_regs { rdi: 0x1000, ..Default::default() };
        let s = long_mode();
        for code in [
            &[0x0f, 0xae, 0x0f][..], // fxrstor (%rdi)
            &[0x0f, 0xae, 0x17],     // ldmxcsr (%rdi)
            &[0x0f, 0xae, 0x1f],     // stmxcsr (%rdi)
            &[0x0f, 0xae, 0xf0],     // mfence
            &[0x48, 0x89, 0xc2],     // mov %rax,%rdx
            &[0x0f, 0xae],           // truncated
        ] {
            assert_eq!(fxsave_mask_address(code, &regs, &s), None, "{code:02x?}");
        }
    }
}
