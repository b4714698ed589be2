//! The bytes of saved state are pinned: a known board (every device in a non-trivial state,
//! reached through port I/O as a guest would), a known vCPU state, engine state and clock
//! are encoded as trace checkpoints store them (through their state types: `BoardState`,
//! `VcpuState`, `SavedEngineState`, `EngineClockState`), and their length and digest are
//! compared with committed values, pinned when the live structs themselves were encoded. Reordering or retyping a field of any of them — in ttvm or in a
//! dependency whose types it serialises (kvm-bindings) — breaks this test instead of users'
//! traces and snapshots; such a change needs a new format version with its own frozen
//! types, as `TraceHeaderV2` and snapshot.rs's `MachineStateV1` are. No KVM needed.

use ttvm_replay::clock::{ClockMode, EngineClock};
use ttvm_replay::engine::EngineState;
use ttvm_replay::persist::SavedEngineState;
use ttvm_vmm::devices::Board;
use ttvm_vmm::vcpu::VcpuState;

/// (length, XXH3-64) of an encoding.
fn fingerprint<T: serde::Serialize>(v: &T) -> (usize, u64) {
    let bytes = bincode::serialize(v).expect("encodes");
    (bytes.len(), xxhash_rust::xxh3::xxh3_64(&bytes))
}

/// Decoding the encoding gives the value back.
fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = bincode::serialize(v).expect("encodes");
    let back: T = bincode::deserialize(&bytes).expect("decodes");
    assert_eq!(&back, v);
}

fn known_board() -> Board {
    let mut b = Board::new(1_700_000_000);
    let out = |b: &mut Board, port: u16, v: u8, now: u64| {
        b.pio_write(port, &[v], now);
    };
    // 8259A pair: ICW1-4, then masks (IRQ0 and the cascade open on the master).
    for (port, v) in
        [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0xa0, 0x11), (0xa1, 0x28), (0xa1, 0x02), (0xa1, 0x01)]
    {
        out(&mut b, port, v, 0);
    }
    out(&mut b, 0x21, 0xea, 0);
    out(&mut b, 0xa1, 0xff, 0);
    // PIT channel 0, lobyte/hibyte, mode 2, divisor 1193; channel 2 gate via port 0x61.
    out(&mut b, 0x43, 0x34, 0);
    out(&mut b, 0x40, 0xa9, 0);
    out(&mut b, 0x40, 0x04, 0);
    out(&mut b, 0x61, 0x01, 0);
    // UART: 115200 8N1, receive interrupt on, a few bytes sent and some input waiting.
    for (port, v) in [(0x3fb, 0x80), (0x3f8, 0x01), (0x3f9, 0x00), (0x3fb, 0x03), (0x3f9, 0x01), (0x3fc, 0x0b)] {
        out(&mut b, port, v, 1_000);
    }
    for &c in b"hi\n" {
        out(&mut b, 0x3f8, c, 2_000);
    }
    b.serial_input(b"input");
    // RTC: status B (24-hour, binary), then select a register.
    out(&mut b, 0x70, 0x0b, 3_000);
    out(&mut b, 0x71, 0x06, 3_000);
    out(&mut b, 0x70, 0x0a, 3_000);
    // PCI configuration address; an unmodelled port, logged once.
    b.pio_write(0xcf8, &0x8000_0000u32.to_le_bytes(), 4_000);
    out(&mut b, 0x2f8, 0x55, 4_000);
    // Time passes: the PIT counts, interrupts become due.
    b.advance(5_000_000);
    b
}

fn known_vcpu() -> VcpuState {
    let mut v = VcpuState {
        regs: Default::default(),
        sregs: Default::default(),
        xsave: (0..1024u32).map(|i| i.wrapping_mul(0x9e37_79b9)).collect(),
        xcrs: Default::default(),
        debugregs: Default::default(),
        events: Default::default(),
        mp_state: Default::default(),
        msrs: vec![(0xc000_0082, 0xffff_ffff_8100_0000), (0x277, 0x0007_0406_0007_0406)],
    };
    v.regs.rax = 0x1122_3344_5566_7788;
    v.regs.rip = 0x10_0eb4;
    v.regs.rsp = 0x12_0f40;
    v.regs.rflags = 0x246;
    v.sregs.cr0 = 0x8000_0011;
    v.sregs.cr3 = 0x4000;
    v.sregs.efer = 0x500;
    v.sregs.cs.selector = 0x08;
    v.sregs.cs.l = 1;
    v.sregs.gdt.base = 0x3000;
    v.debugregs.dr7 = 0x400;
    v.events.interrupt.shadow = 1;
    v.mp_state.mp_state = 0;
    v
}

#[test]
fn board_encoding_is_pinned() {
    let b = known_board();
    // The state is not the power-on one: the PIT has a deadline, input is queued.
    assert!(b.next_deadline().is_some(), "PIT programmed");
    assert_ne!(b, Board::new(1_700_000_000));
    let state = b.state();
    round_trips(&state);
    assert_eq!(Board::from_state(&state).unwrap(), b);
    assert_eq!(fingerprint(&state), (410, 0xea15_294b_e23a_845e), "Board encoding changed");
}

#[test]
fn vcpu_state_encoding_is_pinned() {
    let v = known_vcpu();
    round_trips(&v);
    assert_eq!(fingerprint(&v), (5228, 0xc659_47f3_277c_bf87), "VcpuState encoding changed");
}

#[test]
fn engine_and_clock_encodings_are_pinned() {
    let e = SavedEngineState::from(EngineState { icount: 73_351, window_open: true });
    round_trips(&e);
    assert_eq!(fingerprint(&e), (9, 0x1e93_682d_5387_5c00), "EngineState encoding changed");
    let mut c = EngineClock::new(ClockMode::Icount);
    c.idle_ns = 1_234_567;
    c.last_ns = 89;
    assert_eq!(fingerprint(&c.state()), (28, 0xa34d_f065_cdf8_8c9a), "EngineClock encoding changed");
    round_trips(&c.state());
    let decoded = EngineClock::from_state(&c.state()).unwrap();
    assert_eq!((decoded.mode, decoded.idle_ns, decoded.last_ns), (c.mode, c.idle_ns, c.last_ns));
}
