//! The results of one `ttvm bench`: the JSON document, and issue 8's targets judged from it.

use serde::Serialize;

use crate::checkpoints::{RestoreSeries, TakeSummary};
use crate::host::Host;
use crate::qemu::Qemu;
use crate::reverse::ReverseResult;
use crate::tui_latency::TuiResult;
use crate::workloads::WorkloadResult;

/// Version of the JSON layout.
pub const SCHEMA: u32 = 1;

/// Restore cost against RAM size.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreResult {
    /// The workload recorded at each RAM size.
    pub workload: String,
    /// One series per RAM size, smallest first.
    pub series: Vec<RestoreSeries>,
    /// Predicted restore time of the largest RAM over the smallest, both at the smallest
    /// series' median pages rewritten (≈ 1 when cost follows pages, not RAM).
    pub ratio_at_equal_pages: Option<f64>,
}

impl RestoreResult {
    /// Builds the comparison from the series.
    pub fn new(workload: &str, series: Vec<RestoreSeries>) -> Self {
        let ratio = match (series.first(), series.last()) {
            (Some(a), Some(b)) if series.len() > 1 => {
                let at = a.median_pages;
                let pa = a.fit_us_vs_pages.intercept + a.fit_us_vs_pages.slope * at;
                let pb = b.fit_us_vs_pages.intercept + b.fit_us_vs_pages.slope * at;
                (pa > 0.0).then(|| pb / pa)
            }
            _ => None,
        };
        Self { workload: workload.into(), series, ratio_at_equal_pages: ratio }
    }
}

/// One of issue 8's targets.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// Short id.
    pub id: &'static str,
    /// The goal, in words.
    pub goal: &'static str,
    /// What was measured.
    pub measured: String,
    /// Met, not met, or not measured in this run.
    pub met: Option<bool>,
}

/// Everything one `ttvm bench` measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// JSON layout version.
    pub schema: u32,
    /// When it ran (UTC).
    pub date: String,
    /// The command that produced it.
    pub command: String,
    /// `--quick`.
    pub quick: bool,
    /// `--runs`.
    pub runs: usize,
    /// ttvm's version.
    pub ttvm_version: String,
    /// The machine.
    pub host: Host,
    /// QEMU, when used.
    pub qemu: Option<Qemu>,
    /// Why QEMU was not used.
    pub qemu_skipped: Option<String>,
    /// gdb's version, when used.
    pub gdb: Option<String>,
    /// Why gdb was not used.
    pub gdb_skipped: Option<String>,
    /// Per workload.
    pub workloads: Vec<WorkloadResult>,
    /// Checkpoints taken in every recording of this run.
    pub checkpoints: TakeSummary,
    /// Restore cost against RAM size.
    pub restore: Option<RestoreResult>,
    /// Reverse debugging on a long trace.
    pub reverse: Option<ReverseResult>,
    /// The terminal UI on the long trace.
    pub tui: Option<TuiResult>,
    /// Issue 8's targets.
    pub targets: Vec<Target>,
    /// Wall time of the whole benchmark.
    pub duration_secs: f64,
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// Judges issue 8's targets from the measurements.
pub fn targets(r: &BenchReport) -> Vec<Target> {
    let mut t = Vec::new();
    let w = &r.workloads;
    let all = |f: &dyn Fn(&WorkloadResult) -> bool| (!w.is_empty()).then(|| w.iter().all(f));
    t.push(Target {
        id: "record_vs_ceiling",
        goal: "record ≥ 85 % of the bare single-step rate",
        measured: list(w.iter().map(|x| {
            format!(
                "{} {:.0} % ({:.2} vs {:.2} µs/step)",
                x.name,
                x.ratios.record_vs_ceiling * 100.0,
                x.medians.record_us_per_step,
                x.medians.ceiling_us_per_step
            )
        })),
        met: all(&|x| x.ratios.record_vs_ceiling >= 0.85),
    });
    t.push(Target {
        id: "replay_vs_record",
        goal: "replay ≥ record (steps/s)",
        measured: list(w.iter().map(|x| format!("{} {:.2}×", x.name, x.ratios.replay_vs_record))),
        met: all(&|x| x.ratios.replay_vs_record >= 1.0),
    });
    let c = &r.checkpoints;
    t.push(Target {
        id: "checkpoint_ms_per_mib",
        goal: "checkpoint ≤ 2 ms per MiB dirtied",
        measured: format!(
            "marginal {:.2} ms per MiB (robust fit over {} checkpoints: {:.2} ms fixed + {:.2} ms/MiB, Spearman {:.2}); \
             {} checkpoints of ≥ {} pages: {:.2} ms/MiB; all: {:.2} ms/MiB (median {:.2} ms for {:.0} pages)",
            c.fit_ms_vs_mib.slope,
            c.n,
            c.fit_ms_vs_mib.intercept,
            c.fit_ms_vs_mib.slope,
            c.fit_ms_vs_mib.spearman,
            c.large_n,
            super::checkpoints::LARGE_PAGES,
            c.large_ms_per_mib,
            c.ms_per_mib,
            c.median_ms,
            c.median_dirty_pages
        ),
        // Judged on the cost that scales with the pages (the slope), and on the checkpoints
        // big enough for the fixed cost not to dominate.
        met: (c.n > 1).then_some(c.fit_ms_vs_mib.slope <= 2.0 && (c.large_n == 0 || c.large_ms_per_mib <= 2.0)),
    });
    t.push(restore_target(r.restore.as_ref()));
    t.extend(reverse_targets(r.reverse.as_ref()));
    let timer = w.iter().find(|x| x.name == "timer");
    t.push(Target {
        id: "timer_trace_size",
        goal: "trace ≤ 1 MB (10⁶ bytes) per million steps of `timer`",
        measured: timer.map_or("timer not run".into(), |x| {
            format!(
                "{:.0} B per M steps after the boot image ({} steps); whole file {:.0} B per M steps, of which {:.0} KiB is the embedded kernel image and {:.0} KiB the boot checkpoint",
                x.history_bytes_per_mstep,
                x.steps,
                x.trace_bytes_per_mstep,
                x.trace.header_bytes as f64 / 1024.0,
                x.trace.boot_bytes as f64 / 1024.0
            )
        }),
        met: timer.map(|x| x.history_bytes_per_mstep <= 1e6),
    });
    t
}

fn restore_target(r: Option<&RestoreResult>) -> Target {
    let goal = "restore cost ∝ pages changed since the target checkpoint, not RAM size";
    let Some(r) = r else { return Target { id: "restore_proportional", goal, measured: "not run".into(), met: None } };
    let series = list(r.series.iter().map(|s| {
        format!(
            "{} MiB RAM: median {:.0} µs for {:.0} pages, robust fit {:.0} µs + {:.2} µs/page (Spearman {:.2}), session build {:.0} ms",
            s.ram_mib,
            s.median_us,
            s.median_pages,
            s.fit_us_vs_pages.intercept,
            s.fit_us_vs_pages.slope,
            s.fit_us_vs_pages.spearman,
            s.session_build_ms
        )
    }));
    let ratio = r.ratio_at_equal_pages;
    // Time must grow with the pages rewritten (rank correlation) at every RAM size, and be
    // the same at equal pages whatever the RAM size.
    let proportional = !r.series.is_empty()
        && r.series.iter().all(|s| s.fit_us_vs_pages.slope > 0.0 && s.fit_us_vs_pages.spearman >= 0.5);
    Target {
        id: "restore_proportional",
        goal,
        measured: match ratio {
            Some(x) => format!("{series}; largest/smallest RAM at equal pages {x:.2}×"),
            None => series,
        },
        met: ratio.map(|x| x <= 1.5 && proportional),
    }
}

fn reverse_targets(r: Option<&ReverseResult>) -> Vec<Target> {
    let rsi_goal = "reverse-stepi median ≤ 20 ms and p99 ≤ 250 ms on a 10 M-step trace";
    let rc_goal = "reverse-continue over 10 M steps ≤ 1.2 × forward replay of the span";
    let Some(r) = r else {
        return vec![
            Target { id: "reverse_stepi", goal: rsi_goal, measured: "not run".into(), met: None },
            Target { id: "reverse_continue_10m", goal: rc_goal, measured: "not run".into(), met: None },
        ];
    };
    let tl = &r.timeline;
    let at = tl.positions.iter().find(|p| p.icount >= 10_000_000);
    let rsi = match at {
        Some(p) => Target {
            id: "reverse_stepi",
            goal: rsi_goal,
            measured: format!(
                "at icount {} (Timeline API, {} in a row after arriving without in-memory checkpoints): median {:.1} ms, p99 {:.1} ms (first {:.1} ms); after a seek: median {:.1} ms, p99 {:.1} ms",
                p.icount,
                p.cold.n,
                p.cold.median_ms,
                p.cold.p99_ms,
                p.cold.samples_ms.first().copied().unwrap_or(f64::NAN),
                p.warm.median_ms,
                p.warm.p99_ms
            ),
            met: Some(p.cold.median_ms <= 20.0 && p.cold.p99_ms <= 250.0),
        },
        None => Target {
            id: "reverse_stepi",
            goal: rsi_goal,
            measured: format!("not measured: the trace has {} steps (run without --quick)", tl.trace_steps),
            met: None,
        },
    };
    let rc10 = tl.reverse_continue.iter().find(|c| c.requested_span >= 10_000_000);
    let rc = match rc10 {
        Some(c) => Target {
            id: "reverse_continue_10m",
            goal: rc_goal,
            measured: format!(
                "{} steps back: {:.1} s backward vs {:.1} s forward = {:.2}×{}",
                c.span,
                c.backward_secs,
                c.forward_secs,
                c.ratio,
                if c.correct { "" } else { " (stopped at the wrong place!)" }
            ),
            met: Some(c.correct && c.ratio <= 1.2),
        },
        None => Target {
            id: "reverse_continue_10m",
            goal: rc_goal,
            measured: "not measured (needs a ≥ 10 M-step trace)".into(),
            met: None,
        },
    };
    vec![rsi, rc]
}
