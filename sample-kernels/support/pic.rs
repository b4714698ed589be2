//! 8259A PIC pair, remapped to vectors 0x20..0x2f (IRQ n -> 0x20 + n).
use crate::cpu::{inb, outb};

pub const MASTER_VECTOR: u8 = 0x20;
pub const SLAVE_VECTOR: u8 = 0x28;

const MASTER_CMD: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_CMD: u16 = 0xA0;
const SLAVE_DATA: u16 = 0xA1;
const EOI: u8 = 0x20;

/// Remaps both PICs and masks every IRQ (kernels unmask what they use).
pub fn init() {
    unsafe {
        outb(MASTER_CMD, 0x11); // ICW1: init, ICW4 follows
        outb(SLAVE_CMD, 0x11);
        outb(MASTER_DATA, MASTER_VECTOR); // ICW2: vector base
        outb(SLAVE_DATA, SLAVE_VECTOR);
        outb(MASTER_DATA, 0x04); // ICW3: slave on IRQ2
        outb(SLAVE_DATA, 0x02); // ICW3: cascade identity
        outb(MASTER_DATA, 0x01); // ICW4: 8086 mode
        outb(SLAVE_DATA, 0x01);
        outb(MASTER_DATA, 0xFF); // OCW1: mask all
        outb(SLAVE_DATA, 0xFF);
    }
}

pub const fn irq_vector(irq: u8) -> u8 {
    MASTER_VECTOR + irq
}

pub fn vector_irq(vector: u8) -> Option<u8> {
    (MASTER_VECTOR..MASTER_VECTOR + 16).contains(&vector).then(|| vector - MASTER_VECTOR)
}

pub fn unmask(irq: u8) {
    unsafe {
        if irq >= 8 {
            outb(SLAVE_DATA, inb(SLAVE_DATA) & !(1 << (irq - 8)));
            outb(MASTER_DATA, inb(MASTER_DATA) & !(1 << 2)); // cascade
        } else {
            outb(MASTER_DATA, inb(MASTER_DATA) & !(1 << irq));
        }
    }
}

pub fn mask(irq: u8) {
    unsafe {
        if irq >= 8 {
            outb(SLAVE_DATA, inb(SLAVE_DATA) | 1 << (irq - 8));
        } else {
            outb(MASTER_DATA, inb(MASTER_DATA) | 1 << irq);
        }
    }
}

/// Non-specific end of interrupt.
pub fn eoi(irq: u8) {
    unsafe {
        if irq >= 8 {
            outb(SLAVE_CMD, EOI);
        }
        outb(MASTER_CMD, EOI);
    }
}
