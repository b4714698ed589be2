//! A network recording directory (`ttvm record --vm … -o DIR`) as `replay`, `info` and
//! `check` see it: the manifest, then each VM's trace on its own, then the frames across
//! them (`ttvm_replay::network::frames`).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use ttvm_replay::network::frames::check_frames;
use ttvm_replay::network::manifest::{NetworkManifestV1, MANIFEST_FILE};
use ttvm_replay::recording::Recording;

use crate::commands::check::CheckArgs;
use crate::exit_code::{self, Exit};

/// Whether `dir` is a network recording (it holds a manifest).
pub fn is_network_dir(dir: &Path) -> bool {
    dir.is_dir() && dir.join(MANIFEST_FILE).exists()
}

/// The manifest of `dir`; a missing, damaged or inconsistent one is bad input.
pub fn load_manifest(dir: &Path) -> Result<NetworkManifestV1, Exit> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        Exit::new(exit_code::BAD_INPUT, format!("{}: not a network recording ({MANIFEST_FILE}: {e})", dir.display()))
    })?;
    NetworkManifestV1::decode(&bytes).map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("{}: {e}", path.display())))
}

/// Each VM's trace path, refusing a manifest that names a file outside `dir` or a missing one.
pub(super) fn trace_paths(dir: &Path, m: &NetworkManifestV1) -> Result<Vec<PathBuf>, Exit> {
    m.vms
        .iter()
        .enumerate()
        .map(|(i, vm)| {
            let name = Path::new(&vm.trace);
            if name.components().count() != 1 || name.file_name().is_none() {
                return Err(Exit::new(
                    exit_code::BAD_INPUT,
                    format!("{MANIFEST_FILE}: VM {i}'s trace {:?} is not a file name inside the directory", vm.trace),
                ));
            }
            let path = dir.join(name);
            if !path.is_file() {
                return Err(Exit::new(
                    exit_code::BAD_INPUT,
                    format!("{MANIFEST_FILE}: VM {i} ({})'s trace {} is missing", vm.name, path.display()),
                ));
            }
            Ok(path)
        })
        .collect()
}

/// Opens every VM's trace.
pub(super) fn open_all(dir: &Path, m: &NetworkManifestV1) -> Result<Vec<(PathBuf, Rc<Recording>)>, Exit> {
    trace_paths(dir, m)?.into_iter().map(|p| crate::commands::replay::open_recording(&p).map(|r| (p, r))).collect()
}

/// Checks the frames across the traces; the exit names every disagreement.
fn verify_frames(m: &NetworkManifestV1, recs: &[(PathBuf, Rc<Recording>)]) -> Result<(), Exit> {
    let logs: Vec<&[ttvm_replay::events::Event]> = recs.iter().map(|(_, r)| r.events.as_slice()).collect();
    let problems = check_frames(m, &logs);
    if problems.is_empty() {
        return Ok(());
    }
    Err(Exit::new(exit_code::DIVERGENCE, format!("the frames do not match the manifest:\n  {}", problems.join("\n  "))))
}

/// `ttvm replay DIR --verify`: every VM's trace verified alone, then every frame.
pub fn replay_verify(dir: &Path, verify: bool) -> Result<i32, Exit> {
    if !verify {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!("{}: a network recording replays with --verify (or replay one VM's trace file)", dir.display()),
        ));
    }
    let m = load_manifest(dir)?;
    let recs = open_all(dir, &m)?;
    let mut steps = 0;
    let started = std::time::Instant::now();
    for (i, (path, rec)) in recs.iter().enumerate() {
        let (n, secs) = crate::commands::replay::verify_whole(path, rec.clone(), false)?;
        eprintln!("ttvm: VM {i} ({}): verified {n} steps in {secs:.2} s", m.vms[i].name);
        steps += n;
    }
    verify_frames(&m, &recs)?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "ttvm: verified {} VMs ({steps} steps) and {} frames in {secs:.2} s ({:.0} frames/s): every trace replays alone and every frame received is the frame sent",
        recs.len(),
        m.frames.len(),
        m.frames.len() as f64 / secs
    );
    Ok(0)
}

/// `ttvm check DIR`: `ttvm check` on each VM's trace with the same expectations, then the
/// frames.
pub fn check(args: &CheckArgs) -> Result<i32, Exit> {
    if args.expect_sha256.is_some() {
        return Err(Exit::new(exit_code::BAD_INPUT, "--expect-sha256 pins one trace file, not a network directory"));
    }
    let m = load_manifest(&args.trace)?;
    let recs = open_all(&args.trace, &m)?;
    // Each trace replays bit-for-bit; the expectations are the network's, below.
    for (path, _) in &recs {
        let one = CheckArgs { trace: path.clone(), expect_exit: None, expect_output: None, expect_sha256: None };
        crate::commands::check::run(one)?;
    }
    let fail = |reason: String| {
        Exit::new(exit_code::CHECK_FAILED, format!("check FAILED: {}: {reason}", args.trace.display()))
    };
    verify_frames(&m, &recs).map_err(|e| fail(e.message))?;
    // The network's status is its failing VM's (the first failure stops the others), or 0.
    if let Some(want) = args.expect_exit {
        let want = i32::try_from(want).unwrap_or(i32::MAX);
        let failing: Vec<_> = m.vms.iter().filter_map(|v| v.exit_status.filter(|&s| s != 0)).collect();
        let status = failing.first().copied().unwrap_or(0);
        if status != want || failing.len() > 1 {
            let outcomes: Vec<String> = m.vms.iter().map(|v| format!("{}: {}", v.name, v.outcome)).collect();
            return Err(fail(format!("expected network status {want}; the VMs ended: {}", outcomes.join(", "))));
        }
    }
    // The output to match is any VM's.
    if let Some(pattern) = &args.expect_output {
        let re = regex::Regex::new(pattern).map_err(|e| {
            Exit::new(exit_code::BAD_INPUT, format!("--expect-output: invalid regular expression: {e}"))
        })?;
        let matched =
            recs.iter().any(|(_, r)| re.is_match(&String::from_utf8_lossy(&r.serial_output_before(u64::MAX))));
        if !matched {
            return Err(fail(format!("no VM's serial output matches /{pattern}/")));
        }
    }
    println!("check ok: {}: {} VMs and {} frames", args.trace.display(), m.vms.len(), m.frames.len());
    Ok(0)
}

fn mac(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// `ttvm info DIR [--json]`: the VMs and the frames.
pub fn info(dir: &Path, json: bool) -> Result<i32, Exit> {
    let m = load_manifest(dir)?;
    trace_paths(dir, &m)?;
    if json {
        let vms: Vec<_> = m
            .vms
            .iter()
            .map(|v| {
                serde_json::json!({
                    "name": v.name, "kernel": v.kernel, "trace": v.trace, "mac": mac(&v.mac),
                    "steps": v.steps, "exit_status": v.exit_status, "outcome": v.outcome,
                })
            })
            .collect();
        let frames: Vec<_> = m
            .frames
            .iter()
            .map(|f| {
                let to: Vec<_> = f.to.iter().map(|d| serde_json::json!({"vm": d.vm, "at": d.at})).collect();
                serde_json::json!({"id": f.id, "from": f.from, "sent_at": f.sent_at, "len": f.len, "to": to})
            })
            .collect();
        let v = serde_json::json!({"vms": vms, "frames": frames});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    let mut out = format!("network recording: {} ({} VMs, {} frames)\n", dir.display(), m.vms.len(), m.frames.len());
    for (i, v) in m.vms.iter().enumerate() {
        out += &format!(
            "  VM {i} {:<10} {} steps, {} ({}, mac {}, kernel {})\n",
            v.name,
            v.steps,
            v.outcome,
            v.trace,
            mac(&v.mac),
            v.kernel
        );
    }
    out += "frames:\n";
    for f in &m.frames {
        let to: Vec<String> = f
            .to
            .iter()
            .map(|d| format!("VM {} {}", d.vm, d.at.map_or("never (still at the switch)".into(), |a| format!("@{a}"))))
            .collect();
        let to = if to.is_empty() { "dropped".to_string() } else { to.join(", ") };
        out += &format!("  #{:<5} VM {} @{} -> {} ({} bytes)\n", f.id, f.from, f.sent_at, to, f.len);
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    Ok(0)
}
