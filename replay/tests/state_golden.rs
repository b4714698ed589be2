//! The engine's, clock's and checkpoints' saved encodings, byte for byte, without KVM.
//!
//! `tests/fixtures/*.hex` were captured (commit c5d125a) from the bincode encoding of the
//! live structs as they were then serialised directly (`EngineState`, `EngineClock`, and a
//! `CheckpointRecord` holding the live `Board` and kvm-bindings structs). The state types
//! must produce exactly those bytes forever. Never regenerate a fixture from the state
//! types: a test failing here means the encoding changed, which needs a new version type
//! and a conversion instead (see `ttvm_replay::persist`). The committed traces, recorded
//! by earlier ttvm versions in every trace format, are checked the same way: each of their
//! checkpoints decodes and encodes again to the very bytes in the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use ttvm_replay::checkpoint::{decode_checkpoint, CheckpointRecord, CheckpointRecordV3, CheckpointRecordV5};
use ttvm_replay::clock::{ClockMode, EngineClock};
use ttvm_replay::engine::EngineState;
use ttvm_replay::persist::{EngineClockState, SavedEngineState};
use ttvm_replay::recording::Recording;
use ttvm_replay::trace::{ChunkKind, TraceFile, TraceWriter};
use ttvm_test_support::golden;
use ttvm_vmm::devices::Board;
use ttvm_vmm::vcpu::{RegsState, VcpuState, XSAVE_WORDS};

fn icount_clock() -> EngineClock {
    let mut c = EngineClock::new(ClockMode::Icount);
    c.idle_ns = 5_000_123;
    c.last_ns = 987_654_321;
    c
}

fn realtime_clock() -> EngineClock {
    let mut c = EngineClock::new(ClockMode::Realtime);
    c.last_ns = 9_876_543_210;
    c.origin_ns = 1_234_567;
    c
}

fn engine_state() -> EngineState {
    EngineState { icount: 123_456_789, window_open: true }
}

fn checkpoint_record() -> CheckpointRecord {
    let mut board = Board::new(1_700_000_000);
    board.pio_write(0x70, &[0x0b], 0);
    board.pio_write(0x71, &[0x06], 0);
    let vcpu = VcpuState {
        regs: RegsState { rip: 0xffff_ffff_8100_0000, rsp: 0x1000, ..Default::default() },
        sregs: Default::default(),
        xsave: vec![0; XSAVE_WORDS],
        xcrs: Default::default(),
        debugregs: Default::default(),
        events: Default::default(),
        mp_state: Default::default(),
        msrs: vec![(0xc000_0082, 0xffff_ffff_8180_0000)],
    };
    let dirty: roaring::RoaringBitmap = [1u32, 2, 3, 200].into_iter().collect();
    let mut dirty_bytes = Vec::new();
    dirty.serialize_into(&mut dirty_bytes).unwrap();
    CheckpointRecord {
        index: 3,
        engine: engine_state().into(),
        clock: icount_clock().state(),
        vcpu,
        board: board.state(),
        dirty: dirty_bytes,
        blobs: vec![10, 11, 12, 40],
        register_digest: 0x0123_4567_89ab_cdef,
        disk: None,
        net: None,
    }
}

/// Where the golden hex dumps are.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    golden::fixture(FIXTURES, name)
}

fn assert_golden<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T, name: &str) -> T {
    golden::assert_golden(FIXTURES, value, name)
}

#[test]
fn engine_state_encodes_as_before() {
    let saved: SavedEngineState = assert_golden(&engine_state().into(), "engine_state.hex");
    assert_eq!(EngineState::from(saved), engine_state());
}

#[test]
fn engine_clock_encodes_as_before() {
    for (clock, name) in [(icount_clock(), "engine_clock_icount.hex"), (realtime_clock(), "engine_clock_realtime.hex")]
    {
        let saved: EngineClockState = assert_golden(&clock.state(), name);
        assert_eq!(EngineClock::from_state(&saved).unwrap().state(), clock.state(), "{name}");
    }
}

#[test]
fn checkpoint_record_encodes_as_before() {
    // The fixture is a checkpoint of formats 1-3, which format 4 reads as one without a disk.
    let decoded = assert_golden(&CheckpointRecordV3::from(checkpoint_record()), "checkpoint_record.hex");
    CheckpointRecord::from(decoded).validate().unwrap();
    let v3 = fixture("checkpoint_record.hex");
    let v4 = bincode::serialize(&CheckpointRecordV5::from(checkpoint_record())).unwrap();
    assert_eq!(&v4[..v3.len()], &v3[..], "format 4 appends the disk to format 3's checkpoint");
    assert_eq!(&v4[v3.len()..], &[0], "no disk");
    assert_eq!(decode_checkpoint(4, &v4).unwrap(), checkpoint_record());
    assert_eq!(decode_checkpoint(5, &v4).unwrap(), checkpoint_record());
    let v6 = bincode::serialize(&checkpoint_record()).unwrap();
    assert_eq!(&v6[..v4.len()], &v4[..], "format 6 appends the network card to format 5's checkpoint");
    assert_eq!(&v6[v4.len()..], &[0], "no network card");
    assert_eq!(decode_checkpoint(6, &v6).unwrap(), checkpoint_record());
}

/// Every committed trace (the bug traces and the frozen per-format fixtures), with its
/// format version.
fn committed_traces() -> Vec<(PathBuf, u32)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/traces");
    let mut paths = Vec::new();
    for dir in [root.clone(), root.join("formats")] {
        paths.extend(
            std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "ttvm")),
        );
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let version = TraceFile::open(&path).unwrap().version;
            (path, version)
        })
        .collect()
}

#[test]
fn committed_traces_checkpoints_encode_again_to_the_same_bytes() {
    let traces = committed_traces();
    let versions: std::collections::BTreeSet<u32> = traces.iter().map(|(_, v)| *v).collect();
    assert!(versions.is_superset(&[1, 2, 3].into()), "formats 1, 2 and 3 are all committed: {versions:?}");
    for (path, version) in &traces {
        let file = TraceFile::open(path).unwrap();
        let mut checkpoints = 0;
        for c in file.chunks.iter().filter(|c| c.kind == ChunkKind::Checkpoint) {
            let raw = file.payload(c).unwrap();
            let cp = decode_checkpoint(*version, &raw).unwrap();
            cp.validate().unwrap_or_else(|e| panic!("{} checkpoint {}: {e}", path.display(), cp.index));
            let again = if *version < 4 {
                bincode::serialize(&CheckpointRecordV3::from(cp.clone())).unwrap()
            } else if *version < 6 {
                bincode::serialize(&CheckpointRecordV5::from(cp.clone())).unwrap()
            } else {
                bincode::serialize(&cp).unwrap()
            };
            assert!(again[..] == raw[..], "{} checkpoint {} encodes differently", path.display(), cp.index);
            checkpoints += 1;
        }
        assert!(checkpoints > 0, "{}", path.display());
        assert_eq!(Recording::open(path).unwrap().checkpoints.len(), checkpoints, "{}", path.display());
    }
}

#[test]
fn a_checkpoint_whose_state_is_impossible_is_reported_as_damage() {
    // A copy of a committed trace whose first checkpoint holds a PIC no 8259A can be in,
    // with valid chunk checksums: decoding succeeds, restoring would not.
    let (path, _) = &committed_traces()[0];
    let file = TraceFile::open(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("damaged.ttvm");
    let mut w = TraceWriter::create(&damaged, &file.header).unwrap();
    let mut checkpoints = 0;
    for c in &file.chunks {
        let mut raw = file.payload(c).unwrap().into_owned();
        match c.kind {
            ChunkKind::End => {
                w.finish(&bincode::deserialize(&raw).unwrap()).unwrap();
                continue;
            }
            ChunkKind::Checkpoint => {
                checkpoints += 1;
                // The copy is written in the current format.
                let mut cp = decode_checkpoint(file.version, &raw).unwrap();
                if checkpoints == 1 {
                    cp.board.pic.master.highest_priority_line = 9;
                }
                raw = bincode::serialize(&cp).unwrap();
            }
            _ => {}
        }
        w.write_chunk(c.kind, &raw, true).unwrap();
    }
    let err = Recording::open(&damaged).map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("checkpoint chunk #0")
            && err.contains(
                "checkpoint 0 holds an impossible state: PIC master highest-priority line is 9, outside 0..=7"
            ),
        "{err}"
    );

    let mut cp = checkpoint_record();
    cp.clock.origin_ns = 1;
    assert!(cp.validate().unwrap_err().to_string().contains("clock (icount mode): a host-time origin is set"));
    let mut cp = checkpoint_record();
    cp.vcpu.xsave.pop();
    assert!(cp.validate().unwrap_err().to_string().contains("vCPU XSAVE region"));
}

fn known_anchors() -> Vec<ttvm_replay::trace::AnchorLandmark> {
    use ttvm_replay::trace::AnchorLandmark;
    vec![
        AnchorLandmark { anchor: 50_010, rip: 0xffff_ffff_8100_1234, hits: 7, at: 50_002 },
        AnchorLandmark { anchor: 50_011, rip: 0, hits: 0, at: 50_011 },
        AnchorLandmark { anchor: 75_000, rip: 0x10_0fb3, hits: 1_000, at: 74_990 },
    ]
}

/// Format 7's `Anchors` chunk payload keeps its bytes (frozen as `IntervalAnchorsV7`), and
/// decodes as format 7 into anchors without waypoints.
#[test]
fn interval_anchors_encode_as_before() {
    use ttvm_replay::trace::{decode_anchors, IntervalAnchorsV7};
    let anchors = IntervalAnchorsV7 { checkpoint: 3, anchors: known_anchors() };
    assert_golden(&anchors, "interval_anchors.hex");
    let raw = fixture("interval_anchors.hex");
    let decoded = decode_anchors(7, &raw).expect("format 7 decodes");
    assert_eq!((decoded.anchors, decoded.waypoints), (known_anchors(), vec![]));
    assert!(decode_anchors(8, &raw).is_err(), "format 8's chunk is longer");
}

/// Format 8's `Anchors` chunk: format 7's bytes, then the waypoints.
#[test]
fn interval_anchors_with_waypoints_encode_as_pinned() {
    use ttvm_replay::trace::{decode_anchors, IntervalAnchors, Waypoint};
    let waypoint = Waypoint { step: 60_000, rip: 0x10_0fb3, hits: 500, at: 59_990, digest: 0x0123_4567_89ab_cdef };
    let anchors = IntervalAnchors { checkpoint: 3, anchors: known_anchors(), waypoints: vec![waypoint] };
    assert_golden(&anchors, "interval_anchors_v8.hex");
    let raw = fixture("interval_anchors_v8.hex");
    assert_eq!(decode_anchors(8, &raw).expect("format 8 decodes"), anchors);
}
