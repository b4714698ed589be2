//! The disk's history in a trace: what a recording logs when the virtio-blk device
//! completes requests, and the disk replay reads from, built from the trace alone.
//!
//! A recording logs, at the step boundary where the device completed requests:
//! - `DiskBlock` for each 4 KiB block the guest read a sector of for the first time
//!   (sectors it had written are not needed): the block as the image held it when the
//!   recording started. Logged once per block, so the trace holds only what the guest
//!   touched, each block once.
//! - `DiskRead`/`DiskWrite` for each request in the order the device did them (a write
//!   carries its data, which is the disk's history).
//! - `DiskDone` with the number of requests.
//!
//! From format 5 the encoding (not these events) puts each block and each whole aligned
//! 4 KiB block of a write in the trace's page store, shared with checkpoint pages of the
//! same contents (`events::encode_with_pages`); readers get the events with the data.
//!
//! Replay completes requests where the log says `DiskDone` happened (never from a clock),
//! reads from [`TraceDisk`] (the logged blocks plus the writes replayed so far) and checks
//! every access against the log.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use ttvm_vmm::devices::virtio_blk::{Completion, DiskOpKind};
use ttvm_vmm::disk::{store_sectors, CowDisk, DiskBackend, DiskError, SectorMap, SECTORS_PER_BLOCK, SECTOR_SIZE};

use crate::events::EventKind;
use crate::recording::Recording;

/// The recording side: the image behind a copy-on-write layer (the image is never
/// modified) and what the trace already holds.
#[derive(Debug)]
pub struct DiskRecorder {
    cow: CowDisk,
    logged_blocks: HashSet<u64>,
    written: HashSet<u64>,
}

impl DiskRecorder {
    /// Records over `cow`.
    pub fn new(cow: CowDisk) -> Self {
        Self { cow, logged_blocks: HashSet::new(), written: HashSet::new() }
    }

    /// The backend the device reads and writes.
    pub fn backend(&mut self) -> &mut CowDisk {
        &mut self.cow
    }

    /// The events that log `done` (nothing if it completed no request).
    pub fn events_for(&mut self, done: &Completion) -> Result<Vec<EventKind>, DiskError> {
        let mut out = Vec::new();
        if done.requests == 0 && done.ops.is_empty() {
            return Ok(out);
        }
        for op in &done.ops {
            let sectors = (op.data.len() / SECTOR_SIZE) as u64;
            match op.kind {
                DiskOpKind::Read => {
                    for s in op.sector..op.sector + sectors {
                        let block = s / SECTORS_PER_BLOCK;
                        if !self.written.contains(&s) && self.logged_blocks.insert(block) {
                            out.push(EventKind::DiskBlock { block, data: self.cow.base_block(block)? });
                        }
                    }
                    out.push(EventKind::DiskRead { sector: op.sector, sectors: sectors as u32 });
                }
                DiskOpKind::Write => {
                    self.written.extend(op.sector..op.sector + sectors);
                    out.push(EventKind::DiskWrite { sector: op.sector, data: op.data.clone() });
                }
            }
        }
        out.push(EventKind::DiskDone { requests: done.requests });
        Ok(out)
    }
}

/// The disk as a trace knows it, for replay: every block the recording logged (as the
/// image held it at the start) and, over it, the writes replayed so far.
#[derive(Debug)]
pub struct TraceDisk {
    rec: Rc<Recording>,
    /// Block -> index of its `DiskBlock` event.
    base: HashMap<u64, usize>,
    written: SectorMap,
}

impl TraceDisk {
    /// The disk of `rec` at icount 0.
    pub fn new(rec: Rc<Recording>) -> Self {
        let base = base_blocks(&rec);
        Self { rec, base, written: SectorMap::new() }
    }

    /// Follows a longer version of the same trace (live debugging).
    pub fn set_recording(&mut self, rec: Rc<Recording>) {
        self.base = base_blocks(&rec);
        self.rec = rec;
    }

    /// Every sector the trace knows at the current position: the blocks the recording
    /// logged (as the image held them at its start) with the writes replayed so far over
    /// them. A branch starts its disk from this.
    pub fn known_sectors(&self) -> SectorMap {
        let mut known = SectorMap::new();
        for &i in self.base.values() {
            if let EventKind::DiskBlock { block, data } = &self.rec.events[i].kind {
                store_sectors(&mut known, block * SECTORS_PER_BLOCK, data);
            }
        }
        known.extend(self.written.iter().map(|(s, d)| (*s, d.clone())));
        known
    }

    /// The logged blocks that differ from `image` (the first one found), to tell whether an
    /// image is the one the trace was recorded from.
    pub fn first_block_unlike(&self, image: &CowDisk) -> Result<Option<u64>, DiskError> {
        let mut blocks: Vec<_> = self.base.iter().collect();
        blocks.sort();
        for (&block, &i) in blocks {
            if let EventKind::DiskBlock { data, .. } = &self.rec.events[i].kind {
                if image.base_block(block)? != *data {
                    return Ok(Some(block));
                }
            }
        }
        Ok(None)
    }

    /// Puts the disk as it was at the start of step `icount`: the writes logged before it.
    pub fn rewind(&mut self, icount: u64) {
        self.written.clear();
        let end = self.rec.first_event_at(icount);
        for e in &self.rec.events[..end] {
            if let EventKind::DiskWrite { sector, data } = &e.kind {
                store_sectors(&mut self.written, *sector, data);
            }
        }
    }
}

fn base_blocks(rec: &Recording) -> HashMap<u64, usize> {
    let mut base = HashMap::new();
    for (i, e) in rec.events.iter().enumerate() {
        if let EventKind::DiskBlock { block, .. } = e.kind {
            base.entry(block).or_insert(i);
        }
    }
    base
}

impl DiskBackend for TraceDisk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        for (i, out) in buf.chunks_mut(SECTOR_SIZE).enumerate() {
            let s = sector + i as u64;
            if let Some(data) = self.written.get(&s) {
                out.copy_from_slice(&data[..]);
                continue;
            }
            let block = s / SECTORS_PER_BLOCK;
            let Some(EventKind::DiskBlock { data, .. }) = self.base.get(&block).map(|&i| &self.rec.events[i].kind)
            else {
                return Err(DiskError::NotRecorded { sector: s });
            };
            let at = (s % SECTORS_PER_BLOCK) as usize * SECTOR_SIZE;
            out.copy_from_slice(&data[at..at + SECTOR_SIZE]);
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        store_sectors(&mut self.written, sector, data);
        Ok(())
    }
}
