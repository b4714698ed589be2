//! The x87 instructions ttvm carries out itself (see `Vm::emulate_failed_instruction`),
//! as pure functions on the 64-bit FXSAVE image: Linux's `restore_fpregs_from_fpstate` on
//! AMD CPUs without XSAVEERPTR runs FNCLEX, EMMS and FILD so that the FPU pointers have
//! defined values, and PVM's ring-0 emulator implements none of the three.

use crate::fxsave::{FDP, FIP, FOP, FSW, FTW, ST};

const FSW_IE: u16 = 1 << 0;
const FSW_SF: u16 = 1 << 6;
const FSW_ES: u16 = 1 << 7;
const FSW_C1: u16 = 1 << 9;
const FSW_B: u16 = 1 << 15;
const FSW_TOP_SHIFT: u16 = 11;
/// FCW.IM: invalid-operation exceptions masked.
const FCW_IM: u16 = 1 << 0;

fn word(image: &[u8; 512], at: usize) -> u16 {
    u16::from_le_bytes([image[at], image[at + 1]])
}

fn set_word(image: &mut [u8; 512], at: usize, value: u16) {
    image[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

/// Whether an unmasked x87 exception is pending (FSW.ES): waiting instructions raise #MF.
pub fn exception_pending(image: &[u8; 512]) -> bool {
    word(image, FSW) & FSW_ES != 0
}

/// FNCLEX: clears the exception flags, ES and B; the condition codes and TOP stay.
pub fn fnclex(image: &mut [u8; 512]) {
    let fsw = word(image, FSW) & !(0x00ff | FSW_B);
    set_word(image, FSW, fsw);
}

/// EMMS: marks every register empty.
pub fn emms(image: &mut [u8; 512]) {
    image[FTW] = 0;
}

/// Where a non-control x87 instruction came from, which the FPU records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X87Origin {
    /// RIP of the instruction (FIP).
    pub rip: u64,
    /// Effective address of its memory operand (FDP).
    pub operand: u64,
    /// The 11-bit opcode: low 3 bits of the escape byte, then ModRM (FOP).
    pub fop: u16,
}

/// FILD m32int: pushes `value`, converted exactly to extended precision. On stack overflow
/// (the register below TOP in use) it sets IE, SF and C1 and pushes the indefinite QNaN when
/// invalid-operation exceptions are masked; unmasked, it leaves the stack and sets ES and B
/// so the next waiting instruction raises #MF, as the CPU does.
pub fn fild_m32(image: &mut [u8; 512], value: i32, origin: X87Origin) {
    set_word(image, FOP, origin.fop & 0x7ff);
    image[FIP..FIP + 8].copy_from_slice(&origin.rip.to_le_bytes());
    image[FDP..FDP + 8].copy_from_slice(&origin.operand.to_le_bytes());
    let fsw = word(image, FSW);
    let top = (fsw >> FSW_TOP_SHIFT) & 7;
    let new_top = top.wrapping_sub(1) & 7;
    let overflow = image[FTW] & (1 << new_top) != 0;
    let fsw = if overflow { fsw | FSW_IE | FSW_SF | FSW_C1 } else { fsw & !FSW_C1 };
    if overflow && word(image, 0) & FCW_IM == 0 {
        set_word(image, FSW, fsw | FSW_ES | FSW_B);
        return;
    }
    let pushed = if overflow { INDEFINITE } else { extended_from_i32(value) };
    // The stack area is in ST order: everything moves down one slot, the old ST7 (the
    // register the push reuses) falls off.
    image.copy_within(ST..ST + 7 * 16, ST + 16);
    image[ST..ST + 16].fill(0);
    image[ST..ST + 10].copy_from_slice(&pushed);
    image[FTW] |= 1 << new_top;
    set_word(image, FSW, (fsw & !(7 << FSW_TOP_SHIFT)) | (new_top << FSW_TOP_SHIFT));
}

/// The x87 "real indefinite": negative quiet NaN with only the top fraction bit set.
const INDEFINITE: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff];

/// `value` as an 80-bit extended-precision number (always exact).
fn extended_from_i32(value: i32) -> [u8; 10] {
    let mut out = [0u8; 10];
    if value == 0 {
        return out;
    }
    let magnitude = u64::from(value.unsigned_abs());
    let shift = magnitude.leading_zeros();
    let mantissa = magnitude << shift;
    let exponent = 16383 + 63 - shift as u16;
    let sign = if value < 0 { 0x8000 } else { 0 };
    out[..8].copy_from_slice(&mantissa.to_le_bytes());
    out[8..].copy_from_slice(&(exponent | sign).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state after FNINIT: FCW 0x37f, everything else clear.
    fn initialised() -> [u8; 512] {
        let mut image = [0u8; 512];
        set_word(&mut image, 0, 0x037f);
        image
    }

    fn st(image: &[u8; 512], i: usize) -> [u8; 10] {
        image[ST + 16 * i..ST + 16 * i + 10].try_into().unwrap()
    }

    #[test]
    fn converts_integers_exactly() {
        // 1.0 = exponent 16383, integer bit set
        assert_eq!(extended_from_i32(1), [0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f]);
        // -12345 = -1.50695... * 2^13
        let e = extended_from_i32(-12345);
        assert_eq!(u16::from_le_bytes([e[8], e[9]]), 0x8000 | (16383 + 13));
        assert_eq!(u64::from_le_bytes(e[..8].try_into().unwrap()), 12345u64 << 50);
        assert_eq!(extended_from_i32(0), [0; 10]);
        let min = extended_from_i32(i32::MIN);
        assert_eq!(u16::from_le_bytes([min[8], min[9]]), 0x8000 | (16383 + 31));
        assert_eq!(u64::from_le_bytes(min[..8].try_into().unwrap()), 1 << 63);
    }

    #[test]
    fn linux_restore_sequence() {
        let mut image = initialised();
        set_word(&mut image, FSW, 0x80a1 | (3 << 8)); // B, ES, PE, IE pending, C0 C1 set
        fnclex(&mut image);
        assert_eq!(word(&image, FSW), 3 << 8, "exception flags gone, condition codes kept");
        image[FTW] = 0x81;
        emms(&mut image);
        assert_eq!(image[FTW], 0);
        let origin = X87Origin { rip: 0xffff_ffff_8104_0bd8, operand: 0xffff_8880_049e_f700, fop: 0x307 };
        fild_m32(&mut image, 7, origin);
        assert_eq!(word(&image, FSW) >> FSW_TOP_SHIFT & 7, 7, "TOP 0 -> 7");
        assert_eq!(word(&image, FSW) & FSW_C1, 0);
        assert_eq!(image[FTW], 0x80, "physical register 7 in use");
        assert_eq!(st(&image, 0), extended_from_i32(7));
        assert_eq!(word(&image, FOP), 0x307);
        assert_eq!(u64::from_le_bytes(image[FIP..FIP + 8].try_into().unwrap()), origin.rip);
        assert_eq!(u64::from_le_bytes(image[FDP..FDP + 8].try_into().unwrap()), origin.operand);
        // A second push moves the first to ST1.
        fild_m32(&mut image, -1, origin);
        assert_eq!((st(&image, 0), st(&image, 1)), (extended_from_i32(-1), extended_from_i32(7)));
        assert_eq!(image[FTW], 0xc0);
    }

    #[test]
    fn overflow_masked_pushes_indefinite_unmasked_leaves_the_stack() {
        let origin = X87Origin { rip: 0, operand: 0, fop: 0x300 };
        let mut image = initialised();
        image[FTW] = 0xff; // all eight in use
        fild_m32(&mut image, 5, origin);
        let fsw = word(&image, FSW);
        assert_eq!(fsw & (FSW_IE | FSW_SF | FSW_C1), FSW_IE | FSW_SF | FSW_C1);
        assert_eq!(st(&image, 0), INDEFINITE);
        assert!(!exception_pending(&image), "masked: no #MF later");

        let mut image = initialised();
        set_word(&mut image, 0, 0x037e); // IM clear
        image[FTW] = 0xff;
        let before = image;
        fild_m32(&mut image, 5, origin);
        assert!(exception_pending(&image));
        assert_eq!(image[ST..ST + 128], before[ST..ST + 128], "the stack is unchanged");
    }
}
