//! PVH entry: the Xen ELF note and the 32-bit -> 64-bit switch.
//!
//! The loader (ttvm or QEMU) enters `pvh_start32` in flat 32-bit protected
//! mode, paging off, with `ebx` = physical address of `struct hvm_start_info`.
//! We build identity page tables for the first 4 GiB with 2 MiB pages (1 GiB
//! pages are not assumed), except the first 2 MiB, mapped with 4 KiB pages so
//! that a guard page below the boot stack stays unmapped (stack overflow:
//! #PF, then #DF on its own IST stack). Page 0 stays mapped: QEMU's PVH
//! option ROM puts the memory map there. The kernel
//! image must fit in those 2 MiB (checked by linker.ld). Then we enable
//! PAE + EFER.LME (+NXE if present) + paging,
//! far-jump to 64-bit code, enable SSE (the precompiled `core` uses xmm
//! registers), zero .bss and call the kernel's `kmain(start_info)`.

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const HVM_START_MAGIC: u32 = 0x336e_c578;

/// `struct hvm_start_info` (Xen PVH ABI, linux include/xen/interface/hvm/start_info.h).
#[repr(C)]
pub struct HvmStartInfo {
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    /// Version 1 and later only.
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HvmMemmapEntry {
    pub addr: u64,
    pub size: u64,
    /// 1 = RAM (E820 types).
    pub kind: u32,
    pub reserved: u32,
}

impl HvmStartInfo {
    /// The E820-style memory map, if the loader provided one (version >= 1).
    pub fn memmap(&self) -> &'static [HvmMemmapEntry] {
        if self.magic != HVM_START_MAGIC || self.version < 1 || self.memmap_paddr == 0 {
            return &[];
        }
        let n = (self.memmap_entries as usize).min(128);
        // Identity-mapped physical memory.
        unsafe { core::slice::from_raw_parts(self.memmap_paddr as *const HvmMemmapEntry, n) }
    }
}

core::arch::global_asm!(
    r#"
    /* Xen ELF note: PHYS32_ENTRY (type 18). The value is 8 bytes: QEMU reads
       8 bytes for ELF64, linux-loader reads the low 4. */
    .section .note.Xen, "a", @note
    .p2align 2
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_start32
    .p2align 2

    .section .text.boot, "ax", @progbits
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, %esi                 /* start_info; cpuid below clobbers ebx */
    lgdt boot_gdt_ptr
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss

    /* PML4 and PDPT: zero them (only entries we set may be present). */
    movl $boot_pml4, %edi
    xorl %eax, %eax
    movl $2048, %ecx                /* 2 pages of dwords */
    rep stosl
    movl $boot_pdpt + 0x3, boot_pml4            /* P | RW */
    movl $boot_pd + 0x3, boot_pdpt
    movl $boot_pd + 0x1003, boot_pdpt + 8
    movl $boot_pd + 0x2003, boot_pdpt + 16
    movl $boot_pd + 0x3003, boot_pdpt + 24
    /* 4 page directories = 2048 entries of 2 MiB: identity map 0..4 GiB. */
    movl $boot_pd, %edi
    movl $0x83, %eax                /* P | RW | PS */
    movl $2048, %ecx
1:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b
    /* The first 2 MiB: 4 KiB pages, with the stack guard page absent. */
    movl $boot_pt0, %edi
    movl $0x3, %eax                 /* P | RW */
    movl $512, %ecx
1:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x1000, %eax
    addl $8, %edi
    loop 1b
    movl $boot_stack_guard, %eax
    shrl $12, %eax
    movl $0, boot_pt0(,%eax,8)      /* below the boot stack */
    movl $boot_pt0 + 0x3, boot_pd

    movl $boot_pml4, %eax
    movl %eax, %cr3

    movl %cr4, %eax
    orl $(1 << 5), %eax             /* CR4.PAE */
    movl %eax, %cr4

    /* EFER.LME, plus EFER.NXE when CPUID advertises NX. */
    movl $(1 << 8), %edi
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb 2f
    movl $0x80000001, %eax
    cpuid
    btl $20, %edx
    jnc 2f
    orl $(1 << 11), %edi
2:  movl $0xC0000080, %ecx
    rdmsr
    orl %edi, %eax
    wrmsr

    movl %cr0, %eax
    orl $0x80000003, %eax           /* PG | MP | PE */
    andl $0xFFFFFFF3, %eax          /* clear EM, TS: SSE usable */
    movl %eax, %cr0
    ljmp $0x08, $boot_long_mode

    .code64
boot_long_mode:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movq $boot_stack_top, %rsp
    movq %cr4, %rax
    orq $((1 << 9) | (1 << 10)), %rax   /* OSFXSR | OSXMMEXCPT */
    movq %rax, %cr4
    fninit                          /* MXCSR keeps its reset value 0x1f80 */

    /* Zero .bss (8-byte aligned, length a multiple of 16 per linker.ld). */
    movq $__bss_start, %rdi
    movq $__bss_end, %rcx
    subq %rdi, %rcx
    shrq $3, %rcx
    xorl %eax, %eax
    rep stosq

    movl %esi, %edi                 /* zero-extends: rdi = &hvm_start_info */
    xorl %ebp, %ebp
    call kmain
3:  cli
    hlt
    jmp 3b

    .section .rodata.boot, "a", @progbits
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF        /* 0x10: data */
boot_gdt_ptr:
    .word boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt

    .section .boot_bss, "aw", @nobits
    .p2align 12
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4 * 4096
boot_pt0:   .skip 4096
    .global boot_stack_guard
boot_stack_guard:
    .skip 4096                      /* left unmapped */
    .skip 64 * 1024
    .global boot_stack_top
boot_stack_top:
    .skip 16 * 1024
    .global ttvm_df_stack_top
ttvm_df_stack_top:
"#,
    options(att_syntax)
);
