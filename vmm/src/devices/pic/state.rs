//! The 8259A pair's saved state.

use serde::{Deserialize, Serialize};

use super::{Chip, InitState, Pic};
use crate::persist::{in_range, no_bits_outside, StateError};

/// ELCR bits the PIIX lets software set, per chip: IRQ0, 1, 2, 8 and 13 are always edge.
const MASTER_ELCR_MASK: u8 = 0xf8;
const SLAVE_ELCR_MASK: u8 = 0xde;

/// The 8259A pair as saved in checkpoints and snapshots.
///
/// Its bincode encoding is frozen (see [`crate::persist`]): any change is a new version
/// type plus a conversion, never an edit of this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PicState {
    /// The master (IRQ0..7, ports 0x20/0x21).
    pub master: PicChipState,
    /// The slave (IRQ8..15, ports 0xa0/0xa1), cascaded on the master's IR2.
    pub slave: PicChipState,
}

/// One 8259A. The fields are the datasheet's registers and mode bits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PicChipState {
    /// Whether this is the master.
    pub is_master: bool,
    /// Levels of the eight input lines.
    pub lines: u8,
    /// Interrupt request register.
    pub irr: u8,
    /// In-service register.
    pub isr: u8,
    /// Interrupt mask register.
    pub imr: u8,
    /// Edge/level control register.
    pub elcr: u8,
    /// ELCR bits that are writable (fixed per chip).
    pub elcr_mask: u8,
    /// ICW1.LTIM: every line level-triggered.
    pub level_all: bool,
    /// Vector of IR0 (a multiple of 8).
    pub vector_base: u8,
    /// Where the chip is in its initialisation sequence.
    pub init: PicInitStep,
    /// ICW1.IC4.
    pub expect_icw4: bool,
    /// ICW1.SNGL.
    pub single: bool,
    /// ICW3 as written.
    pub icw3: u8,
    /// ICW4.µPM as written.
    pub x86_mode: bool,
    /// ICW4.AEOI.
    pub auto_eoi: bool,
    /// OCW2 rotate in automatic EOI mode.
    pub rotate_on_auto_eoi: bool,
    /// ICW4.SFNM.
    pub special_fully_nested: bool,
    /// OCW3 special mask mode.
    pub special_mask: bool,
    /// OCW3: the command port reads ISR (else IRR).
    pub read_isr: bool,
    /// OCW3 poll command armed.
    pub poll: bool,
    /// The IR line with the highest priority (0..=7).
    pub highest_priority_line: u8,
}

/// The next initialisation word a chip expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PicInitStep {
    /// Initialised: data-port writes set the mask.
    Ready,
    /// ICW2 (vector base) next.
    Icw2,
    /// ICW3 (cascade wiring) next.
    Icw3,
    /// ICW4 (mode) next.
    Icw4,
}

impl Pic {
    /// The state to save.
    pub fn state(&self) -> PicState {
        PicState { master: self.master.state(), slave: self.slave.state() }
    }

    /// A PIC pair in `state`, refused if no 8259A pair wired as on a PC could be in it.
    pub fn from_state(state: &PicState) -> Result<Self, StateError> {
        Ok(Pic { master: Chip::from_state(&state.master, true)?, slave: Chip::from_state(&state.slave, false)? })
    }
}

impl Chip {
    fn state(&self) -> PicChipState {
        PicChipState {
            is_master: self.is_master,
            lines: self.lines,
            irr: self.irr,
            isr: self.isr,
            imr: self.imr,
            elcr: self.elcr,
            elcr_mask: self.elcr_mask,
            level_all: self.level_all,
            vector_base: self.vector_base,
            init: match self.init {
                InitState::Ready => PicInitStep::Ready,
                InitState::Icw2 => PicInitStep::Icw2,
                InitState::Icw3 => PicInitStep::Icw3,
                InitState::Icw4 => PicInitStep::Icw4,
            },
            expect_icw4: self.expect_icw4,
            single: self.single,
            icw3: self.icw3,
            x86_mode: self.x86_mode,
            auto_eoi: self.auto_eoi,
            rotate_on_auto_eoi: self.rotate_on_auto_eoi,
            special_fully_nested: self.special_fully_nested,
            special_mask: self.special_mask,
            read_isr: self.read_isr,
            poll: self.poll,
            highest_priority_line: self.highest_priority_line,
        }
    }

    fn from_state(s: &PicChipState, is_master: bool) -> Result<Self, StateError> {
        let name = if is_master { "PIC master" } else { "PIC slave" };
        if s.is_master != is_master {
            return Err(StateError::Inconsistent { what: name.into(), reason: "saved as the other chip of the pair" });
        }
        let elcr_mask = if is_master { MASTER_ELCR_MASK } else { SLAVE_ELCR_MASK };
        if s.elcr_mask != elcr_mask {
            return Err(StateError::Inconsistent {
                what: format!("{name} ELCR"),
                reason: "its writable bits differ from the PIIX's",
            });
        }
        no_bits_outside(&format!("{name} ELCR"), s.elcr, u64::from(elcr_mask))?;
        no_bits_outside(&format!("{name} vector base"), s.vector_base, 0xf8)?;
        in_range(&format!("{name} highest-priority line"), s.highest_priority_line, 0, 7)?;
        let level_lines = if s.level_all { 0xff } else { s.elcr };
        if (s.irr ^ s.lines) & level_lines != 0 {
            // A level-triggered line requests exactly while it is high.
            return Err(StateError::Inconsistent {
                what: format!("{name} IRR"),
                reason: "a level-triggered line's request differs from its level",
            });
        }
        Ok(Chip {
            is_master,
            lines: s.lines,
            irr: s.irr,
            isr: s.isr,
            imr: s.imr,
            elcr: s.elcr,
            elcr_mask,
            level_all: s.level_all,
            vector_base: s.vector_base,
            init: match s.init {
                PicInitStep::Ready => InitState::Ready,
                PicInitStep::Icw2 => InitState::Icw2,
                PicInitStep::Icw3 => InitState::Icw3,
                PicInitStep::Icw4 => InitState::Icw4,
            },
            expect_icw4: s.expect_icw4,
            single: s.single,
            icw3: s.icw3,
            x86_mode: s.x86_mode,
            auto_eoi: s.auto_eoi,
            rotate_on_auto_eoi: s.rotate_on_auto_eoi,
            special_fully_nested: s.special_fully_nested,
            special_mask: s.special_mask,
            read_isr: s.read_isr,
            poll: s.poll,
            highest_priority_line: s.highest_priority_line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy_pic() -> Pic {
        let mut pic = Pic::new();
        for (port, value) in [(0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0xa0, 0x19), (0xa1, 0x28)] {
            pic.write(port, value);
        }
        pic.write(0x4d0, 0x20);
        pic.set_irq_level(5, true);
        pic.set_irq_level(3, true);
        pic.acknowledge();
        pic.write(0x20, 0xc4);
        pic
    }

    #[test]
    fn state_round_trips_and_behaves_the_same() {
        let mut pic = busy_pic();
        let state = pic.state();
        assert_eq!(state.slave.init, PicInitStep::Icw3, "slave left mid-initialisation");
        let mut back = Pic::from_state(&state).unwrap();
        assert_eq!(back, pic);
        assert_eq!(back.acknowledge(), pic.acknowledge());
        assert_eq!(back.state(), pic.state());
    }

    #[test]
    fn impossible_chips_are_refused() {
        let good = busy_pic().state();
        let refuse = |change: fn(&mut PicState), expected: &str| {
            let mut s = good.clone();
            change(&mut s);
            let err = Pic::from_state(&s).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        refuse(|s| s.master.vector_base = 0x21, "PIC master vector base is 0x21");
        refuse(|s| s.slave.highest_priority_line = 8, "PIC slave highest-priority line is 8");
        refuse(|s| s.slave.elcr = 0x01, "PIC slave ELCR is 0x1");
        refuse(|s| s.master.elcr_mask = 0xff, "writable bits differ");
        refuse(|s| std::mem::swap(&mut s.master, &mut s.slave), "saved as the other chip");
        refuse(|s| s.master.irr &= !0x20, "level-triggered line's request differs");
    }
}
