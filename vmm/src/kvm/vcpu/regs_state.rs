//! The general registers as saved: the image of KVM's `struct kvm_regs`.

use kvm_bindings::kvm_regs;

use crate::persist::c_layout::{c_layout_serde, CLayout, LayoutReader, LayoutWriter};

/// General registers, RIP and RFLAGS.
///
/// Saved as the 144-byte image of `struct kvm_regs` (see [`crate::persist::c_layout`]).
/// That encoding is frozen (see [`crate::persist`]): any change is a new version type plus
/// a conversion, never an edit of this one.
#[allow(missing_docs)] // the fields are the x86-64 registers of the same names
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegsState {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

impl RegsState {
    /// The registers in `struct kvm_regs` order.
    fn in_c_order(&self) -> [u64; 18] {
        [
            self.rax,
            self.rbx,
            self.rcx,
            self.rdx,
            self.rsi,
            self.rdi,
            self.rsp,
            self.rbp,
            self.r8,
            self.r9,
            self.r10,
            self.r11,
            self.r12,
            self.r13,
            self.r14,
            self.r15,
            self.rip,
            self.rflags,
        ]
    }

    fn from_c_order(r: [u64; 18]) -> Self {
        let [rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags] = r;
        Self { rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags }
    }
}

impl CLayout for RegsState {
    const C_NAME: &'static str = "kvm_regs";
    const SIZE: usize = 144;

    fn write(&self, out: &mut LayoutWriter) {
        for r in self.in_c_order() {
            out.u64(r);
        }
    }

    fn read(input: &mut LayoutReader<'_>) -> Option<Self> {
        let mut r = [0u64; 18];
        for slot in &mut r {
            *slot = input.u64()?;
        }
        Some(Self::from_c_order(r))
    }
}

c_layout_serde!(RegsState);

impl From<&kvm_regs> for RegsState {
    fn from(k: &kvm_regs) -> Self {
        Self::from_c_order([
            k.rax, k.rbx, k.rcx, k.rdx, k.rsi, k.rdi, k.rsp, k.rbp, k.r8, k.r9, k.r10, k.r11, k.r12, k.r13, k.r14,
            k.r15, k.rip, k.rflags,
        ])
    }
}

impl From<&RegsState> for kvm_regs {
    fn from(s: &RegsState) -> Self {
        let [rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags] =
            s.in_c_order();
        kvm_regs { rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags }
    }
}
