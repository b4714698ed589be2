//! The whole board's saved state: every device's, and the unmodelled ports and MMIO pages
//! already reported.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::i8042::{I8042State, I8042};
use super::pci::{PciConfig, PciState};
use super::pic::{Pic, PicState};
use super::pit::{Pit, PitState};
use super::rtc::{Rtc, RtcState};
use super::serial::{Serial, SerialState};
use super::Board;
use crate::persist::StateError;

/// All devices as saved in every trace checkpoint and `--save-state` snapshot.
///
/// Its bincode encoding is frozen (see [`crate::persist`]): any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardState {
    /// The 8259A pair.
    pub pic: PicState,
    /// The 8254 and port 0x61.
    pub pit: PitState,
    /// COM1.
    pub serial: SerialState,
    /// The CMOS RTC.
    pub rtc: RtcState,
    /// PCI configuration ports and the reset register.
    pub pci: PciState,
    /// The keyboard controller.
    pub i8042: I8042State,
    /// Unmodelled ports the guest has touched (each reported once).
    pub unmodelled_ports: BTreeSet<u16>,
    /// Unmodelled MMIO pages (addresses 4 KiB-aligned) the guest has touched.
    pub unmodelled_mmio: BTreeSet<u64>,
}

impl Board {
    /// The state to save.
    pub fn state(&self) -> BoardState {
        BoardState {
            pic: self.pic.state(),
            pit: self.pit.state(),
            serial: self.serial.state(),
            rtc: self.rtc.state(),
            pci: self.pci.state(),
            i8042: self.i8042.state(),
            unmodelled_ports: self.unmodelled_ports.clone(),
            unmodelled_mmio: self.unmodelled_mmio.clone(),
        }
    }

    /// The board in `state`; the first device state that could not be refuses it.
    pub fn from_state(state: &BoardState) -> Result<Self, StateError> {
        if let Some(addr) = state.unmodelled_mmio.iter().find(|&&a| a & 0xfff != 0) {
            return Err(StateError::ReservedBits { what: "unmodelled MMIO page".into(), value: *addr, mask: !0xfff });
        }
        Ok(Board {
            pic: Pic::from_state(&state.pic)?,
            pit: Pit::from_state(&state.pit)?,
            serial: Serial::from_state(&state.serial)?,
            rtc: Rtc::from_state(&state.rtc)?,
            pci: PciConfig::from_state(&state.pci)?,
            i8042: I8042::from_state(&state.i8042)?,
            virtio_blk: None,
            virtio_net: None,
            unmodelled_ports: state.unmodelled_ports.clone(),
            unmodelled_mmio: state.unmodelled_mmio.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_board_round_trips() {
        let board = Board::new(1_700_000_000);
        assert_eq!(Board::from_state(&board.state()).unwrap(), board);
    }

    #[test]
    fn a_damaged_device_refuses_the_board() {
        let mut state = Board::new(0).state();
        state.pit.channels[0].mode = 9;
        assert!(Board::from_state(&state).unwrap_err().to_string().contains("PIT channel 0 mode is 9"));
        let mut state = Board::new(0).state();
        state.unmodelled_mmio.insert(0xfee0_0020);
        let err = Board::from_state(&state).unwrap_err().to_string();
        assert!(err.contains("unmodelled MMIO page is 0xfee00020"), "{err}");
    }
}
