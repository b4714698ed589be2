//! ttvm's virtual machine: one KVM vCPU, guest RAM in one host mapping with dirty logging,
//! a fixed CPUID model, kernel loading, and deterministic userspace devices.
//!
//! Engines drive a [`machine::Machine`]: the free-running one in [`free_run`] here, and the
//! exact single-step engine that records and replays in the `ttvm-replay` crate.
//!
//! Grouped by concern: [`kvm`] (the KVM wrappers), [`x86`] (what ttvm knows about the
//! architecture), [`free_run`] (the free engine, its snapshots, profile and live
//! checkpoints), [`boot`], [`devices`] and [`persist`] (the rule for saved state); beside
//! them the machine, device time, the console, disks, symbols and the shared error kind
//! and stop enum. Each module in a group is also reachable at its old top-level path
//! (`ttvm_vmm::vcpu`, `ttvm_vmm::msr`, `ttvm_vmm::snapshot` …), which other crates use;
//! modules no other crate uses are `pub(crate)`.

pub mod boot;
pub mod clock;
pub mod console;
pub mod devices;
pub mod disk;
pub mod error_kind;
pub mod free_run;
pub mod kvm;
pub mod machine;
pub mod persist;
pub mod stop;
pub mod symbols;
pub mod x86;

pub use free_run::{kick, live, profile, snapshot};
pub use kvm::{memory, vcpu, vm};
pub use x86::{
    cpuid, descriptors, disasm, fxsave, host_cpu, insn, msr, operand, paging, shown_fpu, undefined_flags, user_mode,
    user_return,
};

// Old paths of modules only this crate uses, which the moved files still name.
pub(crate) use boot::layout;
pub(crate) use x86::{regs_dump, x87};
