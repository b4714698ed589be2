//! Questions about a recorded disk answered from the trace alone (no replay): the disk as
//! it was at any icount, and every write to a sector.
//!
//! The disk at icount N is the base image (the `--base` file, or else the blocks the trace
//! holds, the rest zero) with every write whose request completed before step N applied
//! in order: a write is on the disk once the guest could have seen it complete.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use ttvm_vmm::disk::{BLOCK_SIZE, SECTOR_SIZE};

use crate::events::EventKind;
use crate::recording::Recording;

/// Errors building a disk image.
#[derive(Debug, thiserror::Error)]
pub enum DiskHistoryError {
    /// The trace's machine had no disk.
    #[error("the trace's machine has no disk (it was recorded without --disk)")]
    NoDisk,
    /// The base image is not the recorded disk's size.
    #[error("the base image {path} has {found} sectors, the recorded disk {expected}")]
    BaseSize {
        /// The file.
        path: String,
        /// Its sectors.
        found: u64,
        /// The recorded capacity.
        expected: u64,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// What [`write_disk_at`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskAtSummary {
    /// Capacity in sectors.
    pub sectors: u64,
    /// Blocks taken from the trace (no base file).
    pub base_blocks: u64,
    /// Write requests applied.
    pub writes: u64,
}

/// Writes the recorded disk as it was at the start of step `icount` to `out`.
pub fn write_disk_at(
    rec: &Recording,
    icount: u64,
    base: Option<&Path>,
    out: &Path,
) -> Result<DiskAtSummary, DiskHistoryError> {
    let disk = rec.header().disk.as_ref().ok_or(DiskHistoryError::NoDisk)?;
    let size = disk.capacity_sectors * SECTOR_SIZE as u64;
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| DiskHistoryError::Io { path: path.clone(), source }
    };
    let mut file = File::create(out).map_err(io(out))?;
    let mut summary = DiskAtSummary { sectors: disk.capacity_sectors, ..Default::default() };
    match base {
        Some(b) => {
            let mut src = File::open(b).map_err(io(b))?;
            let found = src.metadata().map_err(io(b))?.len() / SECTOR_SIZE as u64;
            if found != disk.capacity_sectors {
                return Err(DiskHistoryError::BaseSize {
                    path: b.display().to_string(),
                    found,
                    expected: disk.capacity_sectors,
                });
            }
            std::io::copy(&mut std::io::Read::take(&mut src, size), &mut file).map_err(io(out))?;
        }
        None => {
            // A sparse file of zeros, then the blocks the trace holds.
            file.set_len(size).map_err(io(out))?;
            for e in &rec.events {
                if let EventKind::DiskBlock { block, data } = &e.kind {
                    let at = block * BLOCK_SIZE as u64;
                    let len = (size.saturating_sub(at) as usize).min(data.len());
                    file.write_all_at(&data[..len], at).map_err(io(out))?;
                    summary.base_blocks += 1;
                }
            }
        }
    }
    for e in rec.events.iter().take_while(|e| e.icount < icount) {
        if let EventKind::DiskWrite { sector, data } = &e.kind {
            file.write_all_at(data, sector * SECTOR_SIZE as u64).map_err(io(out))?;
            summary.writes += 1;
        }
    }
    file.set_len(size).map_err(io(out))?;
    file.seek(SeekFrom::End(0)).map_err(io(out))?;
    file.flush().map_err(io(out))?;
    Ok(summary)
}

/// One write that covered a sector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectorWrite {
    /// The step at whose start the device completed the request.
    pub completed_at: u64,
    /// The step in which the guest notified the queue that held the request (its `out` to
    /// the notify register), if the trace shows it.
    pub notified_at: Option<u64>,
    /// First sector of the request.
    pub sector: u64,
    /// Sectors it wrote.
    pub sectors: u64,
}

/// Every write that covered `sector`, oldest first.
pub fn sector_history(rec: &Recording, sector: u64) -> Result<Vec<SectorWrite>, DiskHistoryError> {
    rec.header().disk.as_ref().ok_or(DiskHistoryError::NoDisk)?;
    let mut out = Vec::new();
    // The notify that armed a completion is the first one after the previous completion.
    let mut first_notify: Option<u64> = None;
    for e in &rec.events {
        match &e.kind {
            EventKind::PortOut { port, .. } if first_notify.is_none() && Some(*port) == notify_port(rec, e.icount) => {
                first_notify = Some(e.icount);
            }
            EventKind::DiskWrite { sector: s, data } => {
                let n = (data.len() / SECTOR_SIZE) as u64;
                if (*s..s + n).contains(&sector) {
                    out.push(SectorWrite { completed_at: e.icount, notified_at: first_notify, sector: *s, sectors: n });
                }
            }
            EventKind::DiskDone { .. } => first_notify = None,
            _ => {}
        }
    }
    Ok(out)
}

/// The queue-notify port of the disk at `icount` (its BAR0 as the checkpoint before it
/// left it, plus 16).
fn notify_port(rec: &Recording, icount: u64) -> Option<u16> {
    let cp = rec.checkpoints.get(rec.checkpoint_before(icount))?;
    cp.disk.as_ref().map(|d| (d.bar0 as u16).wrapping_add(16))
}
