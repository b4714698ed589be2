//! Why a checkpoint's state cannot be restored.

/// A saved state the recorder could never have written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The machine's part (a device or the vCPU).
    #[error(transparent)]
    Machine(#[from] ttvm_vmm::persist::StateError),
    /// The clock's fields contradict its mode.
    #[error("clock ({mode} mode): {reason}")]
    Clock {
        /// The clock mode saved.
        mode: crate::clock::ClockMode,
        /// What contradicts it.
        reason: &'static str,
    },
}

impl ttvm_vmm::error_kind::Classify for StateError {
    fn kind(&self) -> ttvm_vmm::error_kind::ErrorKind {
        ttvm_vmm::error_kind::ErrorKind::Damaged
    }
}
