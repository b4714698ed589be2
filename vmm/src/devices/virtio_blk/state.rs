//! The virtio-blk device's saved state.

use serde::{Deserialize, Serialize};

use super::{VirtioBlk, BAR0_SIZE, HOST_FEATURES, QUEUE_SIZE};
use crate::devices::pci::io_bar_function::{IoBarFunction, COMMAND_BITS};
use crate::persist::{no_bits_outside, StateError};

/// The device as saved in trace checkpoints (format 4 on) and `--save-state` snapshots
/// (version 3 on). The disk's contents are not part of it: they are the image (or the
/// trace's disk history).
///
/// Its bincode encoding is frozen (see [`crate::persist`]): any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioBlkState {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// PCI command register.
    pub command: u16,
    /// BAR0 as written (the I/O base, low bits clear).
    pub bar0: u32,
    /// PCI interrupt line register.
    pub interrupt_line: u8,
    /// Features the driver accepted.
    pub driver_features: u32,
    /// Selected queue.
    pub queue_select: u16,
    /// Page frame of queue 0's ring (0: not set up).
    pub queue_pfn: u32,
    /// Next available-ring entry the device will take.
    pub next_avail: u16,
    /// Next used-ring entry the device will fill.
    pub next_used: u16,
    /// Device status register.
    pub status: u8,
    /// Interrupt status register.
    pub isr: u8,
    /// Device time at which notified requests complete.
    pub due_ns: Option<u64>,
}

impl VirtioBlk {
    /// The state to save.
    pub fn state(&self) -> VirtioBlkState {
        VirtioBlkState {
            capacity: self.capacity,
            command: self.pci.command,
            bar0: self.pci.bar0,
            interrupt_line: self.pci.interrupt_line,
            driver_features: self.driver_features,
            queue_select: self.queue_select,
            queue_pfn: self.queue_pfn,
            next_avail: self.next_avail,
            next_used: self.next_used,
            status: self.status,
            isr: self.isr,
            due_ns: self.due_ns,
        }
    }

    /// The device in `state`, refused if a register holds bits the device does not have.
    pub fn from_state(state: &VirtioBlkState) -> Result<Self, StateError> {
        if state.capacity == 0 {
            return Err(StateError::Inconsistent { what: "virtio-blk capacity".into(), reason: "a disk has sectors" });
        }
        no_bits_outside("virtio-blk PCI command", state.command, u64::from(COMMAND_BITS))?;
        no_bits_outside("virtio-blk BAR0", state.bar0, u64::from(!u32::from(BAR0_SIZE - 1)))?;
        no_bits_outside("virtio-blk driver features", state.driver_features, u64::from(HOST_FEATURES))?;
        no_bits_outside("virtio-blk ISR", state.isr, 0x3)?;
        // Ring positions wrap at 2^16 and the used ring never runs ahead of the available one
        // by more than a queue.
        if state.next_avail.wrapping_sub(state.next_used) > QUEUE_SIZE {
            return Err(StateError::Inconsistent {
                what: "virtio-blk ring positions".into(),
                reason: "more requests taken than the queue holds",
            });
        }
        Ok(VirtioBlk {
            capacity: state.capacity,
            pci: IoBarFunction::restored(super::IDENTITY, state.command, state.bar0, state.interrupt_line),
            driver_features: state.driver_features,
            queue_select: state.queue_select,
            queue_pfn: state.queue_pfn,
            next_avail: state.next_avail,
            next_used: state.next_used,
            status: state.status,
            isr: state.isr,
            due_ns: state.due_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_impossible_registers_are_refused() {
        let mut blk = VirtioBlk::new(2048);
        blk.config_write(0x04, &[0x05]);
        blk.io_write(super::super::DEFAULT_BAR0 + 18, &[7], 0);
        let state = blk.state();
        assert_eq!(VirtioBlk::from_state(&state).unwrap(), blk);
        let err = VirtioBlk::from_state(&VirtioBlkState { isr: 4, ..state.clone() }).unwrap_err();
        assert!(err.to_string().contains("virtio-blk ISR is 0x4"), "{err}");
        let err = VirtioBlk::from_state(&VirtioBlkState { bar0: 0xc001, ..state.clone() }).unwrap_err();
        assert!(err.to_string().contains("BAR0"), "{err}");
        let err = VirtioBlk::from_state(&VirtioBlkState { next_avail: 300, ..state.clone() }).unwrap_err();
        assert!(err.to_string().contains("ring positions"), "{err}");
        assert!(VirtioBlk::from_state(&VirtioBlkState { capacity: 0, ..state }).is_err());
    }

    /// The encoding is pinned: a reordered or retyped field fails here, not in a trace.
    #[test]
    fn the_encoding_is_pinned() {
        let mut state = VirtioBlk::new(0x1234).state();
        state.due_ns = Some(99);
        let bytes = bincode::serialize(&state).unwrap();
        assert_eq!(bytes.len(), 8 + 2 + 4 + 1 + 4 + 2 + 4 + 2 + 2 + 1 + 1 + 9);
        assert_eq!(&bytes[..8], &0x1234u64.to_le_bytes());
        assert_eq!(&bytes[10..14], &0xc000u32.to_le_bytes());
        assert_eq!(bincode::deserialize::<VirtioBlkState>(&bytes).unwrap(), state);
    }
}
