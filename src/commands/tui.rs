//! `ttvm tui`: open a trace in the terminal UI.

use std::path::PathBuf;

use clap::Args;
use ttvm_tui::{TuiError, TuiExit};

use crate::commands::replay::{replay_exit, trace_exit};
use crate::exit_code::{self, Exit};
use crate::options::SymbolArgs;

/// Arguments of `ttvm tui`.
#[derive(Debug, Args)]
pub struct TuiArgs {
    /// The trace file.
    pub trace: PathBuf,
    #[command(flatten)]
    pub symbols: SymbolArgs,
}

pub fn run(args: TuiArgs) -> Result<i32, Exit> {
    let symbols = args.symbols.load_for_trace(&args.trace)?;
    match ttvm_tui::run_tui(&args.trace, symbols.as_ref()) {
        Ok(TuiExit::Quit) => Ok(0),
        // The usual shell convention for "stopped by signal N"; the terminal was restored.
        Ok(TuiExit::Signal(sig)) => Ok(128 + sig),
        Err(TuiError::Trace(e)) => Err(trace_exit(&args.trace, e)),
        Err(TuiError::Replay(e)) => Err(replay_exit(&args.trace, e)),
        Err(e @ TuiError::NotATerminal) => Err(Exit::new(exit_code::BAD_INPUT, e.to_string())),
        Err(e) => Err(Exit::new(exit_code::HOST_ERROR, format!("{}: {e}", args.trace.display()))),
    }
}
