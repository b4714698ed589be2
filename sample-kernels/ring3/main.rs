//! ring3: enters user mode and makes system calls the way Linux does, then exits 0.
//!
//! The kernel loads a GDT with Linux's selectors (kernel CS 0x10, SS 0x18; user CS 0x33,
//! SS 0x2b), points LSTAR at an entry stub through a high-half alias of the kernel (Linux's
//! entry_SYSCALL_64 lives at 0xffffffff8...; the #PF gate is moved there too), sets STAR,
//! SFMASK and the two GS bases like Linux, then IRETQs to a user page that is not present
//! yet. Each step prints a line, so a run shows how far the CPU (or the hypervisor's
//! emulation of it) got:
//!
//! - `ring3: first user fetch ...`: the fetch fault from ring 3, which the kernel fixes by
//!   mapping the page before the fetch is retried (Linux maps a program's text this way).
//! - The user code spins a little (`spin=N` iterations, 50 000 000 by default; with the flag
//!   `tick`, the PIT interrupts it at 1 kHz, or `hz=N`),
//!   then makes two SYSCALLs. The entry stub SWAPGSes like Linux's. `ring3: syscall 1 ...`
//!   reports the CS/SS the stub ran with and the user RIP/RFLAGS it found in RCX/R11, then
//!   the GS bases after SWAPGS; SYSRETQ returns 7.
//! - `ring3: syscall 2 ...` reports the value user code got back (and the tick count); user
//!   code then reads a kernel page, and the kernel reports that page fault and exits 0.
//! - With the flag `rdtsc`, user mode starts with an RDTSC instead and hands its value to
//!   system call 3, which prints `ring3: user-mode rdtsc read 0x…` and exits 0.
//! - Any other fault prints the exception, its CS:RIP and RCX/R11 and exits 3.
//! - A timer tick whose frame has IF clear (delivered when the CPU would have held it back)
//!   prints where it arrived and exits 4.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::mem::size_of;
use core::sync::atomic::{AtomicU64, Ordering};

use ttvm_kernel_support::gdt::Tss;
use ttvm_kernel_support::{self as k, cpu, idt, println, TrapFrame};

const KERNEL_CS: u16 = 0x10;
const KERNEL_DS: u16 = 0x18;
const USER32_CS: u16 = 0x23;
const USER_DS: u16 = 0x2b;
const USER_CS: u16 = 0x33;
const TSS_SEL: u16 = 0x38;

/// Linux's __KERNEL_CS / __USER32_CS pair: SYSCALL loads CS from bits 47:32, SYSRET from
/// bits 63:48 (+16 for 64-bit code), SS from those plus 8.
const STAR: u64 = ((USER32_CS as u64 & !3) << 48) | ((KERNEL_CS as u64) << 32);
/// Linux's SYSCALL_MASK: TF, DF, IF, IOPL, AC, NT.
const SFMASK: u64 = 0x47700;
const MSR_EFER: u32 = 0xc000_0080;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_SFMASK: u32 = 0xc000_0084;
const EFER_SCE: u64 = 1;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// GS bases as Linux keeps them in user mode: the user's in GS, the kernel's per-CPU base
/// in KERNEL_GS_BASE for the entry code's SWAPGS.
const USER_GS_BASE: u64 = 0x1111_0000;
const KERNEL_GS_BASE: u64 = 0x2222_0000;

/// Where the kernel's first GiB is mapped again, as Linux maps its text at -2 GiB.
const HIGH_ALIAS: u64 = 0xffff_ffff_8000_0000;
const USER_PAGE_FLAG: u64 = 1 << 2;
const PRESENT: u64 = 1;
const TWO_MIB: usize = 2 << 20;
/// A kernel (supervisor-only) address the user code reads last: its #PF ends the run.
const KERNEL_PROBE: u64 = 0x10_0000;

static mut TSS: Tss = Tss::EMPTY;

static mut GDT: [u64; 9] = [
    0,
    0x00AF_9A00_0000_FFFF, // 0x08: 64-bit code, DPL 0 (support crate, IDT gates)
    0x00AF_9A00_0000_FFFF, // 0x10: 64-bit code, DPL 0 (Linux's __KERNEL_CS)
    0x00CF_9200_0000_FFFF, // 0x18: data, DPL 0
    0x00CF_FA00_0000_FFFF, // 0x20: 32-bit code, DPL 3
    0x00CF_F200_0000_FFFF, // 0x28: data, DPL 3
    0x00AF_FA00_0000_FFFF, // 0x30: 64-bit code, DPL 3
    0,                     // 0x38: TSS (low)
    0,                     // 0x40: TSS (high)
];

#[repr(C, align(16))]
struct Stack([u8; 16384]);
/// Kernel stack for entries from ring 3 (TSS.RSP0) and for the SYSCALL stub.
static mut KERNEL_STACK: Stack = Stack([0; 16384]);

#[repr(C, packed)]
struct DescPtr {
    limit: u16,
    base: u64,
}

fn load_gdt() {
    // SAFETY: single-threaded boot code; the GDT keeps the support crate's code selector, so
    // the IDT and the running CS stay valid across the LGDT.
    unsafe {
        TSS.rsp[0] = (&raw const KERNEL_STACK as u64) + size_of::<Stack>() as u64;
        let base = &raw const TSS as u64;
        let limit = (size_of::<Tss>() - 1) as u64;
        GDT[7] = (limit & 0xFFFF) | (base & 0xFF_FFFF) << 16 | 0x89 << 40 | ((base >> 24) & 0xFF) << 56;
        GDT[8] = base >> 32;
        let ptr = DescPtr { limit: (size_of::<[u64; 9]>() - 1) as u16, base: &raw const GDT as u64 };
        asm!(
            "lgdt [{ptr}]",
            "mov ds, {ds:e}",
            "mov es, {ds:e}",
            "mov ss, {ds:e}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            ds = in(reg) KERNEL_DS as u32,
            tss = in(reg) TSS_SEL,
        );
    }
}

fn wrmsr(msr: u32, value: u64) {
    // SAFETY: only the architectural SYSCALL MSRs are written, with valid values.
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32) };
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads an architectural MSR.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi) };
    (hi as u64) << 32 | lo as u64
}

fn read_cr3() -> u64 {
    let cr3: u64;
    // SAFETY: reads CR3.
    unsafe { asm!("mov {}, cr3", out(reg) cr3) };
    cr3
}

/// Entry `index` of the (identity-mapped) page table at physical `table`.
fn pte(table: u64, index: u64) -> *mut u64 {
    ((table & 0x000f_ffff_ffff_f000) + 8 * index) as *mut u64
}

/// Maps the first GiB again at [`HIGH_ALIAS`] and makes the 2 MiB page at `user` (identity
/// mapped by boot, below 1 GiB) user-accessible; kernel pages stay supervisor-only.
fn map_pages(user: u64) {
    let pml4 = read_cr3();
    // SAFETY: the boot page tables are identity mapped and only this CPU uses them; the new
    // PDPT is a fresh page. User bits on the upper levels expose nothing by themselves: the
    // leaf entries decide.
    unsafe {
        let low_pdpt = *pte(pml4, 0);
        let high_pdpt = k::mem::alloc(4096, 4096) as u64;
        for i in 0..512 {
            *pte(high_pdpt, i) = 0;
        }
        *pte(high_pdpt, (HIGH_ALIAS >> 30) & 511) = *pte(low_pdpt, 0);
        *pte(pml4, 511) = high_pdpt | 0x3;
        *pte(pml4, 0) |= USER_PAGE_FLAG;
        *pte(low_pdpt, 0) |= USER_PAGE_FLAG;
        // The user page's own entry starts not present (and supervisor-only): the first user
        // fetch faults and the #PF handler maps it, as Linux maps a program's text on its
        // first fetch.
        let pde = pte(*pte(low_pdpt, 0), (user >> 21) & 511);
        *pde &= !PRESENT;
        USER_PDE.store(pde as u64, Ordering::SeqCst);
        USER_BASE.store(user, Ordering::SeqCst);
        asm!("mov cr3, {}", in(reg) pml4);
    }
}

global_asm!(
    r#"
    .set KERNEL_PROBE, {probe}
    .section .text.ring3_user, "ax", @progbits
    .global ring3_user_start
    .global ring3_user_end
ring3_user_start:
    // The count is patched in from `spin=` (the immediate is the instruction's bytes 1-4).
    mov ecx, 50000000
1:  dec ecx
    jnz 1b
    mov eax, 1
    mov edi, 0x1234
    syscall
    mov edi, eax
    mov eax, 2
    syscall
    mov rax, [KERNEL_PROBE]
    ud2
    // With the flag `rdtsc` user mode starts here instead: a user-mode RDTSC, its value
    // handed to system call 3.
    .global ring3_user_rdtsc
ring3_user_rdtsc:
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov rdi, rax
    mov eax, 3
    syscall
    ud2
ring3_user_end:

    .section .text.ring3_entry, "ax", @progbits
    .global ring3_syscall_entry
ring3_syscall_entry:
    swapgs
    mov [rip + ring3_user_rsp], rsp
    lea rsp, [rip + ring3_syscall_stack_top]
    push rcx
    push r11
    mov rsi, rdi
    mov rdi, rax
    mov r8, rcx
    mov r9, r11
    mov edx, cs
    mov ecx, ss
    call ring3_syscall_dispatch
    pop r11
    pop rcx
    mov rsp, [rip + ring3_user_rsp]
    swapgs
    sysretq

    .section .bss.ring3, "aw", @nobits
    .p2align 4
ring3_user_rsp:
    .skip 8
    .skip 8192
ring3_syscall_stack_top:
"#,
    probe = const KERNEL_PROBE,
);

extern "C" {
    static ring3_user_start: u8;
    static ring3_user_end: u8;
    static ring3_user_rdtsc: u8;
    static ring3_syscall_entry: u8;
}

/// Called by the SYSCALL entry stub (through the high alias) with the system call number,
/// its argument, the CS/SS the stub ran with and the user RIP/RFLAGS from RCX/R11.
#[no_mangle]
extern "C" fn ring3_syscall_dispatch(nr: u64, arg: u64, cs: u64, ss: u64, rcx: u64, r11: u64) -> u64 {
    match nr {
        1 => {
            println!(
                "ring3: syscall 1 (arg {:#x}) entered with cs={:#x} ss={:#x}, user rip={:#x} rflags={:#x}",
                arg,
                cs & 0xffff,
                ss & 0xffff,
                rcx,
                r11
            );
            println!(
                "ring3: after swapgs gs.base={:#x} kernel_gs_base={:#x}",
                rdmsr(MSR_GS_BASE),
                rdmsr(MSR_KERNEL_GS_BASE)
            );
            7
        }
        2 => {
            println!("ring3: syscall 2: user code got {} back from sysret", arg);
            if TICKS.load(Ordering::SeqCst) > 0 {
                println!(
                    "ring3: ticks so far: {} ({} in user mode)",
                    TICKS.load(Ordering::SeqCst),
                    USER_TICKS.load(Ordering::SeqCst)
                );
            }
            0
        }
        3 => {
            println!("ring3: user-mode rdtsc read {:#x}", arg);
            k::exit(0)
        }
        _ => {
            println!("ring3: unknown syscall {}", nr);
            k::exit(2)
        }
    }
}

/// Points IDT vector 14 at the high alias of its stub: Linux's #PF handler lives at
/// 0xffffffff8..., and where it lives matters to ttvm's breakpoint on it.
fn move_page_fault_gate_high() {
    #[repr(C, packed)]
    struct Idtr {
        limit: u16,
        base: u64,
    }
    let mut idtr = Idtr { limit: 0, base: 0 };
    // SAFETY: SIDT stores 10 bytes into a live local; the gate rewrite keeps selector and
    // attributes and only moves the offset to the alias of the same code.
    unsafe {
        asm!("sidt [{}]", in(reg) &mut idtr, options(nostack));
        let gate = (idtr.base + 14 * 16) as *mut u8;
        let low = u64::from(core::ptr::read_unaligned(gate as *const u16))
            | u64::from(core::ptr::read_unaligned(gate.add(6) as *const u16)) << 16
            | u64::from(core::ptr::read_unaligned(gate.add(8) as *const u32)) << 32;
        let high = HIGH_ALIAS.wrapping_add(low);
        core::ptr::write_unaligned(gate as *mut u16, high as u16);
        core::ptr::write_unaligned(gate.add(6) as *mut u16, (high >> 16) as u16);
        core::ptr::write_unaligned(gate.add(8) as *mut u32, (high >> 32) as u32);
    }
}

/// The page-directory entry of the user page, and the page's address.
static USER_PDE: AtomicU64 = AtomicU64::new(0);
static USER_BASE: AtomicU64 = AtomicU64::new(0);

fn on_fault(f: &mut TrapFrame) {
    let cr2 = if f.vector == 14 { cpu::read_cr2() } else { 0 };
    let user = USER_BASE.load(Ordering::SeqCst);
    if f.vector == 14 && f.cs & 3 == 3 && cr2 & !(TWO_MIB as u64 - 1) == user && f.rip == cr2 {
        println!("ring3: first user fetch at {:#x} faulted (error {:#x}); page opened to user mode", cr2, f.error_code);
        // SAFETY: USER_PDE points into the identity-mapped boot page directory.
        unsafe {
            *(USER_PDE.load(Ordering::SeqCst) as *mut u64) |= USER_PAGE_FLAG | PRESENT;
            asm!("invlpg [{}]", in(reg) user);
        }
        return; // the fetch is retried
    }
    if f.vector == 14 && f.cs & 3 == 3 && cr2 == KERNEL_PROBE {
        println!("ring3: user read of kernel page {:#x} faulted (error {:#x}) at {:#x}:{:#x}", cr2, f.error_code, f.cs, f.rip);
        k::exit(0)
    }
    println!(
        "ring3: exception {} (error {:#x}) at {:#x}:{:#x} cr2={:#x} rcx={:#x} r11={:#x} rflags={:#x}",
        f.vector,
        f.error_code,
        f.cs,
        f.rip,
        cr2,
        f.rcx,
        f.r11,
        f.rflags
    );
    k::exit(3)
}

static TICKS: AtomicU64 = AtomicU64::new(0);
/// Ticks that interrupted user code.
static USER_TICKS: AtomicU64 = AtomicU64::new(0);

/// Iterations of the user-mode spin loop before the first SYSCALL (`spin=N`): long enough
/// by default for the PIT to interrupt it under `tick`; tests that record every user
/// instruction pass a small count.
const DEFAULT_SPIN: u64 = 50_000_000;

/// The loop counts ECX down to zero, so a count must fit 32 bits and be at least 1.
fn spin_count(n: u64) -> u32 {
    match u32::try_from(n) {
        Ok(n) if n > 0 => n,
        _ => {
            println!("ring3: spin={} is out of range (1..=4294967295)", n);
            k::exit(2)
        }
    }
}

const RFLAGS_IF: u64 = 1 << 9;

fn on_tick(f: &mut TrapFrame) {
    // An interrupt gate is only taken with IF set: a frame without it means the hypervisor
    // (or ttvm) delivered an interrupt the CPU would have held back.
    if f.rflags & RFLAGS_IF == 0 {
        println!("ring3: timer interrupt delivered with interrupts disabled at {:#x}:{:#x}", f.cs, f.rip);
        k::exit(4)
    }
    TICKS.fetch_add(1, Ordering::SeqCst);
    if f.cs & 3 == 3 {
        USER_TICKS.fetch_add(1, Ordering::SeqCst);
    }
    k::pic::eoi(k::pit::IRQ);
}

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "ring3");
    let spin = spin_count(cmdline.u64("spin", DEFAULT_SPIN));
    if cmdline.flag("tick") {
        idt::set_handler(k::pic::irq_vector(k::pit::IRQ), on_tick);
        k::pit::start_periodic(u32::try_from(cmdline.u64("hz", 1000)).unwrap_or(u32::MAX));
        k::pic::unmask(k::pit::IRQ);
    }
    for vector in [1u8, 6, 13, 14] {
        idt::set_handler(vector, on_fault);
    }
    load_gdt();
    let user = k::mem::alloc(TWO_MIB, TWO_MIB) as u64;
    // SAFETY: copies the position-independent user code into the fresh user page.
    unsafe {
        let start = &raw const ring3_user_start;
        let len = &raw const ring3_user_end as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, user as *mut u8, len);
        // `mov ecx, imm32` is B9 followed by the count.
        debug_assert_eq!(*(user as *const u8), 0xb9);
        core::ptr::write_unaligned((user + 1) as *mut u32, spin);
    }
    map_pages(user);
    move_page_fault_gate_high();
    wrmsr(MSR_STAR, STAR);
    // black_box: folded into the symbol reference, the alias would not fit a 32-bit relocation.
    let entry = core::hint::black_box(&raw const ring3_syscall_entry as u64);
    wrmsr(MSR_LSTAR, HIGH_ALIAS.wrapping_add(entry));
    wrmsr(MSR_SFMASK, SFMASK);
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    wrmsr(MSR_GS_BASE, USER_GS_BASE);
    wrmsr(MSR_KERNEL_GS_BASE, KERNEL_GS_BASE);
    println!("ring3: star={:#x} lstar={:#x} efer={:#x}", rdmsr(MSR_STAR), rdmsr(MSR_LSTAR), rdmsr(MSR_EFER));
    let user_rsp = user + TWO_MIB as u64 - 64;
    let user_entry = if cmdline.flag("rdtsc") {
        user + (&raw const ring3_user_rdtsc as u64 - &raw const ring3_user_start as u64)
    } else {
        user
    };
    // SAFETY: IRETQ to ring 3 at the user page, with the user stack at its top. IF is set as
    // Linux sets it for user mode (PVM hosts force it on in ring 3 anyway); only the PIT
    // interrupts the user code, and only with `tick`.
    unsafe {
        asm!(
            "push {ss}",
            "push {rsp}",
            "push {rflags}",
            "push {cs}",
            "push {rip}",
            "iretq",
            ss = in(reg) USER_DS as u64,
            rsp = in(reg) user_rsp,
            rflags = in(reg) 0x202u64,
            cs = in(reg) USER_CS as u64,
            rip = in(reg) user_entry,
            options(noreturn),
        );
    }
}
