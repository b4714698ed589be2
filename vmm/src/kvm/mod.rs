//! The KVM wrappers: `/dev/kvm` and its capabilities (`system.rs`, its items re-exported here), the VM with guest RAM
//! in one dirty-logged slot ([`vm`], [`memory`]) and its one vCPU ([`vcpu`]). Everything
//! that issues a KVM ioctl lives here; what the ioctls mean for x86 is in `crate::x86`.

pub mod memory;
mod system;
pub mod vcpu;
pub mod vm;

pub use system::{kvm_device_path, KvmError, KvmSystem, KVM_DEVICE_ENV};
