//! `ttvm tui`: open a trace in the terminal UI, or a network recording directory in the
//! network view (the VMs' timelines stacked, frames as arrows, cursors at the cut).

use std::path::PathBuf;

use clap::Args;
use ttvm_tui::{TuiError, TuiExit};

use crate::exit_code::Exit;
use crate::options::SymbolArgs;

/// Arguments of `ttvm tui`.
#[derive(Debug, Args)]
pub struct TuiArgs {
    /// The trace file, or a network recording directory (`ttvm record --vm … -o DIR`).
    pub trace: PathBuf,
    /// Kernel symbols for names in messages.
    #[command(flatten)]
    pub symbols: SymbolArgs,
}

/// `ttvm tui`: the exit status.
pub fn run(args: TuiArgs) -> Result<i32, Exit> {
    let result = if ttvm_tui::network::is_network_dir(&args.trace) {
        if args.symbols.symbols.is_some() {
            return Err(Exit::new(
                crate::exit_code::BAD_INPUT,
                "--symbols applies to one trace: open the VM's trace file with it (its VMs may run different kernels)",
            ));
        }
        ttvm_tui::network::run_network_tui(&args.trace)
    } else {
        let symbols = args.symbols.load_for_trace(&args.trace)?;
        ttvm_tui::run_tui(&args.trace, symbols.as_ref())
    };
    match result {
        Ok(TuiExit::Quit) => Ok(0),
        // The usual shell convention for "stopped by signal N"; the terminal was restored.
        Ok(TuiExit::Signal(sig)) => Ok(128 + sig),
        Err(e @ TuiError::NotATerminal) => Err(Exit::of("", &e)),
        Err(e) => Err(Exit::of(args.trace.display(), &e)),
    }
}
