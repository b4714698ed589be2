//! ttvm's virtual machine: one KVM vCPU, guest RAM in one host mapping, kernel loading,
//! and deterministic userspace device models.

pub mod devices;
