//! `ttvm run`: boot a kernel with the free-running engine (no recording).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::free_run::{run_free, FreeRunEnd, FreeRunOptions};
use ttvm_vmm::machine::Machine;

use crate::exit_code::{self, Exit};
use crate::options::{MachineArgs, SymbolArgs};

/// Arguments of `ttvm run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Stop after this many seconds of host time (exit status 73).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    #[command(flatten)]
    pub symbols: SymbolArgs,
}

pub fn run(args: RunArgs) -> Result<i32, Exit> {
    let (config, name) = args.machine.config()?;
    let symbols = args.symbols.load()?;
    let mut machine =
        Machine::new(config).map_err(|e| Exit::new(exit_code::for_machine_error(&e), format!("{name}: {e}")))?;
    let mut output = match &args.machine.serial_out {
        Some(p) => {
            ConsoleOutput::file(p).map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("{}: {e}", p.display())))?
        }
        None => ConsoleOutput::Stdout,
    };
    let mut input = serial_input(&args.machine.serial_in)?;
    let timeout = match args.timeout {
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(Exit::new(exit_code::BAD_INPUT, format!("--timeout {t}: must be a positive number of seconds")))
        }
        None => None,
    };
    let end = run_free(&mut machine, &mut output, &mut input, &FreeRunOptions { timeout, symbols })
        .map_err(|e| Exit::new(exit_code::KVM_INTERNAL, e.to_string()))?;
    Ok(match end {
        FreeRunEnd::Guest(stop) => {
            let code = exit_code::for_guest_stop(&stop);
            if !matches!(stop, ttvm_vmm::machine::GuestStop::DebugExit(_)) {
                eprintln!("ttvm: {stop}");
            }
            code
        }
        FreeRunEnd::Timeout => {
            eprintln!("ttvm: timeout after {:.1} s", args.timeout.unwrap_or_default());
            exit_code::TIMEOUT
        }
    })
}

/// The serial input: a file when given, otherwise stdin.
pub fn serial_input(path: &Option<PathBuf>) -> Result<ConsoleInput, Exit> {
    match path {
        Some(p) => ConsoleInput::from_file(p)
            .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("--serial-in {}: {e}", p.display()))),
        None => Ok(ConsoleInput::stdin()),
    }
}
