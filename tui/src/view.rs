//! What the panes show of the machine at the cursor, read from the timeline's machine once
//! per move (registers, the code around RIP, memory), so drawing a frame never touches KVM.

use kvm_bindings::{kvm_regs, kvm_sregs};
use ttvm_vmm::disasm::disassemble;
use ttvm_vmm::insn::{code_mode, instruction_linear_address};
use ttvm_vmm::machine::Machine;
use ttvm_vmm::memory::GuestRam;
use ttvm_vmm::paging::AddressSpace;

use crate::parse::MemTarget;
use crate::symbols::Symbols;

/// Instructions kept before and after RIP (the pane shows what fits).
const CODE_CONTEXT: usize = 40;
/// How far back from RIP the function start may be for the code before RIP to be shown.
const MAX_FUNCTION_PREFIX: u64 = 0x2000;
/// Memory rows kept (16 bytes each).
pub const MEM_ROWS: usize = 48;

/// Register state.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Regs {
    /// General registers.
    pub regs: kvm_regs,
    /// System registers.
    pub sregs: kvm_sregs,
}

impl Regs {
    /// Reads the vCPU.
    pub fn of(m: &Machine) -> Self {
        Self { regs: m.vm.vcpu().regs(), sregs: m.vm.vcpu().sregs() }
    }
}

/// One instruction of the code pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeLine {
    /// Address.
    pub addr: u64,
    /// Raw bytes.
    pub bytes: Vec<u8>,
    /// Mnemonic and operands, with call/jump targets named.
    pub text: String,
    /// The function name when this is its first instruction.
    pub label: Option<String>,
    /// Source `file:line` (of the function the symbol names, not of code inlined into
    /// it), when it differs from the previous instruction's.
    pub source: Option<String>,
}

/// The code around RIP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Code {
    /// Instructions in address order.
    pub lines: Vec<CodeLine>,
    /// Index of the instruction at RIP (None when RIP is unreadable).
    pub current: Option<usize>,
    /// `function+offset` of RIP.
    pub function: Option<String>,
    /// Source `file:line` of RIP, innermost inlined function first.
    pub source: Vec<String>,
}

/// One row of the memory pane: 16 bytes, `None` where unmapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemRow {
    /// Guest-virtual address of the first byte.
    pub addr: u64,
    /// The bytes.
    pub bytes: Vec<Option<u8>>,
}

/// The memory pane's content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// The address asked for.
    pub addr: u64,
    /// Rows from `addr` rounded down to 16.
    pub rows: Vec<MemRow>,
    /// What the address is (symbol), if known.
    pub symbol: Option<String>,
}

/// Everything shown of the machine at one position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// The position.
    pub icount: u64,
    /// Registers at the position.
    pub regs: Regs,
    /// Registers one step earlier (None at icount 0, or when unknown after a cancel/error).
    pub prev: Option<Regs>,
    /// Code around RIP.
    pub code: Code,
    /// Memory.
    pub memory: Memory,
}

impl View {
    /// Reads everything from the machine at `icount`.
    pub fn capture(m: &Machine, icount: u64, prev: Option<Regs>, mem: &MemTarget, symbols: &Symbols) -> Self {
        let regs = Regs::of(m);
        let code = code_around(m.vm.ram(), &regs, symbols);
        let memory = memory_at(m.vm.ram(), &regs, mem, symbols);
        Self { icount, regs, prev, code, memory }
    }

    /// Reads memory again for a new target (the position is unchanged).
    pub fn refresh_memory(&mut self, m: &Machine, mem: &MemTarget, symbols: &Symbols) {
        self.memory = memory_at(m.vm.ram(), &self.regs, mem, symbols);
    }
}

/// Reads as much of `[linear, linear+len)` as is mapped, stopping at the first hole.
fn read_mapped(ram: &GuestRam, space: &AddressSpace, linear: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut n = 0;
    while n < len {
        let va = linear.wrapping_add(n as u64);
        let end = (n + (0x1000 - (va & 0xfff)) as usize).min(len);
        if space.read_virt(ram, va, &mut out[n..end]).is_err() {
            break;
        }
        n = end;
    }
    out.truncate(n);
    out
}

/// Names the target of a direct call or jump ("call 0x100150" -> "call 0x100150 <kmain>").
fn annotate(text: &str, symbols: &Symbols) -> String {
    let branch = text.starts_with("call") || text.starts_with('j') || text.starts_with("loop");
    let target =
        text.rsplit(' ').next().and_then(|op| op.strip_prefix("0x")).and_then(|h| u64::from_str_radix(h, 16).ok());
    match (branch, target.and_then(|t| symbols.describe(t))) {
        (true, Some(name)) => format!("{text} <{name}>"),
        _ => text.to_string(),
    }
}

/// Disassembles from the start of RIP's function (so the instructions before RIP decode on
/// their true boundaries) to some way past RIP. Without a symbol, starts at RIP.
fn code_around(ram: &GuestRam, r: &Regs, symbols: &Symbols) -> Code {
    let rip = r.regs.rip;
    let space = AddressSpace::from_sregs(&r.sregs);
    let mode = code_mode(&r.sregs);
    let linear_rip = instruction_linear_address(&r.regs, &r.sregs);
    let func = symbols.function(rip);
    let from = match func {
        Some((s, off)) if off <= MAX_FUNCTION_PREFIX => s.addr,
        _ => rip,
    };
    let mut lines = decode(ram, &space, mode, from, linear_rip.wrapping_sub(rip - from), rip);
    let mut current = lines.iter().position(|l| l.addr == rip);
    if current.is_none() && from != rip {
        // RIP is not on a boundary of the decode from the function start (data in code,
        // a bad symbol size): decode from RIP itself.
        lines = decode(ram, &space, mode, rip, linear_rip, rip);
        current = lines.iter().position(|l| l.addr == rip);
    }
    if let Some(c) = current {
        let first = c.saturating_sub(CODE_CONTEXT);
        lines.drain(..first);
        lines.truncate(c - first + CODE_CONTEXT + 1);
        current = Some(c - first);
    }
    let mut last_source: Option<String> = None;
    for l in &mut lines {
        l.label = symbols.function(l.addr).filter(|(_, off)| *off == 0).map(|(s, _)| s.name.clone());
        let src = symbols.locations(l.addr).pop();
        if src != last_source || l.label.is_some() {
            l.source = src.clone();
        }
        last_source = src;
        l.text = annotate(&l.text, symbols);
    }
    Code { lines, current, function: symbols.describe(rip), source: symbols.locations(rip) }
}

fn decode(
    ram: &GuestRam,
    space: &AddressSpace,
    mode: ttvm_vmm::insn::CodeMode,
    from: u64,
    linear_from: u64,
    rip: u64,
) -> Vec<CodeLine> {
    let len = (rip - from) as usize + 16 * (CODE_CONTEXT + 1);
    let bytes = read_mapped(ram, space, linear_from, len);
    disassemble(&bytes, from, mode, usize::MAX)
        .into_iter()
        .map(|l| CodeLine { addr: l.address, bytes: l.bytes, text: l.text, label: None, source: None })
        .collect()
}

fn memory_at(ram: &GuestRam, r: &Regs, mem: &MemTarget, symbols: &Symbols) -> Memory {
    let addr = mem.address(&r.regs);
    let space = AddressSpace::from_sregs(&r.sregs);
    let base = addr & !0xf;
    let mut rows = Vec::with_capacity(MEM_ROWS);
    for i in 0..MEM_ROWS as u64 {
        let a = base.wrapping_add(i * 16);
        let mut buf = [0u8; 16];
        // Rows are 16-byte aligned, so a row never straddles a page: one translation says
        // whether all of it is mapped.
        let bytes = match space.read_virt(ram, a, &mut buf) {
            Ok(()) => buf.iter().map(|&b| Some(b)).collect(),
            Err(_) => vec![None; 16],
        };
        rows.push(MemRow { addr: a, bytes });
    }
    Memory { addr, rows, symbol: symbols.describe(addr) }
}
