//! Instructions ttvm carries out itself after KVM failed to emulate them. Hosts whose KVM
//! emulates ring-0 code (PVM) lack some that Linux runs in ring 0; these need nothing from
//! outside the guest, so both engines handle them the same way and recordings stay exact.

use crate::insn::{code_mode, fetch_at_rip};
use crate::memory::PAGE_SIZE;
use crate::operand::decode_memory;
use crate::paging::AddressSpace;
use crate::vcpu::VcpuError;
use crate::vm::Vm;
use crate::x87;

const INT3: u8 = 0xcc;
const FWAIT: u8 = 0x9b;
const CLAC: [u8; 3] = [0x0f, 0x01, 0xca];
const STAC: [u8; 3] = [0x0f, 0x01, 0xcb];
const FNCLEX: [u8; 2] = [0xdb, 0xe2];
const EMMS: [u8; 2] = [0x0f, 0x77];
/// DB /0 with a memory operand.
const FILD_M32: (u16, u8) = (0xdb, 0);
const RFLAGS_AC: u64 = 1 << 18;
const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR4_OSFXSR: u64 = 1 << 9;
const UD_VECTOR: u8 = 6;
const BP_VECTOR: u8 = 3;
const NM_VECTOR: u8 = 7;
const GP_VECTOR: u8 = 13;
const MF_VECTOR: u8 = 16;
/// 0F AE /2 and /3 with a memory operand.
const LDMXCSR: (u16, u8) = (0x0fae, 2);
const STMXCSR: (u16, u8) = (0x0fae, 3);
use crate::fxsave::{MXCSR, MXCSR_MASK};
/// MXCSR bits a CPU that reports no MXCSR_MASK accepts (all but DAZ and bits 16-31).
const DEFAULT_MXCSR_MASK: u32 = 0xffbf;

impl Vm {
    /// After KVM failed to emulate the instruction at RIP, carries out the few that PVM
    /// cannot: INT3 raises its #BP (RIP past it, then the exception, as a trap; Linux runs
    /// one in `int3_selftest`), CLAC/STAC clear/set RFLAGS.AC (Linux's exception entry code
    /// when the CPU shows SMAP), FWAIT raises #NM or a pending x87 #MF, else does nothing
    /// (Linux's FPU state saving), LDMXCSR/STMXCSR load/store MXCSR (`kernel_fpu_begin`),
    /// FNCLEX, EMMS and FILD m32int change the x87 state (`restore_fpregs_from_fpstate` on
    /// AMD). Returns false, changing nothing, for anything else, including a memory operand
    /// that is not mapped (the guest's #PF is not synthesised: the caller reports it).
    pub fn emulate_failed_instruction(&mut self) -> Result<bool, VcpuError> {
        let (mut regs, sregs) = (self.vcpu().regs(), self.vcpu().sregs());
        let (bytes, n) = fetch_at_rip(self.ram(), &regs, &sregs);
        let code = &bytes[..n];
        if code.first() == Some(&INT3) {
            regs.rip = regs.rip.wrapping_add(1);
            self.vcpu_mut().set_regs(&regs);
            self.vcpu().inject_exception(BP_VECTOR)?;
            return Ok(true);
        }
        if code.first() == Some(&FWAIT) {
            if sregs.cr0 & (CR0_MP | CR0_TS) == CR0_MP | CR0_TS {
                self.vcpu().inject_exception(NM_VECTOR)?; // a fault: RIP stays at the FWAIT
            } else if x87::exception_pending(&self.vcpu().fxsave_image()?) {
                self.vcpu().inject_exception(MF_VECTOR)?;
            } else {
                regs.rip = regs.rip.wrapping_add(1);
                self.vcpu_mut().set_regs(&regs);
            }
            return Ok(true);
        }
        if code.starts_with(&FNCLEX) || code.starts_with(&EMMS) {
            let emms = code.starts_with(&EMMS);
            if let Some(vector) =
                x87_fault(&sregs, emms, || Ok(emms && x87::exception_pending(&self.vcpu().fxsave_image()?)))?
            {
                self.vcpu().inject_exception(vector)?;
                return Ok(true);
            }
            self.vcpu().update_fxsave(if emms { x87::emms } else { x87::fnclex })?;
            regs.rip = regs.rip.wrapping_add(2);
            self.vcpu_mut().set_regs(&regs);
            return Ok(true);
        }
        // Both are ring-0 only (#UD elsewhere, which KVM would have delivered itself).
        if sregs.cs.dpl == 0 && (code.starts_with(&CLAC) || code.starts_with(&STAC)) {
            regs.rflags = if code.starts_with(&STAC) { regs.rflags | RFLAGS_AC } else { regs.rflags & !RFLAGS_AC };
            regs.rip = regs.rip.wrapping_add(3);
            self.vcpu_mut().set_regs(&regs);
            return Ok(true);
        }
        match decode_memory(code, code_mode(&sregs), &regs, &sregs) {
            Some(m) if (m.opcode, m.reg) == LDMXCSR || (m.opcode, m.reg) == STMXCSR => {
                // The checks in the order the SDM lists them; none changes anything.
                if sregs.cr0 & CR0_EM != 0 || sregs.cr4 & CR4_OSFXSR == 0 {
                    self.vcpu().inject_exception(UD_VECTOR)?;
                    return Ok(true);
                }
                if sregs.cr0 & CR0_TS != 0 {
                    self.vcpu().inject_exception(NM_VECTOR)?;
                    return Ok(true);
                }
                let space = AddressSpace::from_sregs(&sregs);
                let image = self.vcpu().fxsave_image()?;
                if (m.opcode, m.reg) == STMXCSR {
                    let Some(pages) = self.pages_of(&space, m.linear, 4) else { return Ok(false) };
                    if space.write_virt(self.ram_mut(), m.linear, &image[MXCSR..MXCSR + 4]).is_err() {
                        return Ok(false);
                    }
                    for pfn in pages {
                        self.note_emulated_write(pfn);
                    }
                } else {
                    let mut value = [0u8; 4];
                    if space.read_virt(self.ram(), m.linear, &mut value).is_err() {
                        return Ok(false);
                    }
                    let value = u32::from_le_bytes(value);
                    // Zero means the CPU predates the field.
                    let mask = match u32::from_le_bytes([
                        image[MXCSR_MASK],
                        image[MXCSR_MASK + 1],
                        image[MXCSR_MASK + 2],
                        image[MXCSR_MASK + 3],
                    ]) {
                        0 => DEFAULT_MXCSR_MASK,
                        m => m,
                    };
                    if value & !mask != 0 {
                        self.vcpu().inject_exception_with_error_code(GP_VECTOR, 0)?;
                        return Ok(true);
                    }
                    self.vcpu().update_fxsave(|image| image[MXCSR..MXCSR + 4].copy_from_slice(&value.to_le_bytes()))?;
                }
                regs.rip = regs.rip.wrapping_add(m.len as u64);
                self.vcpu_mut().set_regs(&regs);
                Ok(true)
            }
            Some(m) if (m.opcode, m.reg) == FILD_M32 => {
                if let Some(vector) =
                    x87_fault(&sregs, false, || Ok(x87::exception_pending(&self.vcpu().fxsave_image()?)))?
                {
                    self.vcpu().inject_exception(vector)?;
                    return Ok(true);
                }
                let mut value = [0u8; 4];
                if AddressSpace::from_sregs(&sregs).read_virt(self.ram(), m.linear, &mut value).is_err() {
                    return Ok(false);
                }
                let fop = ((m.opcode & 7) << 8) | u16::from(m.modrm);
                let origin = x87::X87Origin { rip: regs.rip, operand: m.offset, fop };
                self.vcpu().update_fxsave(|image| x87::fild_m32(image, i32::from_le_bytes(value), origin))?;
                regs.rip = regs.rip.wrapping_add(m.len as u64);
                self.vcpu_mut().set_regs(&regs);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Frame numbers of the pages `len` bytes at `linear` lie in; `None` if any is unmapped.
    fn pages_of(&self, space: &AddressSpace, linear: u64, len: u64) -> Option<Vec<u32>> {
        let first = space.translate(self.ram(), linear).ok()?;
        let last = space.translate(self.ram(), linear.wrapping_add(len - 1)).ok()?;
        let mut pages = vec![(first / PAGE_SIZE as u64) as u32];
        if last / PAGE_SIZE as u64 != first / PAGE_SIZE as u64 {
            pages.push((last / PAGE_SIZE as u64) as u32);
        }
        Some(pages)
    }
}

/// The fault an x87 or MMX instruction takes before doing anything: #UD for MMX (EMMS)
/// with CR0.EM, else #NM with CR0.EM or CR0.TS, else #MF when it waits and an unmasked
/// exception is pending (`pending` reads the FPU state only when needed).
fn x87_fault(
    sregs: &kvm_bindings::kvm_sregs,
    mmx: bool,
    pending: impl FnOnce() -> Result<bool, VcpuError>,
) -> Result<Option<u8>, VcpuError> {
    if mmx && sregs.cr0 & CR0_EM != 0 {
        return Ok(Some(UD_VECTOR));
    }
    if sregs.cr0 & (CR0_EM | CR0_TS) != 0 {
        return Ok(Some(NM_VECTOR));
    }
    Ok(if pending()? { Some(MF_VECTOR) } else { None })
}
