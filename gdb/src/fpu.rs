//! The x87 and SSE registers, from the vCPU's XSAVE image.
//!
//! Where they are read: the first 512 bytes of KVM's `kvm_xsave` region are the legacy
//! FXSAVE image, whose layout is `ttvm_vmm::fxsave` (the 32-bit selectors FCS and FDS sit
//! in the upper halves of FIP and FDP, which gdb reads apart).
//!
//! The image comes from `Vcpu::xsave`, which reads KVM_GET_XSAVE without changing the vCPU.

use gdbstub_arch::x86::reg::X86_64CoreRegs;
use ttvm_vmm::vcpu::Vcpu;

use ttvm_vmm::fxsave::{FCW, FDP, FIP, FOP, FSW, FTW, LEN as FXSAVE_BYTES, MXCSR, ST, XMM};

/// The XSAVE region of `vcpu` as 32-bit words, or None if KVM cannot provide it.
pub fn read_xsave(vcpu: &Vcpu) -> Option<Vec<u32>> {
    vcpu.xsave().ok()
}

/// The traditional 2-bit x87 tag of an 80-bit register (valid, zero, special).
fn tag_of(st: &[u8]) -> u32 {
    let exponent = u16::from_le_bytes([st[8], st[9]]) & 0x7fff;
    let mantissa = u64::from_le_bytes([st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]]);
    let integer = mantissa >> 63 != 0;
    match exponent {
        0x7fff => 2,
        0 if mantissa == 0 => 1,
        0 => 2,
        _ if integer => 0,
        _ => 2,
    }
}

/// Fills the x87/SSE part of `core` from an XSAVE region. Returns false (leaving `core`
/// alone) if the region is too short.
pub fn apply_fxsave(core: &mut X86_64CoreRegs, region: &[u32]) -> bool {
    if region.len() * 4 < FXSAVE_BYTES {
        return false;
    }
    let bytes: Vec<u8> = region[..FXSAVE_BYTES / 4].iter().flat_map(|w| w.to_le_bytes()).collect();
    let u16_at = |o: usize| u32::from(u16::from_le_bytes([bytes[o], bytes[o + 1]]));
    let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    for (i, st) in core.st.iter_mut().enumerate() {
        st.copy_from_slice(&bytes[ST + 16 * i..ST + 16 * i + 10]);
    }
    for (i, x) in core.xmm.iter_mut().enumerate() {
        let o = XMM + 16 * i;
        let mut b = [0u8; 16];
        b.copy_from_slice(&bytes[o..o + 16]);
        *x = u128::from_le_bytes(b);
    }
    let fstat = u16_at(FSW);
    // FXSAVE keeps one "not empty" bit per physical register; gdb wants the full tag word,
    // which needs the register contents (ST(i) is physical register (TOP + i) mod 8).
    let top = (fstat >> 11) & 7;
    let abridged = u32::from(bytes[FTW]);
    let mut ftag = 0u32;
    for phys in 0..8u32 {
        let tag = if abridged & (1 << phys) != 0 {
            let st = ((phys + 8 - top) % 8) as usize;
            tag_of(&core.st[st])
        } else {
            3
        };
        ftag |= tag << (2 * phys);
    }
    core.fpu.fctrl = u16_at(FCW);
    core.fpu.fstat = fstat;
    core.fpu.ftag = ftag;
    core.fpu.fop = u16_at(FOP) & 0x7ff;
    core.fpu.fioff = u32_at(FIP);
    core.fpu.fiseg = u16_at(FIP + 4);
    core.fpu.fooff = u32_at(FDP);
    core.fpu.foseg = u16_at(FDP + 4);
    core.mxcsr = u32_at(MXCSR);
    true
}

/// The inverse of [`apply_fxsave`]: writes the x87/SSE part of `core` into an FXSAVE
/// `image` (gdb's full tag word becomes FXSAVE's abridged one: a register is in use unless
/// tagged empty). Fields gdb does not show (MXCSR_MASK, the reserved bytes) stay as they are.
pub fn store_fxsave(core: &X86_64CoreRegs, image: &mut [u8; FXSAVE_BYTES]) {
    let f = &core.fpu;
    image[FCW..FCW + 2].copy_from_slice(&(f.fctrl as u16).to_le_bytes());
    image[FSW..FSW + 2].copy_from_slice(&(f.fstat as u16).to_le_bytes());
    image[FTW] = (0..8).filter(|phys| (f.ftag >> (2 * phys)) & 3 != 3).fold(0u8, |a, phys| a | 1 << phys);
    image[FOP..FOP + 2].copy_from_slice(&((f.fop & 0x7ff) as u16).to_le_bytes());
    image[FIP..FIP + 4].copy_from_slice(&f.fioff.to_le_bytes());
    image[FIP + 4..FIP + 6].copy_from_slice(&(f.fiseg as u16).to_le_bytes());
    image[FDP..FDP + 4].copy_from_slice(&f.fooff.to_le_bytes());
    image[FDP + 4..FDP + 6].copy_from_slice(&(f.foseg as u16).to_le_bytes());
    image[MXCSR..MXCSR + 4].copy_from_slice(&core.mxcsr.to_le_bytes());
    for (i, st) in core.st.iter().enumerate() {
        image[ST + 16 * i..ST + 16 * i + 10].copy_from_slice(st);
    }
    for (i, x) in core.xmm.iter().enumerate() {
        image[XMM + 16 * i..XMM + 16 * i + 16].copy_from_slice(&x.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region_with(f: impl FnOnce(&mut [u8])) -> Vec<u32> {
        let mut bytes = vec![0u8; 4096];
        f(&mut bytes);
        bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    #[test]
    fn reset_state_decodes() {
        // FNINIT state: FCW 0x37f, all registers empty; MXCSR 0x1f80.
        let region = region_with(|b| {
            b[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
            b[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
            b[160 + 16 * 3] = 0xab; // xmm3 low byte
        });
        let mut core = X86_64CoreRegs::default();
        assert!(apply_fxsave(&mut core, &region));
        assert_eq!(core.fpu.fctrl, 0x37f);
        assert_eq!(core.fpu.ftag, 0xffff, "all empty");
        assert_eq!(core.mxcsr, 0x1f80);
        assert_eq!(core.xmm[3], 0xab);
    }

    #[test]
    fn tags_are_rebuilt_from_contents() {
        // TOP = 7 (one value pushed): ST0 = 1.0 lives in physical register 7.
        let region = region_with(|b| {
            b[2..4].copy_from_slice(&(7u16 << 11).to_le_bytes());
            b[4] = 0x80;
            b[32..40].copy_from_slice(&(1u64 << 63).to_le_bytes());
            b[40..42].copy_from_slice(&0x3fffu16.to_le_bytes());
        });
        let mut core = X86_64CoreRegs::default();
        assert!(apply_fxsave(&mut core, &region));
        assert_eq!(core.fpu.ftag, 0x3fff, "physical 7 valid (00), others empty (11)");
        assert_eq!(&core.st[0][8..], &[0xff, 0x3f]);
    }

    #[test]
    fn a_stored_image_decodes_to_the_same_registers() {
        let mut core = X86_64CoreRegs::default();
        core.fpu.fctrl = 0x27f;
        core.fpu.fstat = 7 << 11;
        core.st[0] = [0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f];
        core.fpu.ftag = 0x3fff;
        core.fpu.fop = 0x123;
        core.fpu.fioff = 0xdead_beef;
        core.fpu.fiseg = 0x10;
        core.mxcsr = 0x1f80;
        core.xmm[15] = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;
        let mut image = [0u8; FXSAVE_BYTES];
        store_fxsave(&core, &mut image);
        let region: Vec<u32> = image.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut back = X86_64CoreRegs::default();
        assert!(apply_fxsave(&mut back, &region));
        assert_eq!(back, core);
    }

    #[test]
    fn short_region_is_refused() {
        let mut core = X86_64CoreRegs::default();
        assert!(!apply_fxsave(&mut core, &[0u32; 10]));
    }
}
