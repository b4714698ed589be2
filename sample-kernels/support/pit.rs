//! 8254 PIT channel 0 (IRQ 0).
use crate::cpu::outb;

pub const FREQUENCY_HZ: u32 = 1_193_182;
pub const IRQ: u8 = 0;

const CH0: u16 = 0x40;
const CMD: u16 = 0x43;

/// Channel 0, mode 2 (rate generator) at `hz`; returns the divisor used
/// (`FREQUENCY_HZ / hz`: 1193 for 1 kHz, clamped to 1..=65535).
pub fn start_periodic(hz: u32) -> u16 {
    let div = (FREQUENCY_HZ / hz.max(1)).clamp(1, 65535) as u16;
    unsafe {
        outb(CMD, 0x34); // channel 0, lobyte/hibyte, mode 2, binary
        outb(CH0, div as u8);
        outb(CH0, (div >> 8) as u8);
    }
    div
}

/// Channel 0, mode 0 (interrupt on terminal count): one IRQ after `count` ticks.
pub fn one_shot(count: u16) {
    unsafe {
        outb(CMD, 0x30); // channel 0, lobyte/hibyte, mode 0, binary
        outb(CH0, count as u8);
        outb(CH0, (count >> 8) as u8);
    }
}
