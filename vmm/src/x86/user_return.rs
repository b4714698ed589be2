//! IRETQ and SYSRETQ from ring 0 into ring 3, carried out by the exact engine.
//!
//! The reference hosts run such an instruction together with the user code after it, up to
//! its next trap, in one single-step (see `user_mode.rs`), so the engine does the return
//! itself and the first user instruction is a step of its own. Measured on those hosts
//! (the `ring3` kernel, and a probe with DS/ES/FS/GS holding a DPL-0 selector): their IRETQ
//! leaves the data segment registers as they were and does not set the GDT's accessed bits;
//! this does the same. Anything unusual (IRETD to 32-bit code, TF in the image — the
//! guest single-stepping its own user code —, NT set, a non-canonical target, a selector
//! that is not a present DPL-3 segment, SYSRET to a non-canonical RCX or without EFER.SCE)
//! is refused with the reason, never run unstepped.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

use crate::descriptors::gdt_segment;
use crate::memory::GuestRam;
use crate::paging::AddressSpace;

/// What IRETQ loads from the RFLAGS image at CPL 0 (64-bit mode: everything but VM).
const IRET_RFLAGS: u64 = 0x3d_7fd5;
/// What SYSRET loads from R11 (RF and VM cleared).
const SYSRET_RFLAGS: u64 = 0x3c_7fd7;
const RFLAGS_FIXED: u64 = 1 << 1;
const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_NT: u64 = 1 << 14;
const EFER_SCE: u64 = 1;

fn canonical(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == 0x1_ffff
}

/// IRETQ at CPL 0 whose frame (at RSP) returns to ring 3: the registers after it.
pub fn iretq_to_user(
    regs: &kvm_regs,
    sregs: &kvm_sregs,
    ram: &GuestRam,
) -> Result<(kvm_regs, kvm_sregs), &'static str> {
    let mut frame = [0u8; 40];
    AddressSpace::from_sregs(sregs).read_virt(ram, regs.rsp, &mut frame).map_err(|_| "its frame is not mapped")?;
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&frame[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let (rip, cs, rflags, rsp, ss) = (word(0), word(1), word(2), word(3), word(4));
    if regs.rflags & RFLAGS_NT != 0 {
        return Err("NT is set (a task return)");
    }
    if rflags & RFLAGS_TF != 0 {
        return Err("TF is set in the frame (the guest single-steps its own user code)");
    }
    if !canonical(rip) || !canonical(rsp) {
        return Err("the return address or stack is not canonical");
    }
    let user = |selector: u64, code: bool| -> Option<kvm_segment> {
        let s = gdt_segment(ram, sregs, u16::try_from(selector).ok()?)?;
        let is_code = s.type_ & 8 != 0;
        let writable_data = !is_code && s.type_ & 2 != 0;
        (selector & 3 == 3 && s.dpl == 3 && s.s == 1 && if code { is_code && s.l == 1 } else { writable_data })
            .then_some(s)
    };
    let cs = user(cs, true).ok_or("its CS is not a present 64-bit DPL-3 code segment")?;
    let ss = user(ss, false).ok_or("its SS is not a present DPL-3 data segment")?;
    let mut r = *regs;
    r.rip = rip;
    r.rsp = rsp;
    r.rflags = (rflags & IRET_RFLAGS) | RFLAGS_FIXED;
    let mut s = *sregs;
    s.cs = cs;
    s.ss = ss;
    Ok((r, s))
}

/// SYSRETQ at CPL 0: RIP from RCX, RFLAGS from R11, CS and SS from STAR[63:48] (+16 and +8,
/// RPL 3) with the fixed flat attributes SYSRET loads.
pub fn sysretq_to_user(regs: &kvm_regs, sregs: &kvm_sregs, star: u64) -> Result<(kvm_regs, kvm_sregs), &'static str> {
    if sregs.efer & EFER_SCE == 0 {
        return Err("EFER.SCE is clear (#UD)");
    }
    if !canonical(regs.rcx) {
        return Err("RCX is not canonical (#GP in ring 0)");
    }
    if regs.r11 & RFLAGS_TF != 0 {
        return Err("TF is set in R11 (the guest single-steps its own user code)");
    }
    let base = ((star >> 48) & 0xfffc) as u16;
    let flat = |selector: u16, type_: u8, l: u8, db: u8| kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 3,
        db,
        s: 1,
        l,
        g: 1,
        ..Default::default()
    };
    let mut r = *regs;
    r.rip = regs.rcx;
    r.rflags = (regs.r11 & SYSRET_RFLAGS) | RFLAGS_FIXED;
    let mut s = *sregs;
    s.cs = flat((base + 16) | 3, 0xb, 1, 0);
    s.ss = flat((base + 8) | 3, 0x3, 0, 1);
    Ok((r, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's GDT layout at 0x1000 and an IRETQ frame at 0x2000 (paging off).
    fn machine(frame: [u64; 5]) -> (kvm_regs, kvm_sregs, GuestRam) {
        let mut ram = GuestRam::new(crate::memory::MIN_RAM).unwrap();
        let gdt: [u64; 7] = [
            0,
            0,
            0x00AF_9A00_0000_FFFF,
            0x00CF_9200_0000_FFFF,
            0x00CF_FA00_0000_FFFF,
            0x00CF_F200_0000_FFFF,
            0x00AF_FA00_0000_FFFF,
        ];
        for (i, d) in gdt.iter().enumerate() {
            ram.write(0x1000 + 8 * i as u64, &d.to_le_bytes()).unwrap();
        }
        for (i, w) in frame.iter().enumerate() {
            ram.write(0x2000 + 8 * i as u64, &w.to_le_bytes()).unwrap();
        }
        let mut sregs = kvm_sregs::default();
        sregs.gdt.base = 0x1000;
        sregs.gdt.limit = 7 * 8 - 1;
        sregs.efer = 0xd01;
        sregs.ds.selector = 0x18;
        let regs = kvm_regs { rsp: 0x2000, rflags: 0x46, rcx: 0x40_1018, r11: 0x10346 & !0x100, ..Default::default() };
        (regs, sregs, ram)
    }

    #[test]
    fn iretq_loads_the_user_segments_and_leaves_the_data_segments() {
        let (regs, sregs, ram) = machine([0x40_0000, 0x33, 0x1_0202, 0x7ffc_0000, 0x2b]);
        let (r, s) = iretq_to_user(&regs, &sregs, &ram).unwrap();
        assert_eq!((r.rip, r.rsp, r.rflags), (0x40_0000, 0x7ffc_0000, 0x1_0202));
        assert_eq!((s.cs.selector, s.cs.dpl, s.cs.l), (0x33, 3, 1));
        assert_eq!((s.ss.selector, s.ss.dpl, s.ss.db), (0x2b, 3, 1));
        assert_eq!(s.ds.selector, 0x18, "the host leaves DS as it was");
    }

    #[test]
    fn unusual_iretqs_are_refused() {
        let refused = |frame, why: &str| {
            let (regs, sregs, ram) = machine(frame);
            assert!(iretq_to_user(&regs, &sregs, &ram).is_err(), "{why}");
        };
        refused([0x40_0000, 0x33, 0x302, 0x7ffc_0000, 0x2b], "TF in the image");
        refused([0x40_0000, 0x23, 0x202, 0x7ffc_0000, 0x2b], "32-bit user code");
        refused([0x40_0000, 0x30, 0x202, 0x7ffc_0000, 0x2b], "RPL 0");
        refused([0x40_0000, 0x33, 0x202, 0x7ffc_0000, 0x33], "code as SS");
        refused([0x8000_0000_0000, 0x33, 0x202, 0x7ffc_0000, 0x2b], "non-canonical RIP");
    }

    #[test]
    fn sysretq_takes_rip_and_rflags_from_rcx_and_r11() {
        let (regs, sregs, _) = machine([0; 5]);
        let star = 0x0023_0010_0000_0000;
        let (r, s) = sysretq_to_user(&regs, &sregs, star).unwrap();
        assert_eq!((r.rip, r.rflags), (0x40_1018, 0x246), "RF dropped from R11");
        assert_eq!((s.cs.selector, s.cs.dpl, s.cs.l, s.cs.type_), (0x33, 3, 1, 0xb));
        assert_eq!((s.ss.selector, s.ss.dpl, s.ss.db, s.ss.type_), (0x2b, 3, 1, 0x3));
        let bad = kvm_regs { rcx: 0x8000_0000_0000, ..regs };
        assert!(sysretq_to_user(&bad, &sregs, star).is_err(), "non-canonical RCX");
    }
}
