//! ttvm_kernel_support: the runtime shared by ttvm's sample kernels.
//!
//! Boot (PVH 32-bit entry -> 64-bit long mode), COM1 serial, GDT/TSS, IDT with
//! exception and IRQ stubs, 8259 PIC, 8254 PIT, command line, a small thread
//! switcher, mem* functions and the panic path.
//!
//! Each kernel defines `#[no_mangle] extern "C" fn kmain(info: &'static HvmStartInfo) -> !`
//! and starts with [`init`].
//!
//! Formatting caveat: `print!`, `println!` and this crate's `panic!` format
//! their arguments with [`fmt`], never with `core`'s integer formatting,
//! which uses SSE instructions that KVM's instruction emulator cannot run
//! (this matters on hosts that emulate guest ring 0, like ttvm's machines).
//! For the same reason all kernel code is built without SSE.
//!
//! Red-zone caveat: kernels are built with `-C no-redzone`, but the precompiled
//! `core` of the host sysroot is not. Non-generic `core` functions (the `fmt`
//! machinery, str/utf8 helpers) must therefore not run with interrupts enabled,
//! or an interrupt frame could overwrite their red zone. `print!`/`println!`
//! disable interrupts while formatting for that reason.
#![no_std]
// Port I/O and the mem* functions are unsafe by nature; their contracts are the
// obvious ones (valid port, valid ranges).
#![allow(clippy::missing_safety_doc)]

/// `panic!("fmt", args...)` with arguments formatted by [`fmt`] (not by
/// `core`, whose integer formatting needs SSE emulation; see `fmt`). Kernels
/// import it (`use ttvm_kernel_support::panic;`) to shadow the prelude's.
#[macro_export]
macro_rules! panic {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {
        ::core::panic!("{}", format_args!($fmt $(, $crate::fmt::W(&$arg))*))
    };
}

pub mod boot;
pub mod cmdline;
pub mod cpu;
pub mod fmt;
pub mod gdt;
pub mod idt;
pub mod mem;
pub mod pci;
mod panic;
pub mod pic;
pub mod pit;
pub mod serial;
pub mod thread;

pub use boot::HvmStartInfo;
pub use cmdline::Cmdline;
pub use idt::TrapFrame;

/// Port the exit code is written to (QEMU's isa-debug-exit, ttvm's exit device).
pub const EXIT_PORT: u16 = 0xf4;
/// Exit code used by the panic path.
pub const EXIT_PANIC: u32 = 13;

/// First thing every kernel calls: serial, the `ttvm-sample <name>` banner,
/// GDT/TSS, IDT, PIC (remapped, all masked), free-memory bookkeeping, cmdline.
pub fn init(info: &'static HvmStartInfo, name: &str) -> Cmdline {
    serial::init();
    println!("ttvm-sample {}", name);
    gdt::init();
    idt::init();
    pic::init();
    if info.magic != boot::HVM_START_MAGIC {
        println!("warning: bad hvm_start_info magic {:#x}", info.magic);
    }
    mem::init(info);
    cmdline::init(info)
}

/// Writes `code` to the exit port (32-bit `out`; ttvm exits with exactly `code`,
/// QEMU with `(code << 1) | 1`), then halts if nothing stopped the machine.
pub fn exit(code: u32) -> ! {
    unsafe { cpu::outl(EXIT_PORT, code) };
    halt_forever()
}

/// `cli; hlt` forever: the fallback when no exit device is present.
pub fn halt_forever() -> ! {
    loop {
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
