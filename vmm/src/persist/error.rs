//! Why a saved state cannot be restored.

/// A saved state that no live device or vCPU could be in. `what` names the device and the
/// field ("PIT channel 2 mode").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A number outside the values the field can take.
    #[error("{what} is {value}, outside {min}..={max}")]
    OutOfRange {
        /// The field.
        what: String,
        /// Its value.
        value: i128,
        /// Smallest valid value.
        min: i128,
        /// Largest valid value.
        max: i128,
    },
    /// A register with bits set that do not exist in it.
    #[error("{what} is {value:#x}, with bits set outside {mask:#x}")]
    ReservedBits {
        /// The register.
        what: String,
        /// Its value.
        value: u64,
        /// The bits it has.
        mask: u64,
    },
    /// A buffer longer than the device holds.
    #[error("{what} holds {len} entries, more than the {max} it can")]
    TooLong {
        /// The buffer.
        what: String,
        /// Entries found.
        len: usize,
        /// Most it can hold.
        max: usize,
    },
    /// A table of fixed size with another size.
    #[error("{what} holds {len} entries instead of {expected}")]
    WrongLength {
        /// The table.
        what: String,
        /// Entries found.
        len: usize,
        /// Entries it always has.
        expected: usize,
    },
    /// Fields that contradict each other.
    #[error("{what}: {reason}")]
    Inconsistent {
        /// Where.
        what: String,
        /// What contradicts what.
        reason: &'static str,
    },
}

/// Saved state that contradicts itself can only come from a damaged file.
impl crate::error_kind::Classify for StateError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        crate::error_kind::ErrorKind::Damaged
    }
}
