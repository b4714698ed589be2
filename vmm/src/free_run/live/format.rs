//! On-disk format of a live-checkpoint directory (`ttvm run --checkpoints DIR`), version 2.
//!
//! Two kinds of file, each with its own magic and a little-endian u32 version:
//!
//! - `pack-NNNNNNNNNN.ttvmlp` (`TTVMPACK`): page contents, appended once and never changed.
//!   After the 12-byte header, records of `hash: u128 LE` (XXH3-128 of the 4 KiB page),
//!   `len: u32 LE`, then `len` bytes of LZ4 block holding the page. A page is read by the
//!   offset of its record, and its hash is checked after decompression, so a damaged pack
//!   is found page by page.
//! - `ckpt-NNNNNNNNNN.ttvmlc` (`TTVMLIVE`): one checkpoint. After the header, `len: u64 LE`,
//!   `len` bytes of LZ4 block (size prepended) holding the bincode-encoded
//!   [`LiveCheckpoint`], then the XXH3-128 (u128 LE) of every byte before it. Its presence
//!   under its final name is the commit marker: it is written under a temporary name,
//!   fsynced, renamed and the directory fsynced, after the packs it names.
//! - `origin.ttvmlo` (`TTVMORIG`): what the machine booted from, the snapshot's
//!   [`SnapshotOrigin`] (kernel name and image, command line, RAM, CPUID vendor), framed like
//!   a checkpoint file. Written once, before the first checkpoint, so a checkpoint can start
//!   a self-contained recording (`ttvm record --from DIR`) and a resumed run shows the guest
//!   the vendor it booted with. Directories written before it existed have none: they resume
//!   with the host's vendor, as they always did, and cannot be recorded from.
//!
//! [`LiveCheckpoint`] is made of state types only ([`MachineState`] is the `--save-state`
//! snapshot's); the rule of [`crate::persist`] applies: a change is a new version type and a
//! conversion, chosen by the file's version, and every old version stays readable. Version
//! 2: the machine state holds the virtio-blk device (snapshot format 3's `MachineState`);
//! version 1's checkpoints decode through [`LiveCheckpointV1`] (snapshot format 2's state).
//! Pack files are the same in both.

use serde::{Deserialize, Serialize};

use crate::memory::PAGE_SIZE;
use crate::snapshot::{MachineState, MachineStateV2, SnapshotOrigin};

/// Magic of a checkpoint file.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"TTVMLIVE";
/// Magic of the origin file.
pub const ORIGIN_MAGIC: &[u8; 8] = b"TTVMORIG";
/// Magic of a pack file.
pub const PACK_MAGIC: &[u8; 8] = b"TTVMPACK";
/// The version this build writes and the newest it reads (both file kinds).
pub const VERSION: u32 = 2;
/// Header bytes: magic + version.
pub const HEADER_LEN: usize = 12;
/// Bytes before a pack record's compressed page: hash + length.
pub const RECORD_HEADER_LEN: usize = 20;
/// A compressed page longer than this is damage (LZ4's worst case for 4 KiB is ~4.1 KiB).
pub const MAX_RECORD_LEN: u32 = 2 * PAGE_SIZE as u32;
/// A checkpoint body longer than this is damage (a 4 GiB guest's page list is ~150 MiB).
pub const MAX_BODY_LEN: u64 = 1 << 30;

/// How a checkpointed run takes its checkpoints; kept in each checkpoint so `ttvm resume DIR`
/// goes on the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSettings {
    /// Host milliseconds between checkpoints.
    pub interval_ms: u64,
    /// How many of the newest checkpoints are kept.
    pub keep: u32,
}

/// Where one non-zero page of a checkpoint lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    /// Guest frame number.
    pub pfn: u32,
    /// Sequence number of the pack holding it.
    pub pack: u64,
    /// Offset of its record in that pack.
    pub offset: u64,
    /// XXH3-128 of its contents.
    pub hash: u128,
}

/// One checkpoint, version 2: the whole machine at one instant. Pages not listed are zero.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveCheckpoint {
    /// Sequence number (also in the file name); grows across resumes.
    pub seq: u64,
    /// The schedule the run was taking checkpoints on.
    pub settings: LiveSettings,
    /// vCPU, TSC, devices and device clock.
    pub machine: MachineState,
    /// Bytes of guest serial output up to this checkpoint (the length of `serial.log`).
    pub serial_len: u64,
    /// Every non-zero page, by ascending frame number.
    pub pages: Vec<PageRef>,
}

/// A version-1 checkpoint (before disks): frozen, never edited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveCheckpointV1 {
    /// Sequence number.
    pub seq: u64,
    /// Schedule.
    pub settings: LiveSettings,
    /// The machine, in snapshot format 2's state.
    pub machine: MachineStateV2,
    /// Serial output length.
    pub serial_len: u64,
    /// Non-zero pages.
    pub pages: Vec<PageRef>,
}

impl From<LiveCheckpointV1> for LiveCheckpoint {
    fn from(v1: LiveCheckpointV1) -> Self {
        let LiveCheckpointV1 { seq, settings, machine, serial_len, pages } = v1;
        Self { seq, settings, machine: machine.into(), serial_len, pages }
    }
}

/// Why a file of the directory cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Wrong magic.
    #[error("not a ttvm {0} file")]
    Foreign(&'static str),
    /// Written by a newer ttvm.
    #[error("format {0} is newer than this ttvm reads ({VERSION}); use a newer ttvm")]
    Newer(u32),
    /// Truncated, corrupted or inconsistent.
    #[error("{0}")]
    Damaged(String),
}

fn header(magic: &[u8; 8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(magic);
    h[8..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

fn check_header(bytes: &[u8], magic: &[u8; 8], what: &'static str) -> Result<u32, FormatError> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != magic {
        return Err(FormatError::Foreign(what));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version == 0 {
        return Err(FormatError::Damaged(format!("{what} file of version 0")));
    }
    if version > VERSION {
        return Err(FormatError::Newer(version));
    }
    Ok(version)
}

/// The bytes of a checkpoint file.
pub fn encode_checkpoint(cp: &LiveCheckpoint) -> Vec<u8> {
    // bincode of plain structs and vectors cannot fail.
    seal(CHECKPOINT_MAGIC, &bincode::serialize(cp).unwrap_or_default())
}

/// Decodes and checks a checkpoint file: header, checksum, body, page list order.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<LiveCheckpoint, FormatError> {
    let damaged = |s: String| FormatError::Damaged(s);
    let (version, body) = unseal(bytes, CHECKPOINT_MAGIC, "checkpoint")?;
    let cp: LiveCheckpoint = match version {
        1 => bincode::deserialize::<LiveCheckpointV1>(&body).map(LiveCheckpoint::from),
        _ => bincode::deserialize(&body),
    }
    .map_err(|e| damaged(format!("body: {e}")))?;
    let pages = cp.machine.mem_size / PAGE_SIZE as u64;
    let mut previous: Option<u32> = None;
    for p in &cp.pages {
        if u64::from(p.pfn) >= pages || previous.is_some_and(|q| p.pfn <= q) {
            return Err(damaged(format!("page {:#x} out of order or beyond {pages} pages of RAM", p.pfn)));
        }
        if p.offset < HEADER_LEN as u64 {
            return Err(damaged(format!("page {:#x} at offset {} inside a pack header", p.pfn, p.offset)));
        }
        previous = Some(p.pfn);
    }
    Ok(cp)
}

/// The bytes of the origin file.
pub fn encode_origin(origin: &SnapshotOrigin) -> Vec<u8> {
    seal(ORIGIN_MAGIC, &bincode::serialize(origin).unwrap_or_default())
}

/// Decodes and checks the origin file.
pub fn decode_origin(bytes: &[u8]) -> Result<SnapshotOrigin, FormatError> {
    let (_, body) = unseal(bytes, ORIGIN_MAGIC, "origin")?;
    bincode::deserialize(&body).map_err(|e| FormatError::Damaged(format!("body: {e}")))
}

/// A file of the directory around `body`: header, body length, the body LZ4-compressed
/// (size prepended), XXH3-128 of everything before.
fn seal(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let body = lz4_flex::block::compress_prepend_size(body);
    let mut out = Vec::with_capacity(HEADER_LEN + 8 + body.len() + 16);
    out.extend_from_slice(&header(magic));
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let sum = xxhash_rust::xxh3::xxh3_128(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// The version and decompressed body of a file [`seal`] wrote, every part checked.
fn unseal(bytes: &[u8], magic: &[u8; 8], what: &'static str) -> Result<(u32, Vec<u8>), FormatError> {
    let damaged = |s: String| FormatError::Damaged(s);
    let version = check_header(bytes, magic, what)?;
    if bytes.len() < HEADER_LEN + 8 + 16 {
        return Err(damaged(format!("truncated at {} bytes", bytes.len())));
    }
    let (data, sum) = bytes.split_at(bytes.len() - 16);
    let mut s = [0u8; 16];
    s.copy_from_slice(sum);
    if xxhash_rust::xxh3::xxh3_128(data) != u128::from_le_bytes(s) {
        return Err(damaged("checksum mismatch (truncated or corrupted)".into()));
    }
    let mut l = [0u8; 8];
    l.copy_from_slice(&data[HEADER_LEN..HEADER_LEN + 8]);
    let len = u64::from_le_bytes(l);
    let body = &data[HEADER_LEN + 8..];
    if len > MAX_BODY_LEN || len != body.len() as u64 {
        return Err(damaged(format!("body length {len} does not match the file ({} bytes)", body.len())));
    }
    // The size LZ4 will allocate for, checked first (a forged file must not cost 4 GiB).
    let size = body.get(..4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if u64::from(size) > MAX_BODY_LEN {
        return Err(damaged(format!("body of {size} bytes")));
    }
    let body = lz4_flex::block::decompress_size_prepended(body).map_err(|e| damaged(format!("body: {e}")))?;
    Ok((version, body))
}

/// The header every pack file starts with.
pub fn pack_header() -> [u8; HEADER_LEN] {
    header(PACK_MAGIC)
}

/// Checks a pack file's header.
pub fn check_pack_header(bytes: &[u8]) -> Result<(), FormatError> {
    check_header(bytes, PACK_MAGIC, "page pack").map(|_| ())
}

/// Appends the record of `page` (hash `hash`) to `out`.
pub fn encode_record(out: &mut Vec<u8>, hash: u128, page: &[u8]) {
    let z = lz4_flex::block::compress(page);
    out.extend_from_slice(&hash.to_le_bytes());
    out.extend_from_slice(&(z.len() as u32).to_le_bytes());
    out.extend_from_slice(&z);
}

/// The compressed length a record header announces (checked against [`MAX_RECORD_LEN`]).
pub fn record_len(header: &[u8; RECORD_HEADER_LEN]) -> Result<(u128, usize), FormatError> {
    let mut h = [0u8; 16];
    h.copy_from_slice(&header[..16]);
    let len = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(FormatError::Damaged(format!("page record of {len} bytes")));
    }
    Ok((u128::from_le_bytes(h), len as usize))
}

/// Decompresses a record's page into `page` and checks it against `expected` (the hash the
/// checkpoint names) and the record's own hash.
pub fn decode_record(record_hash: u128, z: &[u8], expected: u128, page: &mut [u8]) -> Result<(), FormatError> {
    let n = lz4_flex::block::decompress_into(z, page).map_err(|e| FormatError::Damaged(format!("page: {e}")))?;
    if n != PAGE_SIZE || record_hash != expected || xxhash_rust::xxh3::xxh3_128(page) != expected {
        return Err(FormatError::Damaged("page contents do not match their hash".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Board;
    use crate::vcpu::{RegsState, VcpuState};

    fn sample() -> LiveCheckpoint {
        let vcpu = VcpuState {
            regs: RegsState { rip: 0x10_0000, rax: 7, ..Default::default() },
            sregs: Default::default(),
            xsave: vec![3; 64],
            xcrs: Default::default(),
            debugregs: Default::default(),
            events: Default::default(),
            mp_state: Default::default(),
            msrs: vec![(0x10, 99)],
        };
        LiveCheckpoint {
            seq: 5,
            settings: LiveSettings { interval_ms: 200, keep: 3 },
            machine: MachineState {
                mem_size: 64 * PAGE_SIZE as u64,
                vcpu,
                tsc: 0x1234,
                board: Board::new(1_700_000_000).state(),
                clock_ns: 5_000_000,
                clock_slowdown: 1,
                disk: None,
            },
            serial_len: 42,
            pages: vec![
                PageRef { pfn: 1, pack: 1, offset: 12, hash: 0xabc },
                PageRef { pfn: 9, pack: 5, offset: 40, hash: 0xdef },
            ],
        }
    }

    #[test]
    fn a_checkpoint_round_trips_and_its_layout_is_pinned() {
        let cp = sample();
        let bytes = encode_checkpoint(&cp);
        assert_eq!(&bytes[..12], b"TTVMLIVE\x02\0\0\0");
        let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
        assert_eq!(len as usize, bytes.len() - 20 - 16, "body length covers the body only");
        let sum = u128::from_le_bytes(bytes[bytes.len() - 16..].try_into().unwrap());
        assert_eq!(sum, xxhash_rust::xxh3::xxh3_128(&bytes[..bytes.len() - 16]));
        // The body is bincode of the fields in order: seq first, then the settings.
        let body = lz4_flex::block::decompress_size_prepended(&bytes[20..bytes.len() - 16]).unwrap();
        assert_eq!(&body[..8], &5u64.to_le_bytes());
        assert_eq!(&body[8..16], &200u64.to_le_bytes());
        assert_eq!(&body[16..20], &3u32.to_le_bytes());
        assert_eq!(decode_checkpoint(&bytes).unwrap(), cp);
    }

    /// The whole encoding of a known checkpoint, pinned: an edit to `LiveCheckpoint`, to the
    /// snapshot's `MachineState` inside it or to the framing fails here first (make a
    /// version 3 instead).
    #[test]
    fn the_version_2_encoding_is_pinned() {
        // The body before compression (LZ4's output may change with the crate, its input
        // may not).
        let bytes = encode_checkpoint(&sample());
        let body = lz4_flex::block::decompress_size_prepended(&bytes[20..bytes.len() - 16]).unwrap();
        assert_eq!((body.len(), xxhash_rust::xxh3::xxh3_64(&body)), (1883, 4_062_158_502_091_868_848));
    }

    /// Version 1's body (the frozen type) keeps the bytes it was pinned to, and a version-1
    /// file decodes to the same checkpoint without a disk.
    #[test]
    fn version_1_bodies_still_decode() {
        let cp = sample();
        let v1 = LiveCheckpointV1 {
            seq: cp.seq,
            settings: cp.settings,
            machine: MachineStateV2 {
                mem_size: cp.machine.mem_size,
                vcpu: cp.machine.vcpu.clone(),
                tsc: cp.machine.tsc,
                board: cp.machine.board.clone(),
                clock_ns: cp.machine.clock_ns,
                clock_slowdown: cp.machine.clock_slowdown,
            },
            serial_len: cp.serial_len,
            pages: cp.pages.clone(),
        };
        let body = bincode::serialize(&v1).unwrap();
        assert_eq!((body.len(), xxhash_rust::xxh3::xxh3_64(&body)), (1882, 5_380_905_390_651_925_482));
        let z = lz4_flex::block::compress_prepend_size(&body);
        let mut file = Vec::new();
        file.extend_from_slice(CHECKPOINT_MAGIC);
        file.extend_from_slice(&1u32.to_le_bytes());
        file.extend_from_slice(&(z.len() as u64).to_le_bytes());
        file.extend_from_slice(&z);
        let sum = xxhash_rust::xxh3::xxh3_128(&file);
        file.extend_from_slice(&sum.to_le_bytes());
        assert_eq!(decode_checkpoint(&file).unwrap(), cp);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let bytes = encode_checkpoint(&sample());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert!(decode_checkpoint(&bad).is_err(), "flip at {at} accepted");
        }
        for cut in 0..bytes.len() {
            assert!(decode_checkpoint(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
    }

    #[test]
    fn newer_versions_and_foreign_files_are_named() {
        let mut bytes = encode_checkpoint(&sample());
        bytes[8] = 3;
        assert_eq!(decode_checkpoint(&bytes), Err(FormatError::Newer(3)));
        assert_eq!(decode_checkpoint(b"TTVMSNAP\x02\0\0\0rest"), Err(FormatError::Foreign("checkpoint")));
        assert_eq!(check_pack_header(b"TTVMPACK\x01\0\0\0"), Ok(()));
        assert_eq!(check_pack_header(b"TTVMPACK\x07\0\0\0"), Err(FormatError::Newer(7)));
    }

    /// The origin file holds the snapshot's `SnapshotOrigin` encoding, framed and checked
    /// like a checkpoint; another file kind or a flipped byte is refused.
    #[test]
    fn the_origin_round_trips_and_damage_is_found() {
        let origin = SnapshotOrigin {
            kernel_name: "timer".into(),
            machine: crate::machine::MachineConfig::new(vec![0x7f, b'E', b'L', b'F', 2], "ticks=5"),
            neutral_vendor: true,
        };
        let bytes = encode_origin(&origin);
        assert_eq!(&bytes[..12], b"TTVMORIG\x02\0\0\0");
        let body = lz4_flex::block::decompress_size_prepended(&bytes[20..bytes.len() - 16]).unwrap();
        assert_eq!(body, bincode::serialize(&origin).unwrap(), "the snapshot's origin record, unchanged");
        assert_eq!(decode_origin(&bytes).unwrap(), origin);
        assert_eq!(decode_origin(&encode_checkpoint(&sample())), Err(FormatError::Foreign("origin")));
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert!(decode_origin(&bad).is_err(), "flip at {at} accepted");
        }
    }

    #[test]
    fn a_page_list_out_of_order_is_damage() {
        let mut cp = sample();
        cp.pages.swap(0, 1);
        let err = decode_checkpoint(&encode_checkpoint(&cp)).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
        let mut cp = sample();
        cp.pages[1].pfn = 64;
        assert!(decode_checkpoint(&encode_checkpoint(&cp)).is_err(), "beyond RAM");
    }

    #[test]
    fn a_record_holds_its_page_and_checks_it() {
        let mut page = vec![0u8; PAGE_SIZE];
        page[100..200].fill(0x5a);
        let hash = xxhash_rust::xxh3::xxh3_128(&page);
        let mut rec = Vec::new();
        encode_record(&mut rec, hash, &page);
        assert_eq!(&rec[..16], &hash.to_le_bytes());
        let (h, len) = record_len(rec[..20].try_into().unwrap()).unwrap();
        assert_eq!((h, len), (hash, rec.len() - 20));
        let mut back = vec![0u8; PAGE_SIZE];
        decode_record(h, &rec[20..], hash, &mut back).unwrap();
        assert_eq!(back, page);
        let mut bad = rec.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        assert!(decode_record(h, &bad[20..], hash, &mut back).is_err(), "a flipped page byte");
        assert!(decode_record(h, &rec[20..], hash ^ 1, &mut back).is_err(), "another page's hash");
        let mut huge = [0u8; 20];
        huge[16..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(record_len(&huge).is_err());
    }
}
