//! The multiprocessing state as saved: the image of KVM's `struct kvm_mp_state`.

use kvm_bindings::kvm_mp_state;

use crate::persist::c_layout::{c_layout_serde, CLayout, LayoutReader, LayoutWriter};
use crate::persist::{in_range, StateError};

/// The largest KVM_MP_STATE_* value (KVM_MP_STATE_SUSPENDED).
const MAX_MP_STATE: u32 = 10;

/// Runnable, halted, waiting for INIT/SIPI... (a KVM_MP_STATE_* value).
///
/// Saved as the 4-byte image of `struct kvm_mp_state` (see [`crate::persist::c_layout`]).
/// That encoding is frozen (see [`crate::persist`]): any change is a new version type plus
/// a conversion, never an edit of this one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MpState {
    /// The KVM_MP_STATE_* value (0 = runnable, 3 = halted).
    pub mp_state: u32,
}

impl MpState {
    /// Refuses a value KVM does not define.
    pub fn validate(&self) -> Result<(), StateError> {
        in_range("vCPU MP state", self.mp_state, 0, MAX_MP_STATE)
    }
}

impl CLayout for MpState {
    const C_NAME: &'static str = "kvm_mp_state";
    const SIZE: usize = 4;

    fn write(&self, out: &mut LayoutWriter) {
        out.u32(self.mp_state);
    }

    fn read(input: &mut LayoutReader<'_>) -> Option<Self> {
        Some(Self { mp_state: input.u32()? })
    }
}

c_layout_serde!(MpState);

impl From<&kvm_mp_state> for MpState {
    fn from(k: &kvm_mp_state) -> Self {
        Self { mp_state: k.mp_state }
    }
}

impl From<&MpState> for kvm_mp_state {
    fn from(s: &MpState) -> Self {
        kvm_mp_state { mp_state: s.mp_state }
    }
}
