//! ttvm's virtual machine: one KVM vCPU, guest RAM in one host mapping with dirty logging,
//! a fixed CPUID model, kernel loading, and deterministic userspace devices.
//!
//! Engines drive a [`machine::Machine`]: the free-running one in [`free_run`] here, and the
//! exact single-step engine that records and replays in the `ttvm-replay` crate.

pub mod boot;
pub mod clock;
pub mod console;
pub mod cpuid;
pub mod descriptors;
pub mod devices;
pub mod disasm;
pub mod disk;
pub mod emulate;
pub mod error_kind;
pub mod free_run;
pub mod fxsave;
pub mod host_cpu;
pub mod insn;
pub mod kick;
pub mod kvm;
pub mod layout;
pub mod live;
pub mod machine;
pub mod memory;
pub mod msr;
pub mod operand;
pub mod paging;
pub mod persist;
pub mod profile;
pub mod regs_dump;
pub mod snapshot;
pub mod stop;
pub mod symbols;
pub mod undefined_flags;
pub mod user_mode;
pub mod user_return;
pub mod vcpu;
pub mod vm;
pub mod x87;
