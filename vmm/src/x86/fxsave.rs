//! The legacy FXSAVE image (Intel SDM vol. 1, table 10-2), the first 512 bytes of KVM's
//! XSAVE region: where each x87/SSE field sits, in one place for the emulator, the x87
//! helpers, the divergence reports and gdb.

/// Bytes in the image.
pub const LEN: usize = 512;
/// x87 control word (2 bytes).
pub const FCW: usize = 0;
/// x87 status word (2 bytes).
pub const FSW: usize = 2;
/// Abridged tag word: one "not empty" bit per physical register (1 byte).
pub const FTW: usize = 4;
/// Last x87 opcode (2 bytes).
pub const FOP: usize = 6;
/// Last x87 instruction pointer (8 bytes in 64-bit format).
pub const FIP: usize = 8;
/// Last x87 data pointer (8 bytes).
pub const FDP: usize = 16;
/// MXCSR (4 bytes).
pub const MXCSR: usize = 24;
/// MXCSR_MASK: the MXCSR bits the CPU supports (4 bytes; 0 means the default mask).
pub const MXCSR_MASK: usize = 28;
/// ST0..ST7 in stack order, 16-byte slots of which 10 bytes are used.
pub const ST: usize = 32;
/// XMM0..XMM15, 16 bytes each.
pub const XMM: usize = 160;

/// The control and status fields by name: (name, first byte, length).
pub const FIELDS: [(&str, usize, usize); 8] = [
    ("FCW", FCW, 2),
    ("FSW", FSW, 2),
    ("FTW", FTW, 1),
    ("FOP", FOP, 2),
    ("FIP", FIP, 8),
    ("FDP", FDP, 8),
    ("MXCSR", MXCSR, 4),
    ("MXCSR_MASK", MXCSR_MASK, 4),
];

/// The image at the start of an XSAVE region given as 32-bit words (zeroes past a short
/// region).
pub fn image_of(region: &[u32]) -> [u8; LEN] {
    let mut image = [0u8; LEN];
    for (bytes, word) in image.chunks_exact_mut(4).zip(region) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    image
}
