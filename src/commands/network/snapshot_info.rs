//! `ttvm info` on network snapshots: one snapshot directory (`ttvm snapshot DIR --at … -o
//! SNAP`, or one of a live directory), or a directory of live snapshots (`ttvm run --vm …
//! --snapshot-every D --snapshots DIR`): what each holds, and which one `ttvm resume DIR`
//! would take. Reading goes through `resume.rs`'s checks, so what `info` calls complete is
//! what `resume` accepts.

use std::path::Path;

use serde_json::json;
use ttvm_replay::network::snapshot::{NetSnapshotManifestV1, NET_SNAPSHOT_FILE};

use super::resume::{checked, live_snapshots, load};
use crate::exit_code::{self, Exit};

/// `ttvm info SNAP|DIR` on network snapshots: the exit status.
/// A snapshot `resume` would refuse (or a directory without one) is described all the
/// same, with ttvm's status for damage.
pub fn info(path: &Path, json_out: bool) -> Result<i32, Exit> {
    let (report, usable) = if path.join(NET_SNAPSHOT_FILE).exists() {
        let m = load(path)?;
        // Every VM's machine is read and checked as `resume` would.
        let complete = checked(path).map(|_| ()).map_err(|e| e.message);
        let report = if json_out {
            serde_json::to_string_pretty(&snapshot_json(path, &m, &complete)).unwrap_or_default()
        } else {
            describe(path, &m, &complete)
        };
        (report, complete.is_ok())
    } else {
        live_dir(path, json_out)
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), format!("{report}\n").as_bytes());
    Ok(if usable { 0 } else { exit_code::DAMAGED_TRACE })
}

/// Whether the snapshot was cut from a recording (positions are icounts) or taken live
/// from a free run (nothing was recorded: no icounts).
fn from_recording(m: &NetSnapshotManifestV1) -> bool {
    m.vms.iter().any(|v| v.recorded_steps > 0)
}

fn describe(path: &Path, m: &NetSnapshotManifestV1, complete: &Result<(), String>) -> String {
    let mut s =
        format!("network snapshot: {} ({} VMs, {} frames in flight)\n", path.display(), m.vms.len(), m.in_flight.len());
    if from_recording(m) {
        s += &format!("cut:      through VM {} @ {} of the recording {}\n", m.at.0, m.at.1, m.source);
    } else {
        s += &format!("taken:    {} (a free run: no icounts)\n", m.source);
    }
    for (i, v) in m.vms.iter().enumerate() {
        let state = match (&v.ended, from_recording(m)) {
            (Some(e), _) => format!("had ended: {} (status {})", e.outcome, e.status),
            (None, true) => format!("@ {} of {} recorded steps", v.icount, v.recorded_steps),
            (None, false) => "running".to_string(),
        };
        s += &format!("  VM {i} {:<10} {state} ({}, kernel {})\n", v.name, v.snapshot, v.kernel);
    }
    for f in &m.in_flight {
        let sent = if from_recording(m) { format!(" @{}", f.sent_at) } else { String::new() };
        s += &format!("  in flight: #{} VM {}{sent} -> VM {} ({} bytes)\n", f.id, f.from, f.to, f.data.len());
    }
    s += &match complete {
        Ok(()) => format!("complete: continue with `ttvm resume {}`", path.display()),
        Err(why) => format!("NOT usable: {why}"),
    };
    s
}

fn snapshot_json(path: &Path, m: &NetSnapshotManifestV1, complete: &Result<(), String>) -> serde_json::Value {
    let recorded = from_recording(m);
    json!({
        "path": path.display().to_string(),
        "source": m.source,
        "at": if recorded { json!({ "vm": m.at.0, "icount": m.at.1 }) } else { serde_json::Value::Null },
        "vms": m.vms.iter().map(|v| json!({
            "name": v.name,
            "kernel": v.kernel,
            "icount": if recorded { json!(v.icount) } else { serde_json::Value::Null },
            "recorded_steps": if recorded { json!(v.recorded_steps) } else { serde_json::Value::Null },
            "snapshot": v.snapshot,
            "ended": v.ended.as_ref().map(|e| json!({ "status": e.status, "outcome": e.outcome })),
        })).collect::<Vec<_>>(),
        "in_flight": m.in_flight.iter().map(|f| json!({
            "id": f.id, "from": f.from, "to": f.to, "bytes": f.data.len(),
            "sent_at": if recorded { json!(f.sent_at) } else { serde_json::Value::Null },
        })).collect::<Vec<_>>(),
        "complete": complete.is_ok(),
        "problem": complete.as_ref().err(),
    })
}

/// A directory of live snapshots: each, newest first, with whether it is complete, and the
/// one `ttvm resume DIR` takes (the newest complete one).
fn live_dir(dir: &Path, json_out: bool) -> (String, bool) {
    let mut rows = Vec::new();
    let mut chosen = None;
    for (seq, snap) in live_snapshots(dir) {
        let state = if !snap.join(NET_SNAPSHOT_FILE).exists() {
            Err("not committed (the run stopped while taking it)".to_string())
        } else {
            // `checked` reads the manifest and every VM's machine, as `resume` does.
            checked(&snap).map(|(m, _)| m).map_err(|e| e.message)
        };
        if chosen.is_none() && state.is_ok() {
            chosen = Some(seq);
        }
        rows.push((seq, snap, state));
    }
    if json_out {
        let list: Vec<_> = rows
            .iter()
            .map(|(seq, snap, state)| {
                json!({
                    "seq": seq,
                    "path": snap.display().to_string(),
                    "complete": state.is_ok(),
                    "problem": state.as_ref().err(),
                    "vms": state.as_ref().ok().map(|m| m.vms.len()),
                    "in_flight": state.as_ref().ok().map(|m| m.in_flight.len()),
                })
            })
            .collect();
        let report = json!({ "path": dir.display().to_string(), "snapshots": list, "resume_takes": chosen });
        return (serde_json::to_string_pretty(&report).unwrap_or_default(), chosen.is_some());
    }
    let mut s = format!("live network snapshots: {} ({} snapshots)\n", dir.display(), rows.len());
    for (seq, snap, state) in &rows {
        let name = snap.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mark = if Some(*seq) == chosen { " <- `ttvm resume` takes this one" } else { "" };
        s += &match state {
            Ok(m) => {
                format!("  {name}  complete: {} VMs, frames in flight: {}{mark}\n", m.vms.len(), m.in_flight.len())
            }
            Err(why) => format!("  {name}  NOT usable: {why}\n"),
        };
    }
    s += &match chosen {
        Some(_) => {
            format!("continue with `ttvm resume {}`; `ttvm info {}/NNNNNN` shows one", dir.display(), dir.display())
        }
        None => "no complete snapshot: nothing to resume".to_string(),
    };
    (s, chosen.is_some())
}
