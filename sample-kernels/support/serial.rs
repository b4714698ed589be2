//! COM1 16550 UART: polled output, interrupt-driven input.
use crate::cpu::{inb, outb};
use core::fmt;

pub const COM1: u16 = 0x3f8;
/// COM1 is IRQ 4.
pub const IRQ: u8 = 4;

const RBR_THR: u16 = COM1; // receive buffer / transmit holding (DLAB=0)
const IER: u16 = COM1 + 1;
const FCR: u16 = COM1 + 2;
const LCR: u16 = COM1 + 3;
const MCR: u16 = COM1 + 4;
const LSR: u16 = COM1 + 5;

const LSR_DATA_READY: u8 = 0x01;
const LSR_THRE: u8 = 0x20;

/// 115200 8N1, FIFO on, interrupts off.
pub fn init() {
    unsafe {
        outb(IER, 0x00);
        outb(LCR, 0x80); // DLAB
        outb(COM1, 0x01); // divisor 1 = 115200 baud
        outb(COM1 + 1, 0x00);
        outb(LCR, 0x03); // 8N1, DLAB off
        outb(FCR, 0xC7); // enable + clear FIFOs, 14-byte threshold
        outb(MCR, 0x03); // DTR | RTS (OUT2 stays off until rx interrupts are wanted)
    }
}

pub fn write_byte(b: u8) {
    unsafe {
        while inb(LSR) & LSR_THRE == 0 {}
        outb(RBR_THR, b);
    }
}

pub fn write_str(s: &str) {
    for b in s.bytes() {
        if b == b'\n' {
            write_byte(b'\r');
        }
        write_byte(b);
    }
}

struct Writer;
impl fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_str(s);
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    // Interrupts off: keeps lines whole across threads, and the precompiled
    // core's fmt code (built with a red zone) must not be interrupted.
    crate::cpu::without_interrupts(|| {
        let _ = fmt::write(&mut Writer, args);
    });
}

/// `print!("fmt", args...)`: arguments are formatted by [`crate::fmt`], not
/// by `core` (see there why). No inline `{name}` captures.
#[macro_export]
macro_rules! print {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {
        $crate::serial::_print(format_args!($fmt $(, $crate::fmt::W(&$arg))*))
    };
}

/// `println!("fmt", args...)`, like [`print!`] plus a newline.
#[macro_export]
macro_rules! println {
    () => { $crate::serial::write_str("\n") };
    ($fmt:literal $(, $arg:expr)* $(,)?) => {
        $crate::serial::_print(format_args!(concat!($fmt, "\n") $(, $crate::fmt::W(&$arg))*))
    };
}

// ---- interrupt-driven input ------------------------------------------------

const RX_SIZE: usize = 256;
static mut RX_BUF: [u8; RX_SIZE] = [0; RX_SIZE];
static mut RX_HEAD: usize = 0; // written by the IRQ handler
static mut RX_TAIL: usize = 0; // written by the reader

fn rx_irq(_frame: &mut crate::TrapFrame) {
    unsafe {
        while inb(LSR) & LSR_DATA_READY != 0 {
            let b = inb(RBR_THR);
            let next = (RX_HEAD + 1) % RX_SIZE;
            if next != RX_TAIL {
                RX_BUF[RX_HEAD] = b;
                RX_HEAD = next;
            } // else: buffer full, drop the byte
        }
    }
    crate::pic::eoi(IRQ);
}

/// Enables "received data available" interrupts: IER bit 0, MCR.OUT2 (gates
/// the UART's IRQ line on PCs), handler on IRQ 4, IRQ 4 unmasked.
pub fn enable_rx_interrupts() {
    crate::idt::set_handler(crate::pic::irq_vector(IRQ), rx_irq);
    unsafe {
        outb(MCR, 0x0B); // DTR | RTS | OUT2
        outb(IER, 0x01);
    }
    crate::pic::unmask(IRQ);
}

/// Next received byte, if any. Call with interrupts disabled.
pub fn try_read_byte() -> Option<u8> {
    unsafe {
        if RX_TAIL == RX_HEAD {
            return None;
        }
        let b = RX_BUF[RX_TAIL];
        RX_TAIL = (RX_TAIL + 1) % RX_SIZE;
        Some(b)
    }
}

/// Blocks (sti; hlt) until a byte arrives. Returns with interrupts disabled.
pub fn read_byte() -> u8 {
    loop {
        crate::cpu::cli();
        if let Some(b) = try_read_byte() {
            return b;
        }
        crate::cpu::sti_hlt();
    }
}

/// Reads one line (terminated by CR, LF or CRLF) into `buf`; returns its
/// length. Bytes past `buf.len()` are dropped.
pub fn read_line(buf: &mut [u8]) -> usize {
    static mut LAST_WAS_CR: bool = false;
    let mut n = 0;
    loop {
        let b = read_byte();
        unsafe {
            let after_cr = LAST_WAS_CR;
            LAST_WAS_CR = b == b'\r';
            if b == b'\n' && after_cr && n == 0 {
                continue; // the LF of a CRLF pair
            }
        }
        if b == b'\r' || b == b'\n' {
            return n;
        }
        if n < buf.len() {
            buf[n] = b;
            n += 1;
        }
    }
}
