//! Pending events as saved: the image of KVM's `struct kvm_vcpu_events`.

use kvm_bindings::{
    kvm_vcpu_events, kvm_vcpu_events__bindgen_ty_1, kvm_vcpu_events__bindgen_ty_2, kvm_vcpu_events__bindgen_ty_3,
    kvm_vcpu_events__bindgen_ty_4, kvm_vcpu_events__bindgen_ty_5,
};

use crate::persist::c_layout::{c_layout_serde, CLayout, LayoutReader, LayoutWriter};
use crate::persist::{in_range, no_bits_outside, StateError};

/// `flags` bits KVM defines (KVM_VCPUEVENT_VALID_*: NMI_PENDING, SIPI_VECTOR, SHADOW, SMM,
/// PAYLOAD, TRIPLE_FAULT).
const KNOWN_FLAGS: u64 = 0x3f;
/// The NMI vector, which KVM refuses as an exception.
const NMI_VECTOR: u8 = 2;

/// An exception being delivered or pending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExceptionEventState {
    /// Being delivered (0 or 1).
    pub injected: u8,
    /// Vector (0..=31).
    pub nr: u8,
    /// Whether `error_code` is pushed.
    pub has_error_code: u8,
    /// Raised but not yet delivered (0 or 1).
    pub pending: u8,
    /// The error code.
    pub error_code: u32,
}

/// An external interrupt being delivered, and the interrupt shadow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptEventState {
    /// Being delivered.
    pub injected: u8,
    /// Vector.
    pub nr: u8,
    /// A software interrupt (INT n).
    pub soft: u8,
    /// STI / MOV SS interrupt shadow (KVM_X86_SHADOW_INT_*: bits 0 and 1).
    pub shadow: u8,
}

/// NMI state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NmiEventState {
    /// Being delivered.
    pub injected: u8,
    /// Pending.
    pub pending: u8,
    /// Blocked by an NMI in progress.
    pub masked: u8,
    /// C padding.
    pub pad: u8,
}

/// System-management mode state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmiEventState {
    /// In SMM.
    pub smm: u8,
    /// SMI pending.
    pub pending: u8,
    /// SMM entered from inside an NMI handler.
    pub smm_inside_nmi: u8,
    /// INIT latched while in SMM.
    pub latched_init: u8,
}

/// Pending exceptions, interrupts, NMI and SMI, and the interrupt shadow.
///
/// Saved as the 64-byte image of `struct kvm_vcpu_events` (see
/// [`crate::persist::c_layout`]). That encoding is frozen (see [`crate::persist`]): any
/// change is a new version type plus a conversion, never an edit of this one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuEventsState {
    /// Exception.
    pub exception: ExceptionEventState,
    /// External interrupt and shadow.
    pub interrupt: InterruptEventState,
    /// NMI.
    pub nmi: NmiEventState,
    /// SIPI vector.
    pub sipi_vector: u32,
    /// Which optional fields are valid (KVM_VCPUEVENT_VALID_*).
    pub flags: u32,
    /// SMM.
    pub smi: SmiEventState,
    /// A triple fault is pending.
    pub triple_fault_pending: u8,
    /// Reserved bytes, kept as KVM filled them.
    pub reserved: [u8; 26],
    /// The exception has a payload (CR2 or DR6 value).
    pub exception_has_payload: u8,
    /// The payload.
    pub exception_payload: u64,
}

impl VcpuEventsState {
    /// Refuses what KVM_SET_VCPU_EVENTS would (an exception vector above 31, or the NMI
    /// vector, raised as an exception; unknown flags) and shadows that do not exist.
    pub fn validate(&self) -> Result<(), StateError> {
        no_bits_outside("vCPU events flags", self.flags, KNOWN_FLAGS)?;
        let ex = &self.exception;
        if ex.injected != 0 || ex.pending != 0 {
            in_range("vCPU pending exception vector", ex.nr, 0, 31)?;
            if ex.nr == NMI_VECTOR {
                return Err(StateError::Inconsistent {
                    what: "vCPU pending exception".into(),
                    reason: "vector 2 is the NMI, not an exception",
                });
            }
        }
        no_bits_outside("vCPU interrupt shadow", self.interrupt.shadow, 0x3)
    }
}

impl CLayout for VcpuEventsState {
    const C_NAME: &'static str = "kvm_vcpu_events";
    const SIZE: usize = 64;

    fn write(&self, out: &mut LayoutWriter) {
        let (ex, int, nmi, smi) = (&self.exception, &self.interrupt, &self.nmi, &self.smi);
        out.bytes(&[ex.injected, ex.nr, ex.has_error_code, ex.pending]);
        out.u32(ex.error_code);
        out.bytes(&[int.injected, int.nr, int.soft, int.shadow]);
        out.bytes(&[nmi.injected, nmi.pending, nmi.masked, nmi.pad]);
        out.u32(self.sipi_vector);
        out.u32(self.flags);
        out.bytes(&[smi.smm, smi.pending, smi.smm_inside_nmi, smi.latched_init]);
        out.u8(self.triple_fault_pending);
        out.bytes(&self.reserved);
        out.u8(self.exception_has_payload);
        out.u64(self.exception_payload);
    }

    fn read(input: &mut LayoutReader<'_>) -> Option<Self> {
        let [injected, nr, has_error_code, pending] = input.array()?;
        let exception = ExceptionEventState { injected, nr, has_error_code, pending, error_code: input.u32()? };
        let [injected, nr, soft, shadow] = input.array()?;
        let interrupt = InterruptEventState { injected, nr, soft, shadow };
        let [injected, pending, masked, pad] = input.array()?;
        let nmi = NmiEventState { injected, pending, masked, pad };
        let (sipi_vector, flags) = (input.u32()?, input.u32()?);
        let [smm, pending, smm_inside_nmi, latched_init] = input.array()?;
        let smi = SmiEventState { smm, pending, smm_inside_nmi, latched_init };
        Some(Self {
            exception,
            interrupt,
            nmi,
            sipi_vector,
            flags,
            smi,
            triple_fault_pending: input.u8()?,
            reserved: input.array()?,
            exception_has_payload: input.u8()?,
            exception_payload: input.u64()?,
        })
    }
}

c_layout_serde!(VcpuEventsState);

impl From<&kvm_vcpu_events> for VcpuEventsState {
    fn from(k: &kvm_vcpu_events) -> Self {
        let (ex, int, nmi, smi) = (&k.exception, &k.interrupt, &k.nmi, &k.smi);
        Self {
            exception: ExceptionEventState {
                injected: ex.injected,
                nr: ex.nr,
                has_error_code: ex.has_error_code,
                pending: ex.pending,
                error_code: ex.error_code,
            },
            interrupt: InterruptEventState { injected: int.injected, nr: int.nr, soft: int.soft, shadow: int.shadow },
            nmi: NmiEventState { injected: nmi.injected, pending: nmi.pending, masked: nmi.masked, pad: nmi.pad },
            sipi_vector: k.sipi_vector,
            flags: k.flags,
            smi: SmiEventState {
                smm: smi.smm,
                pending: smi.pending,
                smm_inside_nmi: smi.smm_inside_nmi,
                latched_init: smi.latched_init,
            },
            triple_fault_pending: k.triple_fault.pending,
            reserved: k.reserved,
            exception_has_payload: k.exception_has_payload,
            exception_payload: k.exception_payload,
        }
    }
}

impl From<&VcpuEventsState> for kvm_vcpu_events {
    fn from(s: &VcpuEventsState) -> Self {
        let (ex, int, nmi, smi) = (&s.exception, &s.interrupt, &s.nmi, &s.smi);
        kvm_vcpu_events {
            exception: kvm_vcpu_events__bindgen_ty_1 {
                injected: ex.injected,
                nr: ex.nr,
                has_error_code: ex.has_error_code,
                pending: ex.pending,
                error_code: ex.error_code,
            },
            interrupt: kvm_vcpu_events__bindgen_ty_2 {
                injected: int.injected,
                nr: int.nr,
                soft: int.soft,
                shadow: int.shadow,
            },
            nmi: kvm_vcpu_events__bindgen_ty_3 {
                injected: nmi.injected,
                pending: nmi.pending,
                masked: nmi.masked,
                pad: nmi.pad,
            },
            sipi_vector: s.sipi_vector,
            flags: s.flags,
            smi: kvm_vcpu_events__bindgen_ty_4 {
                smm: smi.smm,
                pending: smi.pending,
                smm_inside_nmi: smi.smm_inside_nmi,
                latched_init: smi.latched_init,
            },
            triple_fault: kvm_vcpu_events__bindgen_ty_5 { pending: s.triple_fault_pending },
            reserved: s.reserved,
            exception_has_payload: s.exception_has_payload,
            exception_payload: s.exception_payload,
        }
    }
}
