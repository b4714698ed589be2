//! `ttvm branch TRACE --at ICOUNT -o NEW`: go on from any point of a recorded history as a
//! new recording (or, with `--run`, as a free run) instead of the way it went.
//!
//! The parent is replayed to ICOUNT (verified on the way, as `ttvm replay` does), its machine
//! there is copied into a fresh VM (`ttvm_replay::branch`), and that machine is recorded from
//! exactly as `ttvm record --from SNAPSHOT` records a saved one.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use ttvm_replay::branch::{start_branch, BranchTo};
use ttvm_vmm::clock::HostClock;
use ttvm_vmm::console::ConsoleOutput;
use ttvm_vmm::cpuid::CpuVendor;
use ttvm_vmm::disk::DiskBackend;
use ttvm_vmm::snapshot::SnapshotOrigin;

use crate::commands::panic_watch::PanicWatch;
use crate::commands::record::{record_to_end, summary};
use crate::commands::replay::{open_recording, replay_to, session, stopped_before};
use crate::commands::run::{drive, FreeRunArgs, FreeStart};
use crate::exit_code::{self, Exit};
use crate::options::SerialArgs;

/// Arguments of `ttvm branch`.
#[derive(Debug, Args)]
pub struct BranchArgs {
    /// The recorded history to branch from.
    pub trace: PathBuf,
    /// The step of TRACE to go on from (`ttvm info --console` and gdb's `monitor icount`
    /// show steps).
    #[arg(long, value_name = "ICOUNT")]
    pub at: u64,
    /// The new trace to record into (its header names TRACE and ICOUNT).
    #[arg(short, long, value_name = "FILE", required_unless_present = "run", conflicts_with = "run")]
    pub output: Option<PathBuf>,
    /// Go on as a free run (nothing recorded) instead of recording.
    #[arg(long)]
    pub run: bool,
    /// Where the guest's serial port reads (the new input from ICOUNT on) and writes.
    #[command(flatten)]
    pub serial: SerialArgs,
    /// The image the parent's disk was recorded from (`record --disk FILE`), only read:
    /// sectors the parent never touched come from it. Without it the branch's disk is what
    /// the trace holds, and reading any other sector stops the branch with an error.
    #[arg(long, value_name = "FILE")]
    pub disk: Option<PathBuf>,
    /// Stop recording after this many steps of the branch.
    #[arg(long, value_name = "N", conflicts_with = "run")]
    pub max_steps: Option<u64>,
    /// Don't show the progress line.
    #[arg(long, short)]
    pub quiet: bool,
    /// With --run: how long the free run goes and what it leaves behind (`--checkpoint-every`
    /// here is a free run's live checkpoints; the new trace keeps its parent's checkpoint
    /// interval).
    #[command(flatten)]
    pub free: FreeRunArgs,
}

/// `ttvm branch`: the exit status (the guest's own when it exits, as `ttvm record`).
pub fn run(args: BranchArgs) -> Result<i32, Exit> {
    let started = Instant::now();
    if let Some(out) = &args.output {
        let same = std::fs::canonicalize(out).ok().is_some_and(|o| std::fs::canonicalize(&args.trace).ok() == Some(o));
        if same {
            return Err(Exit::new(
                exit_code::BAD_INPUT,
                format!("-o {}: that is the trace being branched; give a new file", out.display()),
            ));
        }
    }
    let rec = open_recording(&args.trace)?;
    if args.disk.is_some() && rec.header().disk.is_none() {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!("--disk: {} was recorded without a disk", args.trace.display()),
        ));
    }
    let length = rec.length();
    let guest_stopped = rec.end.as_ref().is_some_and(|e| e.stop.is_some());
    if args.at > length || (args.at == length && guest_stopped) {
        let why = if args.at > length { "past the end of its history" } else { "where the guest had stopped" };
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!(
                "{}: --at {} is {why} ({length} steps; branch at most at step {})",
                args.trace.display(),
                args.at,
                if guest_stopped { length.saturating_sub(1) } else { length }
            ),
        ));
    }
    let mut s = session(&args.trace, rec.clone())?;
    s.restore_checkpoint(rec.checkpoint_before(args.at)).map_err(|e| Exit::of(args.trace.display(), &e))?;
    if replay_to(&args.trace, &mut s, args.at, false)? {
        return Err(stopped_before(&args.trace, s.icount(), args.at, length));
    }
    let output = args.serial.output(if args.quiet { ConsoleOutput::Discard } else { ConsoleOutput::Stdout })?;
    let input = args.serial.input()?;
    if args.run {
        return run_free_branch(&args, s, output, input, started);
    }
    let Some(path) = &args.output else {
        return Err(Exit::new(exit_code::BAD_INPUT, "give -o NEW.ttvm (or --run)"));
    };
    let (output, panic) = PanicWatch::wrap(output, crate::signals::install_stop_flag());
    let to = BranchTo {
        parent: &args.trace,
        path,
        checkpoint_every: rec.header().checkpoint_every,
        stepping: ttvm_replay::stepping::host_signature(),
        output,
        input,
        disk_image: args.disk.as_deref(),
    };
    let branch = start_branch(&mut s, to).map_err(|e| Exit::of(args.trace.display(), &e))?;
    drop(s);
    eprintln!(
        "ttvm: branched {} at icount {} into {} in {:.0} ms; recording from there",
        args.trace.display(),
        args.at,
        path.display(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let r = record_to_end(branch, path, args.max_steps, Some(&panic), show_progress)?;
    eprintln!("{}", summary(path, &r));
    Ok(r.exit_status)
}

/// `--run`: the machine at ICOUNT goes on with the free engine, its device clock from the
/// parent's time there at host speed.
fn run_free_branch(
    args: &BranchArgs,
    mut s: ttvm_replay::replay::ReplaySession,
    output: ConsoleOutput,
    input: ttvm_vmm::console::ConsoleInput,
    started: Instant,
) -> Result<i32, Exit> {
    let header = s.rec.header().clone();
    // The disk at the branch point, written in memory only: the parent's image is its base
    // and is never modified, so the branch's disk writes end with the run.
    let disk = s.fork_disk(args.disk.as_deref()).map_err(|e| Exit::of(args.trace.display(), &e))?;
    if disk.is_some() {
        let why = "a branch's disk (its writes are kept in memory only, outside any snapshot)";
        args.free.live.refuse_with(why)?;
        if args.free.save_state.is_some() {
            return Err(Exit::new(exit_code::BAD_INPUT, format!("--save-state: not with {why}")));
        }
    }
    let symbols = args.free.symbols.load(Some(&header.machine.kernel))?;
    let mut machine = s.fork_machine().map_err(|e| Exit::of(args.trace.display(), &e))?;
    let start_ns = s.device_time_ns();
    drop(s);
    // The free engine lets the guest read KVM's TSC, as `ttvm run` does (on the PVM hosts
    // measured, the host's): it jumps ahead of the recording's emulated 1 GHz TSC, never
    // back. Device time goes on from the parent's.
    let clock = HostClock::resumed_at(start_ns, 1);
    let origin = SnapshotOrigin {
        kernel_name: header.kernel_name.clone(),
        neutral_vendor: machine.vm.cpuid().vendor_choice() == CpuVendor::Neutral,
        machine: header.machine,
    };
    let live = args.free.live.start(&mut machine, &clock, Some(&origin))?;
    eprintln!(
        "ttvm: branched {} at icount {} in {:.0} ms; running free from there ({:.3} s of device time)",
        args.trace.display(),
        args.at,
        started.elapsed().as_secs_f64() * 1e3,
        start_ns as f64 / 1e9
    );
    let disk = disk.map(|d| Box::new(d) as Box<dyn DiskBackend>);
    drive(FreeStart { machine, disk, clock, origin: Some(origin), symbols, live }, output, input, &args.free)
}
