//! `ttvm-bench` (also `ttvm bench`, which runs it): measures ttvm against the machine's single-step ceiling and against QEMU's
//! record/replay on the same sample kernels, in one invocation, and writes the results to
//! `bench-results/` (JSON) and docs/PERFORMANCE.md (tables). Medians of `--runs` runs;
//! every ratio is taken within one run (the machine is noisy), then the median.
//!
//! - [`workloads`]: ceiling loop ([`ceiling`]), `ttvm run`, record, replay ([`ttvm_runs`]),
//!   QEMU plain / rr=record / rr=replay ([`qemu`]);
//! - [`checkpoints`]: checkpoint take and restore costs;
//! - [`reverse`]: reverse debugging on a ~10 M-step trace, through the Timeline API
//!   ([`timeline_latency`]) and through gdb against ttvm and QEMU ([`gdb_latency`]);
//! - [`tui_latency`]: the terminal UI's frame and keypress-to-screen times on that trace;
//! - [`report`], [`render`], [`doc`]: the JSON, the tables, the Markdown.

mod ceiling;
mod checkpoints;
mod doc;
mod gdb_latency;
mod gdb_session;
mod host;
mod qemu;
mod render;
mod report;
mod reverse;
mod stats;
mod timeline_latency;
mod ttvm_runs;
mod tui_latency;
mod workloads;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Parser};

use report::{BenchReport, RestoreResult};
use ttvm::exit_code::{self, Exit};
use ttvm_runs::Guest;

/// Checkpoint restore against RAM size: filling a 1 MiB buffer dirties ~16 new pages per
/// 100 000-step checkpoint interval, so pairs of checkpoints differ by 0 to ~260 pages.
const RESTORE_TRACE: (&str, &str, &str) = ("bench-fill", "bench", "size=1024 rounds=0");
/// The restore trace's checkpoint interval: wider than the default, so that the pages
/// changed between a restore's source and target span a wide range for the fit.
const RESTORE_CHECKPOINT_EVERY: u64 = 100_000;

/// The long trace for reverse debugging: ~10.6 M steps, so positions 1e5, 1e6 and 1e7
/// all exist, with rounds of ~2 M steps (each with phases of different code).
const LONG_TRACE: (&str, &str) = ("bench", "size=512 rounds=6");

/// reverse-stepi positions on the long trace: 10⁵, 10⁶ and 10⁷ steps in, each moved on by
/// about half a checkpoint interval (see [`long_positions`]).
const LONG_POSITIONS: [u64; 3] = [100_000, 1_000_000, 10_000_000];

/// The average case at each position, for both kinds of checkpoint. The first reverse-stepi
/// after arriving replays from the trace's checkpoint before it: half an interval in is the
/// average (just after a checkpoint is the worst case). The repeated ones replay from the
/// in-memory checkpoint every `DEFAULT_TEMP_SPACING` steps: the 50 of a sequence start half
/// that spacing plus 25 steps past one, so they sweep the average distance.
fn long_positions(checkpoint_every: u64) -> Vec<u64> {
    let spacing = ttvm_replay::timeline::DEFAULT_TEMP_SPACING;
    LONG_POSITIONS.iter().map(|p| (p + checkpoint_every / 2) / spacing * spacing + spacing / 2 + 25).collect()
}

/// Arguments of `ttvm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Runs per measurement (medians are reported).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub runs: usize,
    /// A fast pass: the small workloads only (unless --workloads says otherwise), and reverse
    /// debugging on the smallest workload's trace instead of a 10 M-step one. Does not
    /// touch docs/PERFORMANCE.md or bench-results/latest.json.
    #[arg(long)]
    pub quick: bool,
    /// Only these workloads, comma-separated: bench-s, bench-l, timer, threads.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub workloads: Option<Vec<String>>,
    /// Don't run QEMU.
    #[arg(long)]
    pub no_qemu: bool,
    /// Don't drive gdb (reverse-debugging latency is then measured through the API only).
    #[arg(long)]
    pub no_gdb: bool,
    /// Skip the reverse-debugging part.
    #[arg(long)]
    pub no_reverse: bool,
    /// qemu-system-x86_64 to compare with (default: $TTVM_QEMU, target/qemu, $PATH).
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    /// QEMU firmware directories for -L, ':'-separated (default: $TTVM_QEMU_FIRMWARE, or
    /// usr/share/{qemu,seabios} next to an unpacked binary).
    #[arg(long, value_name = "DIRS")]
    pub qemu_firmware: Option<String>,
    /// Where the JSON results go: DIR/<date>.json and DIR/latest.json.
    #[arg(long, value_name = "DIR", default_value = "bench-results")]
    pub results_dir: PathBuf,
    /// The Markdown file whose generated section is rewritten (default: docs/PERFORMANCE.md,
    /// except with --quick).
    #[arg(long, value_name = "FILE")]
    pub doc: Option<PathBuf>,
    /// Don't rewrite any Markdown file.
    #[arg(long, conflicts_with = "doc")]
    pub no_doc: bool,
    /// Keep traces and QEMU files here (default: a temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
}

fn host_err(e: impl std::fmt::Display) -> Exit {
    Exit::new(exit_code::HOST_ERROR, e.to_string())
}

fn select(args: &BenchArgs) -> Result<Vec<workloads::Def>, Exit> {
    match &args.workloads {
        Some(names) => names
            .iter()
            .map(|n| {
                workloads::ALL.iter().copied().find(|d| d.name == n.trim()).ok_or_else(|| {
                    let all: Vec<&str> = workloads::ALL.iter().map(|d| d.name).collect();
                    Exit::new(
                        exit_code::BAD_INPUT,
                        format!("--workloads: no workload {n:?} (known: {})", all.join(", ")),
                    )
                })
            })
            .collect(),
        None => Ok(workloads::ALL.iter().copied().filter(|d| d.quick || !args.quick).collect()),
    }
}

fn check_kvm() -> Result<(), Exit> {
    ttvm_vmm::kvm::KvmSystem::open()
        .map(|_| ())
        .map_err(|e| Exit::new(exit_code::NO_KVM, format!("ttvm bench needs KVM: {e}")))
}

/// The command line that produced the results, for the report.
fn command_line() -> String {
    if let Ok(via) = std::env::var("TTVM_BENCH_INVOKED_AS") {
        return via;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("ttvm {}", args.join(" "))
}

struct Workdir {
    path: PathBuf,
    remove: bool,
}

impl Workdir {
    fn new(arg: &Option<PathBuf>) -> Result<Self, Exit> {
        let (path, remove) = match arg {
            Some(p) => (p.clone(), false),
            None => (std::env::temp_dir().join(format!("ttvm-bench-{}", std::process::id())), true),
        };
        std::fs::create_dir_all(&path).map_err(|e| host_err(format!("{}: {e}", path.display())))?;
        Ok(Self { path, remove })
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn say(msg: &str) {
    eprintln!("ttvm bench: {msg}");
}

/// The harness's command line: `ttvm bench`'s arguments.
#[derive(Debug, Parser)]
#[command(name = "ttvm-bench", about = "Measure ttvm against the single-step ceiling and QEMU record/replay")]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() {
    let code = match run(Cli::parse().args) {
        Ok(code) => code,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("ttvm-bench: {}", e.message);
            }
            e.code
        }
    };
    std::process::exit(code);
}

/// Runs the benchmark as `args` say; the exit status on success.
pub fn run(args: BenchArgs) -> Result<i32, Exit> {
    if args.runs == 0 {
        return Err(Exit::new(exit_code::BAD_INPUT, "--runs must be at least 1"));
    }
    let defs = select(&args)?;
    check_kvm()?;
    let started = Instant::now();
    let (date, stamp) = host::utc_now();
    let host = host::Host::describe();
    let work = Workdir::new(&args.workdir)?;
    let qemu = if args.no_qemu {
        Err("--no-qemu".to_string())
    } else {
        qemu::find(args.qemu.as_deref(), args.qemu_firmware.as_deref())
    };
    match &qemu {
        Ok(q) => say(&format!("comparing with {} ({})", q.bin.display(), q.version)),
        Err(e) => say(&format!("SKIPPING the QEMU measurements: {e}")),
    }
    let gdb = if args.no_gdb { Err("--no-gdb".to_string()) } else { gdb_session::gdb_version() };
    if let Err(e) = &gdb {
        say(&format!("SKIPPING the gdb measurements: {e}"));
    }
    let qref = qemu.as_ref().map_err(String::as_str);
    let mut progress = |m: &str| say(m);

    let mut results = Vec::new();
    let mut traces = Vec::new();
    for d in &defs {
        let (w, trace) = workloads::measure(d, args.runs, &work.path, qref, &mut progress)?;
        results.push(w);
        traces.push((*d, trace));
    }
    let mut extra_checkpoints = Vec::new();
    let restore = restore_part(&args, &traces, &work.path, &mut extra_checkpoints, &mut progress)?;
    let (reverse, tui) = if args.no_reverse {
        (None, None)
    } else {
        let (rev, long_trace) = reverse_part(
            &args,
            &traces,
            &work.path,
            gdb.as_ref().map(|_| ()).map_err(String::as_str),
            qref,
            &mut extra_checkpoints,
            &mut progress,
        )?;
        progress(&format!("terminal UI latency on {}", long_trace.display()));
        let tui = tui_latency::measure(&long_trace, if args.quick { 5 } else { 50 })?;
        (Some(rev), Some(tui))
    };
    let mut all_cps: Vec<&[ttvm_runs::CheckpointSample]> =
        results.iter().flat_map(|w| w.runs.iter().map(|r| r.record.checkpoints.as_slice())).collect();
    all_cps.extend(extra_checkpoints.iter().map(Vec::as_slice));
    let mut host = host;
    host.loadavg_end = host::loadavg();
    let mut report = BenchReport {
        schema: report::SCHEMA,
        date: stamp,
        command: command_line(),
        quick: args.quick,
        runs: args.runs,
        ttvm_version: env!("CARGO_PKG_VERSION").to_string(),
        host,
        qemu_skipped: qemu.as_ref().err().cloned(),
        qemu: qemu.ok(),
        gdb_skipped: gdb.as_ref().err().cloned(),
        gdb: gdb.ok(),
        checkpoints: checkpoints::take_summary(&all_cps),
        workloads: results,
        restore,
        reverse,
        tui,
        targets: Vec::new(),
        duration_secs: started.elapsed().as_secs_f64(),
    };
    report.targets = report::targets(&report);
    print!("{}", render::text(&report));
    write_results(&args, &report, &date)?;
    Ok(0)
}

/// Checkpoint restore on one workload at 128 MiB and at 1 GiB of RAM.
fn restore_part(
    args: &BenchArgs,
    traces: &[(workloads::Def, PathBuf)],
    workdir: &Path,
    extra: &mut Vec<Vec<ttvm_runs::CheckpointSample>>,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<RestoreResult>, Exit> {
    // --quick: the first workload's trace; otherwise a trace made for it.
    let (name, kernel, cmdline, n, max_steps) = match traces.first() {
        Some((d, _)) if args.quick => (d.name, d.kernel, d.cmdline, 10, 500),
        None if args.quick => return Ok(None),
        _ => (RESTORE_TRACE.0, RESTORE_TRACE.1, RESTORE_TRACE.2, 60, 5000),
    };
    progress(&format!("checkpoint restore: {kernel} {cmdline} at 128 MiB and 1 GiB of RAM"));
    let mut series = Vec::new();
    for mem in [128u64 << 20, 1 << 30] {
        let path = match traces.first() {
            Some((d, p)) if args.quick && mem == ttvm_vmm::machine::DEFAULT_MEM_SIZE && d.name == name => p.clone(),
            _ => {
                let mut guest = Guest::new(kernel, cmdline);
                guest.mem = mem;
                guest.checkpoint_every = RESTORE_CHECKPOINT_EVERY;
                let path = workdir.join(format!("{name}-{}m.ttvm", mem >> 20));
                extra.push(ttvm_runs::record(&guest, &path)?.checkpoints);
                path
            }
        };
        series.push(checkpoints::restore_series(&path, n, max_steps)?);
    }
    Ok(Some(RestoreResult::new(&format!("{kernel} {cmdline}"), series)))
}

/// Reverse debugging on the long trace (or, with --quick, the smallest workload's trace).
fn reverse_part(
    args: &BenchArgs,
    traces: &[(workloads::Def, PathBuf)],
    workdir: &Path,
    gdb: Result<(), &str>,
    qemu: Result<&qemu::Qemu, &str>,
    extra: &mut Vec<Vec<ttvm_runs::CheckpointSample>>,
    progress: &mut dyn FnMut(&str),
) -> Result<(reverse::ReverseResult, PathBuf), Exit> {
    let (kernel, cmdline, path, steps) = if args.quick {
        let mut best: Option<(workloads::Def, PathBuf, u64)> = None;
        for (d, p) in traces {
            let len = ttvm::commands::replay::open_recording(p)?.length();
            if best.as_ref().is_none_or(|b| len < b.2) {
                best = Some((*d, p.clone(), len));
            }
        }
        let Some((d, p, len)) = best else {
            return Err(Exit::new(exit_code::BAD_INPUT, "no workload ran, so there is no trace to reverse-debug"));
        };
        (d.kernel, d.cmdline, p, len)
    } else {
        let path = workdir.join("long.ttvm");
        progress(&format!("recording the long trace: {} {}", LONG_TRACE.0, LONG_TRACE.1));
        let r = ttvm_runs::record(&Guest::new(LONG_TRACE.0, LONG_TRACE.1), &path)?;
        progress(&format!("long trace: {} steps in {:.1} s", r.steps, r.loop_secs));
        let steps = r.steps;
        extra.push(r.checkpoints);
        (LONG_TRACE.0, LONG_TRACE.1, path, steps)
    };
    let plan = if args.quick {
        reverse::Plan {
            timeline: timeline_latency::Plan {
                positions: vec![1_000, 10_000],
                rsi_count: 10,
                rc: vec![(steps, steps / 2)],
                gotos: 5,
            },
            gdb_ttvm_rsi: 5,
            gdb_qemu_rsi: 3,
            gdb_gotos: 3,
        }
    } else {
        reverse::Plan {
            timeline: timeline_latency::Plan {
                positions: long_positions(ttvm_replay::record::DEFAULT_CHECKPOINT_EVERY),
                rsi_count: 50,
                rc: vec![(10_000_000, 1_000_000), (steps, 10_000_000)],
                gotos: 20,
            },
            gdb_ttvm_rsi: 50,
            gdb_qemu_rsi: 10,
            gdb_gotos: 10,
        }
    };
    let info = reverse::TraceInfo { path: &path, kernel, cmdline };
    let r = reverse::measure(&info, &plan, gdb, qemu, workdir, progress)?;
    Ok((r, path))
}

fn write_results(args: &BenchArgs, report: &BenchReport, date: &str) -> Result<(), Exit> {
    let json = serde_json::to_string_pretty(report).map_err(host_err)?;
    let dir = &args.results_dir;
    std::fs::create_dir_all(dir).map_err(|e| host_err(format!("{}: {e}", dir.display())))?;
    let suffix = if args.quick { "-quick" } else { "" };
    let mut path = dir.join(format!("{date}{suffix}.json"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{date}{suffix}-{n}.json"));
        n += 1;
    }
    for p in [path.clone(), dir.join(format!("latest{suffix}.json"))] {
        std::fs::write(&p, &json).map_err(|e| host_err(format!("{}: {e}", p.display())))?;
    }
    say(&format!("results written to {} and {}", path.display(), dir.join(format!("latest{suffix}.json")).display()));
    let doc = match (&args.doc, args.no_doc, args.quick) {
        (_, true, _) => None,
        (Some(d), false, _) => Some(d.clone()),
        (None, false, false) => Some(PathBuf::from("docs/PERFORMANCE.md")),
        (None, false, true) => None,
    };
    if let Some(d) = doc {
        doc::update(&d, &render::markdown(report)).map_err(|e| host_err(format!("{}: {e}", d.display())))?;
        say(&format!("{} regenerated", d.display()));
    }
    Ok(())
}
