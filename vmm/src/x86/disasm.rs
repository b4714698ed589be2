//! Disassembly for people (divergence reports, monitor commands, the UI), with capstone.

use crate::insn::{code_mode, instruction_linear_address, CodeMode};
use crate::memory::GuestRam;
use crate::paging::AddressSpace;
use capstone::prelude::*;
use kvm_bindings::{kvm_regs, kvm_sregs};

/// One disassembled instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Address (as the guest sees it: RIP-relative, not linear).
    pub address: u64,
    /// Raw bytes.
    pub bytes: Vec<u8>,
    /// Mnemonic and operands.
    pub text: String,
}

fn capstone_for(mode: CodeMode) -> Option<Capstone> {
    let m = match mode {
        CodeMode::Long => arch::x86::ArchMode::Mode64,
        CodeMode::Bits32 => arch::x86::ArchMode::Mode32,
        CodeMode::Bits16 => arch::x86::ArchMode::Mode16,
    };
    Capstone::new().x86().mode(m).syntax(arch::x86::ArchSyntax::Att).build().ok()
}

/// Disassembles `code` located at `address`, up to `count` instructions.
pub fn disassemble(code: &[u8], address: u64, mode: CodeMode, count: usize) -> Vec<Line> {
    let Some(cs) = capstone_for(mode) else { return Vec::new() };
    let Ok(insns) = cs.disasm_count(code, address, count) else {
        return Vec::new();
    };
    insns
        .iter()
        .map(|i| Line {
            address: i.address(),
            bytes: i.bytes().to_vec(),
            text: format!("{} {}", i.mnemonic().unwrap_or("?"), i.op_str().unwrap_or("")).trim().to_string(),
        })
        .collect()
}

/// Disassembles up to `count` instructions starting at RIP of the given state.
pub fn disassemble_at_rip(ram: &GuestRam, regs: &kvm_regs, sregs: &kvm_sregs, count: usize) -> Vec<Line> {
    let space = AddressSpace::from_sregs(sregs);
    let linear = instruction_linear_address(regs, sregs);
    let mut code = vec![0u8; 16 * count.max(1)];
    // Read as much as is mapped, page by page.
    let mut n = 0;
    while n < code.len() {
        let chunk = (0x1000 - ((linear + n as u64) & 0xfff)) as usize;
        let end = (n + chunk).min(code.len());
        if space.read_virt(ram, linear + n as u64, &mut code[n..end]).is_err() {
            break;
        }
        n = end;
    }
    disassemble(&code[..n], regs.rip, code_mode(sregs), count)
}

/// One line "mnemonic operands" for the instruction at RIP, or a note when unreadable.
pub fn describe_at_rip(ram: &GuestRam, regs: &kvm_regs, sregs: &kvm_sregs) -> String {
    match disassemble_at_rip(ram, regs, sregs, 1).first() {
        Some(l) => format!("{} ({})", l.text, l.bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")),
        None => "(instruction bytes not readable)".to_string(),
    }
}
