//! The register file gdb sees, and the `Arch` that ties it to the target description.

use gdbstub::arch::{Arch, Registers};
use gdbstub_arch::x86::reg::X86_64CoreRegs;

use crate::target_xml::TARGET_XML;

/// Bytes of [`X86_64CoreRegs`] in the `g` packet (GPRs .. mxcsr).
const CORE_BYTES: usize = 0x218;
/// Where the x87 and SSE state starts and ends inside the core block: reported as
/// "unavailable" when it could not be read.
const FPU_START: usize = 0xA4;
/// Number of system registers after the core block.
const SYS_REGS: usize = 9;
/// Total `g` packet size in bytes.
pub const G_PACKET_BYTES: usize = CORE_BYTES + SYS_REGS * 8;

/// x86-64 registers including the system registers of a kernel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KernelRegs {
    /// The process-visible part, serialised like gdbstub_arch's `X86_64_SSE`.
    pub core: X86_64CoreRegs,
    /// Whether `core.st`, `core.fpu`, `core.xmm` and `core.mxcsr` hold real values.
    pub fpu_valid: bool,
    /// FS segment base.
    pub fs_base: u64,
    /// GS segment base.
    pub gs_base: u64,
    /// IA32_KERNEL_GS_BASE (swapped with gs_base by SWAPGS).
    pub k_gs_base: u64,
    /// CR0.
    pub cr0: u64,
    /// CR2 (last page-fault address).
    pub cr2: u64,
    /// CR3 (page-table root).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (task priority).
    pub cr8: u64,
    /// EFER.
    pub efer: u64,
}

impl KernelRegs {
    fn sys(&self) -> [u64; SYS_REGS] {
        [self.fs_base, self.gs_base, self.k_gs_base, self.cr0, self.cr2, self.cr3, self.cr4, self.cr8, self.efer]
    }
}

impl Registers for KernelRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.core.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        let mut core = Vec::with_capacity(CORE_BYTES);
        self.core.gdb_serialize(|b| core.push(b));
        for (i, b) in core.into_iter().enumerate() {
            write_byte(if i >= FPU_START && !self.fpu_valid { None } else { b });
        }
        for v in self.sys() {
            for b in v.to_le_bytes() {
                write_byte(Some(b));
            }
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if bytes.len() != G_PACKET_BYTES {
            return Err(());
        }
        self.core.gdb_deserialize(&bytes[..CORE_BYTES])?;
        let mut sys = [0u64; SYS_REGS];
        for (v, chunk) in sys.iter_mut().zip(bytes[CORE_BYTES..].chunks_exact(8)) {
            *v = u64::from_le_bytes(chunk.try_into().map_err(|_| ())?);
        }
        let [fs_base, gs_base, k_gs_base, cr0, cr2, cr3, cr4, cr8, efer] = sys;
        *self = Self {
            core: self.core.clone(),
            fpu_valid: true,
            fs_base,
            gs_base,
            k_gs_base,
            cr0,
            cr2,
            cr3,
            cr4,
            cr8,
            efer,
        };
        Ok(())
    }
}

/// x86-64 as a kernel sees it: [`KernelRegs`] described by [`TARGET_XML`].
#[derive(Debug)]
pub enum X86_64Kernel {}

impl Arch for X86_64Kernel {
    type Usize = u64;
    type Registers = KernelRegs;
    type BreakpointKind = usize;
    // Registers are only read as a whole (`g`); single-register access is not offered.
    type RegId = ();

    fn target_description_xml() -> Option<&'static str> {
        Some(TARGET_XML)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target_xml::register_layout;

    fn sample() -> KernelRegs {
        let mut r = KernelRegs { fpu_valid: true, ..Default::default() };
        for (i, g) in r.core.regs.iter_mut().enumerate() {
            *g = 0x1000 + i as u64;
        }
        r.core.rip = 0xffff_8000_0010_0000;
        r.core.eflags = 0x246;
        r.core.segments.cs = 0x10;
        r.core.segments.gs = 0x2b;
        r.core.st[7] = [7; 10];
        r.core.fpu.fop = 0x7ff;
        r.core.xmm[15] = 0x1111_2222_3333_4444_5555_6666_7777_8888;
        r.core.mxcsr = 0x1f80;
        (r.fs_base, r.gs_base, r.k_gs_base) = (0xf5, 0x95, 0xc95);
        (r.cr0, r.cr2, r.cr3, r.cr4, r.cr8, r.efer) = (0x8000_0011, 0xc2, 0x3000, 0x20, 0x8, 0x500);
        r
    }

    /// Reads register `name` out of a serialised `g` packet using the XML's layout.
    fn field(bytes: &[Option<u8>], name: &str) -> Vec<Option<u8>> {
        let mut off = 0;
        for (n, size) in register_layout() {
            if n == name {
                return bytes[off..off + size].to_vec();
            }
            off += size;
        }
        panic!("{name} not in the XML");
    }

    fn le(v: u64, n: usize) -> Vec<Option<u8>> {
        v.to_le_bytes()[..n].iter().map(|b| Some(*b)).collect()
    }

    #[test]
    fn serialisation_follows_the_target_description() {
        let r = sample();
        let mut bytes = Vec::new();
        r.gdb_serialize(|b| bytes.push(b));
        let total: usize = register_layout().iter().map(|(_, s)| s).sum();
        assert_eq!(bytes.len(), total);
        assert_eq!(total, G_PACKET_BYTES);
        assert_eq!(field(&bytes, "rax"), le(0x1000, 8));
        assert_eq!(field(&bytes, "rsp"), le(0x1007, 8));
        assert_eq!(field(&bytes, "r15"), le(0x100f, 8));
        assert_eq!(field(&bytes, "rip"), le(r.core.rip, 8));
        assert_eq!(field(&bytes, "eflags"), le(0x246, 4));
        assert_eq!(field(&bytes, "cs"), le(0x10, 4));
        assert_eq!(field(&bytes, "gs"), le(0x2b, 4));
        assert_eq!(field(&bytes, "st7"), vec![Some(7); 10]);
        assert_eq!(field(&bytes, "fop"), le(0x7ff, 4));
        assert_eq!(field(&bytes, "xmm15")[0], Some(0x88));
        assert_eq!(field(&bytes, "mxcsr"), le(0x1f80, 4));
        for (name, v) in [
            ("fs_base", 0xf5),
            ("gs_base", 0x95),
            ("k_gs_base", 0xc95),
            ("cr0", 0x8000_0011),
            ("cr2", 0xc2),
            ("cr3", 0x3000),
            ("cr4", 0x20),
            ("cr8", 0x8),
            ("efer", 0x500),
        ] {
            assert_eq!(field(&bytes, name), le(v, 8), "{name}");
        }
    }

    #[test]
    fn unknown_fpu_state_is_sent_as_unavailable() {
        let r = KernelRegs { fpu_valid: false, ..sample() };
        let mut bytes = Vec::new();
        r.gdb_serialize(|b| bytes.push(b));
        assert_eq!(field(&bytes, "st0"), vec![None; 10]);
        assert_eq!(field(&bytes, "mxcsr"), vec![None; 4]);
        assert_eq!(field(&bytes, "gs"), le(0x2b, 4));
        assert_eq!(field(&bytes, "cr3"), le(0x3000, 8));
    }

    #[test]
    fn round_trip_and_bad_lengths() {
        let r = sample();
        let mut bytes = Vec::new();
        r.gdb_serialize(|b| bytes.push(b.unwrap_or(0)));
        let mut back = KernelRegs::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, r);
        assert!(back.gdb_deserialize(&bytes[1..]).is_err());
        assert!(back.gdb_deserialize(&[]).is_err());
    }
}
