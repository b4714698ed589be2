//! The saved-state encodings, byte for byte, without KVM.
//!
//! `tests/fixtures/*.hex` were captured (commit c5d125a) from the bincode encoding of the
//! live structs as they were then serialised directly: `Board` with serde derives, and
//! `VcpuState` holding kvm-bindings 0.14 structs with kvm-bindings' own serde. The state
//! types must produce exactly those bytes forever, so every trace and snapshot written
//! before them still decodes. Never regenerate a fixture from the state types: a test
//! failing here means the encoding changed, which needs a new version type and a
//! conversion instead (see `ttvm_vmm::persist`).

use kvm_bindings::{
    kvm_debugregs, kvm_dtable, kvm_mp_state, kvm_regs, kvm_segment, kvm_sregs, kvm_vcpu_events, kvm_xcr, kvm_xcrs,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use ttvm_test_support::golden;
use ttvm_vmm::devices::{Board, BoardState};
use ttvm_vmm::persist::c_layout::{self, CLayout};
use ttvm_vmm::snapshot::{MachineState, MachineStateV2, SnapshotOrigin};
use ttvm_vmm::vcpu::{DebugRegsState, MpState, RegsState, SregsState, VcpuEventsState, VcpuState, XcrsState};

const SEC: u64 = 1_000_000_000;

/// A board with non-default state in every device, driven only through the devices' port
/// interfaces (so the same calls rebuild it whatever the struct layout).
fn sample_board() -> Board {
    let mut b = Board::new(1_700_000_000);
    // PIC: Linux's remap, a mask, level-triggered IRQ10/11, IRQ3 and IRQ9 in service,
    // IRQ5 requested behind them, rotation and OCW3 state.
    for (p, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0xa0, 0x11), (0xa1, 0x28), (0xa1, 2), (0xa1, 1)] {
        b.pio_write(p, &[v], 0);
    }
    b.pio_write(0x21, &[0x42], 0);
    b.pio_write(0xa1, &[0xf1], 0);
    b.pio_write(0x4d1, &[0x0c], 0);
    b.pic.set_irq_level(3, true);
    b.pic.set_irq_level(9, true);
    assert_eq!(b.acknowledge_interrupt(), 0x29);
    b.pic.set_irq_level(11, true);
    b.pic.set_irq_level(5, true);
    b.pio_write(0x20, &[0xc6], 0); // IRQ6 lowest priority
    b.pio_write(0xa0, &[0x0b], 0); // slave command port reads ISR
                                   // PIT: channel 0 rate generator with a count staged for the next period, an unpolled
                                   // edge and a half-read counter latch; channel 1 one-shot waiting for a trigger with
                                   // half a new count written; channel 2 mode 0 stopped by its gate, status latched.
    b.pit.write(0x43, 0x34, 1_000);
    b.pit.write(0x40, 0xa9, 1_000);
    b.pit.write(0x40, 0x04, 1_000);
    b.pit.write(0x40, 0x00, 1_500_000);
    b.pit.write(0x40, 0x02, 1_500_000);
    b.pit.write(0x43, 0x00, 1_600_000);
    b.pit.read(0x40, 1_600_000);
    b.pit.write(0x43, 0x72, 2_000);
    b.pit.write(0x41, 0x34, 2_000);
    b.pit.write(0x41, 0x12, 2_000);
    b.pit.write(0x41, 0x99, 2_000);
    b.pit.write_port61(0x03, 3_000);
    b.pit.write(0x43, 0xb0, 3_000);
    b.pit.write(0x42, 0x78, 3_000);
    b.pit.write(0x42, 0x56, 3_000);
    b.pit.write_port61(0x0a, 900_000);
    b.pit.write(0x43, 0xe8, 950_000);
    // UART: FIFOs at trigger 4, receive interrupt on, modem control, scratch, a divisor,
    // bytes waiting in the receive FIFO and transmitted bytes not yet drained.
    b.pio_write(0x3fb, &[0x83], 0);
    b.pio_write(0x3f8, &[0x01], 0);
    b.pio_write(0x3f9, &[0x00], 0);
    b.pio_write(0x3fb, &[0x03], 0);
    b.pio_write(0x3fa, &[0x47], 0);
    b.pio_write(0x3f9, &[0x07], 0);
    b.pio_write(0x3fc, &[0x0b], 0);
    b.pio_write(0x3ff, &[0x5a], 0);
    assert_eq!(b.serial_input(b"abc"), 3);
    b.pio_write(0x3f8, b"O", 0);
    b.pio_write(0x3f8, b"K", 0);
    // RTC: binary 24-hour mode, CMOS bytes, an update reported, clock frozen and edited.
    b.pio_write(0x70, &[0x0b], 0);
    b.pio_write(0x71, &[0x06], 0);
    b.pio_write(0x70, &[0x10], 0);
    b.pio_write(0x71, &[0x42], 0);
    b.rtc.set_ram(0x34, 0x12);
    b.pio_write(0x70, &[0x0c], 0);
    let mut d = [0u8];
    b.pio_read(0x71, &mut d, 3 * SEC + 5);
    b.pio_write(0x70, &[0x0a], 0);
    b.pio_write(0x71, &[0x2f], 0);
    b.pio_write(0x70, &[0x0b], 0);
    b.pio_write(0x71, &[0x86], 4 * SEC);
    b.pio_write(0x70, &[0x04], 0);
    b.pio_write(0x71, &[23], 4 * SEC);
    b.pio_write(0x70, &[0x07], 0);
    // PCI: a latched configuration address and a reset-control value without reset.
    b.pio_write(0xcf8, &0x8000_1234u32.to_le_bytes(), 0);
    b.pio_write(0xcf9, &[0x02], 0);
    // i8042: a command byte, keyboard identification answers queued, an absent-mouse
    // timeout byte, and a keyboard command waiting for its argument.
    b.pio_write(0x64, &[0x60], 0);
    b.pio_write(0x60, &[0x47], 0);
    b.pio_write(0x60, &[0xf2], 0);
    b.pio_write(0x64, &[0xd4], 0);
    b.pio_write(0x60, &[0xf4], 0);
    b.pio_write(0x60, &[0xf0], 0);
    b.pio_write(0x64, &[0xa8], 0);
    // Unmodelled ports and MMIO pages, reported once each.
    b.pio_read(0x2f8, &mut [0u8; 2], 0);
    b.pio_write(0x500, &[1], 0);
    b.mmio_read(0xfee0_0020, &mut [0u8; 4]);
    b.mmio_write(0xfec0_0010, &[0u8; 4]);
    b
}

fn segment(base: u64, limit: u32, selector: u16, type_: u8, dpl: u8, l: u8) -> kvm_segment {
    kvm_segment {
        base,
        limit,
        selector,
        type_,
        present: 1,
        dpl,
        db: 1 - l,
        s: 1,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// kvm-bindings structs with a distinct value in every field, reserved bytes included.
#[allow(clippy::type_complexity)]
fn sample_kvm_vcpu(
) -> (kvm_regs, kvm_sregs, Vec<u32>, kvm_xcrs, kvm_debugregs, kvm_vcpu_events, kvm_mp_state, Vec<(u32, u64)>) {
    let r = |i: u64| 0x0101_0101_0101_0101u64.wrapping_mul(i) ^ 0x8000_0000_0000_0000 | i;
    let regs = kvm_regs {
        rax: r(1),
        rbx: r(2),
        rcx: r(3),
        rdx: r(4),
        rsi: r(5),
        rdi: r(6),
        rsp: r(7),
        rbp: r(8),
        r8: r(9),
        r9: r(10),
        r10: r(11),
        r11: r(12),
        r12: r(13),
        r13: r(14),
        r14: r(15),
        r15: r(16),
        rip: 0xffff_ffff_8100_1234,
        rflags: 0x246,
    };
    let mut tr = segment(0xffff_8880_0001_0000, 0x67, 0x40, 11, 0, 0);
    tr.s = 0;
    tr.padding = 0x5a;
    let mut ldt = segment(0, 0xffff, 0, 2, 0, 0);
    ldt.unusable = 1;
    ldt.present = 0;
    ldt.avl = 1;
    let sregs = kvm_sregs {
        cs: segment(0, 0xffff_ffff, 0x10, 11, 0, 1),
        ds: segment(0x1000, 0xffff_ffff, 0x18, 3, 0, 0),
        es: segment(0x2000, 0xfffff, 0x18, 3, 0, 0),
        fs: segment(0x7f00_1234_5000, 0xffff_ffff, 0, 3, 3, 0),
        gs: segment(0xffff_8880_3fc0_0000, 0xffff_ffff, 0, 3, 0, 0),
        ss: segment(0, 0xffff_ffff, 0x18, 3, 0, 0),
        tr,
        ldt,
        gdt: kvm_dtable { base: 0xffff_fe00_0000_1000, limit: 0x7f, padding: [1, 2, 3] },
        idt: kvm_dtable { base: 0xffff_fe00_0000_0000, limit: 0xfff, padding: [0; 3] },
        cr0: 0x8005_0033,
        cr2: 0x7f00_dead_b000,
        cr3: 0x0123_4000,
        cr4: 0x0030_06f0,
        cr8: 1,
        efer: 0xd01,
        apic_base: 0xfee0_0900,
        interrupt_bitmap: [1 << 32, 0, 1 << 3, 0x8000_0000_0000_0000],
    };
    let xsave: Vec<u32> = (0..1024u32).map(|i| i.wrapping_mul(0x0102_0305) ^ 0xa5a5_0000).collect();
    let mut xcrs = kvm_xcrs { nr_xcrs: 1, flags: 0, ..Default::default() };
    xcrs.xcrs[0] = kvm_xcr { xcr: 0, reserved: 0, value: 0x3 };
    xcrs.xcrs[15] = kvm_xcr { xcr: 7, reserved: 9, value: 0xffff };
    xcrs.padding[3] = 0x1234;
    let debugregs = kvm_debugregs {
        db: [0xffff_ffff_8100_0000, 0x1000, 0x2000, 0x3000],
        dr6: 0xffff_0ff1,
        dr7: 0x0000_0403,
        flags: 0,
        reserved: [0, 0, 0, 0, 7, 0, 0, 0, 0x55],
    };
    let mut events = kvm_vcpu_events::default();
    events.exception.injected = 1;
    events.exception.nr = 14;
    events.exception.has_error_code = 1;
    events.exception.pending = 0;
    events.exception.error_code = 0x2;
    events.interrupt.injected = 0;
    events.interrupt.nr = 0x30;
    events.interrupt.soft = 0;
    events.interrupt.shadow = 1;
    events.nmi.injected = 0;
    events.nmi.pending = 1;
    events.nmi.masked = 1;
    events.nmi.pad = 0;
    events.sipi_vector = 0x9a;
    events.flags = 0x5;
    events.smi.smm = 0;
    events.smi.pending = 0;
    events.smi.smm_inside_nmi = 0;
    events.smi.latched_init = 1;
    events.triple_fault.pending = 0;
    events.reserved[0] = 0x11;
    events.reserved[25] = 0x22;
    events.exception_has_payload = 1;
    events.exception_payload = 0x7f00_dead_b000;
    let mp_state = kvm_mp_state { mp_state: 3 };
    let msrs =
        vec![(0x174, 0x10), (0x277, 0x0007_0406_0007_0406), (0xc000_0082, 0xffff_ffff_8180_0000), (0xc000_0103, 0)];
    (regs, sregs, xsave, xcrs, debugregs, events, mp_state, msrs)
}

fn sample_vcpu() -> VcpuState {
    let (regs, sregs, xsave, xcrs, debugregs, events, mp_state, msrs) = sample_kvm_vcpu();
    VcpuState {
        regs: (&regs).into(),
        sregs: (&sregs).into(),
        xsave,
        xcrs: (&xcrs).into(),
        debugregs: (&debugregs).into(),
        events: (&events).into(),
        mp_state: (&mp_state).into(),
        msrs,
    }
}

fn sample_machine_state() -> MachineStateV2 {
    MachineStateV2 {
        mem_size: 256 << 20,
        vcpu: sample_vcpu(),
        tsc: 0x0000_1234_5678_9abc,
        board: sample_board().state(),
        clock_ns: 42 * SEC + 17,
        clock_slowdown: 10,
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
fn board_state_encodes_as_the_live_board_did() {
    let board = sample_board();
    let decoded: BoardState = assert_golden(&board.state(), "board.hex");
    assert_eq!(Board::from_state(&decoded).unwrap(), board, "restored board");
}

#[test]
fn vcpu_state_encodes_as_kvm_bindings_structs_did() {
    let decoded = assert_golden(&sample_vcpu(), "vcpu_state.hex");
    decoded.validate().unwrap();
}

#[test]
fn machine_state_encodes_as_before() {
    // The fixture is snapshot format 2's record; format 3 appends the disk.
    let decoded = assert_golden(&sample_machine_state(), "machine_state.hex");
    assert_eq!(Board::from_state(&decoded.board).unwrap(), sample_board());
    let v3 = MachineState::from(decoded);
    assert_eq!(v3.disk, None);
    let bytes = bincode::serialize(&v3).unwrap();
    let v2 = fixture("machine_state.hex");
    assert_eq!((&bytes[..v2.len()], &bytes[v2.len()..]), (&v2[..], &[0u8][..]));
}

/// A state type and the kvm-bindings struct it stands for encode identically, for the
/// sample value and for an image whose every byte differs (which pins each field's
/// offset and width, padding included), and the C sizes agree.
fn assert_same_as_kvm_bindings<S, K>(sample: &K)
where
    S: CLayout + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + for<'a> From<&'a K>,
    K: Serialize + for<'a> From<&'a S>,
{
    assert_eq!(S::SIZE, std::mem::size_of::<K>(), "{} size", S::C_NAME);
    let state = S::from(sample);
    assert_eq!(bincode::serialize(&state).unwrap(), bincode::serialize(sample).unwrap(), "{}", S::C_NAME);
    let image: Vec<u8> = (0..S::SIZE).map(|i| (i * 7 + 1) as u8).collect();
    let state: S = c_layout::from_bytes(&image).unwrap();
    let kvm = K::from(&state);
    let mut expected = (S::SIZE as u64).to_le_bytes().to_vec();
    expected.extend_from_slice(&image);
    assert_eq!(bincode::serialize(&kvm).unwrap(), expected, "{} through kvm-bindings", S::C_NAME);
    assert_eq!(bincode::serialize(&state).unwrap(), expected, "{}", S::C_NAME);
    assert_eq!(S::from(&kvm), state, "{} converts back", S::C_NAME);
}

#[test]
fn vcpu_parts_encode_exactly_as_kvm_bindings_does() {
    let (regs, sregs, _, xcrs, debugregs, events, mp_state, _) = sample_kvm_vcpu();
    assert_same_as_kvm_bindings::<RegsState, kvm_regs>(&regs);
    assert_same_as_kvm_bindings::<SregsState, kvm_sregs>(&sregs);
    assert_same_as_kvm_bindings::<XcrsState, kvm_xcrs>(&xcrs);
    assert_same_as_kvm_bindings::<DebugRegsState, kvm_debugregs>(&debugregs);
    assert_same_as_kvm_bindings::<VcpuEventsState, kvm_vcpu_events>(&events);
    assert_same_as_kvm_bindings::<MpState, kvm_mp_state>(&mp_state);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let board = fixture("board.hex");
    for len in 0..board.len() {
        assert!(bincode::deserialize::<BoardState>(&board[..len]).is_err(), "board cut at {len} decoded");
    }
    let vcpu = fixture("vcpu_state.hex");
    for len in 0..vcpu.len() {
        assert!(bincode::deserialize::<VcpuState>(&vcpu[..len]).is_err(), "vCPU state cut at {len} decoded");
    }
}

#[test]
fn a_c_image_of_the_wrong_size_is_refused() {
    let mut bytes = fixture("vcpu_state.hex");
    // The first field is the kvm_regs image: its length prefix claims 143 bytes.
    bytes[0] = 143;
    let err = bincode::deserialize::<VcpuState>(&bytes).unwrap_err().to_string();
    assert!(err.contains("the 144-byte image of a kvm_regs"), "{err}");
}

#[test]
fn snapshot_origin_encoding_is_pinned() {
    let origin = SnapshotOrigin {
        kernel_name: "timer".into(),
        machine: ttvm_vmm::machine::MachineConfig {
            mem_size: 128 << 20,
            kernel: vec![0x7f, b'E', b'L', b'F', 2],
            cmdline: "ticks=5".into(),
            rtc_base_unix_secs: 1_700_000_000,
            initrd: vec![1, 2],
        },
        neutral_vendor: true,
    };
    assert_golden(&origin, "snapshot_origin.hex");
}
