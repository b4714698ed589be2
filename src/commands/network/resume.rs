//! `ttvm resume SNAP` for a network snapshot directory (`ttvm snapshot DIR --at … -o SNAP`):
//! every VM goes on from its position at the cut with the free engine, each on its own
//! thread on one switch, as `ttvm run --vm …` runs them.
//!
//! The frames in flight at the cut are queued at their destinations' ports before any VM
//! starts, so each is delivered once, ahead of anything sent after the cut; frames the
//! senders had handed to their cards but not yet sent are in the cards' state and leave
//! when the free engine transmits them. A VM that had already ended at the cut is not run
//! again: its recorded outcome stands.

use std::path::{Path, PathBuf};

use ttvm_replay::network::snapshot::{NetSnapshotManifestV1, NET_SNAPSHOT_FILE};

use super::live_snapshot::{snapshot_seq, LiveSnapshots, VmName};
use super::port::SharedSwitch;
use super::run::{run_group, Outcome, VmStart};
use crate::commands::run::ResumeArgs;
use crate::exit_code::{self, Exit};

/// Whether `path` is a network snapshot directory, or a directory of live network
/// snapshots (`ttvm run --vm … --snapshot-every D --snapshots DIR`).
pub fn is_network_snapshot(path: &Path) -> bool {
    path.is_dir() && (path.join(NET_SNAPSHOT_FILE).exists() || !live_snapshots(path).is_empty())
}

/// The live snapshot directories in `dir`, newest first (committed or not).
pub(super) fn live_snapshots(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| Some((snapshot_seq(&e.file_name().to_string_lossy())?, e.path())))
                .filter(|(_, p)| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|s| std::cmp::Reverse(s.0));
    v
}

/// Options of a single machine's resume that a network's does not take.
fn refuse_single_vm_options(args: &ResumeArgs) -> Result<(), Exit> {
    let given = [
        (args.disk.is_some(), "--disk"),
        (args.slowdown.is_some(), "--slowdown"),
        (args.free.save_state.is_some(), "--save-state"),
        (args.free.profile.is_some(), "--profile"),
        (args.serial.serial_in.is_some(), "--serial-in"),
        (args.serial.serial_out.is_some(), "--serial-out"),
    ];
    if let Some((_, option)) = given.iter().find(|(g, _)| *g) {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!(
                "{option} is for one machine's snapshot, not a network's (`ttvm resume SNAP` takes only --timeout)"
            ),
        ));
    }
    args.free.live.refuse_with("a network snapshot")
}

/// The manifest of `dir`, refusing a damaged or newer one by name.
pub fn load(dir: &Path) -> Result<NetSnapshotManifestV1, Exit> {
    let path = dir.join(NET_SNAPSHOT_FILE);
    let bytes =
        std::fs::read(&path).map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("{}: {e}", path.display())))?;
    NetSnapshotManifestV1::decode(&bytes).map_err(|e| {
        let code = match e {
            ttvm_replay::network::snapshot::NetSnapshotError::BadMagic => exit_code::BAD_INPUT,
            _ => exit_code::DAMAGED_TRACE,
        };
        Exit::new(code, format!("{}: {e}", path.display()))
    })
}

/// `ttvm resume SNAP` on a network snapshot: the group's exit status.
pub fn resume(args: &ResumeArgs) -> Result<i32, Exit> {
    refuse_single_vm_options(args)?;
    let timeout = args.free.timeout()?;
    let (dir, m, starts) = choose(&args.snapshot)?;
    let dir = &dir;
    let shared = SharedSwitch::new(m.vms.len());
    let mut delivered = 0;
    for f in &m.in_flight {
        if m.vms[f.to as usize].ended.is_some() {
            eprintln!("ttvm: frame #{} to VM {} is not delivered: that VM had ended", f.id, f.to);
            continue;
        }
        if !shared.preload(f.from as usize, f.to as usize, f.data.clone()) {
            return Err(Exit::new(exit_code::HOST_ERROR, format!("frame #{}: VM {}'s port is full", f.id, f.to)));
        }
        delivered += 1;
    }
    let positions: Vec<String> = m
        .vms
        .iter()
        .enumerate()
        // A live snapshot of a free run has no icounts to show.
        .map(|(i, v)| {
            if v.recorded_steps > 0 {
                format!("VM {i} ({}) @{}", v.name, v.icount)
            } else {
                format!("VM {i} ({})", v.name)
            }
        })
        .collect();
    eprintln!(
        "ttvm: resuming {} from the cut {}; {delivered} frames in flight queued for delivery",
        dir.display(),
        positions.join(", ")
    );
    let names = m.vms.iter().map(|v| VmName { name: v.name.clone(), kernel: v.kernel.clone() }).collect();
    let live = LiveSnapshots::start(args.snapshot_every, args.snapshots.clone(), None, names, shared.clone())?;
    let status = run_group(starts, shared, timeout, live.clone())?;
    match live {
        Some(l) => l.finish().map(|()| status),
        None => Ok(status),
    }
}

/// Each VM's name and how its thread starts, in position order.
pub(super) type Starts = Vec<(String, VmStart)>;

/// A snapshot directory as given (`dir` holds a manifest), or the newest complete and
/// undamaged one of a directory of live snapshots (reporting the ones passed over): its
/// path, manifest and the VMs' starts.
fn choose(given: &Path) -> Result<(PathBuf, NetSnapshotManifestV1, Starts), Exit> {
    if given.join(NET_SNAPSHOT_FILE).exists() {
        let (m, starts) = checked(given)?;
        return Ok((given.to_path_buf(), m, starts));
    }
    let mut reasons = Vec::new();
    for (_, dir) in live_snapshots(given) {
        if !dir.join(NET_SNAPSHOT_FILE).exists() {
            eprintln!("ttvm: {}: not committed (no manifest: the run stopped while taking it); skipped", dir.display());
            continue;
        }
        match checked(&dir) {
            Ok((m, starts)) => {
                if !reasons.is_empty() {
                    eprintln!("ttvm: using the older snapshot {}", dir.display());
                }
                return Ok((dir, m, starts));
            }
            Err(e) => {
                eprintln!("ttvm: {}: {}; trying an older one", dir.display(), e.message);
                reasons.push(e.message);
            }
        }
    }
    Err(Exit::new(
        exit_code::DAMAGED_TRACE,
        format!(
            "{}: no complete live network snapshot in it{}",
            given.display(),
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) }
        ),
    ))
}

/// The manifest of the snapshot directory `dir` and the VMs' starts, every VM's snapshot
/// read and checked before any VM starts: a damaged one fails the whole resume now, not one
/// VM mid-way.
pub(super) fn checked(dir: &Path) -> Result<(NetSnapshotManifestV1, Starts), Exit> {
    let m = load(dir)?;
    let mut starts = Vec::new();
    for (i, vm) in m.vms.iter().enumerate() {
        let path = dir.join(&vm.snapshot);
        let file = std::fs::File::open(&path)
            .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("{}: VM {i}'s snapshot: {e}", path.display())))?;
        let records = ttvm_vmm::snapshot::check_records(&path, std::io::BufReader::new(file))
            .map_err(|e| Exit::of(format!("VM {i}"), &e))?;
        match records.net {
            Some(card) if card.mac == vm.mac => {}
            Some(card) => {
                return Err(Exit::new(
                    exit_code::DAMAGED_TRACE,
                    format!(
                        "{}: VM {i}'s card has MAC {:02x?}, the manifest says {:02x?}",
                        path.display(),
                        card.mac,
                        vm.mac
                    ),
                ))
            }
            None => {
                return Err(Exit::new(
                    exit_code::DAMAGED_TRACE,
                    format!("{}: VM {i}'s snapshot has no network card", path.display()),
                ))
            }
        }
        let start = match &vm.ended {
            Some(e) => {
                VmStart::Ended(Outcome { text: format!("had ended before the cut: {}", e.outcome), status: e.status })
            }
            None => VmStart::Resume(path),
        };
        starts.push((vm.name.clone(), start));
    }
    Ok((m, starts))
}
