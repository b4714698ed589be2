//! Extended control registers as saved: the image of KVM's `struct kvm_xcrs`.

use kvm_bindings::{kvm_xcr, kvm_xcrs};

use crate::persist::c_layout::{c_layout_serde, CLayout, LayoutReader, LayoutWriter};
use crate::persist::{in_range, StateError};

/// Entries in `struct kvm_xcrs` (KVM_MAX_XCRS).
const MAX_XCRS: usize = 16;

/// One extended control register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XcrState {
    /// Which XCR (0 = XCR0).
    pub xcr: u32,
    /// Reserved, kept as KVM filled it.
    pub reserved: u32,
    /// Its value.
    pub value: u64,
}

/// The extended control registers (XCR0).
///
/// Saved as the 392-byte image of `struct kvm_xcrs` (see [`crate::persist::c_layout`]).
/// That encoding is frozen (see [`crate::persist`]): any change is a new version type plus
/// a conversion, never an edit of this one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XcrsState {
    /// How many of `xcrs` are used (at most 16).
    pub nr_xcrs: u32,
    /// Flags (none defined).
    pub flags: u32,
    /// The registers.
    pub xcrs: [XcrState; MAX_XCRS],
    /// Padding, kept as KVM filled it.
    pub padding: [u64; 16],
}

impl XcrsState {
    /// Refuses more registers than the table has.
    pub fn validate(&self) -> Result<(), StateError> {
        in_range("vCPU XCR count", self.nr_xcrs, 0, MAX_XCRS as u32)
    }
}

impl CLayout for XcrsState {
    const C_NAME: &'static str = "kvm_xcrs";
    const SIZE: usize = 392;

    fn write(&self, out: &mut LayoutWriter) {
        out.u32(self.nr_xcrs);
        out.u32(self.flags);
        for x in &self.xcrs {
            out.u32(x.xcr);
            out.u32(x.reserved);
            out.u64(x.value);
        }
        for p in self.padding {
            out.u64(p);
        }
    }

    fn read(input: &mut LayoutReader<'_>) -> Option<Self> {
        let mut state = Self { nr_xcrs: input.u32()?, flags: input.u32()?, ..Self::default() };
        for x in &mut state.xcrs {
            *x = XcrState { xcr: input.u32()?, reserved: input.u32()?, value: input.u64()? };
        }
        for p in &mut state.padding {
            *p = input.u64()?;
        }
        Some(state)
    }
}

c_layout_serde!(XcrsState);

impl From<&kvm_xcrs> for XcrsState {
    fn from(k: &kvm_xcrs) -> Self {
        Self {
            nr_xcrs: k.nr_xcrs,
            flags: k.flags,
            xcrs: k.xcrs.map(|x| XcrState { xcr: x.xcr, reserved: x.reserved, value: x.value }),
            padding: k.padding,
        }
    }
}

impl From<&XcrsState> for kvm_xcrs {
    fn from(s: &XcrsState) -> Self {
        kvm_xcrs {
            nr_xcrs: s.nr_xcrs,
            flags: s.flags,
            xcrs: s.xcrs.map(|x| kvm_xcr { xcr: x.xcr, reserved: x.reserved, value: x.value }),
            padding: s.padding,
        }
    }
}
