//! NS16550A UART (COM1 in the board). This type sees register offsets 0..=7.
//!
//! Written from the datasheet rather than wrapping `vm_superio::Serial`: that crate raises
//! interrupts through an edge callback instead of exposing a level, has no overrun, line-status
//! interrupt, FIFO enable/clear or trigger levels, so a wrapper would not have met the rules
//! below. This model is a plain value tested register by register; like vm-superio's
//! `SerialState`, its saved form is a separate [`SerialState`] that `from_state` validates.
//!
//! Behaviour, chosen for determinism and for Linux's 8250 driver:
//! * **Transmission is instantaneous**: a byte written to THR goes straight to the output
//!   buffer (or, in loopback, the receive FIFO); LSR always shows THRE|TEMT, so a polled
//!   `while !(LSR & 0x20)` loop reads LSR once per byte.
//! * **THRE interrupt**: raised when IER.ETBEI goes from 0 to 1 (THR is always empty) and when
//!   THR becomes empty after a write; cleared by reading IIR while it is the reported source
//!   and by writing THR. Since THR empties at once, a THR write with ETBEI set re-raises it.
//! * **Receive buffer** holds 16 bytes like a 16550A FIFO, whether or not the guest enabled
//!   the FIFOs (a real chip without FIFOs holds one byte; keeping 16 makes host input lossless
//!   for drivers that never enable them). Host input is flow-controlled through
//!   [`Serial::input_space`], so it never overruns; overrun (LSR.OE) happens when loopback
//!   transmits into a full FIFO, and the new byte is lost as on a 16550A.
//! * **Receive interrupt**: with FIFOs enabled, "data available" (IIR 0x04) is reported once
//!   the FIFO reaches the FCR trigger level, and below it the character-timeout indication
//!   (IIR 0x0c) is reported at once instead of after four character times (no time here).
//!   Without FIFOs any received byte reports 0x04.
//! * **Modem lines**: outside loopback the inputs are CTS, DSR and DCD asserted, RI clear (a
//!   connected terminal). In loopback RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD, and host input is
//!   not accepted (the receiver is disconnected from the line).
//! * **IRQ output** is gated by MCR.OUT2 as on PCs, in loopback too.
//! * Reading RBR with nothing received returns 0. Writes to LSR and MSR (factory test) are
//!   ignored. Offsets above 7 read 0xff and ignore writes.

use std::collections::VecDeque;

mod state;

pub use state::SerialState;

/// Receive buffer capacity (a 16550A FIFO).
pub const RX_FIFO_SIZE: usize = 16;

// Register offsets.
const DATA: u8 = 0; // RBR (read), THR (write), DLL when DLAB
const IER: u8 = 1; // DLM when DLAB
const IIR_FCR: u8 = 2; // IIR (read), FCR (write)
const LCR: u8 = 3;
const MCR: u8 = 4;
const LSR: u8 = 5;
const MSR: u8 = 6;
const SCR: u8 = 7;

// IER bits.
const IER_RX_DATA: u8 = 0x01;
const IER_THR_EMPTY: u8 = 0x02;
const IER_RX_LINE_STATUS: u8 = 0x04;
const IER_MODEM_STATUS: u8 = 0x08;
const IER_MASK: u8 = 0x0f;

// IIR values.
const IIR_NO_INTERRUPT: u8 = 0x01;
const IIR_MODEM_STATUS: u8 = 0x00;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_RX_DATA: u8 = 0x04;
const IIR_RX_LINE_STATUS: u8 = 0x06;
const IIR_RX_TIMEOUT: u8 = 0x0c;
const IIR_FIFOS_ENABLED: u8 = 0xc0;

// FCR bits.
const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;

// LCR bits.
const LCR_DLAB: u8 = 0x80;

// MCR bits.
const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOPBACK: u8 = 0x10;
const MCR_MASK: u8 = 0x1f;

// LSR bits.
const LSR_DATA_READY: u8 = 0x01;
const LSR_OVERRUN: u8 = 0x02;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_TRANSMITTER_EMPTY: u8 = 0x40;

// MSR bits.
const MSR_DELTA_CTS: u8 = 0x01;
const MSR_DELTA_DSR: u8 = 0x02;
const MSR_TRAILING_RI: u8 = 0x04;
const MSR_DELTA_DCD: u8 = 0x08;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;

/// Modem inputs outside loopback: a terminal is attached (CTS, DSR and DCD asserted).
const EXTERNAL_MODEM_INPUTS: u8 = MSR_CTS | MSR_DSR | MSR_DCD;

/// FCR trigger levels for codes 0..=3.
const RX_TRIGGER_LEVELS: [usize; 4] = [1, 4, 8, 14];

/// A 16550A UART.
#[derive(Clone, Debug, PartialEq)]
pub struct Serial {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    /// Divisor latch, low byte.
    dll: u8,
    /// Divisor latch, high byte.
    dlm: u8,
    fifo_enabled: bool,
    /// FCR bits 7..6: index into [`RX_TRIGGER_LEVELS`].
    rx_trigger: u8,
    /// Received bytes not yet read by the guest.
    rx: VecDeque<u8>,
    /// LSR.OE: a byte was lost; cleared by reading LSR.
    overrun: bool,
    /// The THR-empty interrupt is pending (see the module docs for its rule).
    thr_empty_pending: bool,
    /// MSR bits 7..4 (current modem input levels).
    modem_inputs: u8,
    /// MSR bits 3..0 (changes since MSR was last read).
    modem_deltas: u8,
    /// Bytes transmitted by the guest, not yet drained.
    output: Vec<u8>,
    /// The guest has shown it wants input: it enabled the receive interrupt or polled LSR
    /// and found nothing. Host input is held back until then, so bytes that arrive before
    /// a guest has set up its UART (and would be flushed by a FIFO reset) are not lost,
    /// and when they arrive depends only on the guest.
    listening: bool,
}

impl Default for Serial {
    fn default() -> Self {
        Self::new()
    }
}

impl Serial {
    /// Reset state: no interrupts enabled, FIFOs off, 8N1 at divisor 12 (9600 baud).
    pub fn new() -> Self {
        Serial {
            ier: 0,
            lcr: 0x03,
            mcr: 0,
            scr: 0,
            dll: 12,
            dlm: 0,
            fifo_enabled: false,
            rx_trigger: 0,
            rx: VecDeque::with_capacity(RX_FIFO_SIZE),
            listening: false,
            overrun: false,
            thr_empty_pending: false,
            modem_inputs: EXTERNAL_MODEM_INPUTS,
            modem_deltas: 0,
            output: Vec::new(),
        }
    }

    /// Guest read of register `offset` (0..=7).
    pub fn read(&mut self, offset: u8) -> u8 {
        match offset {
            DATA if self.dlab() => self.dll,
            DATA => self.rx.pop_front().unwrap_or(0),
            IER if self.dlab() => self.dlm,
            IER => self.ier,
            IIR_FCR => self.read_iir(),
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let lsr = self.lsr();
                self.overrun = false;
                if lsr & LSR_DATA_READY == 0 {
                    self.listening = true;
                }
                lsr
            }
            MSR => {
                let msr = self.modem_inputs | self.modem_deltas;
                self.modem_deltas = 0;
                msr
            }
            SCR => self.scr,
            _ => 0xff,
        }
    }

    /// Guest write of `value` to register `offset` (0..=7).
    pub fn write(&mut self, offset: u8, value: u8) {
        match offset {
            DATA if self.dlab() => self.dll = value,
            DATA => self.transmit(value),
            IER if self.dlab() => self.dlm = value,
            IER => {
                let enabling_thre = value & IER_THR_EMPTY != 0 && self.ier & IER_THR_EMPTY == 0;
                self.ier = value & IER_MASK;
                if self.ier & IER_RX_DATA != 0 {
                    self.listening = true;
                }
                if enabling_thre {
                    self.thr_empty_pending = true;
                }
            }
            IIR_FCR => self.write_fcr(value),
            LCR => self.lcr = value,
            MCR => {
                self.mcr = value & MCR_MASK;
                self.update_modem_inputs();
            }
            SCR => self.scr = value,
            // LSR and MSR are read-only; unknown offsets ignore writes.
            _ => {}
        }
    }

    /// Level of the UART's interrupt output (OUT2 gating per MCR bit 3 as on PCs).
    pub fn irq_level(&self) -> bool {
        self.mcr & MCR_OUT2 != 0 && self.interrupt_source().is_some()
    }

    /// Offer guest input; returns how many bytes were accepted (the receive buffer holds
    /// [`RX_FIFO_SIZE`] = 16 bytes like a 16550A FIFO; none in loopback mode).
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let accepted = bytes.len().min(self.input_space());
        self.rx.extend(&bytes[..accepted]);
        accepted
    }

    /// How many bytes [`Serial::enqueue_input`] would accept now.
    pub fn input_space(&self) -> usize {
        if self.loopback() || !self.listening {
            0
        } else {
            RX_FIFO_SIZE.saturating_sub(self.rx.len())
        }
    }

    /// Move bytes the guest transmitted since the last call into `out`.
    pub fn drain_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOPBACK != 0
    }

    fn lsr(&self) -> u8 {
        let mut lsr = LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY;
        if !self.rx.is_empty() {
            lsr |= LSR_DATA_READY;
        }
        if self.overrun {
            lsr |= LSR_OVERRUN;
        }
        lsr
    }

    /// The highest-priority enabled interrupt condition, as its IIR code.
    fn interrupt_source(&self) -> Option<u8> {
        if self.ier & IER_RX_LINE_STATUS != 0 && self.overrun {
            Some(IIR_RX_LINE_STATUS)
        } else if self.ier & IER_RX_DATA != 0 && !self.rx.is_empty() {
            let trigger = RX_TRIGGER_LEVELS[usize::from(self.rx_trigger & 3)];
            if self.fifo_enabled && self.rx.len() < trigger {
                Some(IIR_RX_TIMEOUT)
            } else {
                Some(IIR_RX_DATA)
            }
        } else if self.ier & IER_THR_EMPTY != 0 && self.thr_empty_pending {
            Some(IIR_THR_EMPTY)
        } else if self.ier & IER_MODEM_STATUS != 0 && self.modem_deltas != 0 {
            Some(IIR_MODEM_STATUS)
        } else {
            None
        }
    }

    fn read_iir(&mut self) -> u8 {
        let source = self.interrupt_source();
        if source == Some(IIR_THR_EMPTY) {
            self.thr_empty_pending = false;
        }
        let fifo_bits = if self.fifo_enabled { IIR_FIFOS_ENABLED } else { 0 };
        source.unwrap_or(IIR_NO_INTERRUPT) | fifo_bits
    }

    fn write_fcr(&mut self, value: u8) {
        let enable = value & FCR_ENABLE != 0;
        if enable != self.fifo_enabled {
            // Switching FIFO mode clears both FIFOs.
            self.rx.clear();
            self.fifo_enabled = enable;
        }
        // The other bits are only accepted while the FIFOs are enabled.
        if enable {
            if value & FCR_CLEAR_RX != 0 {
                self.rx.clear();
            }
            // Bit 2 (clear TX FIFO) has nothing to clear: transmission is instantaneous.
            self.rx_trigger = value >> 6;
        }
    }

    fn transmit(&mut self, byte: u8) {
        // Writing THR clears the THRE interrupt; the byte leaves at once, so THR is empty again.
        self.thr_empty_pending = false;
        if self.loopback() {
            self.receive(byte);
        } else {
            self.output.push(byte);
        }
        self.thr_empty_pending = true;
    }

    /// A byte arrives at the receiver (from loopback).
    fn receive(&mut self, byte: u8) {
        if self.rx.len() >= RX_FIFO_SIZE {
            self.overrun = true;
        } else {
            self.rx.push_back(byte);
        }
    }

    /// MSR's input bits for the current MCR: in loopback its outputs, otherwise the line.
    fn modem_inputs_for_mcr(&self) -> u8 {
        if self.loopback() {
            let mut inputs = 0;
            if self.mcr & MCR_RTS != 0 {
                inputs |= MSR_CTS;
            }
            if self.mcr & MCR_DTR != 0 {
                inputs |= MSR_DSR;
            }
            if self.mcr & MCR_OUT1 != 0 {
                inputs |= MSR_RI;
            }
            if self.mcr & MCR_OUT2 != 0 {
                inputs |= MSR_DCD;
            }
            inputs
        } else {
            EXTERNAL_MODEM_INPUTS
        }
    }

    /// Recompute MSR's input bits from MCR, latching deltas.
    fn update_modem_inputs(&mut self) {
        let new = self.modem_inputs_for_mcr();
        let changed = new ^ self.modem_inputs;
        if changed & MSR_CTS != 0 {
            self.modem_deltas |= MSR_DELTA_CTS;
        }
        if changed & MSR_DSR != 0 {
            self.modem_deltas |= MSR_DELTA_DSR;
        }
        if changed & MSR_RI != 0 && new & MSR_RI == 0 {
            self.modem_deltas |= MSR_TRAILING_RI;
        }
        if changed & MSR_DCD != 0 {
            self.modem_deltas |= MSR_DELTA_DCD;
        }
        self.modem_inputs = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(serial: &mut Serial) -> Vec<u8> {
        let mut out = Vec::new();
        serial.drain_output(&mut out);
        out
    }

    #[test]
    fn reset_state() {
        let mut s = Serial::new();
        assert_eq!(s.read(LSR), 0x60);
        assert_eq!(s.read(IIR_FCR), 0x01);
        assert_eq!(s.read(IER), 0);
        assert_eq!(s.read(MSR), 0xb0);
        assert!(!s.irq_level());
        assert_eq!(s.input_space(), 16);
    }

    #[test]
    fn polled_transmit_reads_lsr_once_per_byte() {
        let mut s = Serial::new();
        let mut lsr_reads = 0;
        for &b in b"hello" {
            loop {
                lsr_reads += 1;
                if s.read(LSR) & 0x20 != 0 {
                    break;
                }
            }
            s.write(DATA, b);
        }
        assert_eq!(lsr_reads, 5);
        assert_eq!(drained(&mut s), b"hello");
        assert!(drained(&mut s).is_empty(), "drain moves bytes out");
    }

    #[test]
    fn drain_output_preserves_order_and_appends() {
        let mut s = Serial::new();
        s.write(DATA, b'a');
        let mut out = b"x".to_vec();
        s.drain_output(&mut out);
        s.write(DATA, b'b');
        s.write(DATA, b'c');
        s.drain_output(&mut out);
        assert_eq!(out, b"xabc");
    }

    #[test]
    fn ier_masks_to_four_bits() {
        let mut s = Serial::new();
        s.write(IER, 0xff);
        assert_eq!(s.read(IER), 0x0f);
        s.write(IER, 0x00);
        assert_eq!(s.read(IER), 0x00);
    }

    #[test]
    fn thre_interrupt_on_enable_cleared_by_iir_read() {
        let mut s = Serial::new();
        s.write(MCR, MCR_OUT2);
        s.write(IER, IER_THR_EMPTY);
        assert!(s.irq_level());
        assert_eq!(s.read(IIR_FCR), 0x02);
        assert!(!s.irq_level());
        assert_eq!(s.read(IIR_FCR), 0x01, "reading IIR cleared it");
        // Re-writing IER with ETBEI still set does not re-raise it...
        s.write(IER, IER_THR_EMPTY);
        assert_eq!(s.read(IIR_FCR), 0x01);
        // ...but a 0 -> 1 transition does (Linux's UART_BUG_THRE probe relies on this).
        s.write(IER, 0);
        s.write(IER, IER_THR_EMPTY);
        assert_eq!(s.read(IIR_FCR), 0x02);
    }

    #[test]
    fn thre_interrupt_after_thr_write() {
        let mut s = Serial::new();
        s.write(MCR, MCR_OUT2);
        s.write(IER, IER_THR_EMPTY);
        assert_eq!(s.read(IIR_FCR), 0x02);
        assert!(!s.irq_level());
        s.write(DATA, b'x');
        assert!(s.irq_level(), "THR emptied again at once");
        assert_eq!(s.read(IIR_FCR), 0x02);
        // With ETBEI clear, the pending THRE is kept but not reported.
        s.write(IER, 0);
        s.write(DATA, b'y');
        assert_eq!(s.read(IIR_FCR), 0x01);
        assert!(!s.irq_level());
    }

    #[test]
    fn iir_priorities() {
        let mut s = Serial::new();
        s.write(MCR, MCR_LOOPBACK | MCR_OUT2);
        s.write(IER, 0x0f);
        // Modem status: entering loopback changed DCD/CTS/DSR.
        // THR empty (from enabling ETBEI) outranks it.
        assert_eq!(s.read(IIR_FCR), 0x02);
        assert_eq!(s.read(IIR_FCR), 0x00, "then modem status");
        for i in 0..17 {
            s.write(DATA, i);
        }
        // Overrun (line status) outranks data available outranks THRE.
        assert_eq!(s.read(IIR_FCR), 0x06);
        assert_eq!(s.read(LSR) & 0x03, 0x03, "OE and DR; reading clears OE");
        assert_eq!(s.read(IIR_FCR), 0x04);
        for _ in 0..16 {
            s.read(DATA);
        }
        assert_eq!(s.read(IIR_FCR), 0x02);
        assert_eq!(s.read(IIR_FCR), 0x00);
        s.read(MSR);
        assert_eq!(s.read(IIR_FCR), 0x01);
        assert!(!s.irq_level());
    }

    #[test]
    fn dlab_switches_divisor_latch() {
        let mut s = Serial::new();
        s.write(IER, 0x05);
        s.write(LCR, 0x83);
        assert_eq!(s.read(DATA), 12);
        assert_eq!(s.read(IER), 0);
        s.write(DATA, 0x01);
        s.write(IER, 0x02);
        assert_eq!(s.read(DATA), 0x01);
        assert_eq!(s.read(IER), 0x02);
        assert!(drained(&mut s).is_empty(), "DLL write is not a transmit");
        s.write(LCR, 0x03);
        assert_eq!(s.read(LCR), 0x03);
        assert_eq!(s.read(IER), 0x05, "IER untouched by DLM writes");
        s.write(DATA, b'z');
        assert_eq!(drained(&mut s), b"z");
    }

    #[test]
    fn host_input_waits_until_the_guest_listens() {
        let mut s = Serial::new();
        assert_eq!(s.input_space(), 0, "a guest that never set up its UART gets nothing");
        assert_eq!(s.enqueue_input(b"early"), 0);
        s.write(IER, IER_THR_EMPTY);
        assert_eq!(s.input_space(), 0, "THR-empty interrupts are not listening");
        s.write(IER, IER_RX_DATA);
        assert_eq!(s.enqueue_input(b"hi"), 2);
        let mut p = Serial::new();
        p.read(LSR);
        assert_eq!(p.enqueue_input(b"hi"), 2, "polling LSR with nothing ready is listening");
    }

    #[test]
    fn receive_fifo_order_and_data_ready() {
        let mut s = Serial::new();
        assert_eq!(s.read(LSR) & LSR_DATA_READY, 0, "a polling guest starts listening");
        assert_eq!(s.enqueue_input(b"abc"), 3);
        assert_eq!(s.input_space(), 13);
        assert_eq!(s.read(LSR) & LSR_DATA_READY, 1);
        assert_eq!(s.read(DATA), b'a');
        assert_eq!(s.read(DATA), b'b');
        assert_eq!(s.read(DATA), b'c');
        assert_eq!(s.read(LSR) & LSR_DATA_READY, 0);
        assert_eq!(s.read(DATA), 0, "empty reads 0");
    }

    #[test]
    fn receive_buffer_is_bounded_at_16() {
        let mut s = Serial::new();
        s.write(IER, IER_RX_DATA);
        let input: Vec<u8> = (0..20).collect();
        assert_eq!(s.enqueue_input(&input), 16);
        assert_eq!(s.enqueue_input(&input), 0);
        assert_eq!(s.read(LSR) & LSR_OVERRUN, 0, "host input never overruns");
        let got: Vec<u8> = (0..16).map(|_| s.read(DATA)).collect();
        assert_eq!(got, input[..16]);
        assert_eq!(s.input_space(), 16);
    }

    #[test]
    fn loopback_overrun_sets_oe_and_drops_byte() {
        let mut s = Serial::new();
        s.write(IIR_FCR, 0x07);
        s.write(MCR, MCR_LOOPBACK);
        for i in 0..18u8 {
            s.write(DATA, i);
        }
        assert_eq!(s.read(LSR), 0x63);
        assert_eq!(s.read(LSR), 0x61, "OE cleared by reading LSR");
        let got: Vec<u8> = (0..16).map(|_| s.read(DATA)).collect();
        assert_eq!(got, (0..16).collect::<Vec<u8>>(), "bytes past the 16th were lost");
        assert!(drained(&mut s).is_empty(), "loopback does not reach the line");
    }

    #[test]
    fn fcr_enable_clear_and_trigger_level() {
        let mut s = Serial::new();
        s.write(IER, IER_RX_DATA);
        s.write(MCR, MCR_OUT2);
        s.enqueue_input(b"ab");
        assert_eq!(s.read(IIR_FCR), 0x04, "no FIFO: any byte is data available");
        s.write(IIR_FCR, 0x81); // enable FIFO, trigger 8: switching mode clears
        assert_eq!(s.read(LSR) & LSR_DATA_READY, 0);
        assert_eq!(s.read(IIR_FCR), 0xc1);
        s.enqueue_input(b"1234567");
        assert_eq!(s.read(IIR_FCR), 0xcc, "below trigger: timeout indication");
        assert!(s.irq_level());
        s.enqueue_input(b"8");
        assert_eq!(s.read(IIR_FCR), 0xc4);
        s.write(IIR_FCR, 0x83); // clear RX FIFO, keep enabled
        assert_eq!(s.read(LSR) & LSR_DATA_READY, 0);
        assert!(!s.irq_level());
        s.write(IIR_FCR, 0x00);
        assert_eq!(s.read(IIR_FCR) & 0xc0, 0);
        // Linux's 16750 probe: IIR bit 5 must stay clear for a 16550A.
        s.write(IIR_FCR, 0x21);
        assert_eq!(s.read(IIR_FCR) >> 5, 6);
    }

    #[test]
    fn loopback_routes_tx_to_rx_and_mirrors_modem_lines() {
        let mut s = Serial::new();
        // Linux's 8250 probe.
        s.write(MCR, MCR_LOOPBACK | 0x0a);
        assert_eq!(s.read(MSR) & 0xf0, 0x90);
        s.write(MCR, MCR_LOOPBACK | 0x05);
        assert_eq!(s.read(MSR), 0x60 | 0x0b, "DSR|RI, deltas CTS/DSR/DCD");
        s.write(MCR, MCR_LOOPBACK);
        assert_eq!(s.read(MSR), 0x06, "trailing edge of RI and DSR delta");
        assert_eq!(s.enqueue_input(b"x"), 0, "line input disconnected");
        assert_eq!(s.input_space(), 0);
        s.write(DATA, 0x5a);
        assert_eq!(s.read(LSR) & 1, 1);
        assert_eq!(s.read(DATA), 0x5a);
        s.write(MCR, 0);
        assert_eq!(s.read(MSR) & 0xf0, 0xb0);
        assert_eq!(s.read(LSR) & LSR_DATA_READY, 0);
        assert_eq!(s.input_space(), 16);
        s.write(DATA, b'q');
        assert_eq!(drained(&mut s), b"q");
    }

    #[test]
    fn scratch_register_round_trips() {
        let mut s = Serial::new();
        for v in [0x00, 0x55, 0xaa, 0xff] {
            s.write(SCR, v);
            assert_eq!(s.read(SCR), v);
        }
    }

    #[test]
    fn irq_level_follows_out2() {
        let mut s = Serial::new();
        s.write(IER, IER_RX_DATA);
        s.enqueue_input(b"k");
        assert!(!s.irq_level(), "OUT2 clear gates the IRQ");
        s.write(MCR, MCR_OUT2 | MCR_DTR | MCR_RTS);
        assert!(s.irq_level());
        s.read(DATA);
        assert!(!s.irq_level());
        s.enqueue_input(b"k");
        s.write(IER, 0);
        assert!(!s.irq_level(), "IER gates the source");
    }

    #[test]
    fn modem_status_interrupt() {
        let mut s = Serial::new();
        s.write(IER, IER_MODEM_STATUS);
        s.write(MCR, MCR_OUT2);
        assert!(!s.irq_level());
        s.write(MCR, MCR_OUT2 | MCR_LOOPBACK);
        assert!(s.irq_level());
        assert_eq!(s.read(IIR_FCR), 0x00);
        s.read(MSR);
        assert!(!s.irq_level());
    }

    #[test]
    fn unknown_offsets() {
        let mut s = Serial::new();
        let before = s.clone();
        assert_eq!(s.read(8), 0xff);
        assert_eq!(s.read(255), 0xff);
        s.write(8, 1);
        s.write(LSR, 0);
        s.write(MSR, 0);
        assert_eq!(s, before);
    }

    #[test]
    fn no_panic_on_arbitrary_sequences() {
        let mut s = Serial::new();
        let mut x: u32 = 0xdead_beef;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let offset = (x % 10) as u8;
            let value = (x >> 8) as u8;
            match (x >> 16) % 4 {
                0 => s.write(offset, value),
                1 => {
                    s.read(offset);
                }
                2 => {
                    s.enqueue_input(&[value; 5]);
                }
                _ => {
                    s.irq_level();
                    s.drain_output(&mut Vec::new());
                }
            }
            assert!(s.rx.len() <= RX_FIFO_SIZE);
        }
    }

    #[test]
    fn clone_behaves_identically() {
        let mut s = Serial::new();
        s.write(IIR_FCR, 0x41);
        s.write(IER, 0x07);
        s.write(MCR, 0x0b);
        s.enqueue_input(b"abc");
        s.write(DATA, b'!');
        let mut copy = s.clone();
        assert_eq!(copy, s);
        for dev in [&mut s, &mut copy] {
            dev.enqueue_input(b"def");
        }
        let a: Vec<u8> = (0..8).map(|i| s.read(i)).collect();
        let b: Vec<u8> = (0..8).map(|i| copy.read(i)).collect();
        assert_eq!(a, b);
        assert_eq!(drained(&mut s), drained(&mut copy));
        assert_eq!(s, copy);
    }
}
