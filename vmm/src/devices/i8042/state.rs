//! The keyboard controller's saved state.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{OutByte, Pending, Source, I8042, KEYBOARD_COMMANDS_WITH_ARGUMENT, QUEUE_MAX};
use crate::persist::{in_range, max_len, StateError};

/// The i8042 and its keyboard as saved in checkpoints and snapshots.
///
/// Its bincode encoding is frozen (see [`crate::persist`]): any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct I8042State {
    /// Controller command byte.
    pub ctr: u8,
    /// Output bytes waiting for the guest, oldest first (at most 16).
    pub out: Vec<I8042OutByte>,
    /// What the next byte written to port 0x60 means.
    pub pending: I8042Pending,
    /// The last write went to the command port.
    pub last_was_command: bool,
    /// The keyboard's scancode set (1..=3).
    pub scancode_set: u8,
}

/// A byte in the output buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct I8042OutByte {
    /// The byte.
    pub value: u8,
    /// Which port it came from.
    pub source: I8042Source,
    /// The device did not answer.
    pub timeout: bool,
}

/// Where an output byte came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum I8042Source {
    /// The controller or the keyboard (IRQ1).
    Keyboard,
    /// The auxiliary port (IRQ12).
    Aux,
}

/// The meaning of the next data-port write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum I8042Pending {
    /// A keyboard command.
    Keyboard,
    /// The argument of this keyboard command (0xed, 0xf0 or 0xf3).
    KeyboardArg(u8),
    /// The controller command byte.
    CommandByte,
    /// The output port.
    OutputPort,
    /// A byte to echo as keyboard data.
    EchoKeyboard,
    /// A byte to echo as auxiliary data.
    EchoAux,
    /// A byte for the auxiliary device.
    AuxDevice,
}

impl I8042 {
    /// The state to save.
    pub fn state(&self) -> I8042State {
        I8042State {
            ctr: self.ctr,
            out: self
                .out
                .iter()
                .map(|b| I8042OutByte {
                    value: b.value,
                    source: match b.source {
                        Source::Keyboard => I8042Source::Keyboard,
                        Source::Aux => I8042Source::Aux,
                    },
                    timeout: b.timeout,
                })
                .collect(),
            pending: match self.pending {
                Pending::Keyboard => I8042Pending::Keyboard,
                Pending::KeyboardArg(cmd) => I8042Pending::KeyboardArg(cmd),
                Pending::CommandByte => I8042Pending::CommandByte,
                Pending::OutputPort => I8042Pending::OutputPort,
                Pending::EchoKeyboard => I8042Pending::EchoKeyboard,
                Pending::EchoAux => I8042Pending::EchoAux,
                Pending::AuxDevice => I8042Pending::AuxDevice,
            },
            last_was_command: self.last_was_command,
            scancode_set: self.scancode_set,
        }
    }

    /// A controller in `state`, refused if it could not be in it.
    pub fn from_state(state: &I8042State) -> Result<Self, StateError> {
        max_len("i8042 output buffer", state.out.len(), QUEUE_MAX)?;
        in_range("i8042 keyboard scancode set", state.scancode_set, 1, 3)?;
        let pending = match state.pending {
            I8042Pending::Keyboard => Pending::Keyboard,
            I8042Pending::KeyboardArg(cmd) if KEYBOARD_COMMANDS_WITH_ARGUMENT.contains(&cmd) => {
                Pending::KeyboardArg(cmd)
            }
            I8042Pending::KeyboardArg(_) => {
                return Err(StateError::Inconsistent {
                    what: "i8042 keyboard".into(),
                    reason: "waiting for the argument of a command that takes none",
                })
            }
            I8042Pending::CommandByte => Pending::CommandByte,
            I8042Pending::OutputPort => Pending::OutputPort,
            I8042Pending::EchoKeyboard => Pending::EchoKeyboard,
            I8042Pending::EchoAux => Pending::EchoAux,
            I8042Pending::AuxDevice => Pending::AuxDevice,
        };
        let mut out = VecDeque::with_capacity(state.out.len());
        out.extend(state.out.iter().map(|b| OutByte {
            value: b.value,
            source: match b.source {
                I8042Source::Keyboard => Source::Keyboard,
                I8042Source::Aux => Source::Aux,
            },
            timeout: b.timeout,
        }));
        Ok(I8042 {
            ctr: state.ctr,
            out,
            pending,
            last_was_command: state.last_was_command,
            scancode_set: state.scancode_set,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{COMMAND_PORT, DATA_PORT};
    use super::*;

    fn busy_controller() -> I8042 {
        let mut k = I8042::new();
        k.write(DATA_PORT, 0xf2);
        k.write(COMMAND_PORT, 0xd4);
        k.write(DATA_PORT, 0xf4);
        k.write(DATA_PORT, 0xf0);
        k
    }

    #[test]
    fn state_round_trips_and_behaves_the_same() {
        let mut k = busy_controller();
        let state = k.state();
        assert_eq!(state.pending, I8042Pending::KeyboardArg(0xf0));
        assert_eq!(state.out.len(), 5);
        let mut back = I8042::from_state(&state).unwrap();
        assert_eq!(back, k);
        for dev in [&mut k, &mut back] {
            dev.write(DATA_PORT, 0x00);
        }
        let drain = |d: &mut I8042| (0..8).map(|_| (d.read(COMMAND_PORT), d.read(DATA_PORT))).collect::<Vec<_>>();
        assert_eq!(drain(&mut back), drain(&mut k));
    }

    #[test]
    fn impossible_controllers_are_refused() {
        let good = busy_controller().state();
        let refuse = |change: fn(&mut I8042State), expected: &str| {
            let mut s = good.clone();
            change(&mut s);
            let err = I8042::from_state(&s).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        refuse(
            |s| s.out = vec![I8042OutByte { value: 0, source: I8042Source::Aux, timeout: false }; 17],
            "i8042 output buffer holds 17 entries",
        );
        refuse(|s| s.scancode_set = 0, "i8042 keyboard scancode set is 0");
        refuse(|s| s.pending = I8042Pending::KeyboardArg(0xf2), "a command that takes none");
    }
}
