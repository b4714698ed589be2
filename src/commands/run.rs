//! `ttvm run`: boot a kernel with the free-running engine (no recording).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::free_run::{run_free, FreeRunEnd, FreeRunOptions};
use ttvm_vmm::machine::Machine;
use ttvm_vmm::profile::ProfileWriter;

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
    /// Sample the guest RIP every 10 ms of host time and write where the guest spent its
    /// time to FILE, rewritten every minute and when the run ends (function names with
    /// --symbols).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
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
    // Ctrl-C ends the run through the loop, so the profile is still written.
    let stop = Some(crate::signals::install_stop_flag());
    let options = FreeRunOptions { timeout, symbols, stop };
    // Created before the run so a bad path fails now, not after an hour of booting.
    let mut profile = match &args.profile {
        Some(p) => Some(
            ProfileWriter::create(p, options.symbols.as_ref())
                .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("--profile {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let end = run_free(&mut machine, &mut output, &mut input, &options, profile.as_mut());
    if let (Some(profile), Some(path)) = (profile, &args.profile) {
        let samples = profile
            .finish()
            .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("--profile {}: {e}", path.display())))?;
        eprintln!("ttvm: profile of {samples} samples written to {}", path.display());
    }
    let end = end.map_err(|e| Exit::new(exit_code::KVM_INTERNAL, e.to_string()))?;
    Ok(match end {
        FreeRunEnd::Guest(stop) => {
            let code = exit_code::for_guest_stop(&stop);
            if !matches!(stop, ttvm_vmm::machine::GuestStop::DebugExit(_)) {
                eprintln!("ttvm: {stop}");
            }
            code
        }
        FreeRunEnd::Timeout => {
            eprintln!(
                "ttvm: timeout after {:.1} s; {}",
                args.timeout.unwrap_or_default(),
                where_guest_was(&machine, &options)
            );
            exit_code::TIMEOUT
        }
        FreeRunEnd::Interrupted => {
            eprintln!("ttvm: interrupted; {}", where_guest_was(&machine, &options));
            exit_code::INTERRUPTED
        }
    })
}

/// Where the guest was at its last exit, for a run that ended without the guest stopping:
/// a kernel that hangs or spins shows its function (with `--symbols`) and whether it was in
/// user mode.
fn where_guest_was(machine: &ttvm_vmm::machine::Machine, options: &FreeRunOptions) -> String {
    let vcpu = machine.vm.vcpu();
    let (rip, ring) = (vcpu.rip(), vcpu.sregs().cs.dpl);
    let name = options.symbols.as_ref().and_then(|s| s.describe(rip));
    match name {
        Some(name) => format!("the guest was at RIP {rip:#x} ({name}) in ring {ring}"),
        None => format!("the guest was at RIP {rip:#x} in ring {ring}"),
    }
}

/// The serial input: a file when given, otherwise stdin.
pub fn serial_input(path: &Option<PathBuf>) -> Result<ConsoleInput, Exit> {
    match path {
        Some(p) => ConsoleInput::from_file(p)
            .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("--serial-in {}: {e}", p.display()))),
        None => Ok(ConsoleInput::stdin()),
    }
}
