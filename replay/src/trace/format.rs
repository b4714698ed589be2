//! The `.ttvm` trace file format (version [`FORMAT_VERSION`]).
//!
//! ```text
//! file    := preamble header chunk* [index-chunk trailer]
//! preamble:= MAGIC(8) format_version(u32) header_len(u32) header_checksum(u64)
//! header  := raw_len(u32) lz4(bincode(TraceHeader)), header_len bytes in all
//! chunk   := CHUNK_MAGIC(u32) kind(u8) codec(u8) reserved(u16) payload_len(u32) raw_len(u32)
//!            checksum(u64) payload
//! trailer := index_offset(u64) END_MAGIC(8)
//! ```
//! All integers are little-endian. `checksum` is XXH3-64 of the payload seeded with the
//! chunk's kind, codec and lengths, so a flipped bit anywhere in a chunk is caught. Chunks are
//! appended while recording and each is complete once written, so a recording killed at any
//! moment leaves a readable prefix; the index and trailer are written last, and when they are
//! missing the reader rebuilds the index by scanning.
//!
//! Compatibility policy: readers accept every format version up to their own and refuse newer
//! ones by name. A change that old readers could misread bumps [`FORMAT_VERSION`].

use serde::{Deserialize, Serialize};
use ttvm_vmm::cpuid::CpuidModel;
use ttvm_vmm::machine::MachineConfig;

use crate::clock::ClockMode;

/// First 8 bytes of every trace (a PNG-style magic that also catches text-mode mangling).
pub const MAGIC: [u8; 8] = *b"\x89TTVM\r\n\x1a";
/// Current format version (the step rules of each are `engine::StepRules::for_format`).
/// 2: strict steps: the engine carries out ring-0 IRETQs, fences, OUT imm8 and SWAPGS
/// itself, one step each, and ends a step after an instruction it emulated for KVM, where
/// format 1 let single-step run the next instruction in the same step (which, if it was
/// RDTSC, RDRAND or CPUID, then ran unlogged). 3: canonical flags: the arithmetic flags an
/// instruction leaves undefined are cleared after it, so a trace no longer depends on the
/// recording CPU's microarchitecture; the header names the recording host
/// ([`HostRecord`]); a finalised recording ends with a checkpoint at its last step, so a
/// final-state mismatch names what differs. Older traces replay with their own rules.
pub const FORMAT_VERSION: u32 = 3;
/// The first format recorded with strict steps.
pub const STRICT_STEPS_SINCE: u32 = 2;
/// The first format recorded with canonical undefined flags.
pub const CANONICAL_FLAGS_SINCE: u32 = 3;
/// Oldest format version this reader still reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// Size of the fixed preamble.
pub const PREAMBLE_LEN: usize = 24;
/// Marks the start of every chunk.
pub const CHUNK_MAGIC: u32 = u32::from_le_bytes(*b"CHNK");
/// Size of a chunk header.
pub const CHUNK_HEADER_LEN: usize = 24;
/// Last 8 bytes of a finalised trace.
pub const END_MAGIC: [u8; 8] = *b"TTVMEND\0";
/// Size of the trailer.
pub const TRAILER_LEN: usize = 16;
/// Largest chunk payload accepted (guards against absurd lengths in damaged files).
pub const MAX_CHUNK_LEN: u32 = 256 << 20;
/// Largest decompressed header accepted (it holds the kernel image and initrd).
pub const MAX_HEADER_LEN: u32 = 1 << 30;

/// Chunk kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum ChunkKind {
    /// A run of events.
    Events = 1,
    /// New unique page contents.
    Pages = 2,
    /// A checkpoint (vCPU, devices, dirty-page list).
    Checkpoint = 3,
    /// How the recording ended.
    End = 4,
    /// The index.
    Index = 5,
}

impl ChunkKind {
    /// Parses a kind byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Events,
            2 => Self::Pages,
            3 => Self::Checkpoint,
            4 => Self::End,
            5 => Self::Index,
            _ => return None,
        })
    }

    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Pages => "pages",
            Self::Checkpoint => "checkpoint",
            Self::End => "end",
            Self::Index => "index",
        }
    }
}

/// Payload codecs.
pub const CODEC_RAW: u8 = 0;
/// LZ4 block compression.
pub const CODEC_LZ4: u8 = 1;

/// Computes a chunk checksum.
pub fn chunk_checksum(kind: u8, codec: u8, payload_len: u32, raw_len: u32, payload: &[u8]) -> u64 {
    let seed = u64::from(kind) | (u64::from(codec) << 8) | (u64::from(payload_len) << 16) ^ (u64::from(raw_len) << 40);
    xxhash_rust::xxh3::xxh3_64_with_seed(payload, seed)
}

/// Everything needed to rebuild the recorded machine and judge whether this host can
/// replay it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceHeader {
    /// Version of ttvm that wrote the trace.
    pub ttvm_version: String,
    /// The machine: RAM size, kernel image, command line, RTC base time.
    pub machine: MachineConfig,
    /// Display name of the kernel (file name or sample name).
    pub kernel_name: String,
    /// XXH3-128 of the kernel image, hex.
    pub kernel_hash: String,
    /// CPUID table the guest saw.
    pub cpuid: CpuidModel,
    /// Signature of the single-step semantics of the recording host's KVM.
    pub stepping: String,
    /// Clock mode.
    pub clock: ClockMode,
    /// Virtual nanoseconds per step (icount mode).
    pub ns_per_step: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Wall-clock time the recording started.
    pub created_unix_secs: u64,
    /// The host that recorded the trace (format 3 on; `None` in older traces).
    pub host: Option<HostRecord>,
}

/// The recording host, as measured when the recording started: for people reading the
/// trace and for divergence reports. Replay's compatibility check does not use it (the
/// CPUID table and stepping signature are what must match; canonical flags make the
/// rest of the CPU irrelevant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// "GenuineIntel family 6 model 167 stepping 1 (Intel(R) Xeon(R) Processor)".
    pub cpu: String,
    /// What this CPU leaves in undefined flags (`ttvm_vmm::flags_probe`).
    pub undefined_flags: String,
}

/// The header of formats 1 and 2 (no [`HostRecord`]); frozen, never edited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceHeaderV2 {
    ttvm_version: String,
    machine: MachineConfig,
    kernel_name: String,
    kernel_hash: String,
    cpuid: CpuidModel,
    stepping: String,
    clock: ClockMode,
    ns_per_step: u64,
    checkpoint_every: u64,
    created_unix_secs: u64,
}

impl From<TraceHeaderV2> for TraceHeader {
    fn from(h: TraceHeaderV2) -> Self {
        Self {
            ttvm_version: h.ttvm_version,
            machine: h.machine,
            kernel_name: h.kernel_name,
            kernel_hash: h.kernel_hash,
            cpuid: h.cpuid,
            stepping: h.stepping,
            clock: h.clock,
            ns_per_step: h.ns_per_step,
            checkpoint_every: h.checkpoint_every,
            created_unix_secs: h.created_unix_secs,
            host: None,
        }
    }
}

/// Decodes the bincode header of a trace of format `version`.
pub fn decode_header(version: u32, raw: &[u8]) -> Result<TraceHeader, bincode::Error> {
    if version < HOST_RECORD_SINCE {
        bincode::deserialize::<TraceHeaderV2>(raw).map(TraceHeader::from)
    } else {
        bincode::deserialize::<TraceHeader>(raw)
    }
}

/// The first format whose header has a [`HostRecord`] and whose header checksum also
/// covers the format version and header length (so an edited version is damage, not an
/// older format).
pub const HOST_RECORD_SINCE: u32 = 3;

/// The preamble's header checksum for format `version`.
pub fn header_checksum(version: u32, header_len: u32, header_bytes: &[u8]) -> u64 {
    if version < HOST_RECORD_SINCE {
        xxhash_rust::xxh3::xxh3_64(header_bytes)
    } else {
        let seed = u64::from(version) | (u64::from(header_len) << 32);
        xxhash_rust::xxh3::xxh3_64_with_seed(header_bytes, seed)
    }
}

/// How a recording ended (the `End` chunk).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRecord {
    /// Steps recorded.
    pub final_icount: u64,
    /// The guest's own stop, if it stopped.
    pub stop: Option<crate::events::StopKind>,
    /// Why recording ended when the guest did not stop (step limit, Ctrl-C, user mode).
    pub reason: String,
    /// Digest of the final vCPU registers and all of RAM.
    pub final_digest: u64,
}

/// Where each chunk is, for readers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceIndex {
    /// (offset, kind) of every chunk before the index, in file order.
    pub chunks: Vec<(u64, u8)>,
}

/// Computes the kernel hash stored in headers.
pub fn kernel_hash(image: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(image))
}
