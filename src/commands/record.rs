//! `ttvm record`: record a kernel with the exact engine into a trace file.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use ttvm_replay::clock::ClockMode;
use ttvm_replay::record::{
    RecordEnd, RecordOptions, RecordProgress, RecordSession, RecordTo, DEFAULT_CHECKPOINT_EVERY,
};
use ttvm_vmm::console::ConsoleOutput;
use ttvm_vmm::disk::CowDisk;

use crate::commands::panic_watch::PanicWatch;
use crate::exit_code::{self, Exit};
use crate::options::MachineArgs;

/// Clock modes on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ClockArg {
    /// Guest time derived from the instruction count: deterministic.
    Icount,
    /// Guest time from the host clock: interrupt timing varies from run to run.
    Realtime,
}

impl From<ClockArg> for ClockMode {
    fn from(c: ClockArg) -> Self {
        match c {
            ClockArg::Icount => ClockMode::Icount,
            ClockArg::Realtime => ClockMode::Realtime,
        }
    }
}

/// Arguments of `ttvm record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The machine: kernel, RAM, command line, serial, initrd, disk.
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Trace file to write (default: NAME.ttvm in the current directory).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How guest time is derived (default: icount; realtime with --until-failure).
    #[arg(long, value_enum)]
    pub clock: Option<ClockArg>,
    /// Steps between checkpoints.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CHECKPOINT_EVERY, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: u64,
    /// Record from a machine `ttvm run --save-state` saved (booted at free-run speed), or
    /// from the newest complete checkpoint of a live-checkpoint directory (`ttvm run
    /// --checkpoints DIR`), instead of booting KERNEL: the saved state becomes the trace's
    /// first checkpoint, so the trace stays self-contained, and device time goes on from it.
    #[arg(long, value_name = "SNAPSHOT|DIR")]
    pub from: Option<PathBuf>,
    /// Stop recording after this many steps.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,
    /// Don't show the progress line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Record again and again until the guest exits with a failure (non-zero status, triple
    /// fault, halt), keeping only the failing trace. Uses the realtime clock unless --clock
    /// says otherwise, so interrupt timing varies between runs.
    #[arg(long)]
    pub until_failure: bool,
    /// With --until-failure: give up after this many runs.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "until_failure")]
    pub runs: u32,
}

/// The outcome of one recording, for `record` and `record --until-failure`.
pub struct Recorded {
    /// How the recording ended.
    pub end: RecordEnd,
    /// What it recorded (steps, events, checkpoints, bytes, time).
    pub progress: RecordProgress,
    /// ttvm's exit status for that end (the guest's own for a guest exit).
    pub exit_status: i32,
}

/// `NAME.ttvm` in the current directory, NAME the kernel file's stem.
pub fn default_output(kernel_name: &str) -> PathBuf {
    let stem = std::path::Path::new(kernel_name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into());
    PathBuf::from(format!("{stem}.ttvm"))
}

/// Maps a failure to start a recording to its exit, naming the kernel when the machine
/// could not be built and the trace file otherwise.
pub fn start_error_exit(kernel_name: &str, output: &std::path::Path, e: ttvm_replay::record::RecordError) -> Exit {
    match e {
        ttvm_replay::record::RecordError::Machine(_) => Exit::of(kernel_name, &e),
        ttvm_replay::record::RecordError::Disk(_) => Exit::of("--disk", &e),
        _ => Exit::of(output.display(), &e),
    }
}

/// Records once into `output`.
pub fn record_once(
    args: &RecordArgs,
    output: &std::path::Path,
    clock: ClockMode,
    show_progress: bool,
) -> Result<Recorded, Exit> {
    let console =
        args.machine.serial.output(if args.quiet { ConsoleOutput::Discard } else { ConsoleOutput::Stdout })?;
    let (console, panic) = PanicWatch::wrap(console, crate::signals::install_stop_flag());
    let input = args.machine.serial.input()?;
    let options = RecordOptions {
        clock,
        checkpoint_every: args.checkpoint_every,
        kernel_name: String::new(),
        stepping: ttvm_replay::stepping::host_signature(),
    };
    // Before the trace file exists: a Ctrl-C as soon as it does must finalise it, not kill us.
    crate::signals::install_stop_flag();
    let session = start_session(args, output, options, console, input)?;
    record_to_end(session, output, args.max_steps, Some(&panic), show_progress)
}

/// Records `session` until the guest stops, its kernel panics (`panic`, which watches the
/// session's output), `max_steps` or Ctrl-C, then finalises the trace at `output` (also when
/// recording fails: what was recorded is kept).
pub fn record_to_end(
    mut session: RecordSession,
    output: &std::path::Path,
    max_steps: Option<u64>,
    panic: Option<&PanicWatch>,
    show_progress: bool,
) -> Result<Recorded, Exit> {
    let stop = crate::signals::install_stop_flag();
    session.set_interrupt(stop);
    let progress_line = |p: &RecordProgress| {
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        eprint!(
            "\r\x1b[Kttvm record: {} steps  {:.2} M steps/s  {} events  {} checkpoints  {:.1} MiB",
            p.steps,
            p.steps as f64 / secs / 1e6,
            p.events,
            p.checkpoints,
            p.trace_bytes as f64 / (1 << 20) as f64
        );
    };
    let result = session.run(max_steps, stop, if show_progress { 200_000 } else { 0 }, progress_line);
    if show_progress {
        eprint!("\r\x1b[K");
    }
    let end = match result {
        // The watch raised the stop flag: the kernel panicked, nobody pressed Ctrl-C.
        Ok(RecordEnd::Interrupted) if panic.and_then(PanicWatch::reason).is_some() => {
            RecordEnd::Panicked { reason: panic.and_then(PanicWatch::reason).unwrap_or_default() }
        }
        Ok(end) => end,
        Err(e) => {
            // Keep what was recorded: finalise with the failure as the reason (which fails
            // too when the disk is full; the complete chunks written so far stay readable).
            let reason = RecordEnd::Interrupted;
            let kept = match session.finish(&reason) {
                Ok(_) => "the trace up to there was kept in",
                Err(_) => "the trace could not be finalised; its complete chunks up to there are readable in",
            };
            // A full disk is the host's fault, a failed KVM_RUN KVM's: the error's kind says.
            return Err(Exit::new(
                exit_code::for_kind(ttvm_vmm::error_kind::Classify::kind(&e)),
                format!("recording failed at step {}: {e}; {kept} {}", session.icount(), output.display()),
            ));
        }
    };
    let progress = session
        .finish(&end)
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("finalising {}: {e}", output.display())))?;
    let exit_status = match &end {
        RecordEnd::Guest(stop) => exit_code::for_guest_stop(stop),
        RecordEnd::StepLimit => exit_code::STEP_LIMIT,
        RecordEnd::Interrupted => exit_code::INTERRUPTED,
        RecordEnd::UserMode { .. } => exit_code::STEP_LIMIT,
        RecordEnd::Detached => 0,
        RecordEnd::Panicked { .. } => crate::commands::panic_watch::PANIC_EXIT,
    };
    Ok(Recorded { end, progress, exit_status })
}

/// The one-line report of a finished recording.
pub fn summary(output: &std::path::Path, r: &Recorded) -> String {
    let p = &r.progress;
    let secs = p.elapsed.as_secs_f64().max(1e-9);
    format!(
        "ttvm: recorded {} steps in {:.2} s ({:.3} M steps/s), {} events, {} checkpoints, {} ({}) -> {}",
        p.steps,
        secs,
        p.steps as f64 / secs / 1e6,
        p.events,
        p.checkpoints,
        human_bytes(p.trace_bytes),
        r.end.reason(),
        output.display()
    )
}

/// `n` bytes as B, KiB or MiB.
pub fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MiB", n as f64 / (1 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Starts the recording: a fresh boot of KERNEL, or the machine saved in `--from`.
fn start_session(
    args: &RecordArgs,
    output: &std::path::Path,
    mut options: RecordOptions,
    console: ConsoleOutput,
    input: ttvm_vmm::console::ConsoleInput,
) -> Result<RecordSession, Exit> {
    let Some(from) = &args.from else {
        let (config, kernel_name) = args.machine.config()?;
        options.kernel_name = kernel_name.clone();
        return RecordSession::start_with_disk(config, output, options, console, input, args.machine.disk.as_deref())
            .map_err(|e| start_error_exit(&kernel_name, output, e));
    };
    if args.machine.describes_a_machine() {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            "--from records the machine saved in the snapshot: give no KERNEL, --mem, --cmdline or --initrd",
        ));
    }
    let (loaded, what) = load_saved(from)?;
    let Some(origin) = loaded.origin else {
        let again = if from.is_dir() { "--checkpoint-every D --checkpoints DIR" } else { "--save-state FILE" };
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!(
                "{what}: written by an older ttvm, it does not hold the kernel it booted, which a trace must embed; \
                 save it again with this ttvm (`ttvm run KERNEL {again}`)"
            ),
        ));
    };
    // Device time goes on from the snapshot's; the recorded TSC (derived from it) must not
    // go back behind the value the guest last read, so time starts at whichever is later.
    let tsc_ns = ttvm_replay::clock::EngineClock::ns_at_tsc(loaded.tsc);
    let start_ns = ttvm_vmm::clock::Clock::now_ns(&loaded.clock).max(tsc_ns);
    options.kernel_name = origin.kernel_name.clone();
    let name = format!("{} ({what})", origin.kernel_name);
    let disk = open_cow_disk(args.machine.disk.as_deref())?;
    crate::commands::run::check_snapshot_disk(&loaded.machine, disk.as_ref().map(|(_, d)| d.capacity()))?;
    let to = RecordTo { path: output, options, output: console, input };
    RecordSession::start_from(loaded.machine, origin.machine, start_ns, disk, to)
        .map_err(|e| start_error_exit(&name, output, e))
}

/// The machine `--from` names, loaded, and how to name it: a `--save-state` snapshot, or
/// the newest usable checkpoint of a live-checkpoint directory. Both load into the same
/// `LoadedSnapshot` (the machine, its device clock, its TSC and what it booted from).
fn load_saved(from: &std::path::Path) -> Result<(ttvm_vmm::snapshot::LoadedSnapshot, String), Exit> {
    if from.is_dir() {
        let (loaded, what) = crate::commands::live::load_for_recording(from)?;
        eprintln!("ttvm: recording from {what}");
        return Ok((loaded, what));
    }
    let loaded = ttvm_vmm::snapshot::load(from).map_err(|e| Exit::of("", &e))?;
    Ok((loaded, format!("snapshot {}", from.display())))
}

/// `--disk FILE` for a recording that starts from a running machine: the image behind
/// copy-on-write (a recording never modifies it).
pub fn open_cow_disk(path: Option<&std::path::Path>) -> Result<Option<(&std::path::Path, CowDisk)>, Exit> {
    path.map(|p| CowDisk::open(p).map(|d| (p, d)).map_err(|e| Exit::of("--disk", &e))).transpose()
}

/// The name a recording's default trace file is made from: the kernel's, or the snapshot's.
fn recording_name(args: &RecordArgs) -> Result<String, Exit> {
    match &args.from {
        Some(snapshot) => Ok(snapshot.to_string_lossy().into_owned()),
        None => args.machine.kernel_name().map(str::to_string),
    }
}

/// `ttvm record`: the exit status.
pub fn run(args: RecordArgs) -> Result<i32, Exit> {
    let output = match &args.output {
        Some(o) => o.clone(),
        None => default_output(&recording_name(&args)?),
    };
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    if args.until_failure {
        return until_failure(&args, &output, show_progress);
    }
    let clock = args.clock.map(ClockMode::from).unwrap_or(ClockMode::Icount);
    let r = record_once(&args, &output, clock, show_progress)?;
    eprintln!("{}", summary(&output, &r));
    Ok(r.exit_status)
}

/// Whether a recording ended in a guest failure worth keeping.
fn is_failure(end: &RecordEnd) -> bool {
    use ttvm_replay::events::StopKind;
    match end {
        RecordEnd::Guest(StopKind::DebugExit(code)) => *code != 0,
        RecordEnd::Guest(_) | RecordEnd::Panicked { .. } => true,
        RecordEnd::StepLimit | RecordEnd::Interrupted | RecordEnd::UserMode { .. } | RecordEnd::Detached => false,
    }
}

fn until_failure(args: &RecordArgs, output: &std::path::Path, show_progress: bool) -> Result<i32, Exit> {
    let clock = args.clock.map(ClockMode::from).unwrap_or(ClockMode::Realtime);
    let scratch = output.with_extension("ttvm.tmp");
    for run in 1..=args.runs {
        let r = record_once(args, &scratch, clock, show_progress)?;
        eprintln!("ttvm: run {run}/{}: {}", args.runs, r.end.reason());
        if is_failure(&r.end) {
            std::fs::rename(&scratch, output)
                .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("{}: {e}", output.display())))?;
            eprintln!("{}", summary(output, &r));
            eprintln!("ttvm: the failure was recorded on run {run}; the trace is {}", output.display());
            return Ok(r.exit_status);
        }
        if matches!(r.end, RecordEnd::Interrupted) {
            let _ = std::fs::remove_file(&scratch);
            return Ok(exit_code::INTERRUPTED);
        }
    }
    let _ = std::fs::remove_file(&scratch);
    Err(Exit::new(
        exit_code::CHECK_FAILED,
        format!("no failure in {} runs of {} ({clock} clock); nothing kept", args.runs, recording_name(args)?),
    ))
}
