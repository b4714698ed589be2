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
//! XXH3-64 of the chunk header's first 16 bytes (format 3; see [`chunk_checksum`]), so a
//! flipped bit anywhere in a chunk is caught; `reserved` must be zero. Chunks are
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
/// final-state mismatch names what differs. 4: landmarks and disks: every checkpoint
/// interval names a step a free run can stop at exactly ([`IntervalLandmark`], `Landmark`
/// chunks), so `replay --verify` runs intervals without events natively; the header may
/// describe a virtio-blk disk ([`DiskRecord`]), checkpoints hold its device state, and the
/// event stream holds its history (`DiskBlock`, `DiskRead`, `DiskWrite`, `DiskDone`). 5:
/// lineage and disk-aware checkpoints: a trace branched from another names its parent and
/// the branch point ([`Lineage`]); disk blocks the guest read and the whole aligned blocks
/// it wrote are pages of the content-addressed page store (`DiskBlock`/`DiskWrite` events
/// refer to them by id, partial blocks stay inline), so a checkpoint page equal to a disk
/// block is stored once (VEE'11); format 4's inline disk events remain valid. 6: networks:
/// checkpoints hold the virtio-net card's state, and the event stream the frames the VM
/// received (`NetRx`, delivered at a step boundary) and sent (`NetTx`, checked in replay).
/// 7: anchors: every interval lists the steps a native run must not execute itself (each
/// step that logged an event, each instruction the engine emulates from its model: CPUID,
/// HLT, …, and, in recordings made from 2026-12-05 on, each return to ring 3 the engine
/// carries out; readers treat every anchor alike), with a landmark for the stretch before each ([`IntervalAnchors`],
/// `Anchors` chunks, which replace format 4's `Landmark` chunks), so `replay --verify` runs
/// intervals with events natively between them; and a ring-0 IRETQ whose image holds the
/// host's stepping TF is carried out by the engine with TF clear, so a replay from a
/// checkpoint takes the recording's steps (`StepRules::iretq_drops_stepping_tf`). Older
/// traces replay with their own rules. 8: the host's FPU fields are shown alike on every
/// host ([`ttvm_vmm::shown_fpu`]: the first checkpoint's MXCSR_MASK is 0xffff and its
/// bytes 464-511 of the FXSAVE image zero, whatever the recording CPU reports), and a
/// ring-0 FXSAVE is a step and an anchor of its own that stores that mask
/// (`StepRules::fxsave_alone`); the `Anchors` chunk adds waypoints: positions about every
/// [`WAYPOINT_EVERY`] kernel steps with a landmark and the register digest there, so a seek
/// runs natively to the last one before its target ([`IntervalAnchors::waypoints`]; format 7's chunk is
/// the frozen [`IntervalAnchorsV7`]). Older traces replay showing the fields their first
/// checkpoint holds.
pub const FORMAT_VERSION: u32 = 8;
/// The first format whose ring-0 FXSAVEs are steps of their own (`StepRules::fxsave_alone`).
pub const FXSAVE_ALONE_SINCE: u32 = 8;
/// The first format whose intervals have waypoints ([`IntervalAnchors::waypoints`]).
pub const WAYPOINTS_SINCE: u32 = 8;
/// The first format whose intervals list their anchors.
pub const ANCHORS_SINCE: u32 = 7;
/// The first format whose engine carries out ring-0 IRETQs with a stepping TF in their
/// image (`StepRules::iretq_drops_stepping_tf`).
pub const IRETQ_DROPS_TF_SINCE: u32 = 7;
/// The first format whose checkpoints and events may hold a network card and its frames.
pub const NET_SINCE: u32 = 6;
/// The first format whose header may name a parent trace.
pub const LINEAGE_SINCE: u32 = 5;
/// The first format whose disk events may refer to the page store.
pub const DISK_PAGES_SINCE: u32 = 5;
/// The first format whose intervals have landmarks.
pub const LANDMARKS_SINCE: u32 = 4;
/// The first format that can hold a disk.
pub const DISK_SINCE: u32 = 4;
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
    /// The code pages an interval between two checkpoints executed (format 3 on).
    CodePages = 6,
    /// An interval's landmark (format 4 on).
    Landmark = 7,
    /// An interval's anchors (format 7 on).
    Anchors = 8,
}

/// Number of chunk kinds (the largest kind byte + 1).
pub const CHUNK_KINDS: usize = 9;

impl ChunkKind {
    /// Parses a kind byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Events,
            2 => Self::Pages,
            3 => Self::Checkpoint,
            4 => Self::End,
            5 => Self::Index,
            6 => Self::CodePages,
            7 => Self::Landmark,
            8 => Self::Anchors,
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
            Self::CodePages => "code pages",
            Self::Landmark => "landmark",
            Self::Anchors => "anchors",
        }
    }
}

/// Payload codecs.
pub const CODEC_RAW: u8 = 0;
/// LZ4 block compression.
pub const CODEC_LZ4: u8 = 1;

/// Computes the checksum of a chunk of format `version`: XXH3-64 of the payload, seeded
/// from the first 16 bytes of the chunk header (magic, kind, codec, reserved, lengths).
/// Formats 1 and 2 seeded it from the kind, codec and lengths only, which left the
/// reserved bytes and the top bits of `raw_len` unguarded; from format 3 every header
/// byte before the checksum is covered.
pub fn chunk_checksum(version: u32, header: &[u8; 16], payload: &[u8]) -> u64 {
    let u32_at = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let seed = if version < WHOLE_CHUNK_HEADER_SUM_SINCE {
        let (kind, codec, payload_len, raw_len) = (header[4], header[5], u32_at(8), u32_at(12));
        u64::from(kind) | (u64::from(codec) << 8) | (u64::from(payload_len) << 16) ^ (u64::from(raw_len) << 40)
    } else {
        xxhash_rust::xxh3::xxh3_64(header)
    };
    xxhash_rust::xxh3::xxh3_64_with_seed(payload, seed)
}

/// The first format whose chunk checksums cover the whole chunk header.
pub const WHOLE_CHUNK_HEADER_SUM_SINCE: u32 = 3;

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
    /// The virtio-blk disk the guest had (format 4 on; `None`: no disk).
    pub disk: Option<DiskRecord>,
    /// The trace this one was branched from (format 5 on; `None`: an original recording).
    pub lineage: Option<Lineage>,
}

/// Where a branched trace comes from (`ttvm branch`, gdb's `monitor branch`): its checkpoint
/// 0 is the parent's machine at step `branch_icount`. The trace does not need its parent to
/// replay; this is for people and for `ttvm info`, which follows the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The parent trace's file name (no directory: families are kept side by side).
    pub parent_file: String,
    /// The parent's identity: its preamble header checksum, which covers its kernel, machine,
    /// host and creation time, so a different file under the same name is told apart.
    pub parent_id: u64,
    /// The parent's step this trace starts from.
    pub branch_icount: u64,
}

/// The header of format 4 (no [`Lineage`]); frozen, never edited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceHeaderV4 {
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
    host: Option<HostRecord>,
    disk: Option<DiskRecord>,
}

impl From<TraceHeaderV4> for TraceHeader {
    fn from(h: TraceHeaderV4) -> Self {
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
            host: h.host,
            disk: h.disk,
            lineage: None,
        }
    }
}

/// The disk a recording's guest had. Its contents are not here: the trace's events hold
/// every block the guest read and every write, which is all replay needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRecord {
    /// Capacity in 512-byte sectors.
    pub capacity_sectors: u64,
    /// The image's file name when it was recorded (for people).
    pub image_name: String,
}

/// The header of format 3 (no [`DiskRecord`]); frozen, never edited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceHeaderV3 {
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
    host: Option<HostRecord>,
}

impl From<TraceHeaderV3> for TraceHeader {
    fn from(h: TraceHeaderV3) -> Self {
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
            host: h.host,
            disk: None,
            lineage: None,
        }
    }
}

/// The recording host, as measured when the recording started: for people reading the
/// trace and for divergence reports. Replay's compatibility check does not use it (the
/// CPUID table and stepping signature are what must match; canonical flags make the
/// rest of the CPU irrelevant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// "GenuineIntel family 6 model 167 stepping 1 (Intel(R) Xeon(R) Processor)".
    pub cpu: String,
    /// What this CPU leaves in undefined flags (`ttvm_vmm::host_cpu`).
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
            disk: None,
            lineage: None,
        }
    }
}

/// Decodes the bincode header of a trace of format `version`.
pub fn decode_header(version: u32, raw: &[u8]) -> Result<TraceHeader, bincode::Error> {
    if version < HOST_RECORD_SINCE {
        bincode::deserialize::<TraceHeaderV2>(raw).map(TraceHeader::from)
    } else if version < DISK_SINCE {
        bincode::deserialize::<TraceHeaderV3>(raw).map(TraceHeader::from)
    } else if version < LINEAGE_SINCE {
        bincode::deserialize::<TraceHeaderV4>(raw).map(TraceHeader::from)
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

/// The code an interval of the history executed (a `CodePages` chunk): for every virtual
/// page (RIP >> 12) some position from the previous checkpoint up to, not including,
/// checkpoint `checkpoint` was on, a bitmap of its 16-byte blocks those positions' RIPs
/// were in (256 bits). A breakpoint whose block is not marked cannot stop a run inside
/// the interval, so runs skip it without replaying. Blocks rather than pages: small
/// kernels keep their hot loops and their one-off code on the same few pages, and a
/// 16-byte block holds only a few instructions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalCode {
    /// The checkpoint that ends the interval (>= 1).
    pub checkpoint: u32,
    /// (page, bitmap of its 256 blocks): sorted by page, no duplicates, no empty bitmap.
    pub pages: Vec<(u64, [u64; 4])>,
}

/// A step of an interval that a free run can find without counting instructions (a
/// `Landmark` chunk, format 4 on): the `hits`-th time, counted from the interval's first
/// step, that a step starts at `rip` is the step at `icount`. A hardware breakpoint on
/// `rip` that counts its hits stops a native run exactly there; the recorder picks, of the
/// addresses the interval executed, the one whose hits plus the steps after its last hit
/// cost a replay least.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalLandmark {
    /// The checkpoint that ends the interval (>= 1).
    pub checkpoint: u32,
    /// The instruction's address.
    pub rip: u64,
    /// How many steps of the interval started there, up to and including `icount`'s.
    pub hits: u64,
    /// The step of the last of them.
    pub icount: u64,
}

/// A step of an interval that a native run must not execute itself (an `Anchors` chunk,
/// format 7 on): one that logged an event (an access to a device, an injected interrupt,
/// RDTSC, a frame…) or that the engine emulated from its model (CPUID, whose answer KVM
/// would take partly from the host, and HLT); or the checkpoint that ends the interval. The stretch before it, from the previous anchor's next step (or the
/// interval's first step), is found like an interval's landmark: the `hits`-th step of the
/// stretch that starts at `rip`, a kernel address (a hardware breakpoint exits there on
/// every host), is the step at `at`, and the steps from `at` to `anchor` hold no anchor.
/// Steps an IRETQ returned to are not counted: run natively, that IRETQ may load RF and
/// keep the breakpoint from firing there.
/// `hits` is 0 when no kernel-mode step of the stretch can serve (an empty stretch, or one
/// spent in user mode): a replay then single-steps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorLandmark {
    /// The anchor's step (the interval's end checkpoint's icount for the last one).
    pub anchor: u64,
    /// The landmark's instruction address (0 when `hits` is 0).
    pub rip: u64,
    /// How many steps of the stretch started at `rip`, up to and including `at`'s.
    pub hits: u64,
    /// The step of the last of them (`anchor` when `hits` is 0).
    pub at: u64,
}

/// An interval's anchors (an `Anchors` chunk, format 7 on), in step order, the last one at
/// the checkpoint that ends the interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalAnchors {
    /// The checkpoint that ends the interval (>= 1).
    pub checkpoint: u32,
    /// The anchors.
    pub anchors: Vec<AnchorLandmark>,
    /// Waypoints (format 8 on), in step order: positions a seek can run to natively, about
    /// every [`WAYPOINT_EVERY`] kernel steps, each with the register digest there.
    pub waypoints: Vec<Waypoint>,
}

/// A position inside a stretch (see [`AnchorLandmark`]) that a native run can stop at
/// exactly, with the registers the recording had there: a seek runs natively to the last
/// one before its target, compares the registers, and single-steps the rest. Not an anchor:
/// `replay --verify` runs past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waypoint {
    /// The position: the state right before this step.
    pub step: u64,
    /// The landmark: the `hits`-th step of its stretch (counted from the stretch's first
    /// step) that starts at `rip` is the step at `at` (`at < step`; the steps from `at` up
    /// to `step` are single-stepped).
    pub rip: u64,
    /// See `rip`.
    pub hits: u64,
    /// See `rip`.
    pub at: u64,
    /// `checkpoint::register_digest` of the state at `step`.
    pub digest: u64,
}

/// Steps between waypoints (see [`IntervalAnchors::waypoints`]): a seek single-steps at most
/// about this many after its native run (~8 ms at these hosts' ~7 µs a step).
pub const WAYPOINT_EVERY: u64 = 1024;

/// Format 7's `Anchors` chunk, frozen: anchors without waypoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalAnchorsV7 {
    /// The checkpoint that ends the interval (>= 1).
    pub checkpoint: u32,
    /// The anchors.
    pub anchors: Vec<AnchorLandmark>,
}

impl From<IntervalAnchorsV7> for IntervalAnchors {
    fn from(a: IntervalAnchorsV7) -> Self {
        Self { checkpoint: a.checkpoint, anchors: a.anchors, waypoints: Vec::new() }
    }
}

/// Decodes an `Anchors` chunk of trace format `version`.
pub fn decode_anchors(version: u32, raw: &[u8]) -> Result<IntervalAnchors, bincode::Error> {
    if version < WAYPOINTS_SINCE {
        bincode::deserialize::<IntervalAnchorsV7>(raw).map(IntervalAnchors::from)
    } else {
        bincode::deserialize(raw)
    }
}

/// Where the block of `rip` is in its page's bitmap: (word, bit).
pub fn code_block(rip: u64) -> (usize, u64) {
    let block = (rip >> 4) & 0xff;
    ((block >> 6) as usize, 1 << (block & 63))
}

impl IntervalCode {
    /// Whether a position with this RIP is in the interval.
    pub fn contains(&self, rip: u64) -> bool {
        let (word, bit) = code_block(rip);
        self.pages.binary_search_by_key(&(rip >> 12), |&(p, _)| p).is_ok_and(|i| self.pages[i].1[word] & bit != 0)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use ttvm_vmm::cpuid::NEUTRAL_VENDOR;

    fn known_header() -> TraceHeader {
        let mut machine = MachineConfig::new(b"\x7fELF known kernel".to_vec(), "ticks=3");
        machine.rtc_base_unix_secs = 1_700_000_000;
        machine.initrd = vec![1, 2, 3];
        TraceHeader {
            ttvm_version: "0.1.0".into(),
            kernel_name: "known".into(),
            kernel_hash: kernel_hash(&machine.kernel),
            cpuid: CpuidModel::for_vendor(NEUTRAL_VENDOR),
            stepping: "ttvm-step/1 probe".into(),
            clock: ClockMode::Icount,
            ns_per_step: 10,
            checkpoint_every: 25_000,
            created_unix_secs: 1_764_806_400,
            machine,
            host: Some(HostRecord { cpu: "GenuineIntel family 6 model 167".into(), undefined_flags: "flags/1".into() }),
            disk: None,
            lineage: None,
        }
    }

    fn as_v3(h: &TraceHeader) -> TraceHeaderV3 {
        TraceHeaderV3 {
            ttvm_version: h.ttvm_version.clone(),
            machine: h.machine.clone(),
            kernel_name: h.kernel_name.clone(),
            kernel_hash: h.kernel_hash.clone(),
            cpuid: h.cpuid.clone(),
            stepping: h.stepping.clone(),
            clock: h.clock,
            ns_per_step: h.ns_per_step,
            checkpoint_every: h.checkpoint_every,
            created_unix_secs: h.created_unix_secs,
            host: h.host.clone(),
        }
    }

    /// The bytes of a known header are pinned: reordering or retyping a field (here, in
    /// `MachineConfig` or in `CpuidModel`) breaks this test instead of users' traces. A
    /// deliberate change is a new format version with its own frozen header type.
    #[test]
    fn the_format_3_header_encoding_is_pinned() {
        let h = known_header();
        let bytes = bincode::serialize(&as_v3(&h)).unwrap();
        // The field order: version string, machine (mem size, kernel, cmdline, RTC, initrd)…
        assert_eq!(&bytes[..8], &5u64.to_le_bytes(), "ttvm_version's length comes first");
        assert_eq!(&bytes[8..13], b"0.1.0");
        assert_eq!(&bytes[13..21], &(128u64 << 20).to_le_bytes(), "then the machine's RAM size");
        // …and the whole encoding.
        assert_eq!(bytes.len(), 846, "encoded length");
        assert_eq!(xxhash_rust::xxh3::xxh3_64(&bytes), 0x4199_4ee0_4e91_3bdf, "encoded bytes");
        assert_eq!(decode_header(3, &bytes).unwrap(), h);
    }

    fn as_v4(h: &TraceHeader) -> TraceHeaderV4 {
        let v3 = as_v3(h);
        TraceHeaderV4 {
            ttvm_version: v3.ttvm_version,
            machine: v3.machine,
            kernel_name: v3.kernel_name,
            kernel_hash: v3.kernel_hash,
            cpuid: v3.cpuid,
            stepping: v3.stepping,
            clock: v3.clock,
            ns_per_step: v3.ns_per_step,
            checkpoint_every: v3.checkpoint_every,
            created_unix_secs: v3.created_unix_secs,
            host: v3.host,
            disk: h.disk.clone(),
        }
    }

    /// Format 4 is format 3's header plus the disk, appended.
    #[test]
    fn the_format_4_header_appends_the_disk() {
        let mut h = known_header();
        h.disk = Some(DiskRecord { capacity_sectors: 2048, image_name: "d.img".into() });
        let bytes = bincode::serialize(&as_v4(&h)).unwrap();
        let v3 = bincode::serialize(&as_v3(&h)).unwrap();
        assert_eq!(&bytes[..v3.len()], &v3[..]);
        assert_eq!(&bytes[v3.len()..v3.len() + 9], &[1, 0, 8, 0, 0, 0, 0, 0, 0], "Some, then the capacity");
        assert_eq!(decode_header(4, &bytes).unwrap(), h);
        assert!(decode_header(4, &v3).is_err(), "the version decides");
    }

    /// Format 5 is format 4's header plus the lineage, appended.
    #[test]
    fn the_format_5_header_appends_the_lineage() {
        let mut h = known_header();
        h.lineage = Some(Lineage { parent_file: "p.ttvm".into(), parent_id: 0x1122, branch_icount: 7 });
        let bytes = bincode::serialize(&h).unwrap();
        let v4 = bincode::serialize(&as_v4(&h)).unwrap();
        assert_eq!(&bytes[..v4.len()], &v4[..]);
        assert_eq!(&bytes[v4.len()..v4.len() + 9], &[1, 6, 0, 0, 0, 0, 0, 0, 0], "Some, then the name's length");
        assert_eq!(decode_header(5, &bytes).unwrap(), h);
        assert_eq!(decode_header(4, &v4).unwrap(), TraceHeader { lineage: None, ..h.clone() });
        assert!(decode_header(5, &v4).is_err(), "the version decides");
    }

    #[test]
    fn format_2_headers_decode_without_a_host_record() {
        let h = known_header();
        let v2 = TraceHeaderV2 {
            ttvm_version: h.ttvm_version.clone(),
            machine: h.machine.clone(),
            kernel_name: h.kernel_name.clone(),
            kernel_hash: h.kernel_hash.clone(),
            cpuid: h.cpuid.clone(),
            stepping: h.stepping.clone(),
            clock: h.clock,
            ns_per_step: h.ns_per_step,
            checkpoint_every: h.checkpoint_every,
            created_unix_secs: h.created_unix_secs,
        };
        let bytes = bincode::serialize(&v2).unwrap();
        let decoded = decode_header(2, &bytes).unwrap();
        assert_eq!(decoded, TraceHeader { host: None, ..h.clone() });
        // A format-3 reader of those bytes would run out of input: the version decides.
        assert!(decode_header(3, &bytes).is_err());
    }

    #[test]
    fn the_header_checksum_covers_the_version_from_format_3() {
        let b = b"header bytes";
        assert_eq!(header_checksum(2, 12, b), header_checksum(1, 12, b), "formats 1-2: the bytes alone");
        assert_ne!(header_checksum(3, 12, b), header_checksum(4, 12, b));
        assert_ne!(header_checksum(3, 12, b), header_checksum(3, 13, b));
    }
}
