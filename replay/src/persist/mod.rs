//! The engine's and the clock's saved state, kept apart from the live [`Engine`] and
//! [`EngineClock`] as the machine's is in `ttvm_vmm::persist`, and under the same rule: a
//! state type's bincode encoding never changes in place; a change is a new version type
//! plus a conversion chosen by the trace's format version. `replay/tests/state_golden.rs`
//! compares their encodings with bytes captured before they existed, and decodes every
//! checkpoint of the committed traces and encodes it again to the same bytes.
//!
//! [`Engine`]: crate::engine::Engine
//! [`EngineClock`]: crate::clock::EngineClock

mod clock_state;
mod engine_state;
mod error;

pub use clock_state::EngineClockState;
pub use engine_state::SavedEngineState;
pub use error::StateError;
