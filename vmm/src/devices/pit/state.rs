//! The 8254's saved state.

use serde::{Deserialize, Serialize};

use super::{Access, Channel, Counter, CounterState, Irq0Accounting, LatchedCount, Pit, StagedReload};
use crate::persist::{in_range, no_bits_outside, StateError};

/// Largest count a channel holds: a written 0 means 65536.
const MAX_COUNT: u32 = 0x1_0000;

/// The 8254 and port 0x61 as saved in checkpoints and snapshots.
///
/// Its bincode encoding is frozen (see [`crate::persist`]): any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitState {
    /// Channels 0 (IRQ0), 1 and 2 (speaker, gated by port 0x61).
    pub channels: [PitChannelState; 3],
    /// Port 0x61 bits 0..=3 as last written.
    pub port61: u8,
    /// IRQ0 edges counted and reported.
    pub irq0: PitIrq0State,
}

/// One counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitChannelState {
    /// Counter mode, 0..=5.
    pub mode: u8,
    /// Which count bytes a data-port access moves.
    pub access: PitAccess,
    /// BCD bit of the control word (stored, not used for counting).
    pub bcd: bool,
    /// The last complete count written (1..=65536).
    pub count_register: u32,
    /// Word access: the low byte written, waiting for the high byte.
    pub low_byte_written: Option<u8>,
    /// Word access without a latch: the next read returns the high byte.
    pub read_high_next: bool,
    /// A count latched by a latch or read-back command.
    pub latched_count: Option<PitLatchedCount>,
    /// A status byte latched by a read-back command.
    pub latched_status: Option<u8>,
    /// Status bit 6: a count was written but not loaded.
    pub null_count: bool,
    /// The gate input (always high on channels 0 and 1).
    pub gate: bool,
    /// Whether and how the counting element runs.
    pub counter: PitCounterState,
}

/// The RW field of a control word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PitAccess {
    /// Low byte only.
    LowByte,
    /// High byte only.
    HighByte,
    /// Low byte then high byte.
    Word,
}

/// A latched count being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitLatchedCount {
    /// The latched value.
    pub value: u16,
    /// Word access: the low byte has been read.
    pub high_next: bool,
}

/// A channel's counting element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PitCounterState {
    /// No count since the control word.
    Unloaded,
    /// Modes 1 and 5: count written, waiting for a rising gate.
    AwaitingTrigger,
    /// Counting.
    Counting(PitCountingState),
}

/// A loaded counting element. Ticks are effective ticks: counted while the gate allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitCountingState {
    /// Count the current cycle started from (1..=65536).
    pub reload: u32,
    /// Virtual time the current stretch of counting started.
    pub anchor_ns: u64,
    /// Ticks counted before `anchor_ns`.
    pub ticks_at_anchor: u64,
    /// Whether ticks accrue after `anchor_ns`.
    pub running: bool,
    /// Tick at which `reload` was loaded.
    pub cycle_start: u64,
    /// A count that takes over at a period boundary (modes 2 and 3).
    pub staged: Option<PitStagedReload>,
}

/// A count waiting for the end of the current period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitStagedReload {
    /// The new count (1..=65536).
    pub reload: u32,
    /// Tick at which it replaces the current count.
    pub at_tick: u64,
}

/// Channel 0's edges on their way to IRQ0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitIrq0State {
    /// Time of the last poll.
    pub polled_ns: u64,
    /// Edges up to this time are in `pending` (never before `polled_ns`).
    pub counted_ns: u64,
    /// Edges counted but not yet reported.
    pub pending: u64,
    /// Time of the first pending edge.
    pub first_pending_ns: u64,
}

impl Pit {
    /// The state to save.
    pub fn state(&self) -> PitState {
        let irq0 = &self.irq0;
        PitState {
            channels: [self.channels[0].state(), self.channels[1].state(), self.channels[2].state()],
            port61: self.port61,
            irq0: PitIrq0State {
                polled_ns: irq0.polled_ns,
                counted_ns: irq0.counted_ns,
                pending: irq0.pending,
                first_pending_ns: irq0.first_pending_ns,
            },
        }
    }

    /// A PIT in `state`, refused if no 8254 could be in it.
    pub fn from_state(state: &PitState) -> Result<Self, StateError> {
        let [c0, c1, c2] = &state.channels;
        no_bits_outside("PIT port 0x61", state.port61, 0x0f)?;
        let irq0 = &state.irq0;
        if irq0.counted_ns < irq0.polled_ns {
            return Err(StateError::Inconsistent {
                what: "PIT IRQ0 accounting".into(),
                reason: "edges counted up to a time before the last poll",
            });
        }
        Ok(Pit {
            channels: [Channel::from_state(c0, 0)?, Channel::from_state(c1, 1)?, Channel::from_state(c2, 2)?],
            port61: state.port61,
            irq0: Irq0Accounting {
                polled_ns: irq0.polled_ns,
                counted_ns: irq0.counted_ns,
                pending: irq0.pending,
                first_pending_ns: irq0.first_pending_ns,
            },
        })
    }
}

impl Channel {
    fn state(&self) -> PitChannelState {
        PitChannelState {
            mode: self.mode,
            access: match self.access {
                Access::LowByte => PitAccess::LowByte,
                Access::HighByte => PitAccess::HighByte,
                Access::Word => PitAccess::Word,
            },
            bcd: self.bcd,
            count_register: self.count_register,
            low_byte_written: self.low_byte_written,
            read_high_next: self.read_high_next,
            latched_count: self.latched_count.map(|l| PitLatchedCount { value: l.value, high_next: l.high_next }),
            latched_status: self.latched_status,
            null_count: self.null_count,
            gate: self.gate,
            counter: match self.state {
                CounterState::Unloaded => PitCounterState::Unloaded,
                CounterState::AwaitingTrigger => PitCounterState::AwaitingTrigger,
                CounterState::Counting(c) => PitCounterState::Counting(PitCountingState {
                    reload: c.reload,
                    anchor_ns: c.anchor_ns,
                    ticks_at_anchor: c.ticks_at_anchor,
                    running: c.running,
                    cycle_start: c.cycle_start,
                    staged: c.staged.map(|s| PitStagedReload { reload: s.reload, at_tick: s.at_tick }),
                }),
            },
        }
    }

    fn from_state(s: &PitChannelState, index: usize) -> Result<Self, StateError> {
        let name = format!("PIT channel {index}");
        in_range(&format!("{name} mode"), s.mode, 0, 5)?;
        in_range(&format!("{name} count register"), s.count_register, 1, MAX_COUNT)?;
        if index != 2 && !s.gate {
            return Err(StateError::Inconsistent {
                what: name,
                reason: "gate low, but only channel 2 has a gate input",
            });
        }
        let state = match s.counter {
            PitCounterState::Unloaded => CounterState::Unloaded,
            PitCounterState::AwaitingTrigger if matches!(s.mode, 1 | 5) => CounterState::AwaitingTrigger,
            PitCounterState::AwaitingTrigger => {
                return Err(StateError::Inconsistent {
                    what: name,
                    reason: "waiting for a gate trigger outside the triggered modes 1 and 5",
                })
            }
            PitCounterState::Counting(c) => {
                in_range(&format!("{name} reload value"), c.reload, 1, MAX_COUNT)?;
                if let Some(staged) = c.staged {
                    in_range(&format!("{name} staged reload value"), staged.reload, 1, MAX_COUNT)?;
                }
                CounterState::Counting(Counter {
                    reload: c.reload,
                    anchor_ns: c.anchor_ns,
                    ticks_at_anchor: c.ticks_at_anchor,
                    running: c.running,
                    cycle_start: c.cycle_start,
                    staged: c.staged.map(|s| StagedReload { reload: s.reload, at_tick: s.at_tick }),
                })
            }
        };
        Ok(Channel {
            mode: s.mode,
            access: match s.access {
                PitAccess::LowByte => Access::LowByte,
                PitAccess::HighByte => Access::HighByte,
                PitAccess::Word => Access::Word,
            },
            bcd: s.bcd,
            count_register: s.count_register,
            low_byte_written: s.low_byte_written,
            read_high_next: s.read_high_next,
            latched_count: s.latched_count.map(|l| LatchedCount { value: l.value, high_next: l.high_next }),
            latched_status: s.latched_status,
            null_count: s.null_count,
            gate: s.gate,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CHANNEL0_PORT, CHANNEL1_PORT, CHANNEL2_PORT, COMMAND_PORT};
    use super::*;

    /// Every kind of counter state: a staged reload on channel 0, a one-shot awaiting its
    /// trigger on channel 1, channel 2 stopped by its gate with its status latched.
    fn busy_pit() -> Pit {
        let mut pit = Pit::new();
        pit.write(COMMAND_PORT, 0x34, 0);
        pit.write(CHANNEL0_PORT, 0xa9, 0);
        pit.write(CHANNEL0_PORT, 0x04, 0);
        pit.write(CHANNEL0_PORT, 0x00, 1_500_000);
        pit.write(CHANNEL0_PORT, 0x02, 1_500_000);
        pit.write(COMMAND_PORT, 0x72, 0);
        pit.write(CHANNEL1_PORT, 0x10, 0);
        pit.write(CHANNEL1_PORT, 0x00, 0);
        pit.write_port61(0x01, 0);
        pit.write(COMMAND_PORT, 0xb0, 0);
        pit.write(CHANNEL2_PORT, 0xff, 0);
        pit.write(CHANNEL2_PORT, 0xff, 0);
        pit.write_port61(0x00, 300_000);
        pit.write(COMMAND_PORT, 0xe8, 400_000);
        pit
    }

    #[test]
    fn state_round_trips_and_behaves_the_same() {
        let mut pit = busy_pit();
        let state = pit.state();
        assert!(matches!(state.channels[0].counter, PitCounterState::Counting(c) if c.staged.is_some()));
        assert_eq!(state.channels[1].counter, PitCounterState::AwaitingTrigger);
        assert!(matches!(state.channels[2].counter, PitCounterState::Counting(c) if !c.running));
        let mut back = Pit::from_state(&state).unwrap();
        assert_eq!(back, pit);
        for now in [2_000_000, 5_000_000] {
            assert_eq!(back.poll_irq0(now), pit.poll_irq0(now));
            assert_eq!(back.next_irq0_deadline(), pit.next_irq0_deadline());
            assert_eq!(back.read(CHANNEL2_PORT, now), pit.read(CHANNEL2_PORT, now));
        }
    }

    #[test]
    fn impossible_counters_are_refused() {
        let good = busy_pit().state();
        let refuse = |change: fn(&mut PitState), expected: &str| {
            let mut s = good.clone();
            change(&mut s);
            let err = Pit::from_state(&s).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        refuse(|s| s.channels[1].mode = 6, "PIT channel 1 mode is 6, outside 0..=5");
        refuse(|s| s.channels[0].count_register = 0, "PIT channel 0 count register is 0");
        refuse(|s| s.channels[2].count_register = 0x1_0001, "PIT channel 2 count register is 65537");
        refuse(|s| s.channels[0].gate = false, "only channel 2 has a gate");
        refuse(|s| s.channels[1].mode = 2, "waiting for a gate trigger outside");
        refuse(
            |s| {
                if let PitCounterState::Counting(c) = &mut s.channels[0].counter {
                    c.staged = Some(PitStagedReload { reload: 0x2_0000, at_tick: 5 });
                }
            },
            "staged reload value is 131072",
        );
        refuse(|s| s.port61 = 0x1f, "PIT port 0x61 is 0x1f");
        refuse(|s| s.irq0.polled_ns = s.irq0.counted_ns + 1, "before the last poll");
    }
}
