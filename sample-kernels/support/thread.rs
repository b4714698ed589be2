//! A tiny cooperative + preemptive round-robin thread switcher.
//!
//! A thread is a saved [`TrapFrame`] on its own stack (with its fxsave area
//! just below, where the common interrupt stub puts it). Switching happens
//! only on the way out of an interrupt: a handler calls [`schedule`], which
//! records the interrupted frame and picks the next runnable thread, and
//! `ttvm_trap_dispatch` resumes that thread's frame instead. [`yield_now`]
//! enters the same interrupt path as vector 0x81, so cooperative and
//! preemptive switches share one path. It builds the interrupt frame by
//! hand instead of executing `int 0x81`: KVM's instruction emulator (which
//! runs guest ring 0 on some hosts, e.g. ttvm's machines) cannot emulate
//! `int n` outside real mode.
//! Thread 0 is the boot thread running `kmain`.
use crate::cpu;
use crate::idt::{self, TrapFrame, FXSAVE_RESERVE};
use core::mem::size_of;

pub const MAX_THREADS: usize = 8;
/// Vector number [`yield_now`] presents to the dispatcher.
pub const YIELD_VECTOR: u8 = 0x81;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    Unused,
    Runnable,
    Finished,
}

#[derive(Clone, Copy)]
struct Thread {
    frame: u64,
    state: State,
}

static mut THREADS: [Thread; MAX_THREADS] = [Thread { frame: 0, state: State::Unused }; MAX_THREADS];
static mut CURRENT: usize = 0;
static mut FINISHED: usize = 0;
/// Frame to resume instead of the interrupted one (0: none). Set by
/// `schedule`, consumed by the dispatcher.
static mut SWITCH_TO: u64 = 0;

fn on_yield(frame: &mut TrapFrame) {
    schedule(frame);
}

/// Makes the boot thread thread 0 and installs the yield vector.
pub fn init() {
    unsafe {
        THREADS[0] = Thread { frame: 0, state: State::Runnable };
        CURRENT = 0;
    }
    idt::set_handler(YIELD_VECTOR, on_yield);
}

extern "C" fn trampoline(entry: usize, arg: usize) -> ! {
    // SAFETY: `spawn` stored a `fn(usize)` in rdi.
    let entry: fn(usize) = unsafe { core::mem::transmute(entry) };
    entry(arg);
    exit()
}

/// Creates a runnable thread running `entry(arg)` with interrupts enabled, on
/// a fresh stack of `stack_size` bytes. Returns its id.
pub fn spawn(entry: fn(usize), arg: usize, stack_size: usize) -> usize {
    cpu::without_interrupts(|| unsafe {
        let id =
            (1..MAX_THREADS).find(|&i| THREADS[i].state == State::Unused).unwrap_or_else(|| panic!("too many threads"));
        let stack = crate::mem::alloc(stack_size, 16) as u64;
        let top = stack + stack_size as u64;
        // Entry rsp: as if `trampoline` had been called (rsp % 16 == 8), with
        // a zero return address so debuggers stop unwinding there.
        let rsp = top - 8;
        (rsp as *mut u64).write(0);
        let frame_addr = (rsp - 64 - size_of::<TrapFrame>() as u64) & !15;
        assert!(frame_addr - FXSAVE_RESERVE as u64 > stack);
        let frame = TrapFrame {
            rip: trampoline as extern "C" fn(usize, usize) -> ! as usize as u64,
            cs: crate::gdt::KERNEL_CS as u64,
            rflags: 0x202, // IF
            rsp,
            ss: crate::gdt::KERNEL_DS as u64,
            rdi: entry as usize as u64,
            rsi: arg as u64,
            ..TrapFrame::default()
        };
        (frame_addr as *mut TrapFrame).write(frame);
        // A valid initial SSE/x87 image where the stub will fxrstor it from.
        let fx = (frame_addr - 512) & !15;
        core::arch::asm!("fxsave [{}]", in(reg) fx, options(nostack, preserves_flags));
        THREADS[id] = Thread { frame: frame_addr, state: State::Runnable };
        id
    })
}

/// Round robin: from an interrupt handler, saves `frame` as the current
/// thread's state and arranges to resume the next runnable thread.
pub fn schedule(frame: &mut TrapFrame) {
    unsafe {
        THREADS[CURRENT].frame = frame as *mut TrapFrame as u64;
        for k in 1..=MAX_THREADS {
            let i = (CURRENT + k) % MAX_THREADS;
            if THREADS[i].state == State::Runnable {
                if i != CURRENT {
                    CURRENT = i;
                    SWITCH_TO = THREADS[i].frame;
                }
                return;
            }
        }
        panic!("no runnable thread");
    }
}

/// Used by the dispatcher: the frame chosen by the last `schedule`, if any.
pub(crate) fn take_switch() -> Option<*mut TrapFrame> {
    unsafe {
        let f = SWITCH_TO;
        SWITCH_TO = 0;
        (f != 0).then_some(f as *mut TrapFrame)
    }
}

core::arch::global_asm!(
    r#"
    .section .text.ttvm_yield, "ax", @progbits
    .global ttvm_yield
    /* Enter the common interrupt stub as if `int 0x81` had been executed at
       the return address: push SS, RSP, RFLAGS, CS, RIP, error code, vector. */
ttvm_yield:
    movq %rsp, %rax                 /* rax = &return address */
    pushfq
    popq %rdx                       /* RFLAGS, with the caller's IF */
    cli
    pushq $0x10                     /* SS */
    leaq 8(%rax), %rcx
    pushq %rcx                      /* RSP after returning */
    pushq %rdx                      /* RFLAGS */
    pushq $0x08                     /* CS */
    pushq (%rax)                    /* RIP = return address */
    pushq $0                        /* error code */
    pushq $0x81                     /* vector */
    jmp ttvm_isr_common
"#,
    options(att_syntax)
);

extern "C" {
    fn ttvm_yield();
}

/// Gives the CPU to the next runnable thread.
pub fn yield_now() {
    unsafe { ttvm_yield() };
}

/// Ends the calling thread (never thread 0).
pub fn exit() -> ! {
    cpu::cli();
    unsafe {
        THREADS[CURRENT].state = State::Finished;
        FINISHED += 1;
    }
    yield_now();
    unreachable!("finished thread resumed");
}

pub fn current() -> usize {
    unsafe { CURRENT }
}

/// Number of threads that have returned from their entry function.
pub fn finished() -> usize {
    cpu::without_interrupts(|| unsafe { FINISHED })
}
