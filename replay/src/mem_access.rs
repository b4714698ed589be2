//! Which memory an instruction reads and writes, for read and access watchpoints, from
//! capstone's operand details plus the implicit stack accesses it does not list.
//! (Write watchpoints compare values before and after each step instead, which also catches
//! writes no decoder sees: interrupt frames, exception pushes.)
//!
//! An access counts only if the CPU makes it: an instruction that faults does nothing
//! (its retry, once the handler has fixed the cause, counts), so one whose page is not
//! mapped or whose rights refuse it counts no access ([`AccessDecoder::next_step`]), nor
//! does one that raised any other exception or that an injected interrupt pre-empted
//! ([`NextStep::ran`]). Free runs rely on this: the CPU's data breakpoints and page holes
//! (`free_watch.rs`) see exactly the accesses that happen.

use capstone::arch::x86::{X86OperandType, X86Reg};
use capstone::arch::{ArchDetail, DetailsArchInsn};
use capstone::prelude::*;
use kvm_bindings::{kvm_regs, kvm_sregs};
use ttvm_vmm::descriptors::idt_gate;
use ttvm_vmm::insn::{code_mode, fetch_at_rip, instruction_linear_address, CodeMode};
use ttvm_vmm::machine::Machine;
use ttvm_vmm::memory::GuestRam;
use ttvm_vmm::paging::AddressSpace;

/// One memory access of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Linear address.
    pub addr: u64,
    /// Bytes.
    pub size: u64,
    /// Reads memory.
    pub read: bool,
    /// Writes memory.
    pub write: bool,
}

/// The instruction the next step runs, as decoded before it: the accesses it makes if it
/// runs to its end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NextStep {
    /// Its memory accesses; none if it faults on one of them.
    pub accesses: Vec<Access>,
    rip: u64,
    next_rip: u64,
}

/// Bytes of an exception handler's start where a step that raised the exception ends: the
/// host delivers it and runs the handler's first instruction (at most 15 bytes) in one step.
const HANDLER_FIRST_INSN: u64 = 16;
const RFLAGS_AC: u64 = 1 << 18;
const EFER_LMA: u64 = 1 << 10;

impl NextStep {
    /// Whether the step just taken (with `machine` after it) ran this instruction to its
    /// end: not if it delivered an injected interrupt instead (`delivered_interrupt`), nor
    /// if the instruction raised an exception, which the step ends in the handler of: a
    /// step that ends neither at the instruction itself (a repeated string instruction's
    /// next round), nor after it, but at the start of an exception handler (vectors 0-31 of
    /// the IDT).
    pub fn ran(&self, machine: &Machine, delivered_interrupt: bool) -> bool {
        if delivered_interrupt {
            return false;
        }
        let rip = machine.vm.vcpu().rip();
        rip == self.rip
            || rip == self.next_rip
            || !exception_handler_starts(machine.vm.ram(), &machine.vm.vcpu().sregs(), rip)
    }
}

/// Whether `rip` lies in the first instruction of a handler of one of the 32 exception
/// vectors of the guest's IDT (gates that are not present or not readable are no
/// handlers). Long mode only (ttvm's kernels run there; `descriptors::idt_gate` reads
/// long-mode gates): elsewhere no step is taken for one that raised an exception.
fn exception_handler_starts(ram: &GuestRam, sregs: &kvm_sregs, rip: u64) -> bool {
    sregs.efer & EFER_LMA != 0
        && (0..32u8).filter_map(|v| idt_gate(ram, sregs, v)).any(|g| rip.wrapping_sub(g.handler) < HANDLER_FIRST_INSN)
}

/// Whether the CPU lets the instruction make `access` (every page it spans mapped, and
/// its rights allowing the access at the current privilege level).
fn permitted(access: &Access, ram: &GuestRam, regs: &kvm_regs, sregs: &kvm_sregs) -> bool {
    let space = AddressSpace::from_sregs(sregs);
    let (cpl, ac) = (sregs.cs.dpl, regs.rflags & RFLAGS_AC != 0);
    let last = access.addr.wrapping_add(access.size.max(1) - 1);
    let mut page = access.addr & !0xfff;
    loop {
        match space.translate_with_rights(ram, page) {
            Ok((_, rights)) if space.allows(rights, cpl, ac, access.write) => {}
            _ => return false,
        }
        if page == last & !0xfff {
            return true;
        }
        page = page.wrapping_add(0x1000);
    }
}

/// Decoder with capstone handles per mode (creating them is not free).
pub struct AccessDecoder {
    cs64: Capstone,
    cs32: Capstone,
}

impl std::fmt::Debug for AccessDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessDecoder")
    }
}

fn reg_value(name: &str, r: &kvm_regs, next_rip: u64) -> Option<u64> {
    let full = |n: &str| -> Option<u64> {
        Some(match n {
            "rax" => r.rax,
            "rbx" => r.rbx,
            "rcx" => r.rcx,
            "rdx" => r.rdx,
            "rsi" => r.rsi,
            "rdi" => r.rdi,
            "rsp" => r.rsp,
            "rbp" => r.rbp,
            "r8" => r.r8,
            "r9" => r.r9,
            "r10" => r.r10,
            "r11" => r.r11,
            "r12" => r.r12,
            "r13" => r.r13,
            "r14" => r.r14,
            "r15" => r.r15,
            "rip" => next_rip,
            _ => return None,
        })
    };
    if let Some(v) = full(name) {
        return Some(v);
    }
    // 32-bit names: eax.. and r8d..; 16-bit: ax.. and r8w..
    if let Some(rest) = name.strip_prefix('e') {
        return full(&format!("r{rest}")).map(|v| v & 0xffff_ffff);
    }
    if let Some(base) = name.strip_suffix('d') {
        return full(base).map(|v| v & 0xffff_ffff);
    }
    if let Some(base) = name.strip_suffix('w') {
        return full(base).map(|v| v & 0xffff);
    }
    if name.len() == 2 {
        return full(&format!("r{name}")).map(|v| v & 0xffff);
    }
    None
}

/// Instructions with a memory operand that read and write no data there: LEA computes an
/// address, the NOP forms and PREFETCH hints do nothing architectural, INVLPG and the cache
/// line flushes act on translations and caches. (The CPU's data breakpoints, which free
/// runs use, do not count them as accesses either; `free_watch.rs`.)
fn reaches_no_memory(mnemonic: &str) -> bool {
    matches!(mnemonic, "lea" | "invlpg" | "clflush" | "clflushopt" | "clwb" | "cldemote")
        || mnemonic.starts_with("nop")
        || mnemonic.starts_with("prefetch")
}

/// Whether `code` is a repeated string instruction whose count register is zero: it runs
/// no iteration and touches no memory.
fn repeats_zero_times(mnemonic: &str, code: &[u8], r: &kvm_regs, mode: CodeMode) -> bool {
    if !mnemonic.starts_with("rep") {
        return false;
    }
    // An address-size prefix (0x67) among the legacy/REX prefixes makes the count ECX in
    // 64-bit mode (CX in 32-bit code: not seen in kernels ttvm runs; counted as ECX).
    let prefixes = code
        .iter()
        .take_while(|b| matches!(b, 0xf2 | 0xf3 | 0x66 | 0x67 | 0x2e | 0x3e | 0x26 | 0x36 | 0x64 | 0x65 | 0x40..=0x4f));
    let short = prefixes.clone().any(|&b| b == 0x67) || mode != CodeMode::Long;
    let count = if short { r.rcx & 0xffff_ffff } else { r.rcx };
    count == 0
}

impl AccessDecoder {
    /// Creates the decoders.
    pub fn new() -> Option<Self> {
        let mk = |m| Capstone::new().x86().mode(m).detail(true).build().ok();
        Some(Self { cs64: mk(arch::x86::ArchMode::Mode64)?, cs32: mk(arch::x86::ArchMode::Mode32)? })
    }

    /// The instruction at `machine`'s RIP, which the next step runs, with the accesses it
    /// makes: none if the CPU refuses one of them (the instruction faults).
    pub fn next_step(&self, machine: &Machine) -> NextStep {
        let (regs, sregs) = (machine.vm.vcpu().regs(), machine.vm.vcpu().sregs());
        let (bytes, n) = fetch_at_rip(machine.vm.ram(), &regs, &sregs);
        let (mut accesses, len) = self.decode(&bytes[..n], &regs, &sregs);
        if !accesses.iter().all(|a| permitted(a, machine.vm.ram(), &regs, &sregs)) {
            accesses.clear();
        }
        NextStep { accesses, rip: regs.rip, next_rip: regs.rip.wrapping_add(len) }
    }

    /// The memory accesses of the instruction `code` (bytes at RIP) in the given state.
    pub fn accesses(&self, code: &[u8], r: &kvm_regs, s: &kvm_sregs) -> Vec<Access> {
        self.decode(code, r, s).0
    }

    /// The memory accesses and the length of the instruction `code` (0 if it does not
    /// decode).
    fn decode(&self, code: &[u8], r: &kvm_regs, s: &kvm_sregs) -> (Vec<Access>, u64) {
        let mode = code_mode(s);
        let cs = match mode {
            CodeMode::Long => &self.cs64,
            _ => &self.cs32,
        };
        let linear_rip = instruction_linear_address(r, s);
        let Ok(insns) = cs.disasm_count(code, linear_rip, 1) else { return (Vec::new(), 0) };
        let Some(insn) = insns.iter().next() else { return (Vec::new(), 0) };
        let len = insn.len() as u64;
        let Ok(detail) = cs.insn_detail(insn) else { return (Vec::new(), len) };
        let ArchDetail::X86Detail(x86) = detail.arch_detail() else { return (Vec::new(), len) };
        let next_rip = r.rip.wrapping_add(len);
        let addr_mask = if mode == CodeMode::Long { u64::MAX } else { 0xffff_ffff };
        let mnemonic = insn.mnemonic().unwrap_or("");
        if reaches_no_memory(mnemonic) || repeats_zero_times(mnemonic, code, r, mode) {
            return (Vec::new(), len);
        }
        let mut out = Vec::new();
        for op in x86.operands() {
            let X86OperandType::Mem(m) = op.op_type else { continue };
            let reg = |id: RegId| -> u64 {
                if id.0 == X86Reg::X86_REG_INVALID as u16 {
                    return 0;
                }
                cs.reg_name(id).and_then(|n| reg_value(&n, r, next_rip)).unwrap_or(0)
            };
            let seg_base = match cs.reg_name(m.segment()).as_deref() {
                Some("fs") => s.fs.base,
                Some("gs") => s.gs.base,
                _ => 0,
            };
            let ea =
                reg(m.base()).wrapping_add(reg(m.index()).wrapping_mul(m.scale() as u64)).wrapping_add(m.disp() as u64);
            let (read, write) = match op.access {
                Some(a) => (a.is_readable(), a.is_writable()),
                None => (true, true),
            };
            out.push(Access {
                addr: seg_base.wrapping_add(ea) & addr_mask,
                size: u64::from(op.size.max(1)),
                read,
                write,
            });
        }
        let word = if mode == CodeMode::Long { 8 } else { 4 };
        let sp = r.rsp & addr_mask;
        if mnemonic.starts_with("push") || mnemonic.starts_with("call") {
            out.push(Access { addr: sp.wrapping_sub(word) & addr_mask, size: word, read: false, write: true });
        } else if mnemonic.starts_with("pop") || mnemonic.starts_with("ret") {
            out.push(Access { addr: sp, size: word, read: true, write: false });
        } else if mnemonic == "leave" {
            out.push(Access { addr: r.rbp & addr_mask, size: word, read: true, write: false });
        } else if mnemonic.starts_with("iret") {
            out.push(Access { addr: sp, size: word * 5, read: true, write: false });
        }
        (out, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_mode() -> kvm_sregs {
        let mut s = kvm_sregs { efer: 1 << 10, ..Default::default() };
        s.cs.l = 1;
        s
    }

    #[test]
    fn explicit_and_implicit_accesses() {
        let d = AccessDecoder::new().unwrap();
        let s = long_mode();
        let r = kvm_regs { rip: 0x1000, rax: 0x2000, rbx: 8, rsp: 0x9000, ..Default::default() };
        // mov qword ptr [rax + rbx*2 + 0x10], rcx  = 48 89 4c 58 10
        let a = d.accesses(&[0x48, 0x89, 0x4c, 0x58, 0x10], &r, &s);
        assert_eq!(a, vec![Access { addr: 0x2020, size: 8, read: false, write: true }]);
        // mov eax, dword ptr [rip + 0x100] = 8b 05 00 01 00 00 (next rip 0x1006)
        let a = d.accesses(&[0x8b, 0x05, 0x00, 0x01, 0x00, 0x00], &r, &s);
        assert_eq!(a, vec![Access { addr: 0x1106, size: 4, read: true, write: false }]);
        // push rax = 50
        let a = d.accesses(&[0x50], &r, &s);
        assert_eq!(a, vec![Access { addr: 0x8ff8, size: 8, read: false, write: true }]);
        // ret = c3
        let a = d.accesses(&[0xc3], &r, &s);
        assert_eq!(a, vec![Access { addr: 0x9000, size: 8, read: true, write: false }]);
        // add dword ptr [rax], 1 = 83 00 01: read and write
        let a = d.accesses(&[0x83, 0x00, 0x01], &r, &s);
        assert_eq!(a, vec![Access { addr: 0x2000, size: 4, read: true, write: true }]);
        // lea rax, [rbx + 8] = 48 8d 43 08: no access
        assert!(d.accesses(&[0x48, 0x8d, 0x43, 0x08], &r, &s).is_empty());
        // nop word ptr [rax + rax] = 66 0f 1f 44 00 00; prefetcht0 [rax] = 0f 18 08: none
        assert!(d.accesses(&[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00], &r, &s).is_empty());
        assert!(d.accesses(&[0x0f, 0x18, 0x08], &r, &s).is_empty());
    }

    /// Long-mode paging at 0x1000 mapping virtual 0x40_0000 (one 4 KiB page, PT entry
    /// `pte_flags`) to 0x5000 and identity-mapping the first 2 MiB as supervisor data.
    fn paged(pte_flags: u64) -> (GuestRam, kvm_sregs) {
        let mut ram = GuestRam::new(4 << 20).unwrap();
        for (at, entry) in [(0x1000u64, 0x2007u64), (0x2000, 0x3007), (0x3000, 0x83), (0x3010, 0x4007)] {
            ram.write(at, &entry.to_le_bytes()).unwrap();
        }
        ram.write(0x4000, &(0x5000 | pte_flags).to_le_bytes()).unwrap();
        let mut s = long_mode();
        (s.cr0, s.cr3, s.cr4, s.efer) = (0x8001_0001, 0x1000, 1 << 5, 0x500);
        (ram, s)
    }

    #[test]
    fn an_access_the_cpu_refuses_is_not_made() {
        let regs = kvm_regs::default();
        let read = |addr, size| Access { addr, size, read: true, write: false };
        let write = |addr, size| Access { addr, size, read: false, write: true };
        // A user read-only page: ring 0 reads and (CR0.WP set) cannot write it.
        let (ram, mut s) = paged(0x5);
        assert!(permitted(&read(0x40_0010, 8), &ram, &regs, &s));
        assert!(!permitted(&write(0x40_0010, 8), &ram, &regs, &s));
        // Ring 3 may read it, not the supervisor page below it; nor one not mapped.
        s.cs.dpl = 3;
        assert!(permitted(&read(0x40_0000, 4096), &ram, &regs, &s));
        assert!(!permitted(&read(0x1000, 8), &ram, &regs, &s));
        // An access spanning into the unmapped page after it.
        assert!(!permitted(&read(0x40_0ffc, 8), &ram, &regs, &s));
        // Not present at all.
        let (ram, s) = paged(0x6);
        assert!(!permitted(&read(0x40_0010, 1), &ram, &regs, &s));
    }

    #[test]
    fn a_step_that_ends_in_an_exception_handler_did_not_run_its_instruction() {
        let (mut ram, mut s) = paged(0x7);
        // IDT at 0x8000 (identity mapped): vector 14's gate points at 0x1_2345_6789.
        (s.idt.base, s.idt.limit) = (0x8000, 32 * 16 - 1);
        let gate = [0x89u8, 0x67, 0x10, 0, 0, 0x8e, 0x45, 0x23, 0x01, 0, 0, 0, 0, 0, 0, 0];
        ram.write(0x8000 + 14 * 16, &gate).unwrap();
        assert!(exception_handler_starts(&ram, &s, 0x1_2345_6789));
        assert!(exception_handler_starts(&ram, &s, 0x1_2345_6789 + 4));
        assert!(!exception_handler_starts(&ram, &s, 0x1_2345_6789 + 16));
        // A gate past the IDT's limit is no handler.
        s.idt.limit = 14 * 16 - 1;
        assert!(!exception_handler_starts(&ram, &s, 0x1_2345_6789));
    }

    #[test]
    fn a_string_instruction_repeated_zero_times_touches_nothing() {
        let d = AccessDecoder::new().unwrap();
        let s = long_mode();
        let r = kvm_regs { rip: 0x1000, rsi: 0x2000, rdi: 0x3000, rcx: 0, ..Default::default() };
        // rep movsb = f3 a4
        assert!(d.accesses(&[0xf3, 0xa4], &r, &s).is_empty());
        let a = d.accesses(&[0xf3, 0xa4], &kvm_regs { rcx: 5, ..r }, &s);
        assert!(a.iter().any(|a| a.addr == 0x2000 && a.read) && a.iter().any(|a| a.addr == 0x3000 && a.write), "{a:?}");
        // With an address-size prefix only ECX counts: rcx = 1 << 32 is zero iterations.
        assert!(d.accesses(&[0x67, 0xf3, 0xa4], &kvm_regs { rcx: 1 << 32, ..r }, &s).is_empty());
        // movsb without rep runs once whatever RCX holds.
        assert!(!d.accesses(&[0xa4], &r, &s).is_empty());
    }
}
