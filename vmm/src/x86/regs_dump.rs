//! Human-readable register dumps for error reports (triple fault, internal errors).

use kvm_bindings::{kvm_regs, kvm_sregs};

/// Formats general and system registers the way kernel developers read them.
pub fn format_registers(r: &kvm_regs, s: &kvm_sregs) -> String {
    format!(
        "RIP={:016x} RFLAGS={:08x} CS={:04x} SS={:04x}\n\
         RAX={:016x} RBX={:016x} RCX={:016x} RDX={:016x}\n\
         RSI={:016x} RDI={:016x} RBP={:016x} RSP={:016x}\n\
         R8 ={:016x} R9 ={:016x} R10={:016x} R11={:016x}\n\
         R12={:016x} R13={:016x} R14={:016x} R15={:016x}\n\
         CR0={:016x} CR2={:016x} CR3={:016x} CR4={:016x}\n\
         EFER={:016x} GDT={:016x}/{:04x} IDT={:016x}/{:04x}",
        r.rip,
        r.rflags,
        s.cs.selector,
        s.ss.selector,
        r.rax,
        r.rbx,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi,
        r.rbp,
        r.rsp,
        r.r8,
        r.r9,
        r.r10,
        r.r11,
        r.r12,
        r.r13,
        r.r14,
        r.r15,
        s.cr0,
        s.cr2,
        s.cr3,
        s.cr4,
        s.efer,
        s.gdt.base,
        s.gdt.limit,
        s.idt.base,
        s.idt.limit,
    )
}
