//! Reading and validating trace files. The file is read into memory once: a trace that is
//! changed or truncated underneath a running replay (re-recorded in place, say) cannot
//! fault the reader, as a memory map would (SIGBUS); the replay keeps the history it read.

use std::borrow::Cow;
use std::fs::File;
use std::path::Path;

use super::format::*;

/// Why a trace cannot be used. Every variant names the problem and, where there is one,
/// the byte offset.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// Not a ttvm trace.
    #[error("not a ttvm trace: {0}")]
    NotATrace(String),
    /// Written by a newer ttvm.
    #[error(
        "trace format version {found} is newer than this ttvm supports (up to {supported}); \
         replay it with a newer ttvm"
    )]
    NewerVersion {
        /// Version in the file.
        found: u32,
        /// Newest version this reader knows.
        supported: u32,
    },
    /// Written by a ttvm whose format is no longer readable.
    #[error("trace format version {found} is too old: this ttvm reads versions {oldest}..={supported}")]
    TooOld {
        /// Version in the file.
        found: u32,
        /// Oldest readable.
        oldest: u32,
        /// Newest readable.
        supported: u32,
    },
    /// The file ends inside a structure that must be complete.
    #[error("trace truncated at byte offset {offset}: {what}")]
    Truncated {
        /// Where the data ends.
        offset: u64,
        /// What was being read.
        what: String,
    },
    /// A structure fails its checksum or does not decode.
    #[error("trace corrupted: {what} at byte offset {offset}: {reason}")]
    Corrupted {
        /// Offset of the damaged structure.
        offset: u64,
        /// What it is (e.g. "events chunk #3").
        what: String,
        /// What is wrong.
        reason: String,
    },
}

/// A validated chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// Offset of the chunk header.
    pub offset: u64,
    /// Kind.
    pub kind: ChunkKind,
    /// Codec.
    pub codec: u8,
    /// Payload range in the file.
    pub payload_start: u64,
    /// Payload length.
    pub payload_len: u32,
    /// Decompressed length.
    pub raw_len: u32,
    /// Ordinal among chunks of the same kind (for messages).
    pub ordinal: u32,
}

/// An open, validated trace: every chunk's checksum has been verified.
#[derive(Debug)]
pub struct TraceFile {
    map: Vec<u8>,
    /// Format version of the file.
    pub version: u32,
    /// The header.
    pub header: TraceHeader,
    /// Chunks in file order (without the index chunk).
    pub chunks: Vec<ChunkRef>,
    /// Whether the trace was finalised (index and trailer present).
    pub finalised: bool,
    /// When not finalised: how much was recovered and what was discarded.
    pub recovery_note: Option<String>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Outcome of looking at one chunk position.
enum ChunkScan {
    Ok(ChunkRef, u64),
    /// The file ends inside this chunk (a recording killed mid-write).
    TruncatedTail(String),
}

impl TraceFile {
    /// Opens and validates `path`.
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let io = |source| TraceError::Io { path: path.display().to_string(), source };
        let mut file = File::open(path).map_err(io)?;
        let mut map = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut map).map_err(io)?;
        Self::from_map(map)
    }

    fn from_map(map: Vec<u8>) -> Result<Self, TraceError> {
        let b = &map[..];
        if b.len() < MAGIC.len() || b[..MAGIC.len()] != MAGIC {
            return Err(TraceError::NotATrace("the file does not start with the ttvm trace magic".into()));
        }
        if b.len() < PREAMBLE_LEN {
            return Err(TraceError::Truncated { offset: b.len() as u64, what: "the preamble".into() });
        }
        let version = u32_at(b, 8);
        if version > FORMAT_VERSION {
            return Err(TraceError::NewerVersion { found: version, supported: FORMAT_VERSION });
        }
        if version < OLDEST_READABLE_VERSION {
            return Err(TraceError::TooOld {
                found: version,
                oldest: OLDEST_READABLE_VERSION,
                supported: FORMAT_VERSION,
            });
        }
        let header_len = u32_at(b, 12) as usize;
        let header_sum = u64_at(b, 16);
        let header_end = PREAMBLE_LEN + header_len;
        if header_end > b.len() {
            return Err(TraceError::Truncated {
                offset: b.len() as u64,
                what: format!("the header ({header_len} bytes from offset {PREAMBLE_LEN})"),
            });
        }
        let header_bytes = &b[PREAMBLE_LEN..header_end];
        if header_checksum(version, header_len as u32, header_bytes) != header_sum {
            return Err(TraceError::Corrupted {
                offset: PREAMBLE_LEN as u64,
                what: "the header".into(),
                reason: "checksum mismatch".into(),
            });
        }
        let header_corrupted =
            |reason: String| TraceError::Corrupted { offset: PREAMBLE_LEN as u64, what: "the header".into(), reason };
        if header_bytes.len() < 4 {
            return Err(header_corrupted("too short".into()));
        }
        let raw_len = u32::from_le_bytes([header_bytes[0], header_bytes[1], header_bytes[2], header_bytes[3]]);
        if raw_len > MAX_HEADER_LEN {
            return Err(header_corrupted(format!("implausible size {raw_len}")));
        }
        let header_raw = lz4_flex::block::decompress(&header_bytes[4..], raw_len as usize)
            .map_err(|e| header_corrupted(format!("does not decompress: {e}")))?;
        let header = decode_header(version, &header_raw).map_err(|e| header_corrupted(e.to_string()))?;
        // The embedded kernel must be the one the header names: gdb and the replay both
        // trust it.
        if kernel_hash(&header.machine.kernel) != header.kernel_hash {
            return Err(header_corrupted(format!(
                "the embedded kernel image does not match the kernel hash {} the header records",
                header.kernel_hash
            )));
        }
        let mut t = Self { map, version, header, chunks: Vec::new(), finalised: false, recovery_note: None };
        t.load_chunks(header_end as u64)?;
        Ok(t)
    }

    fn scan_chunk(&self, offset: u64, ordinals: &mut [u32; CHUNK_KINDS]) -> Result<ChunkScan, TraceError> {
        let b = &self.map[..];
        let off = offset as usize;
        if off + CHUNK_HEADER_LEN > b.len() {
            return Ok(ChunkScan::TruncatedTail(format!("a chunk header at offset {offset}")));
        }
        let corrupted = |reason: String| TraceError::Corrupted { offset, what: "a chunk header".into(), reason };
        if u32_at(b, off) != CHUNK_MAGIC {
            return Err(corrupted("bad chunk magic".into()));
        }
        let kind_byte = b[off + 4];
        let kind = ChunkKind::from_u8(kind_byte).ok_or_else(|| corrupted(format!("unknown chunk kind {kind_byte}")))?;
        let codec = b[off + 5];
        if codec != CODEC_RAW && codec != CODEC_LZ4 {
            return Err(corrupted(format!("unknown codec {codec}")));
        }
        let payload_len = u32_at(b, off + 8);
        let raw_len = u32_at(b, off + 12);
        if payload_len > MAX_CHUNK_LEN || raw_len > MAX_CHUNK_LEN {
            return Err(corrupted(format!("implausible length {payload_len}/{raw_len}")));
        }
        let sum = u64_at(b, off + 16);
        let start = off + CHUNK_HEADER_LEN;
        let end = start + payload_len as usize;
        let ordinal = ordinals[kind as usize];
        if end > b.len() {
            return Ok(ChunkScan::TruncatedTail(format!(
                "{} chunk #{ordinal} at offset {offset} ({} of {payload_len} payload bytes present)",
                kind.name(),
                b.len() - start
            )));
        }
        let mut header = [0u8; 16];
        header.copy_from_slice(&b[off..off + 16]);
        if self.version >= WHOLE_CHUNK_HEADER_SUM_SINCE && (header[6] != 0 || header[7] != 0) {
            return Err(corrupted(format!("reserved bytes {:02x}{:02x} are not zero", header[6], header[7])));
        }
        if chunk_checksum(self.version, &header, &b[start..end]) != sum {
            return Err(TraceError::Corrupted {
                offset,
                what: format!("{} chunk #{ordinal}", kind.name()),
                reason: "checksum mismatch".into(),
            });
        }
        ordinals[kind as usize] += 1;
        Ok(ChunkScan::Ok(
            ChunkRef { offset, kind, codec, payload_start: start as u64, payload_len, raw_len, ordinal },
            end as u64,
        ))
    }

    fn load_chunks(&mut self, first: u64) -> Result<(), TraceError> {
        let len = self.map.len() as u64;
        let mut ordinals = [0u32; CHUNK_KINDS];
        // Finalised: trailer -> index -> every listed chunk verified.
        if len >= first + TRAILER_LEN as u64 && self.map[len as usize - 8..] == END_MAGIC {
            let index_offset = u64_at(&self.map, len as usize - TRAILER_LEN);
            if index_offset < first || index_offset >= len {
                return Err(TraceError::Corrupted {
                    offset: len - TRAILER_LEN as u64,
                    what: "the trailer".into(),
                    reason: format!("index offset {index_offset} out of range"),
                });
            }
            let mut idx_ord = [0u32; CHUNK_KINDS];
            let index_chunk = match self.scan_chunk(index_offset, &mut idx_ord)? {
                ChunkScan::Ok(c, _) if c.kind == ChunkKind::Index => c,
                ChunkScan::Ok(c, _) => {
                    return Err(TraceError::Corrupted {
                        offset: index_offset,
                        what: "the index".into(),
                        reason: format!("trailer points at a {} chunk", c.kind.name()),
                    })
                }
                ChunkScan::TruncatedTail(w) => {
                    return Err(TraceError::Corrupted { offset: index_offset, what: "the index".into(), reason: w })
                }
            };
            let raw = self.payload(&index_chunk)?;
            let index: TraceIndex = bincode::deserialize(&raw).map_err(|e| TraceError::Corrupted {
                offset: index_offset,
                what: "the index".into(),
                reason: e.to_string(),
            })?;
            let mut expected_next = first;
            for &(offset, kind) in &index.chunks {
                if offset != expected_next {
                    return Err(TraceError::Corrupted {
                        offset,
                        what: "the index".into(),
                        reason: format!("chunk list is not contiguous (expected a chunk at {expected_next})"),
                    });
                }
                match self.scan_chunk(offset, &mut ordinals)? {
                    ChunkScan::Ok(c, next) if c.kind as u8 == kind => {
                        if c.kind != ChunkKind::Index {
                            self.chunks.push(c);
                        }
                        expected_next = next;
                    }
                    ChunkScan::Ok(c, _) => {
                        return Err(TraceError::Corrupted {
                            offset,
                            what: "the index".into(),
                            reason: format!("lists kind {kind} but the chunk is {}", c.kind.name()),
                        })
                    }
                    ChunkScan::TruncatedTail(w) => return Err(TraceError::Truncated { offset, what: w }),
                }
            }
            self.finalised = true;
            return Ok(());
        }
        // Not finalised: scan forward until the data ends.
        let mut offset = first;
        loop {
            if offset == len {
                break;
            }
            match self.scan_chunk(offset, &mut ordinals)? {
                ChunkScan::Ok(c, next) => {
                    if c.kind != ChunkKind::Index {
                        self.chunks.push(c);
                    }
                    offset = next;
                }
                ChunkScan::TruncatedTail(what) => {
                    self.recovery_note = Some(format!(
                        "the trace was not finalised (the recording was killed or crashed); \
                         recovered {} complete chunks, discarded {} trailing bytes ({what})",
                        self.chunks.len(),
                        len - offset
                    ));
                    return Ok(());
                }
            }
        }
        self.recovery_note = Some(format!(
            "the trace was not finalised (the recording was killed or crashed); recovered all {} chunks",
            self.chunks.len()
        ));
        Ok(())
    }

    /// The decompressed payload of a chunk.
    pub fn payload(&self, c: &ChunkRef) -> Result<Cow<'_, [u8]>, TraceError> {
        let p = &self.map[c.payload_start as usize..(c.payload_start + u64::from(c.payload_len)) as usize];
        match c.codec {
            CODEC_LZ4 => {
                lz4_flex::block::decompress(p, c.raw_len as usize).map(Cow::Owned).map_err(|e| TraceError::Corrupted {
                    offset: c.offset,
                    what: format!("{} chunk #{}", c.kind.name(), c.ordinal),
                    reason: format!("does not decompress: {e}"),
                })
            }
            _ => Ok(Cow::Borrowed(p)),
        }
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }
}

impl ttvm_vmm::error_kind::Classify for TraceError {
    fn kind(&self) -> ttvm_vmm::error_kind::ErrorKind {
        match self {
            Self::Io { .. } | Self::NotATrace(_) => ttvm_vmm::error_kind::ErrorKind::BadInput,
            Self::NewerVersion { .. } | Self::TooOld { .. } | Self::Truncated { .. } | Self::Corrupted { .. } => {
                ttvm_vmm::error_kind::ErrorKind::Damaged
            }
        }
    }
}
