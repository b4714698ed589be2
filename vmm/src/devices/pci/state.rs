//! The PCI host bridge's saved state.

use serde::{Deserialize, Serialize};

use super::{PciConfig, ADDRESS_BITS, RESET_CONTROL_BITS};
use crate::persist::{no_bits_outside, StateError};

/// Configuration mechanism #1 and the reset control register as saved in checkpoints and
/// snapshots.
///
/// Its bincode encoding is frozen (see [`crate::persist`]): any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciState {
    /// CONFIG_ADDRESS as latched (reserved bits clear).
    pub address: u32,
    /// Reset control register 0xcf9, bits 1..=3.
    pub reset_control: u8,
}

impl PciConfig {
    /// The state to save.
    pub fn state(&self) -> PciState {
        PciState { address: self.address, reset_control: self.reset_control }
    }

    /// The bridge in `state`, refused if a reserved bit is set.
    pub fn from_state(state: &PciState) -> Result<Self, StateError> {
        no_bits_outside("PCI CONFIG_ADDRESS", state.address, u64::from(ADDRESS_BITS))?;
        no_bits_outside("PCI reset control", state.reset_control, u64::from(RESET_CONTROL_BITS))?;
        Ok(PciConfig { address: state.address, reset_control: state.reset_control })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CONFIG_ADDRESS, RESET_CONTROL};
    use super::*;

    #[test]
    fn state_round_trips_and_reserved_bits_are_refused() {
        let mut pci = PciConfig::new();
        pci.write(CONFIG_ADDRESS, &0x8000_f808u32.to_le_bytes());
        pci.write(RESET_CONTROL, &[0x0a]);
        let state = pci.state();
        assert_eq!(PciConfig::from_state(&state).unwrap(), pci);
        let err = PciConfig::from_state(&PciState { address: 0x8000_0001, ..state.clone() }).unwrap_err();
        assert_eq!(err.to_string(), "PCI CONFIG_ADDRESS is 0x80000001, with bits set outside 0x80fffffc");
        let err = PciConfig::from_state(&PciState { reset_control: 0x11, ..state }).unwrap_err();
        assert!(err.to_string().contains("PCI reset control is 0x11"), "{err}");
    }
}
