//! Intel 8259A programmable interrupt controller pair, wired as on the PC: the slave's INT
//! output drives the master's IR2, master ports 0x20/0x21, slave ports 0xa0/0xa1, and the
//! PIIX-style edge/level control registers (ELCR) at 0x4d0/0x4d1.
//!
//! The model follows the datasheet closely enough for Linux and simple kernels, with these
//! deliberate choices (all deterministic):
//!
//! * **Power-on state** is what a PC BIOS leaves behind, because ttvm boots kernels directly
//!   with no BIOS: master vectors 0x08..0x0f, slave 0x70..0x77, cascade on IR2, 8086 mode,
//!   and every line masked (IMR = 0xff) so nothing is delivered before the guest programs
//!   the controller. ICW1 resets this as the datasheet says (IMR cleared, and so on).
//! * **Edge-triggered requests are latched**: a rising edge sets the IRR bit and it stays set
//!   until acknowledged, even if the line falls first. (A real 8259 needs the line held until
//!   INTA and otherwise yields IR7.) This lets the board deliver a timer edge as a quick
//!   high/low pulse. A line held high does not request again until it has gone low.
//! * **Level-triggered lines** (ELCR bit set, or ICW1.LTIM for the whole chip) have IRR follow
//!   the line; acknowledging does not clear IRR, so a still-high line requests again after EOI.
//! * Only 8086 mode is modelled: ICW4's µPM bit is recorded but vectors are always 8086-style.
//!   Buffered mode and the slave-identification bits of ICW3 are accepted and ignored.
//! * IRQ2 is the cascade input and cannot be driven from outside: [`Pic::set_irq_level`]
//!   ignores line 2 (on PCs, ISA "IRQ2" is wired to IRQ9).

mod state;

pub use state::{PicChipState, PicInitStep, PicState};

/// Master command port (ICW1, OCW2, OCW3; reads IRR/ISR).
pub const MASTER_COMMAND: u16 = 0x20;
/// Master data port (ICW2..ICW4, OCW1/IMR).
pub const MASTER_DATA: u16 = 0x21;
/// Slave command port.
pub const SLAVE_COMMAND: u16 = 0xa0;
/// Slave data port.
pub const SLAVE_DATA: u16 = 0xa1;
/// Edge/level control register for IRQ0..7.
pub const ELCR_MASTER: u16 = 0x4d0;
/// Edge/level control register for IRQ8..15.
pub const ELCR_SLAVE: u16 = 0x4d1;

/// The master input the slave's INT output is wired to.
const CASCADE_LINE: u8 = 2;
/// Priority value meaning "no request / nothing in service" (real priorities are 0..=7).
const NO_PRIORITY: u8 = 8;

/// Where a chip is in its ICW1..ICW4 initialisation sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InitState {
    /// Initialised; data-port writes are OCW1 (the mask).
    Ready,
    /// ICW1 seen; next data-port write is ICW2 (vector base).
    Icw2,
    /// Next data-port write is ICW3 (cascade wiring).
    Icw3,
    /// Next data-port write is ICW4 (mode bits).
    Icw4,
}

/// One 8259A.
#[derive(Clone, Debug, PartialEq)]
struct Chip {
    /// Whether this is the master (special fully nested mode treats its cascade input specially).
    is_master: bool,
    /// Current physical level of the eight input lines (not reset by ICW1: it is wire state).
    lines: u8,
    /// Interrupt request register.
    irr: u8,
    /// In-service register.
    isr: u8,
    /// Interrupt mask register (OCW1).
    imr: u8,
    /// ELCR: a set bit makes that line level-triggered.
    elcr: u8,
    /// Bits of `elcr` that are writable (the PIIX hard-wires IRQ0, 1, 2, 8 and 13 to edge).
    elcr_mask: u8,
    /// ICW1.LTIM: every line level-triggered.
    level_all: bool,
    /// Vector of IR0 (ICW2 with the low three bits clear).
    vector_base: u8,
    init: InitState,
    /// ICW1.IC4: an ICW4 follows.
    expect_icw4: bool,
    /// ICW1.SNGL: no cascade, so ICW3 is skipped.
    single: bool,
    /// ICW3 as written (cascade wiring); recorded only.
    icw3: u8,
    /// ICW4.µPM as written; recorded only (vectors are always 8086-style).
    x86_mode: bool,
    /// ICW4.AEOI: the acknowledge cycle does not set ISR.
    auto_eoi: bool,
    /// OCW2 "rotate in automatic EOI mode".
    rotate_on_auto_eoi: bool,
    /// ICW4.SFNM (meaningful on the master): the cascade's in-service bit does not block it.
    special_fully_nested: bool,
    /// OCW3 special mask mode: masked in-service levels do not block lower priorities.
    special_mask: bool,
    /// OCW3 RR/RIS: the command port reads ISR (true) or IRR (false).
    read_isr: bool,
    /// OCW3 poll command: the next read of this chip is a poll (acknowledge) byte.
    poll: bool,
    /// The IR line with the highest priority (0 after init; changed by rotation).
    highest_priority_line: u8,
}

impl Chip {
    fn new(is_master: bool) -> Self {
        Chip {
            is_master,
            lines: 0,
            irr: 0,
            isr: 0,
            imr: 0xff,
            elcr: 0,
            elcr_mask: if is_master { 0xf8 } else { 0xde },
            level_all: false,
            vector_base: if is_master { 0x08 } else { 0x70 },
            init: InitState::Ready,
            expect_icw4: true,
            single: false,
            icw3: if is_master { 1 << CASCADE_LINE } else { CASCADE_LINE },
            x86_mode: true,
            auto_eoi: false,
            rotate_on_auto_eoi: false,
            special_fully_nested: false,
            special_mask: false,
            read_isr: false,
            poll: false,
            highest_priority_line: 0,
        }
    }

    fn is_level(&self, line: u8) -> bool {
        self.level_all || self.elcr & (1 << line) != 0
    }

    /// Mask of level-triggered lines.
    fn level_lines(&self) -> u8 {
        if self.level_all {
            0xff
        } else {
            self.elcr
        }
    }

    fn set_line(&mut self, line: u8, level: bool) {
        let mask = 1u8 << (line & 7);
        let was_high = self.lines & mask != 0;
        if level {
            self.lines |= mask;
        } else {
            self.lines &= !mask;
        }
        if self.is_level(line & 7) {
            if level {
                self.irr |= mask;
            } else {
                self.irr &= !mask;
            }
        } else if level && !was_high {
            self.irr |= mask;
        }
    }

    /// Priority rank (0 = highest) of the best line in `mask`, or [`NO_PRIORITY`].
    fn best_priority(&self, mask: u8) -> u8 {
        (0..8u8).find(|rank| mask & (1 << ((rank + self.highest_priority_line) & 7)) != 0).unwrap_or(NO_PRIORITY)
    }

    fn line_of_rank(&self, rank: u8) -> u8 {
        (rank + self.highest_priority_line) & 7
    }

    /// The line this chip asks the CPU (or master) to service, if its INT output is asserted.
    fn pending_line(&self) -> Option<u8> {
        let request = self.best_priority(self.irr & !self.imr);
        if request == NO_PRIORITY {
            return None;
        }
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if self.special_fully_nested && self.is_master {
            in_service &= !(1 << CASCADE_LINE);
        }
        (request < self.best_priority(in_service)).then(|| self.line_of_rank(request))
    }

    /// The acknowledge half of an INTA cycle (or poll) for `line`.
    fn acknowledge(&mut self, line: u8) {
        let mask = 1u8 << line;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.highest_priority_line = (line + 1) & 7;
            }
        } else {
            self.isr |= mask;
        }
        if !self.is_level(line) {
            self.irr &= !mask;
        }
    }

    /// ICW1: restart initialisation.
    fn start_init(&mut self, icw1: u8) {
        self.expect_icw4 = icw1 & 0x01 != 0;
        self.single = icw1 & 0x02 != 0;
        self.level_all = icw1 & 0x08 != 0;
        self.init = InitState::Icw2;
        self.imr = 0;
        self.isr = 0;
        // The edge-sense latches are reset: edge requests are dropped and a line that is
        // high now must go low and high again. Level lines keep requesting.
        self.irr = self.lines & self.level_lines();
        self.highest_priority_line = 0;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        if !self.expect_icw4 {
            self.auto_eoi = false;
            self.special_fully_nested = false;
            self.x86_mode = false;
        }
        self.rotate_on_auto_eoi = false;
    }

    fn write_command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            self.start_init(value);
        } else if value & 0x08 != 0 {
            self.write_ocw3(value);
        } else {
            self.write_ocw2(value);
        }
    }

    fn write_ocw2(&mut self, value: u8) {
        let level = value & 7;
        match value >> 5 {
            // Clear / set "rotate in automatic EOI mode".
            0b000 => self.rotate_on_auto_eoi = false,
            0b100 => self.rotate_on_auto_eoi = true,
            // Non-specific EOI, optionally rotating.
            0b001 | 0b101 => {
                let rank = self.best_priority(self.isr);
                if rank != NO_PRIORITY {
                    let line = self.line_of_rank(rank);
                    self.isr &= !(1 << line);
                    if value >> 5 == 0b101 {
                        self.highest_priority_line = (line + 1) & 7;
                    }
                }
            }
            // Specific EOI.
            0b011 => self.isr &= !(1 << level),
            // Rotate on specific EOI.
            0b111 => {
                self.isr &= !(1 << level);
                self.highest_priority_line = (level + 1) & 7;
            }
            // Set priority: `level` becomes the lowest.
            0b110 => self.highest_priority_line = (level + 1) & 7,
            // 0b010: no operation.
            _ => {}
        }
    }

    fn write_ocw3(&mut self, value: u8) {
        if value & 0x40 != 0 {
            self.special_mask = value & 0x20 != 0;
        }
        if value & 0x04 != 0 {
            self.poll = true;
        }
        if value & 0x02 != 0 {
            self.read_isr = value & 0x01 != 0;
        }
    }

    fn write_data(&mut self, value: u8) {
        match self.init {
            InitState::Ready => self.imr = value,
            InitState::Icw2 => {
                self.vector_base = value & 0xf8;
                self.init = if !self.single {
                    InitState::Icw3
                } else if self.expect_icw4 {
                    InitState::Icw4
                } else {
                    InitState::Ready
                };
            }
            InitState::Icw3 => {
                self.icw3 = value;
                self.init = if self.expect_icw4 { InitState::Icw4 } else { InitState::Ready };
            }
            InitState::Icw4 => {
                self.x86_mode = value & 0x01 != 0;
                self.auto_eoi = value & 0x02 != 0;
                self.special_fully_nested = value & 0x10 != 0;
                self.init = InitState::Ready;
            }
        }
    }

    /// A read while poll mode is armed: acknowledges the best request and reports it.
    fn poll_read(&mut self) -> u8 {
        self.poll = false;
        match self.pending_line() {
            Some(line) => {
                self.acknowledge(line);
                0x80 | line
            }
            None => 0,
        }
    }

    fn read_command(&mut self) -> u8 {
        if self.poll {
            return self.poll_read();
        }
        if self.read_isr {
            self.isr
        } else {
            self.irr
        }
    }

    fn read_data(&mut self) -> u8 {
        if self.poll {
            return self.poll_read();
        }
        self.imr
    }

    fn write_elcr(&mut self, value: u8) {
        self.elcr = value & self.elcr_mask;
        // Lines that are now level-triggered request exactly while high.
        let level = self.level_lines();
        self.irr = (self.irr & !level) | (self.lines & level);
    }
}

/// The PC's master/slave 8259A pair plus ELCR.
#[derive(Clone, Debug, PartialEq)]
pub struct Pic {
    master: Chip,
    slave: Chip,
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    /// Power-on state: initialised as a PC BIOS would (vectors 0x08/0x70), all lines masked.
    pub fn new() -> Self {
        Pic { master: Chip::new(true), slave: Chip::new(false) }
    }

    /// Guest read of one of the PIC's ports; unknown ports read 0xff.
    pub fn read(&mut self, port: u16) -> u8 {
        let value = match port {
            MASTER_COMMAND => self.master.read_command(),
            MASTER_DATA => self.master.read_data(),
            SLAVE_COMMAND => self.slave.read_command(),
            SLAVE_DATA => self.slave.read_data(),
            ELCR_MASTER => self.master.elcr,
            ELCR_SLAVE => self.slave.elcr,
            _ => 0xff,
        };
        // A poll read acknowledges, which may change the slave's output.
        self.update_cascade();
        value
    }

    /// Guest write to one of the PIC's ports; unknown ports are ignored.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            MASTER_COMMAND => self.master.write_command(value),
            MASTER_DATA => self.master.write_data(value),
            SLAVE_COMMAND => self.slave.write_command(value),
            SLAVE_DATA => self.slave.write_data(value),
            ELCR_MASTER => self.master.write_elcr(value),
            ELCR_SLAVE => self.slave.write_elcr(value),
            _ => return,
        }
        self.update_cascade();
    }

    /// Drive IRQ line `irq` (0..=15) to `level`. Edge-triggered lines (the default; ELCR bit
    /// clear) latch IRR on a rising edge; level-triggered lines (ELCR bit set) follow the
    /// level. Line 2 is the cascade input and lines above 15 do not exist: both are ignored.
    pub fn set_irq_level(&mut self, irq: u8, level: bool) {
        match irq {
            CASCADE_LINE => return,
            0..=7 => self.master.set_line(irq, level),
            8..=15 => self.slave.set_line(irq - 8, level),
            _ => return,
        }
        self.update_cascade();
    }

    /// True when the master's INT output is asserted (an unmasked request that is not blocked
    /// by an in-service interrupt of equal/higher priority), i.e. the CPU should take an
    /// interrupt.
    pub fn has_interrupt(&self) -> bool {
        self.master.pending_line().is_some()
    }

    /// The INTA cycle: returns the vector the CPU receives and updates IRR/ISR (auto-EOI
    /// honoured). When nothing is pending returns the spurious vector (IRQ7 of the master /
    /// IRQ15 via slave) as real hardware does.
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.master.pending_line() {
            Some(CASCADE_LINE) => {
                let vector = match self.slave.pending_line() {
                    Some(line) => {
                        self.slave.acknowledge(line);
                        self.slave.vector_base | line
                    }
                    // The slave dropped its request: it answers with its IR7 vector.
                    None => self.slave.vector_base | 7,
                };
                self.master.acknowledge(CASCADE_LINE);
                vector
            }
            Some(line) => {
                self.master.acknowledge(line);
                self.master.vector_base | line
            }
            None => self.master.vector_base | 7,
        };
        self.update_cascade();
        vector
    }

    /// Propagate the slave's INT output to the master's IR2.
    fn update_cascade(&mut self) {
        let slave_int = self.slave.pending_line().is_some();
        self.master.set_line(CASCADE_LINE, slave_int);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence Linux (and most hobby kernels) use, remapping to 0x20/0x28.
    fn linux_init() -> Pic {
        let mut pic = Pic::new();
        pic.write(0x20, 0x11);
        pic.write(0x21, 0x20);
        pic.write(0x21, 0x04);
        pic.write(0x21, 0x01);
        pic.write(0xa0, 0x11);
        pic.write(0xa1, 0x28);
        pic.write(0xa1, 0x02);
        pic.write(0xa1, 0x01);
        pic
    }

    fn pulse(pic: &mut Pic, irq: u8) {
        pic.set_irq_level(irq, true);
        pic.set_irq_level(irq, false);
    }

    fn eoi_master(pic: &mut Pic) {
        pic.write(0x20, 0x20);
    }

    fn eoi_slave(pic: &mut Pic) {
        pic.write(0xa0, 0x20);
    }

    #[test]
    fn power_on_is_bios_like_and_fully_masked() {
        let mut pic = Pic::new();
        assert_eq!(pic.read(0x21), 0xff);
        assert_eq!(pic.read(0xa1), 0xff);
        pulse(&mut pic, 0);
        assert!(!pic.has_interrupt());
        pic.write(0x21, 0xfe);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x08);
    }

    #[test]
    fn init_sets_vector_base_and_clears_mask() {
        let mut pic = linux_init();
        assert_eq!(pic.read(0x21), 0x00, "ICW1 clears IMR");
        pulse(&mut pic, 1);
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x21);
        eoi_master(&mut pic);
        pulse(&mut pic, 12);
        assert_eq!(pic.acknowledge(), 0x2c);
    }

    #[test]
    fn mask_blocks_until_unmasked() {
        let mut pic = linux_init();
        pic.write(0x21, 0xff);
        pic.write(0xa1, 0xff);
        assert_eq!(pic.read(0x21), 0xff);
        pulse(&mut pic, 0);
        pulse(&mut pic, 9);
        assert!(!pic.has_interrupt());
        pic.write(0x21, 0xfb); // unmask cascade only
        assert!(!pic.has_interrupt());
        pic.write(0xa1, 0xfd); // unmask IRQ9
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x29);
        pic.write(0x21, 0xfa); // unmask IRQ0: it outranks the in-service cascade and nests
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x20);
    }

    #[test]
    fn lower_irq_number_wins() {
        let mut pic = linux_init();
        pulse(&mut pic, 1);
        pulse(&mut pic, 0);
        pulse(&mut pic, 4);
        assert_eq!(pic.acknowledge(), 0x20);
        eoi_master(&mut pic);
        assert_eq!(pic.acknowledge(), 0x21);
        eoi_master(&mut pic);
        assert_eq!(pic.acknowledge(), 0x24);
        eoi_master(&mut pic);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn slave_lines_rank_at_irq2() {
        let mut pic = linux_init();
        pulse(&mut pic, 3);
        pulse(&mut pic, 15);
        pulse(&mut pic, 1);
        // IRQ1 > IRQ8..15 (at IRQ2's slot) > IRQ3.
        assert_eq!(pic.acknowledge(), 0x21);
        eoi_master(&mut pic);
        assert_eq!(pic.acknowledge(), 0x2f);
        eoi_slave(&mut pic);
        eoi_master(&mut pic);
        assert_eq!(pic.acknowledge(), 0x23);
        eoi_master(&mut pic);
        assert!(!pic.has_interrupt());
    }

    #[test]
    fn slave_internal_priority() {
        let mut pic = linux_init();
        pulse(&mut pic, 14);
        pulse(&mut pic, 8);
        assert_eq!(pic.acknowledge(), 0x28);
        eoi_slave(&mut pic);
        eoi_master(&mut pic);
        assert_eq!(pic.acknowledge(), 0x2e);
    }

    #[test]
    fn in_service_blocks_equal_and_lower_priority() {
        let mut pic = linux_init();
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), 0x23);
        pulse(&mut pic, 3);
        pulse(&mut pic, 5);
        assert!(!pic.has_interrupt(), "IRQ3 in service blocks IRQ3 and IRQ5");
        pulse(&mut pic, 1);
        assert!(pic.has_interrupt(), "higher priority nests");
        assert_eq!(pic.acknowledge(), 0x21);
        eoi_master(&mut pic); // clears IRQ1 (highest in service)
        assert!(!pic.has_interrupt());
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0x08, "ISR now holds only IRQ3");
        eoi_master(&mut pic);
        assert_eq!(pic.acknowledge(), 0x23);
        eoi_master(&mut pic);
        assert_eq!(pic.acknowledge(), 0x25);
    }

    #[test]
    fn slave_in_service_blocks_master_lower_lines() {
        let mut pic = linux_init();
        pulse(&mut pic, 10);
        assert_eq!(pic.acknowledge(), 0x2a);
        pulse(&mut pic, 4);
        assert!(!pic.has_interrupt(), "IRQ2 in service on the master blocks IRQ4");
        eoi_slave(&mut pic);
        eoi_master(&mut pic);
        assert_eq!(pic.acknowledge(), 0x24);
    }

    #[test]
    fn specific_eoi_clears_named_level() {
        let mut pic = linux_init();
        pulse(&mut pic, 5);
        assert_eq!(pic.acknowledge(), 0x25);
        pulse(&mut pic, 6);
        pic.write(0x20, 0x64); // specific EOI for IRQ4: not in service, no effect
        assert!(!pic.has_interrupt());
        pic.write(0x20, 0x65);
        assert_eq!(pic.acknowledge(), 0x26);
    }

    #[test]
    fn spurious_vectors() {
        let mut pic = linux_init();
        assert!(!pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x27);
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0, "master spurious does not set ISR");

        // Slave request vanishes (level line drops) between INT and INTA: IRQ15 vector,
        // and the master's IR2 is in service.
        pic.write(0x4d1, 0x02); // IRQ9 level
        pic.set_irq_level(9, true);
        assert!(pic.has_interrupt());
        pic.set_irq_level(9, false);
        // The master latched the cascade edge and still asserts INT.
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x2f);
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0x04);
        pic.write(0xa0, 0x0b);
        assert_eq!(pic.read(0xa0), 0x00);
    }

    #[test]
    fn edge_held_high_does_not_retrigger() {
        let mut pic = linux_init();
        pic.set_irq_level(4, true);
        assert_eq!(pic.acknowledge(), 0x24);
        eoi_master(&mut pic);
        pic.set_irq_level(4, true); // still high, re-asserted: no new edge
        assert!(!pic.has_interrupt());
        pic.set_irq_level(4, false);
        assert!(!pic.has_interrupt());
        pic.set_irq_level(4, true);
        assert!(pic.has_interrupt());
    }

    #[test]
    fn edge_pulse_is_latched_until_acknowledged() {
        let mut pic = linux_init();
        pic.write(0x21, 0x01);
        pulse(&mut pic, 0);
        pic.write(0x20, 0x0a);
        assert_eq!(pic.read(0x20), 0x01, "IRR holds the masked pulse");
        pic.write(0x21, 0x00);
        assert_eq!(pic.acknowledge(), 0x20);
        assert_eq!(pic.read(0x20), 0x00, "acknowledge clears IRR");
    }

    #[test]
    fn level_mode_via_elcr() {
        let mut pic = linux_init();
        pic.write(0x4d0, 0xff);
        assert_eq!(pic.read(0x4d0), 0xf8, "IRQ0-2 cannot be level");
        pic.write(0x4d1, 0xff);
        assert_eq!(pic.read(0x4d1), 0xde, "IRQ8 and IRQ13 cannot be level");

        pic.set_irq_level(5, true);
        assert_eq!(pic.acknowledge(), 0x25);
        eoi_master(&mut pic);
        assert!(pic.has_interrupt(), "level still high: requests again after EOI");
        assert_eq!(pic.acknowledge(), 0x25);
        pic.set_irq_level(5, false);
        eoi_master(&mut pic);
        assert!(!pic.has_interrupt());

        // A level request that drops before INTA is not delivered.
        pic.set_irq_level(6, true);
        pic.set_irq_level(6, false);
        assert!(!pic.has_interrupt());

        // Slave level line through the cascade.
        pic.set_irq_level(11, true);
        assert_eq!(pic.acknowledge(), 0x2b);
        eoi_slave(&mut pic);
        eoi_master(&mut pic);
        assert_eq!(pic.acknowledge(), 0x2b);
    }

    #[test]
    fn ocw3_selects_irr_or_isr() {
        let mut pic = linux_init();
        pulse(&mut pic, 3);
        pulse(&mut pic, 6);
        assert_eq!(pic.read(0x20), 0x48, "IRR is the default");
        assert_eq!(pic.acknowledge(), 0x23);
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0x08);
        assert_eq!(pic.read(0x20), 0x08, "selection is sticky");
        pic.write(0x20, 0x0a);
        assert_eq!(pic.read(0x20), 0x40);
        assert_eq!(pic.read(0x21), 0x00, "data port reads IMR");
    }

    #[test]
    fn poll_mode_acknowledges() {
        let mut pic = linux_init();
        pulse(&mut pic, 5);
        pic.write(0x20, 0x0c);
        assert_eq!(pic.read(0x20), 0x85);
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0x20);
        pic.write(0x20, 0x0c);
        assert_eq!(pic.read(0x21), 0x00, "nothing pending");
        assert_eq!(pic.read(0x21), 0x00, "poll is one-shot: IMR again");
    }

    #[test]
    fn auto_eoi_leaves_isr_clear() {
        let mut pic = Pic::new();
        for (port, value) in [(0x20, 0x11), (0x21, 0x40), (0x21, 0x04), (0x21, 0x03)] {
            pic.write(port, value);
        }
        pulse(&mut pic, 3);
        assert_eq!(pic.acknowledge(), 0x43);
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0);
        pulse(&mut pic, 3);
        assert!(pic.has_interrupt(), "no EOI needed");
    }

    #[test]
    fn icw1_without_icw4_and_single_mode() {
        let mut pic = Pic::new();
        pic.write(0x20, 0x12); // single, no ICW4
        pic.write(0x21, 0x50); // ICW2 then straight to ready
        pic.write(0x21, 0xfd); // OCW1
        assert_eq!(pic.read(0x21), 0xfd);
        pulse(&mut pic, 1);
        assert_eq!(pic.acknowledge(), 0x51);
    }

    #[test]
    fn icw1_resets_edge_sense_of_held_lines() {
        let mut pic = linux_init();
        pic.set_irq_level(3, true);
        // Re-initialise while IRQ3 is held high: its pending request is dropped.
        for (port, value) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01)] {
            pic.write(port, value);
        }
        assert!(!pic.has_interrupt());
        pic.set_irq_level(3, true);
        assert!(!pic.has_interrupt());
        pic.set_irq_level(3, false);
        pic.set_irq_level(3, true);
        assert!(pic.has_interrupt());
    }

    #[test]
    fn rotation_commands() {
        let mut pic = linux_init();
        // Set priority: IRQ4 lowest, so IRQ5 is highest.
        pic.write(0x20, 0xc4);
        pulse(&mut pic, 0);
        pulse(&mut pic, 6);
        assert_eq!(pic.acknowledge(), 0x26);
        // Rotate on non-specific EOI: IRQ6 becomes lowest, IRQ7 highest.
        pic.write(0x20, 0xa0);
        pulse(&mut pic, 6);
        assert_eq!(pic.acknowledge(), 0x20);
        pic.write(0x20, 0xe0); // rotate on specific EOI of IRQ0: IRQ1 highest
        assert_eq!(pic.acknowledge(), 0x26);
    }

    #[test]
    fn special_mask_mode_lets_lower_priorities_through() {
        let mut pic = linux_init();
        pulse(&mut pic, 1);
        assert_eq!(pic.acknowledge(), 0x21);
        pulse(&mut pic, 5);
        assert!(!pic.has_interrupt());
        pic.write(0x20, 0x68); // set special mask mode
        pic.write(0x21, 0x02); // mask the in-service IRQ1
        assert!(pic.has_interrupt());
        assert_eq!(pic.acknowledge(), 0x25);
        pic.write(0x20, 0x48); // reset special mask mode
        pic.write(0x20, 0x0b);
        assert_eq!(pic.read(0x20), 0x22);
    }

    #[test]
    fn unknown_ports_and_irqs_are_harmless() {
        let mut pic = linux_init();
        let before = pic.clone();
        assert_eq!(pic.read(0x22), 0xff);
        pic.write(0x22, 0x12);
        pic.set_irq_level(2, true);
        pic.set_irq_level(16, true);
        pic.set_irq_level(255, true);
        assert_eq!(pic, before);
    }

    #[test]
    fn no_panic_on_arbitrary_sequences() {
        // A deterministic pseudo-random walk over every port, value and line.
        let ports = [0x20u16, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x22];
        let mut pic = Pic::new();
        let mut x: u32 = 0x1234_5678;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let value = (x >> 8) as u8;
            match x % 5 {
                0 => pic.write(ports[(x >> 16) as usize % ports.len()], value),
                1 => {
                    pic.read(ports[(x >> 16) as usize % ports.len()]);
                }
                2 => pic.set_irq_level(value % 20, x & 0x100 != 0),
                3 => {
                    pic.acknowledge();
                }
                _ => {
                    pic.has_interrupt();
                }
            }
        }
    }

    #[test]
    fn clone_behaves_identically() {
        let mut pic = linux_init();
        pulse(&mut pic, 3);
        pulse(&mut pic, 9);
        assert_eq!(pic.acknowledge(), 0x29);
        let mut copy = pic.clone();
        assert_eq!(copy, pic);
        for p in [&mut pic, &mut copy] {
            eoi_slave(p);
            eoi_master(p);
            pulse(p, 0);
        }
        assert_eq!(pic.acknowledge(), copy.acknowledge());
        assert_eq!(pic.acknowledge(), copy.acknowledge());
        assert_eq!(pic, copy);
    }
}
