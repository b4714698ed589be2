//! Debug registers as saved: the image of KVM's `struct kvm_debugregs`.

use kvm_bindings::kvm_debugregs;

use crate::persist::c_layout::{c_layout_serde, CLayout, LayoutReader, LayoutWriter};

/// DR0-3, DR6, DR7.
///
/// Saved as the 128-byte image of `struct kvm_debugregs` (see
/// [`crate::persist::c_layout`]). That encoding is frozen (see [`crate::persist`]): any
/// change is a new version type plus a conversion, never an edit of this one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugRegsState {
    /// DR0-DR3.
    pub db: [u64; 4],
    /// DR6.
    pub dr6: u64,
    /// DR7.
    pub dr7: u64,
    /// Flags (none defined).
    pub flags: u64,
    /// Reserved, kept as KVM filled it.
    pub reserved: [u64; 9],
}

impl DebugRegsState {
    /// The image's sixteen words in C order.
    fn words(&self) -> [u64; 16] {
        let mut w = [0u64; 16];
        w[..4].copy_from_slice(&self.db);
        w[4..7].copy_from_slice(&[self.dr6, self.dr7, self.flags]);
        w[7..].copy_from_slice(&self.reserved);
        w
    }
}

impl CLayout for DebugRegsState {
    const C_NAME: &'static str = "kvm_debugregs";
    const SIZE: usize = 128;

    fn write(&self, out: &mut LayoutWriter) {
        for w in self.words() {
            out.u64(w);
        }
    }

    fn read(input: &mut LayoutReader<'_>) -> Option<Self> {
        let mut state = Self::default();
        for d in &mut state.db {
            *d = input.u64()?;
        }
        state.dr6 = input.u64()?;
        state.dr7 = input.u64()?;
        state.flags = input.u64()?;
        for r in &mut state.reserved {
            *r = input.u64()?;
        }
        Some(state)
    }
}

c_layout_serde!(DebugRegsState);

impl From<&kvm_debugregs> for DebugRegsState {
    fn from(k: &kvm_debugregs) -> Self {
        Self { db: k.db, dr6: k.dr6, dr7: k.dr7, flags: k.flags, reserved: k.reserved }
    }
}

impl From<&DebugRegsState> for kvm_debugregs {
    fn from(s: &DebugRegsState) -> Self {
        kvm_debugregs { db: s.db, dr6: s.dr6, dr7: s.dr7, flags: s.flags, reserved: s.reserved }
    }
}
