//! `ttvm replay`: replay a trace, checking every step against the log.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use clap::Args;
use ttvm_replay::free_interval::FreeInterval;
use ttvm_replay::recording::Recording;
use ttvm_replay::replay::{ReplaySession, ReplayStep};
use ttvm_vmm::console::ConsoleOutput;

use crate::exit_code::{self, Exit};

/// Arguments of `ttvm replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Exit 0 only if every event, the serial output, every checkpoint passed and the final
    /// state digest match the recording (an unfinalised trace, whose end is unknown, exits
    /// 77 after verifying what it holds, as `ttvm check` does). With --to, the range ends there: the events and
    /// output before it, and the state at it if a checkpoint is recorded there, are checked.
    #[arg(long)]
    pub verify: bool,
    /// Start from this checkpoint instead of the boot image.
    #[arg(long, value_name = "K")]
    pub from_checkpoint: Option<usize>,
    /// Stop at this icount (with --verify: verify the history up to it).
    #[arg(long, value_name = "ICOUNT")]
    pub to: Option<u64>,
    /// With --verify: check the whole trace as N pieces at once (one process each, cut at
    /// checkpoints; each piece ends by comparing the state with the checkpoint the next
    /// starts from).
    #[arg(long, value_name = "N", requires = "verify", conflicts_with_all = ["from_checkpoint", "to", "gdb"])]
    pub jobs: Option<usize>,
    /// With --verify: check only piece K of N, cut as --jobs N cuts the trace (for a CI
    /// system's own parallel jobs: one runner per piece; all N passing verify the trace).
    #[arg(long, value_name = "K/N", requires = "verify", conflicts_with_all = ["from_checkpoint", "to", "gdb", "jobs"])]
    pub piece: Option<String>,
    /// Serve the trace to gdb on [ADDR:]PORT instead of replaying straight through.
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub gdb: Option<String>,
    /// With --gdb: write the kernel ELF embedded in the trace to FILE (for gdb's symbols).
    #[arg(long, value_name = "FILE", requires = "gdb")]
    pub write_kernel: Option<PathBuf>,
    /// Kernel symbols for names in messages.
    #[command(flatten)]
    pub symbols: crate::options::SymbolArgs,
    /// Don't echo the guest's serial output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Single-step everything: do not run intervals at free-run speed (each is otherwise run
    /// natively between its anchors and checked against the checkpoint ending it); with
    /// --gdb, seeks, runs and skipped intervals single-step too.
    #[arg(long)]
    pub step_all: bool,
}

/// Opens a trace, mapping errors to exit statuses.
pub fn open_recording(path: &std::path::Path) -> Result<Rc<Recording>, Exit> {
    Recording::open(path).map(Rc::new).map_err(|e| Exit::of(path.display(), &e))
}

/// Builds a replay session for `rec`.
pub fn session(path: &std::path::Path, rec: Rc<Recording>) -> Result<ReplaySession, Exit> {
    ReplaySession::new(rec, &ttvm_replay::stepping::host_signature()).map_err(|e| Exit::of(path.display(), &e))
}

/// Replays `s` up to `target`. Returns whether the guest stopped before reaching it
/// (a guest stops only in the recording's last step, so before `target` that means the
/// replay went wrong).
/// Intervals run at free-run speed (those with events between their anchors, format 7 on)
/// and are verified against the checkpoint that ends them
/// (`ReplaySession::try_free_interval`) unless `step_all`.
pub(crate) fn replay_to(
    path: &std::path::Path,
    s: &mut ReplaySession,
    target: u64,
    step_all: bool,
) -> Result<bool, Exit> {
    while s.icount() < target {
        if !step_all && s.try_free_interval(target).map_err(|e| Exit::of(path.display(), &e))? == FreeInterval::Verified
        {
            continue;
        }
        match s.step().map_err(|e| Exit::of(path.display(), &e))? {
            ReplayStep::Stepped => {}
            ReplayStep::Stopped(_) | ReplayStep::AtEnd => return Ok(s.icount() < target),
        }
    }
    Ok(false)
}

/// Says how much of a replay ran at free-run speed.
fn free_run_note(s: &ReplaySession) {
    let f = s.free_stats;
    if f.tried > 0 {
        eprintln!(
            "ttvm: {} of {} intervals ran at free-run speed ({} of them with events, run between their anchors) \
             and matched their end checkpoint ({} steps in {:.2} s, {} breakpoint exits); the rest were single-stepped{}",
            f.verified,
            f.tried,
            f.with_events,
            f.steps,
            f.time.as_secs_f64(),
            f.breakpoint_hits,
            if f.fallbacks == Default::default() { String::new() } else { format!(": {}", f.fallbacks) }
        );
    }
}

pub(crate) fn stopped_before(path: &std::path::Path, icount: u64, target: u64, length: u64) -> Exit {
    let goal = if target == length { format!("the end of history ({length})") } else { format!("icount {target}") };
    Exit::new(exit_code::DIVERGENCE, format!("{}: replay stopped at icount {icount} before {goal}", path.display()))
}

/// What a verify that reached the end of `rec` compared there, for its report.
pub fn end_checked(rec: &Recording) -> &'static str {
    if rec.end.is_some() {
        "output and final state digest match"
    } else {
        "output matches, but the trace was not finalised (a killed or truncated recording): \
         how it ended and its final state cannot be checked (status 77, as `ttvm check`)"
    }
}

/// The status of a verify that reached the end of the history: 0 only when the trace is
/// finalised, so its outcome and final state were compared too; an unfinalised trace
/// verifies as far as it goes but is not called verified.
pub fn whole_verify_status(rec: &Recording) -> i32 {
    if rec.end.is_some() {
        0
    } else {
        exit_code::CHECK_FAILED
    }
}

/// Names the checkpoints either side of `icount`, so a user can pick a --to whose state
/// is compared.
fn checkpoints_around(rec: &Recording, icount: u64) -> String {
    let after = rec.checkpoints.partition_point(|c| c.engine.icount <= icount);
    let Some(before) = after.checked_sub(1) else {
        return "the trace has no checkpoint before it".into();
    };
    let at = |k: usize| rec.checkpoints[k].engine.icount;
    match rec.checkpoints.get(after) {
        Some(c) => format!("checkpoints {before} and {after} are at icounts {} and {}", at(before), c.engine.icount),
        None => format!("the last checkpoint, {before}, is at icount {}", at(before)),
    }
}

/// Replays the whole of `rec` and checks every event, checkpoint, the output and the final
/// digest. Returns the number of steps replayed and the seconds it took.
pub fn verify_whole(path: &std::path::Path, rec: Rc<Recording>, echo: bool) -> Result<(u64, f64), Exit> {
    let mut s = session(path, rec.clone())?;
    if echo {
        s.set_echo(Some(ConsoleOutput::Stdout));
    }
    let started = Instant::now();
    if replay_to(path, &mut s, rec.length(), false)? {
        return Err(stopped_before(path, s.icount(), rec.length(), rec.length()));
    }
    s.verify_end().map_err(|e| Exit::of(path.display(), &e))?;
    Ok((rec.length(), started.elapsed().as_secs_f64()))
}

/// `ttvm replay`: the exit status.
pub fn run(args: ReplayArgs) -> Result<i32, Exit> {
    if args.trace.is_dir() {
        // A network recording (`ttvm record --vm … -o DIR`): a gdb port per VM, or every VM
        // and every frame verified.
        if let Some(addr) = &args.gdb {
            if args.symbols.symbols.is_some() {
                return Err(Exit::new(
                    exit_code::BAD_INPUT,
                    "--symbols names one kernel's functions; a network's VMs each have their own",
                ));
            }
            return crate::commands::network::gdb::serve_network(
                &args.trace,
                addr,
                args.write_kernel.as_deref(),
                args.step_all,
            );
        }
        return crate::commands::network::dir::replay_verify(&args.trace, args.verify);
    }
    if let Some(addr) = &args.gdb {
        let symbols = args.symbols.load_for_trace(&args.trace)?;
        return crate::commands::gdb_server::serve_replay(
            &args.trace,
            addr,
            args.write_kernel.as_deref(),
            symbols,
            args.step_all,
        );
    }
    let rec = open_recording(&args.trace)?;
    if let Some(note) = &rec.file.recovery_note {
        eprintln!("ttvm: note: {note}");
    }
    if let Some(jobs) = args.jobs.filter(|&n| n > 1) {
        return crate::commands::verify_pieces::verify_in_pieces(&args.trace, &rec, jobs);
    }
    let (mut from_checkpoint, mut to) = (args.from_checkpoint, args.to);
    if let Some(spec) = &args.piece {
        use crate::commands::verify_pieces::{parse_piece, piece_range};
        let (k, n) = parse_piece(spec).map_err(|e| Exit::new(exit_code::BAD_INPUT, e))?;
        let Some((checkpoint, end)) = piece_range(&rec, k, n) else {
            eprintln!(
                "ttvm: piece {k}/{n} is empty: this trace's {} checkpoints cut it into fewer than {k} pieces; \
                 the other pieces cover it",
                rec.checkpoints.len()
            );
            return Ok(0);
        };
        eprintln!(
            "ttvm: piece {k}/{n}: from checkpoint {checkpoint} (icount {}) to {}",
            rec.checkpoints[checkpoint].engine.icount,
            end.map_or("the end".to_string(), |t| format!("icount {t}"))
        );
        (from_checkpoint, to) = (Some(checkpoint), end);
    }
    let mut s = session(&args.trace, rec.clone())?;
    if !args.quiet {
        s.set_echo(Some(ConsoleOutput::Stdout));
    }
    if let Some(k) = from_checkpoint {
        if k >= rec.checkpoints.len() {
            return Err(Exit::new(
                exit_code::BAD_INPUT,
                format!(
                    "--from-checkpoint {k}: the trace has {} checkpoints (0..={})",
                    rec.checkpoints.len(),
                    rec.checkpoints.len() - 1
                ),
            ));
        }
        s.restore_checkpoint(k).map_err(|e| Exit::of(args.trace.display(), &e))?;
    }
    let target = match to {
        Some(t) if t > rec.length() => {
            return Err(Exit::new(
                exit_code::BAD_INPUT,
                format!("--to {t}: past the end of the recorded history ({} steps)", rec.length()),
            ))
        }
        Some(t) if t < s.icount() => {
            return Err(Exit::new(
                exit_code::BAD_INPUT,
                format!("--to {t}: before the starting checkpoint (icount {})", s.icount()),
            ))
        }
        Some(t) => t,
        None => rec.length(),
    };
    let from = s.icount();
    let started = Instant::now();
    let stopped_early = replay_to(&args.trace, &mut s, target, args.step_all)?;
    free_run_note(&s);
    let steps = s.icount() - from;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rate = steps as f64 / secs / 1e6;
    if !args.verify {
        eprintln!("ttvm: replayed {steps} steps to icount {} in {secs:.2} s", s.icount());
        return Ok(0);
    }
    if stopped_early {
        return Err(stopped_before(&args.trace, s.icount(), target, rec.length()));
    }
    if target == rec.length() {
        s.verify_end().map_err(|e| Exit::of(args.trace.display(), &e))?;
        eprintln!(
            "ttvm: verified {steps} steps from icount {from} in {secs:.2} s ({rate:.3} M steps/s): every event, checkpoint, {}",
            end_checked(&rec)
        );
        return Ok(whole_verify_status(&rec));
    }
    let at_end = s.verify_prefix_end().map_err(|e| Exit::of(args.trace.display(), &e))?;
    let state = match at_end {
        Some(k) => format!(
            ", and so does the state at checkpoint {k}, recorded there (`--verify --from-checkpoint {k}` checks the rest)"
        ),
        None => format!(
            "; the state at icount {target} itself was not compared: no checkpoint is recorded there ({})",
            checkpoints_around(&rec, target)
        ),
    };
    eprintln!(
        "ttvm: verified {steps} steps from icount {from} to {target} in {secs:.2} s ({rate:.3} M steps/s): every event, checkpoint and output up to icount {target} match{state}"
    );
    Ok(0)
}
