//! The checkpoint writer: a thread of its own that turns the pages and state the vCPU thread
//! copied into files, so hashing, compression, writing and fsync never pause the guest. It
//! touches no guest-visible state: it only reads the copies it is sent.
//!
//! Order of a checkpoint on disk (what makes a crash at any point harmless): the new pack
//! (pages not stored before) is written and fsynced, then the directory (so the pack's name
//! is durable too); `serial.log` is fsynced; the checkpoint
//! is written to a temporary name, fsynced, renamed to its final name and the directory
//! fsynced. Only then are checkpoints beyond `keep` removed, and after them the packs no
//! kept checkpoint names.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{self, LiveCheckpoint, LiveSettings, PageRef};
use super::LiveError;
use crate::memory::PAGE_SIZE;
use crate::snapshot::{MachineState, SnapshotOrigin};

/// What the vCPU thread hands over at a checkpoint.
pub struct Job {
    /// Sequence number of the checkpoint.
    pub seq: u64,
    /// Machine state at the pause.
    pub machine: MachineState,
    /// Serial bytes so far.
    pub serial_len: u64,
    /// Frame numbers of the copied pages, ascending.
    pub pfns: Vec<u32>,
    /// Their contents, 4 KiB each, in the same order.
    pub data: Vec<u8>,
    /// The virtio-net card at the pause, if the machine has one (a network's live
    /// snapshots keep it; single-machine checkpoints have no card).
    pub net: Option<crate::devices::virtio_net::VirtioNetState>,
}

/// What the writer did with one checkpoint.
#[derive(Clone, Copy, Debug, Default)]
pub struct Written {
    /// Bytes written to files (pack + checkpoint).
    pub bytes: u64,
    /// Pages stored for the first time.
    pub stored: u64,
    /// Pages whose contents were already stored (by any checkpoint still kept).
    pub deduplicated: u64,
}

/// Where a stored page is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Loc {
    pub pack: u64,
    pub offset: u64,
    pub hash: u128,
}

/// The writer's memory of the directory: the newest checkpoint's page map, the content index
/// used for deduplication, and the kept checkpoints with the packs each names.
pub(crate) struct WriterState {
    pub dir: PathBuf,
    pub settings: LiveSettings,
    pub map: BTreeMap<u32, Loc>,
    pub index: HashMap<u128, Loc>,
    pub kept: VecDeque<(u64, HashSet<u64>)>,
    pub packs: HashSet<u64>,
}

impl WriterState {
    /// A fresh directory.
    pub fn new(dir: &Path, settings: LiveSettings) -> Self {
        Self {
            dir: dir.to_path_buf(),
            settings,
            map: BTreeMap::new(),
            index: HashMap::new(),
            kept: VecDeque::new(),
            packs: HashSet::new(),
        }
    }

    /// Writes one checkpoint (in the order the module describes) and drops old ones.
    pub fn write(&mut self, job: &Job) -> Result<Written, LiveError> {
        let mut written = Written::default();
        let mut pack = Vec::new();
        for (i, &pfn) in job.pfns.iter().enumerate() {
            let page = &job.data[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
            if page.iter().all(|&b| b == 0) {
                self.map.remove(&pfn);
                continue;
            }
            let hash = xxhash_rust::xxh3::xxh3_128(page);
            let loc = match self.index.get(&hash) {
                Some(&loc) => {
                    written.deduplicated += 1;
                    loc
                }
                None => {
                    if pack.is_empty() {
                        pack.extend_from_slice(&format::pack_header());
                    }
                    let loc = Loc { pack: job.seq, offset: pack.len() as u64, hash };
                    format::encode_record(&mut pack, hash, page);
                    self.index.insert(hash, loc);
                    written.stored += 1;
                    loc
                }
            };
            self.map.insert(pfn, loc);
        }
        if !pack.is_empty() {
            let path = self.dir.join(pack_name(job.seq));
            write_synced(&path, &pack)?;
            // Its name durable before any checkpoint that names it can be.
            sync_dir(&self.dir)?;
            self.packs.insert(job.seq);
            written.bytes += pack.len() as u64;
        }
        // The serial log must hold at least what the checkpoint says it does.
        let log = self.dir.join(super::SERIAL_LOG);
        if let Ok(f) = File::open(&log) {
            f.sync_all().map_err(|source| LiveError::Io { path: log.clone(), source })?;
        }
        let pages: Vec<PageRef> =
            self.map.iter().map(|(&pfn, l)| PageRef { pfn, pack: l.pack, offset: l.offset, hash: l.hash }).collect();
        let names: HashSet<u64> = pages.iter().map(|p| p.pack).collect();
        let cp = LiveCheckpoint {
            seq: job.seq,
            settings: self.settings,
            machine: job.machine.clone(),
            serial_len: job.serial_len,
            pages,
        };
        let bytes = format::encode_checkpoint(&cp);
        let tmp = self.dir.join(format!("{}.tmp", checkpoint_name(job.seq)));
        write_synced(&tmp, &bytes)?;
        let final_path = self.dir.join(checkpoint_name(job.seq));
        std::fs::rename(&tmp, &final_path).map_err(|source| LiveError::Io { path: final_path.clone(), source })?;
        sync_dir(&self.dir)?;
        written.bytes += bytes.len() as u64;
        self.kept.push_back((job.seq, names));
        self.drop_old()?;
        Ok(written)
    }

    /// Removes checkpoints beyond `keep` (oldest first), then the packs none of the rest names.
    fn drop_old(&mut self) -> Result<(), LiveError> {
        let mut removed = false;
        while self.kept.len() > self.settings.keep.max(1) as usize {
            if let Some((seq, _)) = self.kept.pop_front() {
                let path = self.dir.join(checkpoint_name(seq));
                match std::fs::remove_file(&path) {
                    Ok(()) => removed = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(LiveError::Io { path, source }),
                }
            }
        }
        if !removed {
            return Ok(());
        }
        // The checkpoints are gone for good before any page they might share is.
        sync_dir(&self.dir)?;
        let live: HashSet<u64> = self.kept.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        let dead: Vec<u64> = self.packs.iter().copied().filter(|p| !live.contains(p)).collect();
        for pack in dead {
            let path = self.dir.join(pack_name(pack));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(LiveError::Io { path, source }),
            }
            self.packs.remove(&pack);
        }
        // Deduplication may only point at pages that still exist.
        self.index.retain(|_, l| self.packs.contains(&l.pack));
        Ok(())
    }
}

/// File name of checkpoint `seq`.
pub fn checkpoint_name(seq: u64) -> String {
    format!("ckpt-{seq:010}.ttvmlc")
}

/// File name of pack `seq`.
pub fn pack_name(seq: u64) -> String {
    format!("pack-{seq:010}.ttvmlp")
}

/// Sequence number in a checkpoint file name.
pub fn checkpoint_seq(name: &str) -> Option<u64> {
    name.strip_prefix("ckpt-")?.strip_suffix(".ttvmlc")?.parse().ok()
}

/// Sequence number in a pack file name.
pub fn pack_seq(name: &str) -> Option<u64> {
    name.strip_prefix("pack-")?.strip_suffix(".ttvmlp")?.parse().ok()
}

/// Writes the directory's origin file (or removes one an earlier run left when there is
/// none): through a temporary name, fsynced, renamed, the directory fsynced, so it is
/// durable before the first checkpoint is.
pub(crate) fn write_origin(dir: &Path, origin: Option<&SnapshotOrigin>) -> Result<(), LiveError> {
    let path = dir.join(super::ORIGIN);
    match origin {
        Some(origin) => {
            let tmp = dir.join(format!("{}.tmp", super::ORIGIN));
            write_synced(&tmp, &format::encode_origin(origin))?;
            std::fs::rename(&tmp, &path).map_err(|source| LiveError::Io { path: path.clone(), source })?;
        }
        None => match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(LiveError::Io { path, source }),
        },
    }
    sync_dir(dir)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LiveError> {
    let io = |source| LiveError::Io { path: path.to_path_buf(), source };
    let mut f = File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// fsync of a directory: makes renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), LiveError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| LiveError::Io { path: dir.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Board;

    fn machine() -> MachineState {
        MachineState {
            mem_size: 16 * PAGE_SIZE as u64,
            vcpu: crate::vcpu::VcpuState {
                regs: Default::default(),
                sregs: Default::default(),
                xsave: vec![],
                xcrs: Default::default(),
                debugregs: Default::default(),
                events: Default::default(),
                mp_state: Default::default(),
                msrs: vec![],
            },
            tsc: 1,
            board: Board::new(0).state(),
            clock_ns: 0,
            clock_slowdown: 1,
            disk: None,
        }
    }

    fn job(seq: u64, pages: &[(u32, u8)]) -> Job {
        let mut data = Vec::new();
        for &(_, fill) in pages {
            data.extend(std::iter::repeat_n(fill, PAGE_SIZE));
        }
        Job { seq, machine: machine(), serial_len: 0, pfns: pages.iter().map(|p| p.0).collect(), data, net: None }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn pages_are_deduplicated_and_old_checkpoints_and_packs_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WriterState::new(dir.path(), LiveSettings { interval_ms: 100, keep: 2 });
        let a = w.write(&job(0, &[(1, 0xaa), (2, 0xbb), (3, 0xaa)])).unwrap();
        assert_eq!((a.stored, a.deduplicated), (2, 1), "page 3 has page 1's contents");
        let b = w.write(&job(1, &[(2, 0xaa), (3, 0)])).unwrap();
        assert_eq!((b.stored, b.deduplicated), (0, 1));
        assert_eq!(names(dir.path()), ["ckpt-0000000000.ttvmlc", "ckpt-0000000001.ttvmlc", "pack-0000000000.ttvmlp"]);
        let cp = format::decode_checkpoint(&std::fs::read(dir.path().join(checkpoint_name(1))).unwrap()).unwrap();
        assert_eq!(cp.pages.iter().map(|p| p.pfn).collect::<Vec<_>>(), [1, 2], "page 3 became zero");
        w.write(&job(2, &[(1, 0xcc), (2, 0xcc)])).unwrap();
        // Checkpoint 0 is gone; pack 0 stays while checkpoint 1 names it.
        assert_eq!(
            names(dir.path()),
            ["ckpt-0000000001.ttvmlc", "ckpt-0000000002.ttvmlc", "pack-0000000000.ttvmlp", "pack-0000000002.ttvmlp"]
        );
        let c = w.write(&job(3, &[(3, 0xaa)])).unwrap();
        assert_eq!((c.stored, c.deduplicated), (0, 1), "0xaa is still in pack 0");
        assert_eq!(
            names(dir.path()),
            ["ckpt-0000000002.ttvmlc", "ckpt-0000000003.ttvmlc", "pack-0000000000.ttvmlp", "pack-0000000002.ttvmlp"],
            "pack 0 lives on through checkpoint 3's page 3"
        );
        w.write(&job(4, &[(3, 0xdd)])).unwrap();
        w.write(&job(5, &[(1, 0xee)])).unwrap();
        assert!(!names(dir.path()).contains(&pack_name(0)), "no kept checkpoint names pack 0: {:?}", names(dir.path()));
        assert!(w.index.values().all(|l| l.pack != 0), "nor does the index");
    }

    #[test]
    fn file_names_parse_back() {
        assert_eq!(checkpoint_seq(&checkpoint_name(42)), Some(42));
        assert_eq!(pack_seq(&pack_name(7)), Some(7));
        assert_eq!(checkpoint_seq("ckpt-0000000001.ttvmlc.tmp"), None);
    }
}
