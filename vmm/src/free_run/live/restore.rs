//! `ttvm resume DIR`: rebuild the machine from the newest checkpoint that checks out
//! completely (file checksum, state validation, every page's hash), reporting each newer one
//! that does not, and set the directory up so the resumed run goes on checkpointing into it.
//! `ttvm record --from DIR`: the same machine as a [`LoadedSnapshot`], the type a
//! `--save-state` snapshot loads into, leaving the directory untouched.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use super::format::{self, LiveCheckpoint, LiveSettings, RECORD_HEADER_LEN};
use super::writer::{self, Loc, WriterState};
use super::{LiveCheckpointer, LiveError, ORIGIN, SERIAL_LOG};
use crate::clock::HostClock;
use crate::cpuid::CpuVendor;
use crate::machine::Machine;
use crate::memory::PAGE_SIZE;
use crate::snapshot::{self, LoadedSnapshot, SnapshotOrigin};
use crate::vm::Vm;

/// A machine rebuilt from a checkpoint directory.
pub struct Restored {
    /// The machine as it was at the checkpoint.
    pub machine: Machine,
    /// Its device clock, going on from the checkpoint's reading at its slowdown.
    pub clock: HostClock,
    /// The checkpoint used.
    pub seq: u64,
    /// The run's checkpoint schedule.
    pub settings: LiveSettings,
    /// Serial bytes the guest had written at the checkpoint.
    pub serial_len: u64,
    /// Newer checkpoints that could not be used, and why (renamed to `*.damaged`).
    pub skipped: Vec<String>,
    /// What the machine booted from; `None` for a directory an older ttvm wrote.
    pub origin: Option<SnapshotOrigin>,
    /// Set when `serial.log` holds less than the checkpoint counted (it was not written by
    /// this ttvm, or lost data no fsync had reached).
    pub serial_note: Option<String>,
    writer: WriterState,
    next_seq: u64,
}

impl Restored {
    /// Continues checkpointing into the directory; returns the machine, its clock and the
    /// checkpointer the free engine is given.
    pub fn start_checkpointing(self) -> Result<(Machine, HostClock, LiveCheckpointer), LiveError> {
        let Self { mut machine, clock, serial_len, writer, next_seq, .. } = self;
        let live = LiveCheckpointer::resume(writer, next_seq, serial_len, &mut machine)?;
        Ok((machine, clock, live))
    }
}

/// Why one checkpoint cannot be used.
enum Refusal {
    /// Something in the files: try the previous checkpoint.
    Damaged(String),
    /// Something on this host (KVM): no other checkpoint would do better.
    Fatal(LiveError),
}

/// Whether `dir` looks like a checkpoint directory (holds any checkpoint file).
pub fn is_checkpoint_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| writer::checkpoint_seq(&e.file_name().to_string_lossy()).is_some())
    })
}

/// Sequence numbers of the checkpoint files and pack files in `dir`, ascending. Temporary
/// files a crash left before their rename (never committed) are removed.
pub fn list(dir: &Path) -> Result<(Vec<u64>, Vec<u64>), LiveError> {
    let (checkpoints, packs, temporary) = scan(dir)?;
    for name in temporary {
        let _ = std::fs::remove_file(dir.join(name));
    }
    Ok((checkpoints, packs))
}

/// What [`list`] finds, changing nothing: checkpoints, packs, and the names of `*.tmp` files.
#[allow(clippy::type_complexity)]
fn scan(dir: &Path) -> Result<(Vec<u64>, Vec<u64>, Vec<String>), LiveError> {
    let io = |source| LiveError::Io { path: dir.to_path_buf(), source };
    let (mut checkpoints, mut packs, mut temporary) = (Vec::new(), Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let name = name.to_string_lossy();
        if let Some(s) = writer::checkpoint_seq(&name) {
            checkpoints.push(s);
        } else if let Some(s) = writer::pack_seq(&name) {
            packs.push(s);
        } else if name.ends_with(".tmp") {
            temporary.push(name.into_owned());
        }
    }
    checkpoints.sort_unstable();
    packs.sort_unstable();
    Ok((checkpoints, packs, temporary))
}

/// The directory's origin file; `None` when it has none (an older ttvm wrote it).
pub fn read_origin(dir: &Path) -> Result<Option<SnapshotOrigin>, LiveError> {
    let path = dir.join(ORIGIN);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LiveError::Io { path, source }),
    };
    format::decode_origin(&bytes).map(Some).map_err(|e| LiveError::DamagedOrigin { path, reason: e.to_string() })
}

/// The vendor a machine of `origin` shows its guest: the host's when the directory does not
/// say (older directories resumed that way).
fn vendor_of(origin: Option<&SnapshotOrigin>) -> CpuVendor {
    origin.map_or(CpuVendor::Host, SnapshotOrigin::vendor)
}

/// The machine of the newest usable checkpoint of `dir`, as a snapshot would load it (with
/// the directory's origin), for `ttvm record --from DIR`; also that checkpoint's number and
/// why newer ones were refused. Changes nothing in the directory: the run may still be
/// writing it.
pub fn load_for_recording(dir: &Path) -> Result<(LoadedSnapshot, u64, Vec<String>), LiveError> {
    let origin = read_origin(dir)?;
    let (checkpoints, _, _) = scan(dir)?;
    let (cp, machine, clock, skipped) = newest_usable(dir, &checkpoints, vendor_of(origin.as_ref()))?;
    Ok((LoadedSnapshot { machine, clock, tsc: cp.machine.tsc, origin }, cp.seq, skipped))
}

/// The newest of `checkpoints` that checks out, rebuilt, with why each newer one did not.
#[allow(clippy::type_complexity)]
fn newest_usable(
    dir: &Path,
    checkpoints: &[u64],
    vendor: CpuVendor,
) -> Result<(LiveCheckpoint, Machine, HostClock, Vec<String>), LiveError> {
    let mut skipped = Vec::new();
    for &seq in checkpoints.iter().rev() {
        match load_one(dir, seq, vendor) {
            Ok((cp, machine, clock)) => return Ok((cp, machine, clock, skipped)),
            Err(Refusal::Damaged(reason)) => skipped.push(format!("checkpoint {seq}: {reason}")),
            Err(Refusal::Fatal(e)) => return Err(e),
        }
    }
    Err(LiveError::NoCheckpoint { dir: dir.to_path_buf(), reasons: skipped })
}

/// Reads and checks checkpoint `seq`'s file (not its pages).
pub fn read_checkpoint(dir: &Path, seq: u64) -> Result<LiveCheckpoint, String> {
    let path = dir.join(writer::checkpoint_name(seq));
    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
    format::decode_checkpoint(&bytes).map_err(|e| e.to_string())
}

/// Rebuilds the machine from the newest usable checkpoint of `dir`.
pub fn load_newest(dir: &Path) -> Result<Restored, LiveError> {
    let origin = read_origin(dir)?;
    let (checkpoints, packs) = list(dir)?;
    let (cp, machine, clock, skipped) = newest_usable(dir, &checkpoints, vendor_of(origin.as_ref()))?;
    for &bad in checkpoints.iter().filter(|&&s| s > cp.seq) {
        let from = dir.join(writer::checkpoint_name(bad));
        let _ = std::fs::rename(&from, from.with_extension("damaged"));
    }
    writer::sync_dir(dir)?;
    let serial_note = cut_serial_log(dir, cp.serial_len)?;
    let writer = writer_state(dir, &cp, &checkpoints, &packs);
    let next_seq = checkpoints.last().map_or(0, |&s| s + 1);
    Ok(Restored {
        machine,
        clock,
        seq: cp.seq,
        settings: cp.settings,
        serial_len: cp.serial_len,
        skipped,
        origin,
        serial_note,
        writer,
        next_seq,
    })
}

fn load_one(dir: &Path, seq: u64, vendor: CpuVendor) -> Result<(LiveCheckpoint, Machine, HostClock), Refusal> {
    let cp = read_checkpoint(dir, seq).map_err(Refusal::Damaged)?;
    let board = snapshot::restorable(&cp.machine).map_err(Refusal::Damaged)?;
    let mut vm = Vm::new(cp.machine.mem_size, vendor).map_err(|e| Refusal::Fatal(e.into()))?;
    read_pages(dir, &cp, vm.ram_mut().as_mut_slice()).map_err(Refusal::Damaged)?;
    let (machine, clock) =
        snapshot::restore_into(vm, board, &cp.machine).map_err(|e| Refusal::Fatal(LiveError::Vm(e)))?;
    Ok((cp, machine, clock))
}

/// Every page of `cp` into `ram` (zeroed), each checked against its hash.
fn read_pages(dir: &Path, cp: &LiveCheckpoint, ram: &mut [u8]) -> Result<(), String> {
    let mut packs: HashMap<u64, Vec<u8>> = HashMap::new();
    for p in &cp.pages {
        let pack = match packs.entry(p.pack) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let name = writer::pack_name(p.pack);
                let bytes = std::fs::read(dir.join(&name)).map_err(|e| format!("{name}: {e}"))?;
                format::check_pack_header(&bytes).map_err(|e| format!("{name}: {e}"))?;
                e.insert(bytes)
            }
        };
        let where_ = || format!("page {:#x} in {} at offset {}", p.pfn, writer::pack_name(p.pack), p.offset);
        let at = usize::try_from(p.offset).unwrap_or(usize::MAX);
        let header: &[u8; RECORD_HEADER_LEN] = pack
            .get(at..at.saturating_add(RECORD_HEADER_LEN))
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| format!("{}: beyond the end of the pack", where_()))?;
        let (hash, len) = format::record_len(header).map_err(|e| format!("{}: {e}", where_()))?;
        let start = at + RECORD_HEADER_LEN;
        let z = pack.get(start..start + len).ok_or_else(|| format!("{}: truncated", where_()))?;
        let page = &mut ram[p.pfn as usize * PAGE_SIZE..(p.pfn as usize + 1) * PAGE_SIZE];
        format::decode_record(hash, z, p.hash, page).map_err(|e| format!("{}: {e}", where_()))?;
    }
    Ok(())
}

/// `serial.log` cut back to what the checkpoint counted, so the resumed guest's output
/// continues it exactly. A note when it holds less.
fn cut_serial_log(dir: &Path, serial_len: u64) -> Result<Option<String>, LiveError> {
    let path = dir.join(SERIAL_LOG);
    let io = |source| LiveError::Io { path: path.clone(), source };
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len < serial_len {
        return Ok(Some(format!(
            "{} holds {len} bytes, fewer than the {serial_len} the checkpoint counted",
            path.display()
        )));
    }
    file.set_len(serial_len).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(None)
}

/// The writer's memory of the directory after resuming from `cp`: its pages are the map and
/// the deduplication index; the older checkpoints stay until `keep` drops them, and every
/// pack (orphans of an interrupted checkpoint included) is known so unused ones are removed.
fn writer_state(dir: &Path, cp: &LiveCheckpoint, checkpoints: &[u64], packs: &[u64]) -> WriterState {
    let mut map = BTreeMap::new();
    let mut index = HashMap::new();
    for p in &cp.pages {
        let loc = Loc { pack: p.pack, offset: p.offset, hash: p.hash };
        map.insert(p.pfn, loc);
        index.insert(p.hash, loc);
    }
    let mut kept = VecDeque::new();
    for &seq in checkpoints.iter().filter(|&&s| s <= cp.seq) {
        let names: HashSet<u64> = if seq == cp.seq {
            cp.pages.iter().map(|p| p.pack).collect()
        } else {
            read_checkpoint(dir, seq).map(|c| c.pages.iter().map(|p| p.pack).collect()).unwrap_or_default()
        };
        kept.push_back((seq, names));
    }
    WriterState {
        dir: PathBuf::from(dir),
        settings: cp.settings,
        map,
        index,
        kept,
        packs: packs.iter().copied().collect(),
    }
}
