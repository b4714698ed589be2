//! hello: prints `Hello from ttvm!` and `cmdline: <the command line>`, exits 0.
//!
//! Command line: anything; it is printed back verbatim.
#![no_std]
#![no_main]

use ttvm_kernel_support::{self as k, println};

#[no_mangle]
extern "C" fn kmain(info: &'static k::HvmStartInfo) -> ! {
    let cmdline = k::init(info, "hello");
    println!("Hello from ttvm!");
    println!("cmdline: {}", cmdline.as_str());
    k::exit(0)
}
