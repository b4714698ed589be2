//! The checks `from_state` conversions share, each returning the [`StateError`] that names
//! the field.

use super::StateError;

/// `value` must lie in `min..=max`.
pub(crate) fn in_range(
    what: &str,
    value: impl Into<i128>,
    min: impl Into<i128>,
    max: impl Into<i128>,
) -> Result<(), StateError> {
    let (value, min, max) = (value.into(), min.into(), max.into());
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(StateError::OutOfRange { what: what.to_owned(), value, min, max })
    }
}

/// `value` must have no bits outside `mask`.
pub(crate) fn no_bits_outside(what: &str, value: impl Into<u64>, mask: u64) -> Result<(), StateError> {
    let value = value.into();
    if value & !mask == 0 {
        Ok(())
    } else {
        Err(StateError::ReservedBits { what: what.to_owned(), value, mask })
    }
}

/// A buffer of at most `max` entries.
pub(crate) fn max_len(what: &str, len: usize, max: usize) -> Result<(), StateError> {
    if len <= max {
        Ok(())
    } else {
        Err(StateError::TooLong { what: what.to_owned(), len, max })
    }
}

/// A table of exactly `expected` entries.
pub(crate) fn exact_len(what: &str, len: usize, expected: usize) -> Result<(), StateError> {
    if len == expected {
        Ok(())
    } else {
        Err(StateError::WrongLength { what: what.to_owned(), len, expected })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_the_limit() {
        assert_eq!(
            in_range("PIT channel 1 mode", 7u8, 0u8, 5u8).unwrap_err().to_string(),
            "PIT channel 1 mode is 7, outside 0..=5"
        );
        assert!(in_range("x", -3i64, -5i64, 5i64).is_ok());
        assert_eq!(
            no_bits_outside("UART IER", 0xf1u8, 0x0f).unwrap_err().to_string(),
            "UART IER is 0xf1, with bits set outside 0xf"
        );
        assert_eq!(
            max_len("UART receive FIFO", 17, 16).unwrap_err().to_string(),
            "UART receive FIFO holds 17 entries, more than the 16 it can"
        );
        assert_eq!(exact_len("CMOS RAM", 12, 128).unwrap_err().to_string(), "CMOS RAM holds 12 entries instead of 128");
        assert!(max_len("x", 16, 16).is_ok() && exact_len("x", 3, 3).is_ok());
    }
}
