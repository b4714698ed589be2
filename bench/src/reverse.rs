//! The reverse-debugging part: one long trace, measured through the Timeline API, through
//! gdb against `ttvm replay --gdb`, and through gdb against QEMU's replay of the same
//! kernel recorded with an `rrsnapshot`.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::gdb_latency::{self, GdbLatency};
use crate::gdb_session::Stub;
use crate::qemu::{Boot, Mode, Qemu, RrFiles};
use crate::stats::Rng;
use crate::timeline_latency::{self, TimelineLatency};
use ttvm::exit_code::{self, Exit};

/// Longest QEMU may take to record the long trace.
const QEMU_RECORD_TIMEOUT: Duration = Duration::from_secs(600);

/// What to measure on the long trace.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Through the Timeline API.
    pub timeline: timeline_latency::Plan,
    /// reverse-stepi per position through gdb, ttvm.
    pub gdb_ttvm_rsi: usize,
    /// reverse-stepi per position through gdb, QEMU.
    pub gdb_qemu_rsi: usize,
    /// Random `monitor goto` through gdb.
    pub gdb_gotos: usize,
}

/// The results.
#[derive(Clone, Debug, Serialize)]
pub struct ReverseResult {
    /// Sample kernel.
    pub kernel: String,
    /// Command line.
    pub cmdline: String,
    /// Through the Timeline API.
    pub timeline: TimelineLatency,
    /// Through gdb, against ttvm.
    pub gdb_ttvm: Option<GdbLatency>,
    /// Through gdb, against QEMU.
    pub gdb_qemu: Option<GdbLatency>,
    /// QEMU rr=record of this kernel with rrsnapshot, seconds.
    pub qemu_record_secs: Option<f64>,
    /// Why gdb measurements were skipped.
    pub gdb_skipped: Option<String>,
    /// Why QEMU measurements were skipped.
    pub qemu_skipped: Option<String>,
}

/// The kernel and command line of the trace.
pub struct TraceInfo<'a> {
    /// The trace.
    pub path: &'a Path,
    /// Sample kernel name.
    pub kernel: &'a str,
    /// Command line.
    pub cmdline: &'a str,
}

/// Runs the plan.
pub fn measure(
    trace: &TraceInfo<'_>,
    plan: &Plan,
    gdb: Result<(), &str>,
    qemu: Result<&Qemu, &str>,
    workdir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ReverseResult, Exit> {
    let timeline = timeline_latency::measure(trace.path, &plan.timeline, |m| progress(m))?;
    let mut r = ReverseResult {
        kernel: trace.kernel.into(),
        cmdline: trace.cmdline.into(),
        gdb_ttvm: None,
        gdb_qemu: None,
        qemu_record_secs: None,
        gdb_skipped: gdb.err().map(str::to_string),
        qemu_skipped: qemu.err().map(str::to_string),
        timeline,
    };
    if gdb.is_err() {
        return Ok(r);
    }
    let elf_bytes = ttvm_sample_kernels::get(trace.kernel)
        .map(|k| k.elf)
        .ok_or_else(|| Exit::new(exit_code::BAD_INPUT, format!("no sample kernel {}", trace.kernel)))?;
    let elf = super::gdb_session::write_file(workdir, &format!("{}-reverse.elf", trace.kernel), elf_bytes)
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, e))?;
    let length = r.timeline.trace_steps;
    let mut rng = Rng::new(0x0067_6462_676f_746f);
    let rc = r.timeline.reverse_continue.first().map(|c| (c.from, c.addr, c.expected_at));
    let positions = r.timeline.positions.iter().map(|p| p.icount).collect::<Vec<_>>();
    let ttvm_plan = gdb_latency::Plan {
        positions: positions.clone(),
        rsi_count: plan.gdb_ttvm_rsi,
        rc,
        gotos: (0..plan.gdb_gotos).map(|_| rng.below(length)).collect(),
    };
    progress("gdb against ttvm replay --gdb");
    match gdb_latency::ttvm(trace.path, &elf, &ttvm_plan, workdir) {
        Ok(g) => r.gdb_ttvm = Some(g),
        Err(e) => r.gdb_skipped = Some(format!("gdb session against ttvm failed: {e}")),
    }
    let Ok(q) = qemu else { return Ok(r) };
    let Some(ttvm_kmain) = r.timeline.kmain_icount.or(r.gdb_ttvm.as_ref().and_then(|g| g.kmain_icount)) else {
        r.qemu_skipped = Some("kmain not found in the ttvm trace, so positions cannot be aligned".into());
        return Ok(r);
    };
    progress("QEMU rr=record with rrsnapshot, then gdb against its replay");
    let files = RrFiles {
        log: workdir.join("reverse-qemu.rr"),
        snapshot_disk: Some(workdir.join("reverse-qemu-snapshots.qcow2")),
    };
    let serial = workdir.join("reverse-qemu-serial.txt");
    let boot = Boot { kernel: &elf, cmdline: trace.cmdline, serial: &serial };
    let recorded = files
        .snapshot_disk
        .as_deref()
        .map_or(Ok(()), |d| q.create_snapshot_disk(d))
        .and_then(|_| q.run(&boot, &Mode::Record(files.clone()), QEMU_RECORD_TIMEOUT));
    match recorded {
        Ok(run) => r.qemu_record_secs = Some(run.wall_secs),
        Err(e) => {
            r.qemu_skipped = Some(format!("QEMU rr=record with rrsnapshot failed: {e}"));
            return Ok(r);
        }
    }
    let qemu_plan = gdb_latency::Plan { positions, rsi_count: plan.gdb_qemu_rsi, rc, gotos: Vec::new() };
    let stub = Stub::Qemu { qemu: q, boot, files: &files };
    match gdb_latency::qemu(&stub, &elf, &qemu_plan, ttvm_kmain, workdir) {
        Ok(g) => r.gdb_qemu = Some(g),
        Err(e) => r.qemu_skipped = Some(format!("gdb session against QEMU failed: {e}")),
    }
    Ok(r)
}
