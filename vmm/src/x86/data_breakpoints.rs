//! Hardware data breakpoints: a debug register that fires after an instruction read or wrote
//! (DR7 R/W = 11b) any byte of an aligned 1-, 2-, 4- or 8-byte range. Replay uses them to
//! ask whether a stretch of native execution touched a watched range at all; where it did,
//! the exact answer comes from single-stepping, as without them.

/// One data breakpoint: fires after an access to any byte of `[addr, addr + len)`, which
/// must be naturally aligned with `len` one of 1, 2, 4 or 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataBreakpoint {
    /// Linear address, aligned to `len`.
    pub addr: u64,
    /// 1, 2, 4 or 8.
    pub len: u64,
}

impl DataBreakpoint {
    /// DR7's bits for this breakpoint in debug register `slot` (0-3): global enable, R/W
    /// = 11b (reads and writes), and the length code.
    pub fn dr7_bits(&self, slot: usize) -> u64 {
        let len_code = match self.len {
            1 => 0b00,
            2 => 0b01,
            8 => 0b10,
            _ => 0b11, // 4
        };
        (1 << (slot * 2 + 1)) | (0b11 << (16 + slot * 4)) | (len_code << (18 + slot * 4))
    }
}

/// Data breakpoints that together cover `[addr, addr + len)` (8-byte aligned quadwords,
/// possibly more than the range: an access next to it fires too, which only costs a
/// closer look), if at most `slots` of them do; `None` otherwise.
pub fn covering(addr: u64, len: u64, slots: usize) -> Option<Vec<DataBreakpoint>> {
    let end = addr.checked_add(len)?;
    if len == 0 {
        return Some(Vec::new());
    }
    let first = addr & !7;
    let last = (end - 1) & !7;
    let count = ((last - first) / 8 + 1) as usize;
    (count <= slots).then(|| (0..count as u64).map(|i| DataBreakpoint { addr: first + 8 * i, len: 8 }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr7_bits_encode_enable_access_and_length() {
        // Slot 1, 8 bytes: G1 (bit 3), R/W1 = 11 (bits 20-21), LEN1 = 10 (bits 22-23).
        assert_eq!(DataBreakpoint { addr: 0x1000, len: 8 }.dr7_bits(1), (1 << 3) | (0b11 << 20) | (0b10 << 22));
        // Slot 3, 4 bytes: G3 (bit 7), R/W3 = 11 (bits 28-29), LEN3 = 11 (bits 30-31).
        assert_eq!(DataBreakpoint { addr: 0x1000, len: 4 }.dr7_bits(3), (1 << 7) | (0b11 << 28) | (0b11 << 30));
        assert_eq!(DataBreakpoint { addr: 0x1000, len: 1 }.dr7_bits(0), (1 << 1) | (0b11 << 16));
    }

    #[test]
    fn ranges_are_covered_by_aligned_quadwords() {
        let q = |a| DataBreakpoint { addr: a, len: 8 };
        assert_eq!(covering(0x1003, 2, 3), Some(vec![q(0x1000)]));
        assert_eq!(covering(0x1006, 4, 3), Some(vec![q(0x1000), q(0x1008)]));
        assert_eq!(covering(0x1000, 24, 3), Some(vec![q(0x1000), q(0x1008), q(0x1010)]));
        assert_eq!(covering(0x1001, 24, 3), None, "four quadwords");
        assert_eq!(covering(0x1000, 8, 0), None);
        assert_eq!(covering(u64::MAX - 3, 8, 3), None, "wraps");
    }
}
