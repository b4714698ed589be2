//! TEMPORARY capture of the live structs' bincode encodings (before the State types).

use ttvm_replay::checkpoint::CheckpointRecord;
use ttvm_replay::clock::{ClockMode, EngineClock};
use ttvm_replay::engine::EngineState;
use ttvm_vmm::devices::Board;
use ttvm_vmm::vcpu::VcpuState;

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
    let regs = kvm_bindings::kvm_regs { rip: 0xffff_ffff_8100_0000, rsp: 0x1000, ..Default::default() };
    let vcpu = VcpuState {
        regs,
        sregs: Default::default(),
        xsave: vec![0; 1024],
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
        engine: engine_state(),
        clock: icount_clock(),
        vcpu,
        board,
        dirty: dirty_bytes,
        blobs: vec![10, 11, 12, 40],
        register_digest: 0x0123_4567_89ab_cdef,
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for line in bytes.chunks(32) {
        for b in line {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
    }
    s
}

#[test]
fn capture() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (name, bytes) in [
        ("engine_state.hex", bincode::serialize(&engine_state()).unwrap()),
        ("engine_clock_icount.hex", bincode::serialize(&icount_clock()).unwrap()),
        ("engine_clock_realtime.hex", bincode::serialize(&realtime_clock()).unwrap()),
        ("checkpoint_record.hex", bincode::serialize(&checkpoint_record()).unwrap()),
    ] {
        std::fs::write(dir.join(name), hex(&bytes)).unwrap();
    }
}
