//! The virtio-net device's saved state.

use serde::{Deserialize, Serialize};

use super::{RingPos, VirtioNet, BAR0_SIZE, HOST_FEATURES, QUEUE_SIZE};
use crate::devices::pci::io_bar_function::{IoBarFunction, COMMAND_BITS};
use crate::persist::{no_bits_outside, StateError};

/// One legacy queue as saved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioNetQueueState {
    /// Page frame of the ring (0: not set up).
    pub pfn: u32,
    /// Next available-ring entry the device will take.
    pub next_avail: u16,
    /// Next used-ring entry the device will fill.
    pub next_used: u16,
}

/// The device as saved. Frames in flight are not part of it: they belong to the switch
/// (and, in a recording, to the network manifest).
///
/// Its bincode encoding is frozen (see [`crate::persist`]): any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioNetState {
    /// The MAC address.
    pub mac: [u8; 6],
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
    /// The receive queue (0) and the transmit queue (1).
    pub queues: [VirtioNetQueueState; 2],
    /// Device status register.
    pub status: u8,
    /// Interrupt status register.
    pub isr: u8,
    /// Device time at which notified transmissions leave.
    pub tx_due_ns: Option<u64>,
}

impl VirtioNet {
    /// The state to save.
    pub fn state(&self) -> VirtioNetState {
        let q = |p: RingPos| VirtioNetQueueState { pfn: p.pfn, next_avail: p.next_avail, next_used: p.next_used };
        VirtioNetState {
            mac: self.mac,
            command: self.pci.command,
            bar0: self.pci.bar0,
            interrupt_line: self.pci.interrupt_line,
            driver_features: self.driver_features,
            queue_select: self.queue_select,
            queues: [q(self.queues[0]), q(self.queues[1])],
            status: self.status,
            isr: self.isr,
            tx_due_ns: self.tx_due_ns,
        }
    }

    /// The device in `state`, refused if a register holds bits the device does not have.
    pub fn from_state(state: &VirtioNetState) -> Result<Self, StateError> {
        no_bits_outside("virtio-net PCI command", state.command, u64::from(COMMAND_BITS))?;
        no_bits_outside("virtio-net BAR0", state.bar0, u64::from(!u32::from(BAR0_SIZE - 1)))?;
        no_bits_outside("virtio-net driver features", state.driver_features, u64::from(HOST_FEATURES))?;
        no_bits_outside("virtio-net ISR", state.isr, 0x3)?;
        if state.mac[0] & 1 != 0 {
            return Err(StateError::Inconsistent {
                what: "virtio-net MAC".into(),
                reason: "a device address is not a multicast address",
            });
        }
        let mut queues = [RingPos::default(); 2];
        for (q, s) in queues.iter_mut().zip(&state.queues) {
            // Positions wrap at 2^16; the used ring never runs ahead of the available one by
            // more than a queue.
            if s.next_avail.wrapping_sub(s.next_used) > QUEUE_SIZE {
                return Err(StateError::Inconsistent {
                    what: "virtio-net ring positions".into(),
                    reason: "more buffers taken than the queue holds",
                });
            }
            *q = RingPos { pfn: s.pfn, next_avail: s.next_avail, next_used: s.next_used };
        }
        Ok(VirtioNet {
            mac: state.mac,
            pci: IoBarFunction::restored(super::IDENTITY, state.command, state.bar0, state.interrupt_line),
            driver_features: state.driver_features,
            queue_select: state.queue_select,
            queues,
            status: state.status,
            isr: state.isr,
            tx_due_ns: state.tx_due_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{mac_for, DEFAULT_BAR0};
    use super::*;

    #[test]
    fn state_round_trips_and_impossible_registers_are_refused() {
        let mut net = VirtioNet::new(mac_for(1));
        net.config_write(0x04, &[0x05]);
        net.io_write(DEFAULT_BAR0 + 18, &[7], 0);
        net.io_write(DEFAULT_BAR0 + 16, &1u16.to_le_bytes(), 5);
        let state = net.state();
        assert_eq!(state.tx_due_ns, Some(5));
        assert_eq!(VirtioNet::from_state(&state).unwrap(), net);
        let err = VirtioNet::from_state(&VirtioNetState { isr: 4, ..state.clone() }).unwrap_err();
        assert!(err.to_string().contains("virtio-net ISR is 0x4"), "{err}");
        let err = VirtioNet::from_state(&VirtioNetState { bar0: 0xc041, ..state.clone() }).unwrap_err();
        assert!(err.to_string().contains("BAR0"), "{err}");
        let mut bad = state.clone();
        bad.queues[1].next_avail = 200;
        let err = VirtioNet::from_state(&bad).unwrap_err();
        assert!(err.to_string().contains("ring positions"), "{err}");
        let err = VirtioNet::from_state(&VirtioNetState { mac: [1, 0, 0, 0, 0, 0], ..state }).unwrap_err();
        assert!(err.to_string().contains("MAC"), "{err}");
    }

    /// The encoding is pinned: a reordered or retyped field fails here, not in a trace.
    #[test]
    fn the_encoding_is_pinned() {
        let mut state = VirtioNet::new(mac_for(0)).state();
        state.queues[1] = VirtioNetQueueState { pfn: 0x1234, next_avail: 3, next_used: 2 };
        state.tx_due_ns = Some(99);
        let bytes = bincode::serialize(&state).unwrap();
        assert_eq!(bytes.len(), 6 + 2 + 4 + 1 + 4 + 2 + 2 * 8 + 1 + 1 + 9);
        assert_eq!(&bytes[..6], &[0x52, 0x54, 0x00, 0x74, 0x74, 0x01]);
        assert_eq!(&bytes[8..12], &0xc040u32.to_le_bytes());
        assert_eq!(&bytes[27..35], &[0x34, 0x12, 0, 0, 3, 0, 2, 0]);
        assert_eq!(&bytes[37..], &[1, 99, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bincode::deserialize::<VirtioNetState>(&bytes).unwrap(), state);
    }
}
