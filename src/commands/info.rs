//! `ttvm info`: what a trace holds.

use std::path::PathBuf;

use clap::Args;
use ttvm_replay::clock::ClockMode;
use ttvm_replay::events::EventClass;

use crate::commands::record::human_bytes;
use crate::commands::replay::open_recording;
use crate::exit_code::{self, Exit};

/// Arguments of `ttvm info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The trace file (or a live-checkpoint directory: its checkpoints).
    pub trace: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Every line of serial output with the icount of its first byte (where to `monitor
    /// goto` to see the guest print it), instead of the last 20 lines.
    #[arg(long)]
    pub console: bool,
}

/// Appends a line to the report (printed at the end, so a closed pipe can't panic midway).
macro_rules! out {
    ($buf:expr) => { $buf.push('\n') };
    ($buf:expr, $($arg:tt)*) => {{ $buf.push_str(&format!($($arg)*)); $buf.push('\n'); }};
}

/// `ttvm info`: the exit status.
pub fn run(args: InfoArgs) -> Result<i32, Exit> {
    if crate::commands::network::dir::is_network_dir(&args.trace) {
        return crate::commands::network::dir::info(&args.trace, args.json);
    }
    if crate::commands::network::resume::is_network_snapshot(&args.trace) {
        return crate::commands::network::snapshot_info::info(&args.trace, args.json);
    }
    if args.trace.is_dir() {
        return crate::commands::live::info(&args.trace);
    }
    let mut report = String::new();
    let code = report_into(&args, &mut report)?;
    // `ttvm info t.ttvm | head` closes the pipe early: that is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), report.as_bytes());
    Ok(code)
}

/// What the content-addressed page store holds and who refers to it: pages referred to by
/// both a checkpoint and a disk event (format 5) are the ones stored once instead of twice.
fn page_store(rec: &ttvm_replay::recording::Recording) -> serde_json::Value {
    use std::collections::HashSet;
    let checkpoint: HashSet<u32> = rec.checkpoints.iter().flat_map(|c| c.blobs.iter().copied()).collect();
    let disk: HashSet<u32> = rec.disk_pages.iter().copied().collect();
    serde_json::json!({
        "pages": rec.stored_pages(),
        "checkpoint_pages": checkpoint.len(),
        "disk_pages": disk.len(),
        "shared": checkpoint.intersection(&disk).count(),
    })
}

/// File bytes of the chunks of each kind (headers and compressed payloads).
fn chunk_bytes(rec: &ttvm_replay::recording::Recording) -> std::collections::BTreeMap<&'static str, u64> {
    let mut m = std::collections::BTreeMap::new();
    for c in &rec.file.chunks {
        let header = ttvm_replay::trace::format::CHUNK_HEADER_LEN as u64;
        *m.entry(c.kind.name()).or_default() += header + u64::from(c.payload_len);
    }
    m
}

fn report_into(args: &InfoArgs, report: &mut String) -> Result<i32, Exit> {
    let rec = open_recording(&args.trace)?;
    let h = rec.header();
    let sha256 = crate::commands::check::file_sha256(&args.trace)
        .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("{}: {e}", args.trace.display())))?;
    let counts = rec.counts();
    let serial = rec.serial_output_before(u64::MAX);
    let serial_text = String::from_utf8_lossy(&serial).into_owned();
    let end = rec.end.as_ref();
    let checkpoints: Vec<serde_json::Value> = rec
        .checkpoints
        .iter()
        .map(|c| {
            let pages = c.blobs.len();
            serde_json::json!({ "index": c.index, "icount": c.engine.icount, "dirty_pages": pages })
        })
        .collect();
    let dir = args.trace.parent().map(|d| if d.as_os_str().is_empty() { std::path::Path::new(".") } else { d });
    let ancestors = crate::commands::family::ancestors(dir.unwrap_or(std::path::Path::new(".")), h.lineage.as_ref());
    if args.json {
        let v = serde_json::json!({
            "page_store": page_store(&rec),
            "chunk_bytes": chunk_bytes(&rec),
            "file": args.trace.display().to_string(),
            "file_bytes": rec.file.file_len(),
            "format_version": rec.file.version,
            "ttvm_version": h.ttvm_version,
            "kernel": h.kernel_name,
            "kernel_hash": h.kernel_hash,
            "sha256": sha256,
            "kernel_bytes": h.machine.kernel.len(),
            "cmdline": h.machine.cmdline,
            "lineage": h.lineage.as_ref().map(|l| serde_json::json!({
                "parent_file": l.parent_file,
                "parent_id": format!("{:016x}", l.parent_id),
                "branch_icount": l.branch_icount,
            })),
            "ancestors": ancestors.iter().map(|a| serde_json::json!({
                "file": a.file,
                "branch_icount": a.branch_icount,
                "found": matches!(a.found, crate::commands::family::Found::Yes),
                "status": a.found.describe(),
            })).collect::<Vec<_>>(),
            "disk": h.disk.as_ref().map(|d| serde_json::json!({ "image": d.image_name, "sectors": d.capacity_sectors })),
            "mem_bytes": h.machine.mem_size,
            "clock": h.clock.to_string(),
            "ns_per_step": h.ns_per_step,
            "checkpoint_every": h.checkpoint_every,
            "cpuid_model": h.cpuid.name,
            "cpu_vendor": h.cpuid.vendor(),
            "stepping": h.stepping,
            "recorded_on": h.host.as_ref().map(|host| host.cpu.clone()),
            "undefined_flags": h.host.as_ref().map(|host| host.undefined_flags.clone()),
            "step_rules": step_rules(rec.file.version, &h.stepping),
            "rtc_base_unix_secs": h.machine.rtc_base_unix_secs,
            "steps": rec.length(),
            "finalised": rec.file.finalised,
            "recovery_note": rec.file.recovery_note,
            "end_reason": end.map(|e| e.reason.clone()),
            "exit_code": end.and_then(|e| match e.stop { Some(ttvm_replay::events::StopKind::DebugExit(c)) => Some(c), _ => None }),
            "events": rec.events.len(),
            "event_counts": EventClass::ALL.iter().map(|c| (c.name(), counts.get(c).copied().unwrap_or(0))).collect::<std::collections::BTreeMap<_,_>>(),
            "checkpoints": checkpoints,
            "serial_output": serial_text,
            "console_lines": rec.console_lines().iter().map(|(icount, text)| serde_json::json!({ "icount": icount, "text": text })).collect::<Vec<_>>(),
        });
        out!(report, "{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    out!(
        report,
        "trace:       {} ({}, format version {}, written by ttvm {})",
        args.trace.display(),
        human_bytes(rec.file.file_len()),
        rec.file.version,
        h.ttvm_version
    );
    out!(report, "sha256:      {sha256}");
    out!(report, "kernel:      {} ({} bytes, xxh3 {})", h.kernel_name, h.machine.kernel.len(), h.kernel_hash);
    out!(report, "cmdline:     {:?}", h.machine.cmdline);
    // The family: each ancestor, nearest first, with the step its child goes on from.
    for (i, a) in ancestors.iter().enumerate() {
        let label = if i == 0 { "branched:   " } else { "            " };
        out!(report, "{label} from {} at icount {} ({})", a.file, a.branch_icount, a.found.describe());
    }
    // The step rate is guest time only under the icount clock; realtime guests read the host.
    let clock = match h.clock {
        ClockMode::Icount => format!("{} ({} ns/step)", h.clock, h.ns_per_step),
        ClockMode::Realtime => format!("{} (host time, logged)", h.clock),
    };
    out!(
        report,
        "machine:     {} MiB RAM, CPUID model {} ({}), clock {clock}",
        h.machine.mem_size >> 20,
        h.cpuid.name,
        h.cpuid.vendor(),
    );
    if let Some(d) = &h.disk {
        let held =
            rec.events.iter().filter(|e| matches!(e.kind, ttvm_replay::events::EventKind::DiskBlock { .. })).count();
        let writes =
            rec.events.iter().filter(|e| matches!(e.kind, ttvm_replay::events::EventKind::DiskWrite { .. })).count();
        out!(
            report,
            "disk:        virtio-blk over {}, {} sectors ({} KiB); the trace holds {held} blocks read and {writes} writes",
            d.image_name,
            d.capacity_sectors,
            d.capacity_sectors / 2
        );
    }
    out!(report, "stepping:    {}", h.stepping);
    out!(report, "step rules:  {}", step_rules(rec.file.version, &h.stepping));
    match &h.host {
        Some(host) => out!(report, "recorded on: {} [{}]", host.cpu, host.undefined_flags),
        None => out!(report, "recorded on: (not stored before format 3)"),
    }
    out!(report, "length:      {} steps", rec.length());
    match end {
        Some(e) => out!(report, "end:         {}", e.reason),
        None => out!(report, "end:         not finalised"),
    }
    if let Some(note) = &rec.file.recovery_note {
        out!(report, "note:        {note}");
    }
    out!(report, "events:      {}", rec.events.len());
    for c in EventClass::ALL {
        if let Some(n) = counts.get(&c) {
            out!(report, "  {:<12} {n}", c.name());
        }
    }
    out!(report, "checkpoints: {} (every {} steps)", rec.checkpoints.len(), h.checkpoint_every);
    for c in &rec.checkpoints {
        out!(report, "  #{:<4} icount {:>12}  {:>6} dirty pages", c.index, c.engine.icount, c.blobs.len());
    }
    if args.console {
        let lines = rec.console_lines();
        out!(
            report,
            "serial output ({} bytes, {} lines, each at the icount of its first byte):",
            serial.len(),
            lines.len()
        );
        for (icount, text) in &lines {
            out!(report, "  {icount:>12} | {text}");
        }
        return Ok(0);
    }
    let lines: Vec<&str> = serial_text.lines().collect();
    out!(
        report,
        "serial output ({} bytes, {} lines){}",
        serial.len(),
        lines.len(),
        if lines.len() > 20 { ", last 20 lines:" } else { ":" }
    );
    for l in lines.iter().skip(lines.len().saturating_sub(20)) {
        out!(report, "  | {l}");
    }
    Ok(0)
}

/// The step rules a trace of format `version` recorded with stepping signature `stepping`
/// replays with, for people.
fn step_rules(version: u32, stepping: &str) -> String {
    use ttvm_replay::engine::Ring3Steps;
    let rules = ttvm_replay::engine::StepRules::for_trace(version, stepping);
    let mut parts = vec![if rules.strict_steps { "strict steps" } else { "host-merged steps" }];
    parts.push(if rules.canonical_flags {
        "canonical undefined flags (independent of the recording CPU)"
    } else {
        "the recording CPU's undefined flags (replays only on a CPU that leaves the same)"
    });
    if rules.iretq_drops_stepping_tf {
        parts.push("the host's stepping TF kept out of interrupt frames and IRETQs");
    }
    parts.push(if rules.fxsave_alone {
        "FXSAVE a step of its own, storing the MXCSR_MASK every host shows"
    } else {
        "the MXCSR_MASK its first checkpoint holds shown to the guest"
    });
    parts.push(match rules.ring3 {
        Ring3Steps::Refused => "no user mode (recording stops before ring 3)",
        Ring3Steps::KvmExits => "user mode single-stepped by KVM",
        Ring3Steps::DebugTrap => "user mode stepped through the guest's #DB",
        // for_trace never gives it: it is the replay-side refusal of another host's method.
        Ring3Steps::OtherHost => "user mode stepped another way than this host can",
    });
    parts.join(", ")
}
