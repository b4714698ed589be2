//! The workloads and their per-run measurements: the single-step ceiling, `ttvm run`,
//! `ttvm record`, `ttvm replay --verify`, and QEMU plain / rr=record / rr=replay of the same
//! ELF and command line. Every ratio is taken within one run, then the median over runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::ceiling::{self, CeilingRun};
use crate::checkpoints::{take_summary, TakeSummary};
use crate::qemu::{Boot, Mode, Qemu, QemuRun, RrFiles};
use crate::stats::median;
use crate::ttvm_runs::{self, FreeRun, Guest, RecordRun, ReplayRun, TraceComposition};
use ttvm::commands::replay::open_recording;
use ttvm::exit_code::Exit;

/// Longest a QEMU boot may take.
const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

/// A workload.
#[derive(Clone, Copy, Debug)]
pub struct Def {
    /// Name on the command line and in the results.
    pub name: &'static str,
    /// Sample kernel.
    pub kernel: &'static str,
    /// Its command line.
    pub cmdline: &'static str,
    /// Part of `--quick` by default.
    pub quick: bool,
}

/// Every workload, smallest first within each kernel.
pub const ALL: &[Def] = &[
    Def { name: "bench-s", kernel: "bench", cmdline: "size=16 rounds=1", quick: true },
    Def { name: "bench-l", kernel: "bench", cmdline: "size=64 rounds=4", quick: false },
    Def { name: "timer", kernel: "timer", cmdline: "ticks=50", quick: true },
    Def { name: "threads", kernel: "threads", cmdline: "", quick: false },
];

/// QEMU's three runs of one workload.
#[derive(Clone, Debug, Serialize)]
pub struct QemuRuns {
    /// TCG, no icount.
    pub plain: QemuRun,
    /// `-icount shift=auto,rr=record`.
    pub record: QemuRun,
    /// `-icount shift=auto,rr=replay`.
    pub replay: QemuRun,
    /// Size of QEMU's replay log.
    pub log_bytes: u64,
}

/// One run of one workload.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// `ttvm record`.
    pub record: RecordRun,
    /// `ttvm replay --verify`.
    pub replay: ReplayRun,
    /// Bare single-step loop.
    pub ceiling: CeilingRun,
    /// `ttvm run`.
    pub free_run: FreeRun,
    /// QEMU, when it ran.
    pub qemu: Option<QemuRuns>,
    /// Why QEMU did not run or failed.
    pub qemu_error: Option<String>,
}

/// Medians over runs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Medians {
    /// Bare single-step loop, µs per step.
    pub ceiling_us_per_step: f64,
    /// `ttvm record` loop, µs per step.
    pub record_us_per_step: f64,
    /// `ttvm replay --verify` loop, µs per step.
    pub replay_us_per_step: f64,
    /// `ttvm run`: seconds in the free engine.
    pub free_run_secs: f64,
    /// `ttvm record`, machine built to trace finalised.
    pub record_total_secs: f64,
    /// `ttvm replay --verify`, trace opened to final digest checked.
    pub replay_total_secs: f64,
    /// `ttvm run`, machine built to guest exit.
    pub free_run_total_secs: f64,
    /// QEMU TCG, process start to exit.
    pub qemu_plain_secs: Option<f64>,
    /// QEMU rr=record.
    pub qemu_record_secs: Option<f64>,
    /// QEMU rr=replay.
    pub qemu_replay_secs: Option<f64>,
}

/// Medians of per-run ratios.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ratios {
    /// Record rate / ceiling rate (target ≥ 0.85).
    pub record_vs_ceiling: f64,
    /// Replay rate / record rate (target ≥ 1).
    pub replay_vs_record: f64,
    /// How many times faster `ttvm run` is than the ceiling loop.
    pub free_run_speedup_vs_ceiling: f64,
    /// ttvm record time / QEMU rr=record time (> 1: ttvm slower).
    pub ttvm_record_vs_qemu_record: Option<f64>,
    /// ttvm replay --verify time / QEMU rr=replay time.
    pub ttvm_replay_vs_qemu_replay: Option<f64>,
    /// ttvm run time / QEMU plain TCG time.
    pub ttvm_run_vs_qemu_plain: Option<f64>,
}

/// One workload's results.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    /// Name.
    pub name: String,
    /// Sample kernel.
    pub kernel: String,
    /// Command line.
    pub cmdline: String,
    /// Steps in the recording.
    pub steps: u64,
    /// Events in the recording.
    pub events: u64,
    /// Medians.
    pub medians: Medians,
    /// Ratios.
    pub ratios: Ratios,
    /// Trace size breakdown (last run).
    pub trace: TraceComposition,
    /// Whole trace bytes per million steps.
    pub trace_bytes_per_mstep: f64,
    /// Bytes after the boot image (events and later checkpoints) per million steps.
    pub history_bytes_per_mstep: f64,
    /// QEMU's replay log bytes per million ttvm steps.
    pub qemu_log_bytes_per_mstep: Option<f64>,
    /// Checkpoints taken while recording this workload.
    pub checkpoints: TakeSummary,
    /// Why QEMU was skipped for this workload.
    pub qemu_skipped: Option<String>,
    /// Every run.
    pub runs: Vec<Run>,
}

fn rate(steps: u64, secs: f64) -> f64 {
    steps as f64 / secs.max(1e-12)
}

fn us_per_step(steps: u64, secs: f64) -> f64 {
    secs * 1e6 / (steps.max(1) as f64)
}

fn qemu_runs(q: &Qemu, boot: &Boot<'_>, log: &Path) -> Result<QemuRuns, String> {
    let files = RrFiles { log: log.to_path_buf(), snapshot_disk: None };
    let plain = q.run(boot, &Mode::Plain, QEMU_TIMEOUT)?;
    let record = q.run(boot, &Mode::Record(files.clone()), QEMU_TIMEOUT)?;
    let log_bytes = std::fs::metadata(log).map_or(0, |m| m.len());
    let replay = q.run(boot, &Mode::Replay(files), QEMU_TIMEOUT)?;
    Ok(QemuRuns { plain, record, replay, log_bytes })
}

/// Runs `def` `runs` times. Returns the results and the last run's trace.
pub fn measure(
    def: &Def,
    runs: usize,
    workdir: &Path,
    qemu: Result<&Qemu, &str>,
    progress: &mut dyn FnMut(&str),
) -> Result<(WorkloadResult, PathBuf), Exit> {
    let guest = Guest::new(def.kernel, def.cmdline);
    let trace = workdir.join(format!("{}.ttvm", def.name));
    let elf = workdir.join(format!("{}.elf", def.kernel));
    std::fs::write(&elf, guest.elf()?)
        .map_err(|e| Exit::new(ttvm::exit_code::HOST_ERROR, format!("{}: {e}", elf.display())))?;
    let serial = workdir.join(format!("{}-qemu-serial.txt", def.name));
    let log = workdir.join(format!("{}-qemu.rr", def.name));
    let boot = Boot { kernel: &elf, cmdline: def.cmdline, serial: &serial };
    let mut all = Vec::with_capacity(runs);
    for i in 1..=runs {
        let record = ttvm_runs::record(&guest, &trace)?;
        let replay = ttvm_runs::replay_verify(&trace)?;
        let rec = open_recording(&trace)?;
        let ceiling = ceiling::run(&rec)?;
        drop(rec);
        let free_run = ttvm_runs::free_run(&guest)?;
        let (qemu_out, qemu_error) = match qemu {
            Ok(q) => match qemu_runs(q, &boot, &log) {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e)),
            },
            Err(why) => (None, Some(why.to_string())),
        };
        progress(&format!(
            "{} run {i}/{runs}: {} steps; µs/step ceiling {:.2}, record {:.2}, replay {:.2}; run {:.2} s{}",
            def.name,
            record.steps,
            us_per_step(ceiling.steps, ceiling.secs),
            us_per_step(record.steps, record.loop_secs),
            us_per_step(replay.steps, replay.loop_secs),
            free_run.secs,
            match &qemu_out {
                Some(q) => format!(
                    "; QEMU plain {:.2} s, record {:.2} s, replay {:.2} s",
                    q.plain.wall_secs, q.record.wall_secs, q.replay.wall_secs
                ),
                None => String::new(),
            }
        ));
        all.push(Run { record, replay, ceiling, free_run, qemu: qemu_out, qemu_error });
    }
    Ok((summarise(def, all, qemu.err()), trace))
}

fn med(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>())
}

fn med_q(runs: &[Run], f: impl Fn(&Run, &QemuRuns) -> f64) -> Option<f64> {
    let v: Vec<f64> = runs.iter().filter_map(|r| r.qemu.as_ref().map(|q| f(r, q))).collect();
    (!v.is_empty()).then(|| median(&v))
}

fn summarise(def: &Def, runs: Vec<Run>, qemu_skip: Option<&str>) -> WorkloadResult {
    let medians = Medians {
        ceiling_us_per_step: med(&runs, |r| us_per_step(r.ceiling.steps, r.ceiling.secs)),
        record_us_per_step: med(&runs, |r| us_per_step(r.record.steps, r.record.loop_secs)),
        replay_us_per_step: med(&runs, |r| us_per_step(r.replay.steps, r.replay.loop_secs)),
        free_run_secs: med(&runs, |r| r.free_run.secs),
        record_total_secs: med(&runs, |r| r.record.total_secs),
        replay_total_secs: med(&runs, |r| r.replay.total_secs),
        free_run_total_secs: med(&runs, |r| r.free_run.total_secs),
        qemu_plain_secs: med_q(&runs, |_, q| q.plain.wall_secs),
        qemu_record_secs: med_q(&runs, |_, q| q.record.wall_secs),
        qemu_replay_secs: med_q(&runs, |_, q| q.replay.wall_secs),
    };
    let ratios = Ratios {
        record_vs_ceiling: med(&runs, |r| {
            rate(r.record.steps, r.record.loop_secs) / rate(r.ceiling.steps, r.ceiling.secs)
        }),
        replay_vs_record: med(&runs, |r| {
            rate(r.replay.steps, r.replay.loop_secs) / rate(r.record.steps, r.record.loop_secs)
        }),
        free_run_speedup_vs_ceiling: med(&runs, |r| r.ceiling.secs / r.free_run.secs.max(1e-9)),
        ttvm_record_vs_qemu_record: med_q(&runs, |r, q| r.record.total_secs / q.record.wall_secs),
        ttvm_replay_vs_qemu_replay: med_q(&runs, |r, q| r.replay.total_secs / q.replay.wall_secs),
        ttvm_run_vs_qemu_plain: med_q(&runs, |r, q| r.free_run.total_secs / q.plain.wall_secs),
    };
    let last = runs.last();
    let steps = last.map_or(0, |r| r.record.steps);
    let trace = last.map(|r| r.record.trace).unwrap_or_default();
    let msteps = steps as f64 / 1e6;
    let per_m = |b: u64| if msteps > 0.0 { b as f64 / msteps } else { 0.0 };
    let cps: Vec<&[ttvm_runs::CheckpointSample]> = runs.iter().map(|r| r.record.checkpoints.as_slice()).collect();
    let qemu_log = last.and_then(|r| r.qemu.as_ref()).map(|q| per_m(q.log_bytes));
    let qemu_skipped = qemu_skip.map(str::to_string).or_else(|| runs.iter().find_map(|r| r.qemu_error.clone()));
    WorkloadResult {
        name: def.name.into(),
        kernel: def.kernel.into(),
        cmdline: def.cmdline.into(),
        steps,
        events: last.map_or(0, |r| r.record.events),
        medians,
        ratios,
        trace,
        trace_bytes_per_mstep: per_m(trace.total_bytes),
        history_bytes_per_mstep: per_m(trace.history_bytes),
        qemu_log_bytes_per_mstep: qemu_log,
        checkpoints: take_summary(&cps),
        qemu_skipped,
        runs,
    }
}
