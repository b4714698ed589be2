//! stepprobe: pins KVM single-step semantics for ttvm's tests.
//!
//! One `global_asm!` block holds an exact straight-line sequence with a
//! global label at each instruction boundary (see the asm below):
//! two nops, pushfq/pop/store of RFLAGS (into `probe_rflags_saved`), a `ud2`
//! whose #UD handler (`probe_ud_handler`: nop; add [rsp], 2; iretq) skips it,
//! two nops, `sti; nop; hlt; nop`, with `probe_irq_handler` (nop; EOI;
//! iretq) on vector 0x20, then a 32-bit write of 0 to port 0xf4.
//!
//! The PIC is remapped with every IRQ masked and the PIT is left alone: the
//! test injects vector 0x20 itself while the guest sits at `probe_hlt`.
//!
//! Command line:
//!   qemu   unmask IRQ 0 and run the PIT periodically (10 ms) before `sti`,
//!          so `hlt` is woken under QEMU. Periodic, not one-shot: an IRQ that
//!          is already pending at `sti` is taken before `hlt`, and only a
//!          later one wakes it.
#![no_std]
#![no_main]

use ttvm_kernel_support::{self as k, idt, pic, pit, println};

core::arch::global_asm!(
    r#"
    .section .text.stepprobe, "ax", @progbits
    .p2align 4
    .global probe_run
probe_run:
    .global probe_start
probe_start:        nop
    .global probe_n1
probe_n1:           nop
    .global probe_pushf
probe_pushf:        pushfq
    .global probe_pop
probe_pop:          pop rax
    .global probe_store
probe_store:        mov qword ptr [rip + probe_rflags_saved], rax
    .global probe_ud2
probe_ud2:          ud2
    .global probe_after_ud
probe_after_ud:     nop
    .global probe_after_ud2
probe_after_ud2:    nop
    .global probe_sti
probe_sti:          sti
    .global probe_nop_after_sti
probe_nop_after_sti: nop
    .global probe_hlt
probe_hlt:          hlt
    .global probe_after_hlt
probe_after_hlt:    nop
    .global probe_exit
probe_exit:         xor eax, eax
    mov dx, 0xf4
    out dx, eax
    .global probe_halt
probe_halt:         cli
    hlt
    jmp probe_halt

    /* #UD (vector 6): skip the 2-byte ud2. */
    .p2align 4
    .global probe_ud_handler
probe_ud_handler:   nop
    .global probe_ud_skip
probe_ud_skip:      add qword ptr [rsp], 2
    .global probe_iretq
probe_iretq:        iretq

    /* Vector 0x20 (IRQ 0): EOI the master PIC. */
    .p2align 4
    .global probe_irq_handler
probe_irq_handler:  nop
    .global probe_irq_eoi
probe_irq_eoi:      push rax
    mov al, 0x20
    out 0x20, al
    pop rax
    .global probe_irq_iretq
probe_irq_iretq:    iretq

    .section .data.stepprobe, "aw", @progbits
    .p2align 3
    .global probe_rflags_saved
probe_rflags_saved: .quad 0
"#
);

extern "C" {
    fn probe_run() -> !;
    static probe_ud_handler: u8;
    static probe_irq_handler: u8;
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "stepprobe");
    idt::set_gate(6, &raw const probe_ud_handler as u64);
    idt::set_gate(pic::irq_vector(0), &raw const probe_irq_handler as u64);
    if cmdline.flag("qemu") {
        pit::start_periodic(100);
        pic::unmask(pit::IRQ);
    }
    println!("stepprobe: running probe");
    unsafe { probe_run() }
}
