//! IDT, exception reporting and interrupt dispatch.
//!
//! All 256 vectors go through 16-byte stubs (`ttvm_isr_stubs + 16 * vector`)
//! that push a uniform [`TrapFrame`]: a dummy error code where the CPU pushes
//! none, the vector, all GPRs. The common stub then saves the SSE/x87 state
//! with `fxsave` on a 16-byte aligned area below the frame (compiled Rust uses
//! xmm registers), calls [`ttvm_trap_dispatch`], and resumes whichever frame
//! that returns: the same one, or another thread's (see `thread`), restoring
//! that thread's fxsave area found at the same place below its frame.
use crate::cpu;
use core::arch::{asm, global_asm};
use core::mem::size_of;

/// Saved state of an interrupted context, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    // pushed by the CPU
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Bytes the common stub reserves below a frame for fxsave (512 + alignment).
pub const FXSAVE_RESERVE: usize = 512 + 16;

pub type Handler = fn(&mut TrapFrame);

global_asm!(
    r#"
    .section .text.ttvm_isr, "ax", @progbits
    .p2align 4
    .global ttvm_isr_stubs
ttvm_isr_stubs:
    .set .Lttvm_vec, 0
    .rept 256
    .p2align 4
    /* vectors with a CPU-pushed error code: #DF #TS #NP #SS #GP #PF #AC #CP #VC #SX */
    .if (.Lttvm_vec == 8) || (.Lttvm_vec == 10) || (.Lttvm_vec == 11) || (.Lttvm_vec == 12) || (.Lttvm_vec == 13) || (.Lttvm_vec == 14) || (.Lttvm_vec == 17) || (.Lttvm_vec == 21) || (.Lttvm_vec == 29) || (.Lttvm_vec == 30)
    .else
    pushq $0
    .endif
    pushq $.Lttvm_vec
    jmp ttvm_isr_common
    .set .Lttvm_vec, .Lttvm_vec + 1
    .endr

ttvm_isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rbx                 /* rbx = frame (callee-saved across the call) */
    subq $512, %rsp
    andq $-16, %rsp
    fxsave (%rsp)
    movq %rbx, %rdi
    call ttvm_trap_dispatch         /* returns the frame to resume */
    movq %rax, %rbx
    leaq -512(%rbx), %rsp
    andq $-16, %rsp
    fxrstor (%rsp)
    movq %rbx, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp                  /* vector, error code */
    iretq
"#,
    options(att_syntax)
);

extern "C" {
    static ttvm_isr_stubs: u8;
    /// Unmapped page below the boot stack (see `boot`).
    static boot_stack_guard: u8;
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    off_lo: u16,
    sel: u16,
    ist: u8,
    attr: u8,
    off_mid: u16,
    off_hi: u32,
    zero: u32,
}

static mut IDT: [Gate; 256] = [Gate { off_lo: 0, sel: 0, ist: 0, attr: 0, off_mid: 0, off_hi: 0, zero: 0 }; 256];
static mut HANDLERS: [Option<Handler>; 256] = [None; 256];

/// Vector of the double-fault exception, which runs on IST1.
const DOUBLE_FAULT: u8 = 8;

/// Loads the IDT with every vector pointing at its stub.
pub fn init() {
    let base = &raw const ttvm_isr_stubs as u64;
    for v in 0..256usize {
        set_gate(v as u8, base + 16 * v as u64);
    }
    unsafe {
        IDT[DOUBLE_FAULT as usize].ist = 1;
        #[repr(C, packed)]
        struct Ptr {
            limit: u16,
            base: u64,
        }
        let p = Ptr { limit: (size_of::<[Gate; 256]>() - 1) as u16, base: &raw const IDT as u64 };
        asm!("lidt [{}]", in(reg) &p, options(readonly, nostack, preserves_flags));
    }
}

/// Points `vector` at raw code `addr` (a 64-bit interrupt gate, DPL 0),
/// bypassing the common stub. `stepprobe` uses this for its exact handlers.
pub fn set_gate(vector: u8, addr: u64) {
    let g = Gate {
        off_lo: addr as u16,
        sel: crate::gdt::KERNEL_CS,
        ist: 0,
        attr: 0x8E, // present, interrupt gate (clears IF on entry)
        off_mid: (addr >> 16) as u16,
        off_hi: (addr >> 32) as u32,
        zero: 0,
    };
    unsafe { IDT[vector as usize] = g };
}

/// Installs a Rust handler for `vector` (called with interrupts disabled).
pub fn set_handler(vector: u8, h: Handler) {
    cpu::without_interrupts(|| unsafe { HANDLERS[vector as usize] = Some(h) });
}

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF",
    "reserved", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "reserved", "reserved", "reserved", "reserved", "reserved",
    "reserved", "#HV", "#VC", "#SX", "reserved",
];

/// Called by the common stub with interrupts disabled. Returns the frame to
/// resume: `frame` itself unless a handler asked for a thread switch.
#[no_mangle]
extern "C" fn ttvm_trap_dispatch(frame: *mut TrapFrame) -> *mut TrapFrame {
    let f = unsafe { &mut *frame };
    let v = f.vector as usize;
    match unsafe { HANDLERS[v] } {
        Some(h) => h(f),
        None if v < 32 => {
            crate::println!(
                "EXCEPTION: vector={} ({}) error={:#x} rip={:#x} cr2={:#x} rsp={:#x}",
                v,
                EXCEPTION_NAMES[v],
                f.error_code,
                f.rip,
                cpu::read_cr2(),
                f.rsp
            );
            let guard = &raw const boot_stack_guard as u64;
            if (guard..guard + 4096).contains(&cpu::read_cr2()) {
                crate::println!("(cr2 is in the boot stack's guard page: stack overflow)");
            }
            panic!("unhandled exception {} ({})", v, EXCEPTION_NAMES[v]);
        }
        None => {
            // An unexpected PIC IRQ: acknowledge it so it cannot wedge the PIC.
            if let Some(irq) = crate::pic::vector_irq(v as u8) {
                crate::pic::eoi(irq);
            }
            crate::println!("warning: unexpected interrupt vector {}", v);
        }
    }
    crate::thread::take_switch().unwrap_or(frame)
}
