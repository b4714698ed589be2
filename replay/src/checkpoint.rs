//! Checkpoints: full vCPU and device state plus the RAM pages dirtied since the previous
//! checkpoint, deduplicated by content and stored compressed.
//!
//! Checkpoint 0 is the boot image (every non-zero page after loading). Restoring checkpoint
//! k needs, for every page, its newest version at or before k; [`PageIndex`] answers that.

use std::collections::HashMap;

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use ttvm_vmm::devices::virtio_blk::VirtioBlkState;
use ttvm_vmm::devices::virtio_net::VirtioNetState;
use ttvm_vmm::devices::{Board, BoardState};
use ttvm_vmm::memory::{GuestRam, PAGE_SIZE};
use ttvm_vmm::vcpu::VcpuState;

use crate::clock::EngineClock;
use crate::persist::{EngineClockState, SavedEngineState, StateError};

/// Pages per `Pages` chunk before it is flushed.
pub const PAGES_PER_CHUNK: usize = 256;

/// What a checkpoint chunk holds. Made of state types only (see [`crate::persist`] and
/// `ttvm_vmm::persist`), so its encoding does not follow the live structs; a change to it
/// is a new version type plus a conversion chosen by the trace's format version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Ordinal (0 = boot image).
    pub index: u32,
    /// Engine state (icount, interrupt window).
    pub engine: SavedEngineState,
    /// Clock state.
    pub clock: EngineClockState,
    /// vCPU state.
    pub vcpu: VcpuState,
    /// Device state.
    pub board: BoardState,
    /// Frame numbers dirtied since the previous checkpoint (serialised roaring bitmap).
    pub dirty: Vec<u8>,
    /// For each dirty frame in ascending order, the id of its content blob.
    pub blobs: Vec<u32>,
    /// Digest of the vCPU registers at this point (see [`register_digest`]).
    pub register_digest: u64,
    /// The virtio-blk device, if the machine has a disk (format 4 on).
    pub disk: Option<VirtioBlkState>,
    /// The virtio-net card, if the machine is on a network (format 6 on).
    pub net: Option<VirtioNetState>,
}

/// A checkpoint of formats 4 and 5 (a disk, no network card); frozen, never edited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecordV5 {
    index: u32,
    engine: SavedEngineState,
    clock: EngineClockState,
    vcpu: VcpuState,
    board: BoardState,
    dirty: Vec<u8>,
    blobs: Vec<u32>,
    register_digest: u64,
    disk: Option<VirtioBlkState>,
}

impl From<CheckpointRecordV5> for CheckpointRecord {
    fn from(c: CheckpointRecordV5) -> Self {
        Self {
            index: c.index,
            engine: c.engine,
            clock: c.clock,
            vcpu: c.vcpu,
            board: c.board,
            dirty: c.dirty,
            blobs: c.blobs,
            register_digest: c.register_digest,
            disk: c.disk,
            net: None,
        }
    }
}

impl From<CheckpointRecord> for CheckpointRecordV5 {
    /// The format-4/5 encoding of a checkpoint without a network card (tests pin it).
    fn from(c: CheckpointRecord) -> Self {
        Self {
            index: c.index,
            engine: c.engine,
            clock: c.clock,
            vcpu: c.vcpu,
            board: c.board,
            dirty: c.dirty,
            blobs: c.blobs,
            register_digest: c.register_digest,
            disk: c.disk,
        }
    }
}

/// A checkpoint of formats 1–3 (no disk); frozen, never edited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointRecordV3 {
    index: u32,
    engine: SavedEngineState,
    clock: EngineClockState,
    vcpu: VcpuState,
    board: BoardState,
    dirty: Vec<u8>,
    blobs: Vec<u32>,
    register_digest: u64,
}

impl From<CheckpointRecordV3> for CheckpointRecord {
    fn from(c: CheckpointRecordV3) -> Self {
        Self {
            index: c.index,
            engine: c.engine,
            clock: c.clock,
            vcpu: c.vcpu,
            board: c.board,
            dirty: c.dirty,
            blobs: c.blobs,
            register_digest: c.register_digest,
            disk: None,
            net: None,
        }
    }
}

impl From<CheckpointRecord> for CheckpointRecordV3 {
    /// The format-3 encoding of a checkpoint without a disk (tests pin it).
    fn from(c: CheckpointRecord) -> Self {
        Self {
            index: c.index,
            engine: c.engine,
            clock: c.clock,
            vcpu: c.vcpu,
            board: c.board,
            dirty: c.dirty,
            blobs: c.blobs,
            register_digest: c.register_digest,
        }
    }
}

/// Decodes a checkpoint chunk of trace format `version`.
pub fn decode_checkpoint(version: u32, raw: &[u8]) -> Result<CheckpointRecord, bincode::Error> {
    if version < crate::trace::format::DISK_SINCE {
        bincode::deserialize::<CheckpointRecordV3>(raw).map(CheckpointRecord::from)
    } else if version < crate::trace::format::NET_SINCE {
        bincode::deserialize::<CheckpointRecordV5>(raw).map(CheckpointRecord::from)
    } else {
        bincode::deserialize::<CheckpointRecord>(raw)
    }
}

impl CheckpointRecord {
    /// The board with its disk and network card, as this checkpoint holds them.
    pub fn restore_board(&self) -> Result<Board, StateError> {
        let mut board = Board::from_state(&self.board)?;
        board.restore_disk(self.disk.as_ref())?;
        board.restore_net(self.net.as_ref())?;
        Ok(board)
    }

    /// Decodes the dirty-frame bitmap.
    pub fn dirty_pages(&self) -> std::io::Result<RoaringBitmap> {
        RoaringBitmap::deserialize_from(&self.dirty[..])
    }

    /// Refuses a checkpoint whose devices, vCPU or clock could never have been recorded,
    /// by restoring them (to nothing): a trace that decodes but would restore to an
    /// impossible machine is damaged.
    pub fn validate(&self) -> Result<(), StateError> {
        self.restore_board()?;
        self.vcpu.validate()?;
        EngineClock::from_state(&self.clock)?;
        Ok(())
    }
}

/// The architectural registers that must match at a checkpoint, by name.
fn named_registers(s: &VcpuState) -> [(&'static str, u64); 30] {
    let r = &s.regs;
    let sr = &s.sregs;
    [
        ("RAX", r.rax),
        ("RBX", r.rbx),
        ("RCX", r.rcx),
        ("RDX", r.rdx),
        ("RSI", r.rsi),
        ("RDI", r.rdi),
        ("RSP", r.rsp),
        ("RBP", r.rbp),
        ("R8", r.r8),
        ("R9", r.r9),
        ("R10", r.r10),
        ("R11", r.r11),
        ("R12", r.r12),
        ("R13", r.r13),
        ("R14", r.r14),
        ("R15", r.r15),
        ("RIP", r.rip),
        ("RFLAGS", r.rflags),
        ("CR0", sr.cr0),
        ("CR2", sr.cr2),
        ("CR3", sr.cr3),
        ("CR4", sr.cr4),
        ("EFER", sr.efer),
        ("CS.base", sr.cs.base),
        ("CS", u64::from(sr.cs.selector)),
        ("SS.base", sr.ss.base),
        ("FS.base", sr.fs.base),
        ("GS.base", sr.gs.base),
        ("GDTR.base", sr.gdt.base),
        ("IDTR.base", sr.idt.base),
    ]
}

/// The legacy FXSAVE area (x87 + SSE) as bytes: 512 bytes.
fn fxsave_bytes(s: &VcpuState) -> Vec<u8> {
    s.xsave.iter().take(ttvm_vmm::fxsave::LEN / 4).flat_map(|w| w.to_le_bytes()).collect()
}

use ttvm_vmm::fxsave::FIELDS as FXSAVE_FIELDS;

/// Digest of the architectural registers that must match at a checkpoint.
pub fn register_digest(s: &VcpuState) -> u64 {
    let mut bytes = Vec::with_capacity(30 * 8 + 512);
    for (_, w) in named_registers(s) {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    bytes.extend_from_slice(&fxsave_bytes(s));
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().rev().map(|b| format!("{b:02x}")).collect()
}

/// Every register covered by [`register_digest`] that differs between `actual` and
/// `recorded`, as "NAME actual vs recorded" (RFLAGS also names the differing bits).
pub fn register_differences(actual: &VcpuState, recorded: &VcpuState) -> Vec<String> {
    let mut out = Vec::new();
    for ((name, a), (_, b)) in named_registers(actual).into_iter().zip(named_registers(recorded)) {
        if a == b {
            continue;
        }
        if name == "RFLAGS" {
            out.push(format!(
                "RFLAGS {a:#x} vs recorded {b:#x} (differ in {})",
                ttvm_vmm::undefined_flags::rflags_names(a ^ b)
            ));
        } else {
            out.push(format!("{name} {a:#x} vs recorded {b:#x}"));
        }
    }
    let (fa, fb) = (fxsave_bytes(actual), fxsave_bytes(recorded));
    let mut fields: Vec<(String, usize, usize)> =
        FXSAVE_FIELDS.iter().map(|&(n, at, len)| (n.to_string(), at, len)).collect();
    fields.extend((0..8).map(|i| (format!("ST{i}"), ttvm_vmm::fxsave::ST + 16 * i, 10)));
    fields.extend((0..16).map(|i| (format!("XMM{i}"), ttvm_vmm::fxsave::XMM + 16 * i, 16)));
    for (name, at, len) in fields {
        let (a, b) = (fa.get(at..at + len), fb.get(at..at + len));
        if a != b {
            let show = |x: Option<&[u8]>| x.map_or_else(|| "(absent)".to_string(), |x| format!("0x{}", hex(x)));
            out.push(format!("{name} {} vs recorded {}", show(a), show(b)));
        }
    }
    out
}

/// The first difference between a replayed page and the recorded one, as "at GPA: actual
/// bytes vs recorded bytes" (16 bytes from the first differing one, in memory order).
pub fn page_difference(pfn: u32, actual: &[u8], recorded: &[u8]) -> Option<String> {
    let first = actual.iter().zip(recorded).position(|(a, b)| a != b)?;
    let end = (first + 16).min(actual.len()).min(recorded.len());
    let bytes = |p: &[u8]| p[first..end].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    Some(format!(
        "guest-physical {:#x}: {} vs recorded {}",
        (u64::from(pfn) << 12) + first as u64,
        bytes(actual),
        bytes(recorded)
    ))
}

/// Digest of all of RAM.
pub fn ram_digest(ram: &GuestRam) -> u64 {
    xxhash_rust::xxh3::xxh3_64(ram.as_slice())
}

/// Recording side: assigns blob ids to page contents, deduplicating by XXH3-128.
#[derive(Debug, Default)]
pub struct PageStoreWriter {
    ids: HashMap<u128, u32>,
    next_id: u32,
    pending: Vec<u8>,
    pending_first: u32,
}

impl PageStoreWriter {
    /// Returns the blob id for `page`, queueing new contents for the next `Pages` chunk.
    pub fn intern(&mut self, page: &[u8]) -> u32 {
        let h = xxhash_rust::xxh3::xxh3_128(page);
        if let Some(&id) = self.ids.get(&h) {
            return id;
        }
        let id = self.next_id;
        if self.pending.is_empty() {
            self.pending_first = id;
        }
        self.next_id += 1;
        self.ids.insert(h, id);
        self.pending.extend_from_slice(page);
        id
    }

    /// Whether enough pages are queued to write a chunk.
    pub fn chunk_ready(&self) -> bool {
        self.pending.len() >= PAGES_PER_CHUNK * PAGE_SIZE
    }

    /// Takes the queued pages as a `Pages` chunk payload: first id, count, contents.
    pub fn take_chunk(&mut self) -> Option<Vec<u8>> {
        if self.pending.is_empty() {
            return None;
        }
        let count = (self.pending.len() / PAGE_SIZE) as u32;
        let mut raw = Vec::with_capacity(8 + self.pending.len());
        raw.extend_from_slice(&self.pending_first.to_le_bytes());
        raw.extend_from_slice(&count.to_le_bytes());
        raw.append(&mut self.pending);
        Some(raw)
    }

    /// Number of unique pages stored.
    pub fn unique_pages(&self) -> u32 {
        self.next_id
    }
}

/// Reading side: page versions per frame, across checkpoints.
#[derive(Debug, Default, Clone)]
pub struct PageIndex {
    /// For each frame: (checkpoint index, blob id), ascending by checkpoint.
    versions: Vec<Vec<(u32, u32)>>,
    /// Dirty frames of each checkpoint.
    dirty: Vec<RoaringBitmap>,
}

impl PageIndex {
    /// An empty index for `pages` frames.
    pub fn new(pages: usize) -> Self {
        Self { versions: vec![Vec::new(); pages], dirty: Vec::new() }
    }

    /// Adds checkpoint `k` (must be added in order).
    pub fn add_checkpoint(&mut self, k: u32, dirty: RoaringBitmap, blobs: &[u32]) -> Result<(), String> {
        if k as usize != self.dirty.len() {
            return Err(format!("checkpoint {k} out of order"));
        }
        if dirty.len() != blobs.len() as u64 {
            return Err(format!("checkpoint {k}: {} dirty pages but {} blob ids", dirty.len(), blobs.len()));
        }
        for (pfn, &blob) in dirty.iter().zip(blobs) {
            let v =
                self.versions.get_mut(pfn as usize).ok_or_else(|| format!("checkpoint {k}: page {pfn} outside RAM"))?;
            v.push((k, blob));
        }
        self.dirty.push(dirty);
        Ok(())
    }

    /// Number of checkpoints indexed.
    pub fn checkpoints(&self) -> usize {
        self.dirty.len()
    }

    /// Dirty frames of checkpoint `k`.
    pub fn dirty(&self, k: u32) -> &RoaringBitmap {
        &self.dirty[k as usize]
    }

    /// Blob holding frame `pfn` as of checkpoint `k`; None means all zeroes.
    pub fn version_at(&self, pfn: u32, k: u32) -> Option<u32> {
        let v = &self.versions[pfn as usize];
        let i = v.partition_point(|&(ck, _)| ck <= k);
        if i == 0 {
            None
        } else {
            Some(v[i - 1].1)
        }
    }

    /// Frames written in the interval that ends at checkpoint `k` (`k` >= 1): every page
    /// KVM's dirty log reported, and every page ttvm or a device wrote, since checkpoint
    /// `k - 1`, whether or not its content ended up different. `None` past the last.
    pub fn written_before(&self, k: u32) -> Option<&RoaringBitmap> {
        self.dirty.get(k as usize).filter(|_| k > 0)
    }

    /// Number of frames the index covers.
    pub fn frames(&self) -> usize {
        self.versions.len()
    }

    /// Frames whose content may differ between checkpoints `a` and `b`.
    pub fn changed_between(&self, a: u32, b: u32) -> RoaringBitmap {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut out = RoaringBitmap::new();
        for k in lo + 1..=hi {
            out |= &self.dirty[k as usize];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_deduplicates_by_content() {
        let mut s = PageStoreWriter::default();
        let a = vec![1u8; PAGE_SIZE];
        let b = vec![2u8; PAGE_SIZE];
        assert_eq!(s.intern(&a), 0);
        assert_eq!(s.intern(&b), 1);
        assert_eq!(s.intern(&a), 0);
        let chunk = s.take_chunk().unwrap();
        assert_eq!(u32::from_le_bytes(chunk[4..8].try_into().unwrap()), 2);
        assert_eq!(chunk.len(), 8 + 2 * PAGE_SIZE);
        assert!(s.take_chunk().is_none());
        assert_eq!(s.intern(&vec![3u8; PAGE_SIZE]), 2);
        let chunk = s.take_chunk().unwrap();
        assert_eq!(u32::from_le_bytes(chunk[0..4].try_into().unwrap()), 2);
    }

    #[test]
    fn index_finds_newest_version_at_or_before() {
        let mut idx = PageIndex::new(8);
        let bm = |v: &[u32]| v.iter().copied().collect::<RoaringBitmap>();
        idx.add_checkpoint(0, bm(&[1, 2]), &[10, 20]).unwrap();
        idx.add_checkpoint(1, bm(&[2]), &[21]).unwrap();
        idx.add_checkpoint(2, bm(&[1, 5]), &[11, 50]).unwrap();
        assert_eq!(idx.version_at(1, 0), Some(10));
        assert_eq!(idx.version_at(1, 1), Some(10));
        assert_eq!(idx.version_at(1, 2), Some(11));
        assert_eq!(idx.version_at(2, 2), Some(21));
        assert_eq!(idx.version_at(5, 1), None);
        assert_eq!(idx.version_at(3, 2), None);
        assert_eq!(idx.changed_between(2, 0), bm(&[1, 2, 5]));
        assert_eq!(idx.changed_between(1, 1), RoaringBitmap::new());
        assert!(idx.add_checkpoint(5, bm(&[]), &[]).is_err());
        assert!(idx.add_checkpoint(3, bm(&[100]), &[1]).is_err());
    }

    fn vcpu() -> VcpuState {
        VcpuState {
            regs: Default::default(),
            sregs: Default::default(),
            xsave: vec![0; 1024],
            xcrs: Default::default(),
            debugregs: Default::default(),
            events: Default::default(),
            mp_state: Default::default(),
            msrs: Vec::new(),
        }
    }

    #[test]
    fn register_differences_name_each_register_and_flag_bit() {
        let a = vcpu();
        let mut b = vcpu();
        assert!(register_differences(&a, &b).is_empty());
        b.regs.rflags = 0x2 | (1 << 7) | (1 << 11);
        b.regs.r9 = 7;
        b.sregs.cr3 = 0x1000;
        b.xsave[6] = 0x1f80; // MXCSR at byte 24
        let d = register_differences(&a, &b);
        assert_eq!(
            d,
            [
                "R9 0x0 vs recorded 0x7",
                "RFLAGS 0x0 vs recorded 0x882 (differ in SF OF reserved bit 1)",
                "CR3 0x0 vs recorded 0x1000",
                "MXCSR 0x00000000 vs recorded 0x00001f80",
            ]
        );
        assert_ne!(register_digest(&a), register_digest(&b));
    }

    #[test]
    fn page_difference_shows_the_first_differing_bytes() {
        let a = vec![0u8; PAGE_SIZE];
        let mut b = a.clone();
        assert_eq!(page_difference(3, &a, &b), None);
        b[0x10] = 0xab;
        b[0x11] = 0xcd;
        let d = page_difference(3, &a, &b).unwrap();
        assert_eq!(d, "guest-physical 0x3010: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 vs recorded ab cd 00 00 00 00 00 00 00 00 00 00 00 00 00 00");
        // Near the end of the page the strings stop at the page.
        let mut c = a.clone();
        c[PAGE_SIZE - 2] = 1;
        assert!(page_difference(0, &a, &c).unwrap().ends_with("vs recorded 01 00"));
    }
}
