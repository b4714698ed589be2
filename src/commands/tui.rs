//! `ttvm tui`: open a trace in the terminal UI.

use std::path::PathBuf;

use clap::Args;
use ttvm_tui::{TuiError, TuiExit};

use crate::exit_code::Exit;
use crate::options::SymbolArgs;

/// Arguments of `ttvm tui`.
#[derive(Debug, Args)]
pub struct TuiArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Kernel symbols for names in messages.
    #[command(flatten)]
    pub symbols: SymbolArgs,
}

/// `ttvm tui`: the exit status.
pub fn run(args: TuiArgs) -> Result<i32, Exit> {
    let symbols = args.symbols.load_for_trace(&args.trace)?;
    match ttvm_tui::run_tui(&args.trace, symbols.as_ref()) {
        Ok(TuiExit::Quit) => Ok(0),
        // The usual shell convention for "stopped by signal N"; the terminal was restored.
        Ok(TuiExit::Signal(sig)) => Ok(128 + sig),
        Err(e @ TuiError::NotATerminal) => Err(Exit::of("", &e)),
        Err(e) => Err(Exit::of(args.trace.display(), &e)),
    }
}
