//! The UART's saved state.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{Serial, IER_MASK, MCR_MASK, RX_FIFO_SIZE};
use crate::persist::{in_range, max_len, no_bits_outside, StateError};

/// The 16550A as saved in checkpoints and snapshots: its registers, the bytes received and
/// not yet read, and the bytes transmitted and not yet drained by the host.
///
/// Its bincode encoding is frozen (see [`crate::persist`]): any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialState {
    /// Interrupt enable register (bits 0..=3).
    pub ier: u8,
    /// Line control register.
    pub lcr: u8,
    /// Modem control register (bits 0..=4).
    pub mcr: u8,
    /// Scratch register.
    pub scr: u8,
    /// Divisor latch, low byte.
    pub dll: u8,
    /// Divisor latch, high byte.
    pub dlm: u8,
    /// FCR bit 0: FIFOs enabled.
    pub fifo_enabled: bool,
    /// FCR bits 7..6: receive trigger level code (0..=3).
    pub rx_trigger: u8,
    /// Received bytes, oldest first (at most 16).
    pub rx: Vec<u8>,
    /// LSR.OE.
    pub overrun: bool,
    /// The THR-empty interrupt is pending.
    pub thr_empty_pending: bool,
    /// MSR bits 7..4: modem input levels.
    pub modem_inputs: u8,
    /// MSR bits 3..0: modem input changes not yet read.
    pub modem_deltas: u8,
    /// Bytes the guest transmitted that the host has not drained.
    pub output: Vec<u8>,
    /// The guest has shown it wants input (host input is held back until then).
    pub listening: bool,
}

impl Serial {
    /// The state to save.
    pub fn state(&self) -> SerialState {
        SerialState {
            ier: self.ier,
            lcr: self.lcr,
            mcr: self.mcr,
            scr: self.scr,
            dll: self.dll,
            dlm: self.dlm,
            fifo_enabled: self.fifo_enabled,
            rx_trigger: self.rx_trigger,
            rx: self.rx.iter().copied().collect(),
            overrun: self.overrun,
            thr_empty_pending: self.thr_empty_pending,
            modem_inputs: self.modem_inputs,
            modem_deltas: self.modem_deltas,
            output: self.output.clone(),
            listening: self.listening,
        }
    }

    /// A UART in `state`, refused if no 16550A could be in it.
    pub fn from_state(state: &SerialState) -> Result<Self, StateError> {
        no_bits_outside("UART IER", state.ier, u64::from(IER_MASK))?;
        no_bits_outside("UART MCR", state.mcr, u64::from(MCR_MASK))?;
        in_range("UART receive trigger level", state.rx_trigger, 0, 3)?;
        max_len("UART receive FIFO", state.rx.len(), RX_FIFO_SIZE)?;
        no_bits_outside("UART MSR deltas", state.modem_deltas, 0x0f)?;
        let mut rx = VecDeque::with_capacity(RX_FIFO_SIZE);
        rx.extend(&state.rx);
        let serial = Serial {
            ier: state.ier,
            lcr: state.lcr,
            mcr: state.mcr,
            scr: state.scr,
            dll: state.dll,
            dlm: state.dlm,
            fifo_enabled: state.fifo_enabled,
            rx_trigger: state.rx_trigger,
            rx,
            overrun: state.overrun,
            thr_empty_pending: state.thr_empty_pending,
            modem_inputs: state.modem_inputs,
            modem_deltas: state.modem_deltas,
            output: state.output.clone(),
            listening: state.listening,
        };
        // The inputs follow MCR at every MCR write: loopback mirrors its outputs, otherwise
        // a terminal is attached.
        if serial.modem_inputs != serial.modem_inputs_for_mcr() {
            return Err(StateError::Inconsistent {
                what: "UART MSR".into(),
                reason: "its modem input levels do not follow MCR",
            });
        }
        Ok(serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy_uart() -> Serial {
        let mut s = Serial::new();
        s.write(2, 0x81);
        s.write(1, 0x07);
        s.write(4, 0x0b);
        s.write(7, 0x5a);
        s.enqueue_input(b"abc");
        s.write(0, b'!');
        s
    }

    #[test]
    fn state_round_trips_and_behaves_the_same() {
        let mut uart = busy_uart();
        let state = uart.state();
        assert_eq!(state.rx, b"abc");
        assert_eq!(state.output, b"!");
        let mut back = Serial::from_state(&state).unwrap();
        assert_eq!(back, uart);
        let a: Vec<u8> = (0..8).map(|i| uart.read(i)).collect();
        let b: Vec<u8> = (0..8).map(|i| back.read(i)).collect();
        assert_eq!(a, b);
        assert_eq!(back.state(), uart.state());
    }

    #[test]
    fn impossible_uarts_are_refused() {
        let good = busy_uart().state();
        let refuse = |change: fn(&mut SerialState), expected: &str| {
            let mut s = good.clone();
            change(&mut s);
            let err = Serial::from_state(&s).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        refuse(|s| s.rx = vec![0; 17], "UART receive FIFO holds 17 entries, more than the 16");
        refuse(|s| s.ier = 0x10, "UART IER is 0x10");
        refuse(|s| s.mcr = 0x20, "UART MCR is 0x20");
        refuse(|s| s.rx_trigger = 4, "UART receive trigger level is 4");
        refuse(|s| s.modem_deltas = 0x10, "UART MSR deltas is 0x10");
        refuse(|s| s.mcr = 0x10, "do not follow MCR");
    }
}
