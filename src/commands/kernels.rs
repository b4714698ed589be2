//! `ttvm kernels`: list the bundled sample kernels, or write one to a file (for gdb).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::exit_code::{Exit, BAD_INPUT, HOST_ERROR};

/// Arguments of `ttvm kernels`.
#[derive(Debug, Args)]
pub struct KernelsArgs {
    /// Write this sample kernel's ELF (with symbols and DWARF) to --output.
    #[arg(long, value_name = "NAME", requires = "output")]
    pub extract: Option<String>,
    /// Where to write the extracted ELF.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `ttvm kernels`: the exit status.
pub fn run(args: KernelsArgs) -> Result<i32, Exit> {
    match (args.extract, args.output) {
        (Some(name), Some(out)) => {
            let k = ttvm_sample_kernels::get(&name)
                .ok_or_else(|| Exit::new(BAD_INPUT, format!("no sample kernel named {name}")))?;
            std::fs::write(&out, k.elf).map_err(|e| Exit::new(HOST_ERROR, format!("{}: {e}", out.display())))?;
            Ok(0)
        }
        _ => {
            // A reader that stops early (`ttvm kernels | head`) is not an error.
            let mut out = std::io::stdout().lock();
            for k in ttvm_sample_kernels::all() {
                if writeln!(out, "{:<12} {}", k.name, k.description).is_err() {
                    break;
                }
            }
            Ok(0)
        }
    }
}
