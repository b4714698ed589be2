//! `ttvm run`: boot a kernel with the free-running engine (no recording), and `ttvm resume`:
//! continue a free run from a snapshot `--save-state` wrote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use ttvm_vmm::clock::{Clock, HostClock};
use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::free_run::{run_free, FreeRunEnd, FreeRunError, FreeRunOptions};
use ttvm_vmm::machine::Machine;
use ttvm_vmm::profile::ProfileWriter;
use ttvm_vmm::snapshot::{self, SnapshotError};

use crate::exit_code::{self, Exit};
use crate::options::{MachineArgs, SerialArgs, SymbolArgs};

/// Arguments of `ttvm run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Run device time (timer interrupts, the RTC, the guest's idea of elapsed time) N
    /// times slower than host time, so a guest whose ring-0 code the host emulates slowly
    /// still has time between timer ticks [default: 10 for a Linux kernel, 1 otherwise].
    /// A snapshot keeps it; `resume` continues at the same rate.
    #[arg(long, value_name = "N", value_parser = slowdown_range())]
    pub slowdown: Option<u32>,
    #[command(flatten)]
    pub free: FreeRunArgs,
}

/// Arguments of `ttvm resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// A snapshot written by `ttvm run --save-state` (or an earlier `ttvm resume --save-state`),
    /// or a directory of live checkpoints (`ttvm run --checkpoints DIR`): its newest complete
    /// one, after a crash or a kill.
    pub snapshot: PathBuf,
    #[command(flatten)]
    pub serial: SerialArgs,
    /// Device time N times slower than host time from here on, instead of the rate the
    /// snapshot was running at (a guest that calibrated its timers against the old rate
    /// sees its clocks drift).
    #[arg(long, value_name = "N", value_parser = slowdown_range())]
    pub slowdown: Option<u32>,
    #[command(flatten)]
    pub free: FreeRunArgs,
}

/// `--slowdown`: 1 (host speed) to 1000.
fn slowdown_range() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=1000)
}

/// How long a free run goes and what it leaves behind.
#[derive(Debug, Args)]
pub struct FreeRunArgs {
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
    /// When the run is stopped (--timeout or Ctrl-C), write the whole machine (RAM, vCPU,
    /// devices, clocks) to FILE; `ttvm resume FILE` continues from there.
    #[arg(long, value_name = "FILE")]
    pub save_state: Option<PathBuf>,
    #[command(flatten)]
    pub live: super::live::LiveArgs,
}

pub fn run(args: RunArgs) -> Result<i32, Exit> {
    let (config, name) = args.machine.config()?;
    let is_linux = ttvm_vmm::boot::looks_like_linux(&config.kernel);
    let slowdown = args.slowdown.unwrap_or(if is_linux { LINUX_SLOWDOWN } else { 1 });
    let symbols = args.free.symbols.load(Some(&config.kernel))?;
    let mut machine =
        Machine::new(config).map_err(|e| Exit::new(exit_code::for_machine_error(&e), format!("{name}: {e}")))?;
    let output = args.machine.serial.output(ConsoleOutput::Stdout)?;
    let input = args.machine.serial.input()?;
    let clock = HostClock::new(slowdown);
    let live = args.free.live.start(&mut machine, &clock)?;
    drive(machine, clock, output, input, &args.free, symbols, live)
}

/// `--slowdown` for a Linux kernel when not given: its 250 Hz tick costs about 4 ms of
/// emulated ring 0 on PVM hosts, the whole tick period at host speed (see `HostClock`).
const LINUX_SLOWDOWN: u32 = 10;

pub fn resume(args: ResumeArgs) -> Result<i32, Exit> {
    // A snapshot holds RAM, not the kernel image, so the symbols cannot be checked against it.
    let symbols = args.free.symbols.load(None)?;
    if args.snapshot.is_dir() {
        args.free.live.refuse_for_dir(&args.snapshot)?;
        if args.slowdown.is_some() {
            return Err(Exit::new(
                exit_code::BAD_INPUT,
                "--slowdown: a checkpoint directory resumes at the rate its guest calibrated against",
            ));
        }
        let (machine, clock, live) = super::live::resume_dir(&args.snapshot)?;
        let output = args.serial.output(ConsoleOutput::Stdout)?;
        let input = args.serial.input()?;
        return drive(machine, clock, output, input, &args.free, symbols, Some(live));
    }
    let (mut machine, mut clock) = snapshot::load(&args.snapshot).map_err(|e| snapshot_exit(&e))?;
    if let Some(n) = args.slowdown {
        clock = HostClock::resumed_at(clock.now_ns(), n);
    }
    let rate = match clock.slowdown() {
        1 => "at host speed".to_string(),
        n => format!("{n} times slower than host time"),
    };
    eprintln!(
        "ttvm: resuming {} at {:.3} s of guest device time (running {rate}), RIP {:#x}",
        args.snapshot.display(),
        clock.now_ns() as f64 / 1e9,
        machine.vm.vcpu().rip()
    );
    let output = args.serial.output(ConsoleOutput::Stdout)?;
    let input = args.serial.input()?;
    let live = args.free.live.start(&mut machine, &clock)?;
    drive(machine, clock, output, input, &args.free, symbols, live)
}

fn snapshot_exit(e: &SnapshotError) -> Exit {
    let code = match e {
        SnapshotError::Io { .. } | SnapshotError::NotASnapshot(_) => exit_code::BAD_INPUT,
        SnapshotError::Damaged { .. } | SnapshotError::NewerFormat { .. } => exit_code::DAMAGED_TRACE,
        SnapshotError::Vm(ttvm_vmm::vm::VmError::Kvm(_)) => exit_code::NO_KVM,
        SnapshotError::Vm(_) | SnapshotError::Vcpu(_) => exit_code::HOST_ERROR,
    };
    Exit::new(code, e.to_string())
}

/// Runs `machine` with the free engine until the guest stops, the timeout expires or the
/// user presses Ctrl-C, then writes the profile and the snapshot that were asked for.
fn drive(
    mut machine: Machine,
    clock: HostClock,
    mut output: ConsoleOutput,
    mut input: ConsoleInput,
    args: &FreeRunArgs,
    symbols: Option<ttvm_vmm::symbols::SymbolTable>,
    mut live: Option<ttvm_vmm::live::LiveCheckpointer>,
) -> Result<i32, Exit> {
    let timeout = match args.timeout {
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(Exit::new(exit_code::BAD_INPUT, format!("--timeout {t}: must be a positive number of seconds")))
        }
        None => None,
    };
    if let Some(p) = &args.save_state {
        check_writable(p)?;
    }
    // Ctrl-C ends the run through the loop, so the profile and the snapshot are still written.
    let stop = Some(crate::signals::install_stop_flag());
    let options = FreeRunOptions { timeout, symbols, stop, clock };
    // Created before the run so a bad path fails now, not after an hour of booting.
    let mut profile = match &args.profile {
        Some(p) => Some(
            ProfileWriter::create(p, options.symbols.as_ref())
                .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("--profile {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let end = run_free(&mut machine, &mut output, &mut input, &options, profile.as_mut(), live.as_mut());
    if let Some(live) = live {
        super::live::finish(live)?;
    }
    if let (Some(profile), Some(path)) = (profile, &args.profile) {
        let samples = profile
            .finish()
            .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("--profile {}: {e}", path.display())))?;
        eprintln!("ttvm: profile of {samples} samples written to {}", path.display());
    }
    let end = end.map_err(|e| {
        let code = match e {
            FreeRunError::Checkpoint(_) => exit_code::HOST_ERROR,
            _ => exit_code::KVM_INTERNAL,
        };
        Exit::new(code, e.to_string())
    })?;
    let code = match &end {
        FreeRunEnd::Guest(stop) => {
            if !matches!(stop, ttvm_vmm::machine::GuestStop::DebugExit(_)) {
                eprintln!("ttvm: {stop}");
            }
            exit_code::for_guest_stop(stop)
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
    };
    if let Some(path) = &args.save_state {
        if matches!(end, FreeRunEnd::Guest(_)) {
            eprintln!("ttvm: the guest stopped by itself; no snapshot written to {}", path.display());
        } else {
            snapshot::save(&mut machine, &options.clock, path).map_err(|e| snapshot_exit(&e))?;
            eprintln!(
                "ttvm: machine state saved to {}; continue with `ttvm resume {}`",
                path.display(),
                path.display()
            );
        }
    }
    Ok(code)
}

/// Fails now, not after the run, if `path` cannot be created.
fn check_writable(path: &Path) -> Result<(), Exit> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("--save-state {}: {e}", path.display())))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Where the guest was at its last exit, for a run that ended without the guest stopping:
/// a kernel that hangs or spins shows its function (with `--symbols`) and whether it was in
/// user mode.
fn where_guest_was(machine: &Machine, options: &FreeRunOptions) -> String {
    let vcpu = machine.vm.vcpu();
    let (rip, ring) = (vcpu.rip(), vcpu.sregs().cs.dpl);
    let name = options.symbols.as_ref().and_then(|s| s.describe(rip));
    match name {
        Some(name) => format!("the guest was at RIP {rip:#x} ({name}) in ring {ring}"),
        None => format!("the guest was at RIP {rip:#x} in ring {ring}"),
    }
}
