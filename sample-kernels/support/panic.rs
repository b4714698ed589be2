//! The single panic path: `PANIC: <message> at <file>:<line>`, exit code 13.
use core::panic::PanicInfo;

static mut PANICKING: bool = false;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    crate::cpu::cli();
    unsafe {
        if PANICKING {
            // Panicked while reporting a panic: just stop.
            crate::exit(crate::EXIT_PANIC);
        }
        PANICKING = true;
    }
    // The message's own arguments are formatted by whoever built it: our
    // `panic!` wraps them (see `fmt`); panics raised inside `core` (bounds
    // checks, `assert_eq!`) format integers with `core`, which needs SSE
    // emulation. Print the prefix first so something always gets out.
    crate::serial::write_str("PANIC: ");
    crate::serial::_print(format_args!("{}", info.message()));
    match info.location() {
        Some(l) => crate::println!(" at {}:{}", l.file(), l.line()),
        None => crate::println!(""),
    }
    crate::exit(crate::EXIT_PANIC)
}

/// The precompiled `core` is built with panic=unwind, so its unwind tables
/// name this personality routine. With panic=abort nothing ever unwinds.
#[no_mangle]
extern "C" fn rust_eh_personality() {}
