//! Saved state: the explicit types checkpoints and snapshots are made of, kept apart from
//! the live devices and the vCPU.
//!
//! Every device has a `*State` type next to it (`devices/<device>/state.rs`), the board has
//! [`BoardState`](crate::devices::BoardState) and the vCPU has
//! [`VcpuState`](crate::vcpu::VcpuState), made only of ttvm-owned plain types. A live value
//! becomes its state with `state()` and comes back with `from_state(&state)`, which checks
//! everything the device could never hold (an index past the end of a table, a mode that
//! does not exist, a FIFO longer than the chip's) and reports it as a [`StateError`], so a
//! damaged state whose checksum still matched is refused by name rather than run.
//!
//! # The rule: a state type's encoding never changes in place
//! These types are bincode-encoded into every trace checkpoint and `--save-state` snapshot,
//! and users commit traces. The encoding is the field order and field types of the state
//! types, nothing else: the live structs can change freely. Changing a state type (adding,
//! removing, reordering or retyping a field, adding an enum variant anywhere but last, or
//! changing a C layout below) would make every existing file decode wrongly or not at all.
//! So a change is made as a new version type plus a conversion from the old one, chosen by
//! the file's version number, as `snapshot.rs` does with `MachineStateV1`. Golden tests
//! (`vmm/tests/state_golden.rs`, `replay/tests/state_golden.rs`) encode known states and
//! compare them with bytes captured from the original encoding, so an in-place edit fails
//! a test instead of users' traces.
//!
//! The vCPU parts that KVM defines as C structs (`kvm_regs`, `kvm_sregs`, ...) were first
//! saved through kvm-bindings' own serde support, which writes the struct's memory image as
//! a byte string. [`c_layout`] reproduces that image from ttvm's own types, so the bytes no
//! longer depend on a kvm-bindings version.

pub mod c_layout;
mod checks;
mod error;

pub(crate) use checks::{exact_len, in_range, max_len, no_bits_outside};
pub use error::StateError;
