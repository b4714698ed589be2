//! The i8042 keyboard controller (ports 0x60 and 0x64) with a PS/2 keyboard attached and
//! nothing on the auxiliary (mouse) port.
//!
//! Linux probes it at boot (self-test, command byte, keyboard identification) and reboots
//! through it: pulsing output line 0 (command 0xfe, or 0xd1 with bit 0 clear) resets the
//! CPU, which ttvm treats as the machine's clean end. Every command is answered at once:
//! a command left unanswered costs the guest a polling timeout, which under emulated ring 0
//! is millions of instructions. Bytes for the absent mouse come back as 0xfe with the
//! timeout status bit, as a real controller reports a missing device, so Linux gives up on
//! it immediately.

use std::collections::VecDeque;

mod state;

pub use state::{I8042OutByte, I8042Pending, I8042Source, I8042State};

/// Data port.
pub const DATA_PORT: u16 = 0x60;
/// Status (read) and command (write) port.
pub const COMMAND_PORT: u16 = 0x64;
/// IRQ line of the keyboard port.
pub const KBD_IRQ: u8 = 1;
/// IRQ line of the auxiliary port.
pub const AUX_IRQ: u8 = 12;

const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;
const STATUS_AUXDATA: u8 = 0x20;
const STATUS_TIMEOUT: u8 = 0x40;

const CTR_KBDINT: u8 = 0x01;
const CTR_AUXINT: u8 = 0x02;
const CTR_KBDDIS: u8 = 0x10;
const CTR_AUXDIS: u8 = 0x20;

/// Largest output backlog kept (the real controller has a one-byte buffer; the keyboard
/// holds the rest of a multi-byte answer).
const QUEUE_MAX: usize = 16;
/// Keyboard commands followed by an argument byte: set LEDs, select scancode set, set
/// typematic rate.
const KEYBOARD_COMMANDS_WITH_ARGUMENT: [u8; 3] = [0xed, 0xf0, 0xf3];

/// Who put a byte in the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The controller itself or the keyboard (raises IRQ1).
    Keyboard,
    /// The auxiliary port (raises IRQ12).
    Aux,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OutByte {
    value: u8,
    source: Source,
    /// The device did not answer (sets the status timeout bit).
    timeout: bool,
}

/// What the next byte written to port 0x60 means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    /// A byte for the keyboard.
    Keyboard,
    /// The argument of a keyboard command (LEDs, typematic rate, scancode set).
    KeyboardArg(u8),
    /// The new controller command byte (0x60).
    CommandByte,
    /// The output port (0xd1).
    OutputPort,
    /// A byte to echo as keyboard data (0xd2).
    EchoKeyboard,
    /// A byte to echo as auxiliary data (0xd3).
    EchoAux,
    /// A byte for the auxiliary device (0xd4).
    AuxDevice,
}

/// The controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct I8042 {
    /// Controller command byte ("CTR").
    ctr: u8,
    out: VecDeque<OutByte>,
    pending: Pending,
    /// Last write went to the command port (status bit 3).
    last_was_command: bool,
    scancode_set: u8,
}

impl Default for I8042 {
    fn default() -> Self {
        Self::new()
    }
}

impl I8042 {
    /// The state firmware leaves: keyboard interrupt on, translation on, mouse port off.
    pub fn new() -> Self {
        Self {
            ctr: 0x40 | CTR_AUXDIS | CTR_KBDINT,
            out: VecDeque::new(),
            pending: Pending::Keyboard,
            last_was_command: false,
            scancode_set: 2,
        }
    }

    /// Reads port 0x60 or 0x64.
    pub fn read(&mut self, port: u16) -> u8 {
        if port == COMMAND_PORT {
            return self.status();
        }
        match self.out.pop_front() {
            Some(b) => b.value,
            // Reading an empty buffer returns the last byte on real hardware; 0 is as good
            // and deterministic.
            None => 0,
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_SYS | STATUS_UNLOCKED;
        if self.last_was_command {
            s |= STATUS_CMD;
        }
        if let Some(b) = self.out.front() {
            s |= STATUS_OBF;
            if b.source == Source::Aux {
                s |= STATUS_AUXDATA;
            }
            if b.timeout {
                s |= STATUS_TIMEOUT;
            }
        }
        s
    }

    /// Writes port 0x60 or 0x64. Returns true when the write pulses the CPU reset line.
    pub fn write(&mut self, port: u16, value: u8) -> bool {
        if port == COMMAND_PORT {
            self.last_was_command = true;
            return self.command(value);
        }
        self.last_was_command = false;
        let pending = std::mem::replace(&mut self.pending, Pending::Keyboard);
        match pending {
            Pending::Keyboard => self.keyboard_command(value),
            Pending::KeyboardArg(cmd) => {
                self.push(0xfa, Source::Keyboard, false);
                if cmd == 0xf0 {
                    match value {
                        0 => self.push(self.scancode_set, Source::Keyboard, false),
                        1..=3 => self.scancode_set = value,
                        _ => {}
                    }
                }
            }
            Pending::CommandByte => self.ctr = value,
            Pending::OutputPort => return value & 1 == 0,
            Pending::EchoKeyboard => self.push(value, Source::Keyboard, false),
            Pending::EchoAux => self.push(value, Source::Aux, false),
            // Nothing is plugged into the mouse port.
            Pending::AuxDevice => self.push(0xfe, Source::Aux, true),
        }
        false
    }

    fn command(&mut self, cmd: u8) -> bool {
        match cmd {
            0x20 => self.push(self.ctr, Source::Keyboard, false),
            0x60 => self.pending = Pending::CommandByte,
            0xa7 => self.ctr |= CTR_AUXDIS,
            0xa8 => self.ctr &= !CTR_AUXDIS,
            0xa9 | 0xab => self.push(0x00, Source::Keyboard, false), // interface tests pass
            0xaa => {
                // Self-test: passes, and (like real controllers) disables both ports.
                self.ctr |= CTR_KBDDIS | CTR_AUXDIS;
                self.push(0x55, Source::Keyboard, false);
            }
            0xad => self.ctr |= CTR_KBDDIS,
            0xae => self.ctr &= !CTR_KBDDIS,
            0xd0 => self.push(0x01 | 0x02, Source::Keyboard, false), // output port: no reset, A20 on
            0xd1 => self.pending = Pending::OutputPort,
            0xd2 => self.pending = Pending::EchoKeyboard,
            0xd3 => self.pending = Pending::EchoAux,
            0xd4 => self.pending = Pending::AuxDevice,
            // Pulse output lines for 6 µs: line 0 is the CPU reset.
            0xf0..=0xff => return cmd & 1 == 0,
            _ => {}
        }
        false
    }

    /// A byte sent to the keyboard: answer as a PS/2 keyboard does.
    fn keyboard_command(&mut self, cmd: u8) {
        let ack = |s: &mut Self| s.push(0xfa, Source::Keyboard, false);
        match cmd {
            0xff => {
                ack(self);
                self.scancode_set = 2;
                self.push(0xaa, Source::Keyboard, false); // basic assurance test passed
            }
            0xf2 => {
                ack(self);
                self.push(0xab, Source::Keyboard, false);
                self.push(0x83, Source::Keyboard, false);
            }
            0xee => self.push(0xee, Source::Keyboard, false),
            cmd if KEYBOARD_COMMANDS_WITH_ARGUMENT.contains(&cmd) => {
                ack(self);
                self.pending = Pending::KeyboardArg(cmd);
            }
            0xf4..=0xfd => ack(self),
            _ => self.push(0xfe, Source::Keyboard, false), // resend: unknown command
        }
    }

    fn push(&mut self, value: u8, source: Source, timeout: bool) {
        if self.out.len() < QUEUE_MAX {
            self.out.push_back(OutByte { value, source, timeout });
        }
    }

    /// Level of IRQ1 (keyboard data waiting and its interrupt enabled).
    pub fn kbd_irq(&self) -> bool {
        self.ctr & CTR_KBDINT != 0 && self.out.front().is_some_and(|b| b.source == Source::Keyboard)
    }

    /// Level of IRQ12.
    pub fn aux_irq(&self) -> bool {
        self.ctr & CTR_AUXINT != 0 && self.out.front().is_some_and(|b| b.source == Source::Aux)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(k: &mut I8042, c: u8) -> bool {
        k.write(COMMAND_PORT, c)
    }

    fn drain(k: &mut I8042) -> Vec<u8> {
        let mut v = Vec::new();
        while k.read(COMMAND_PORT) & STATUS_OBF != 0 {
            v.push(k.read(DATA_PORT));
        }
        v
    }

    #[test]
    fn self_test_and_command_byte() {
        let mut k = I8042::new();
        assert_eq!(k.read(COMMAND_PORT) & STATUS_OBF, 0);
        cmd(&mut k, 0xaa);
        assert_eq!(drain(&mut k), vec![0x55]);
        cmd(&mut k, 0x60);
        k.write(DATA_PORT, 0x47);
        cmd(&mut k, 0x20);
        assert_eq!(drain(&mut k), vec![0x47]);
    }

    #[test]
    fn keyboard_answers_identify_and_reset() {
        let mut k = I8042::new();
        k.write(DATA_PORT, 0xf2);
        assert!(k.kbd_irq());
        assert_eq!(drain(&mut k), vec![0xfa, 0xab, 0x83]);
        k.write(DATA_PORT, 0xff);
        assert_eq!(drain(&mut k), vec![0xfa, 0xaa]);
        k.write(DATA_PORT, 0xf0);
        k.write(DATA_PORT, 0x00);
        assert_eq!(drain(&mut k), vec![0xfa, 0xfa, 0x02]);
        k.write(DATA_PORT, 0xed);
        k.write(DATA_PORT, 0x07);
        assert_eq!(drain(&mut k), vec![0xfa, 0xfa]);
    }

    #[test]
    fn absent_mouse_times_out_and_loopback_works() {
        let mut k = I8042::new();
        cmd(&mut k, 0xd4);
        k.write(DATA_PORT, 0xf2);
        let s = k.read(COMMAND_PORT);
        assert_eq!(s & (STATUS_AUXDATA | STATUS_TIMEOUT | STATUS_OBF), STATUS_AUXDATA | STATUS_TIMEOUT | STATUS_OBF);
        assert_eq!(k.read(DATA_PORT), 0xfe);
        cmd(&mut k, 0xd3);
        k.write(DATA_PORT, 0x5a);
        assert_eq!(k.read(COMMAND_PORT) & STATUS_AUXDATA, STATUS_AUXDATA);
        assert!(!k.aux_irq(), "aux interrupt is off in the default command byte");
        assert_eq!(k.read(DATA_PORT), 0x5a);
    }

    #[test]
    fn reset_pulse() {
        let mut k = I8042::new();
        assert!(!cmd(&mut k, 0xff), "0xff pulses no line");
        assert!(cmd(&mut k, 0xfe));
        cmd(&mut k, 0xd1);
        assert!(k.write(DATA_PORT, 0x02));
        cmd(&mut k, 0xd1);
        assert!(!k.write(DATA_PORT, 0x03));
    }
}
