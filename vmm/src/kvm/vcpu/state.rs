//! The vCPU's saved state: everything KVM holds for it, in ttvm-owned types.

use serde::{Deserialize, Serialize};

use super::{DebugRegsState, MpState, RegsState, SregsState, VcpuEventsState, XcrsState};
use crate::msr::STATE_MSRS;
use crate::persist::{exact_len, StateError};

/// 32-bit words of the `kvm_xsave` region (4 KiB: the legacy layout KVM_GET_XSAVE returns).
pub const XSAVE_WORDS: usize = 1024;

/// Everything KVM holds for the vCPU, enough to resume it bit-for-bit elsewhere; saved in
/// every trace checkpoint and `--save-state` snapshot.
///
/// Its bincode encoding is frozen (see [`crate::persist`]): the parts KVM defines as C
/// structs are their images, as kvm-bindings 0.14 wrote them. Any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuState {
    /// General registers, RIP, RFLAGS.
    pub regs: RegsState,
    /// Segments, descriptor tables, control registers, EFER, APIC base.
    pub sregs: SregsState,
    /// x87/SSE/AVX state: the 4 KiB legacy-layout `kvm_xsave` region.
    pub xsave: Vec<u32>,
    /// Extended control registers (XCR0).
    pub xcrs: XcrsState,
    /// DR0-3, DR6, DR7.
    pub debugregs: DebugRegsState,
    /// Pending exceptions/interrupts/NMI, interrupt shadow.
    pub events: VcpuEventsState,
    /// Runnable / halted.
    pub mp_state: MpState,
    /// (index, value) of the MSRs ttvm saves that this KVM knows.
    pub msrs: Vec<(u32, u64)>,
}

impl VcpuState {
    /// Refuses a state no vCPU could be in or that ttvm never saves: segment attributes
    /// out of range, an exception vector KVM refuses, an MP state KVM does not define, an
    /// XSAVE region of another size, an MSR outside ttvm's list or listed twice.
    pub fn validate(&self) -> Result<(), StateError> {
        self.sregs.validate()?;
        exact_len("vCPU XSAVE region (32-bit words)", self.xsave.len(), XSAVE_WORDS)?;
        self.xcrs.validate()?;
        self.events.validate()?;
        self.mp_state.validate()?;
        for (i, &(index, _)) in self.msrs.iter().enumerate() {
            if !STATE_MSRS.contains(&index) {
                return Err(StateError::Inconsistent {
                    what: format!("vCPU MSR {index:#x}"),
                    reason: "not one of the MSRs ttvm saves",
                });
            }
            if self.msrs[..i].iter().any(|&(earlier, _)| earlier == index) {
                return Err(StateError::Inconsistent { what: format!("vCPU MSR {index:#x}"), reason: "saved twice" });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> VcpuState {
        VcpuState {
            regs: RegsState { rip: 0x1000, ..Default::default() },
            sregs: SregsState::default(),
            xsave: vec![0; XSAVE_WORDS],
            xcrs: XcrsState { nr_xcrs: 1, ..Default::default() },
            debugregs: DebugRegsState::default(),
            events: VcpuEventsState::default(),
            mp_state: MpState::default(),
            msrs: vec![(0x174, 8), (0xc000_0082, 0xffff_ffff_8100_0000)],
        }
    }

    #[test]
    fn a_plain_state_is_valid() {
        state().validate().unwrap();
    }

    #[test]
    fn impossible_states_are_refused() {
        let refuse = |change: fn(&mut VcpuState), expected: &str| {
            let mut s = state();
            change(&mut s);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        refuse(|s| s.sregs.cs.dpl = 4, "vCPU CS DPL is 4");
        refuse(|s| s.sregs.ldt.type_ = 16, "vCPU LDTR descriptor type is 16");
        refuse(|s| s.sregs.ss.present = 2, "vCPU SS present bit is 2");
        refuse(|s| s.xsave.truncate(128), "vCPU XSAVE region (32-bit words) holds 128 entries instead of 1024");
        refuse(|s| s.xcrs.nr_xcrs = 17, "vCPU XCR count is 17");
        refuse(
            |s| {
                s.events.exception.pending = 1;
                s.events.exception.nr = 32;
            },
            "vCPU pending exception vector is 32",
        );
        refuse(
            |s| {
                s.events.exception.injected = 1;
                s.events.exception.nr = 2;
            },
            "vector 2 is the NMI",
        );
        refuse(|s| s.events.flags = 0x40, "vCPU events flags is 0x40");
        refuse(|s| s.events.interrupt.shadow = 4, "vCPU interrupt shadow is 0x4");
        refuse(|s| s.mp_state.mp_state = 11, "vCPU MP state is 11");
        refuse(|s| s.msrs.push((0x10, 0)), "vCPU MSR 0x10: not one of the MSRs ttvm saves");
        refuse(|s| s.msrs.push((0x174, 0)), "vCPU MSR 0x174: saved twice");
    }

    #[test]
    fn a_stale_exception_vector_is_not_checked() {
        // KVM leaves the last vector in `nr` after delivery; only a live one matters.
        let mut s = state();
        s.events.exception.nr = 0xff;
        s.validate().unwrap();
    }
}
