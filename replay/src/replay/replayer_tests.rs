//! The replay environment against hand-made logs, without KVM: a committed trace gives the
//! header and checkpoints, and its event list is replaced by the events under test.

use std::rc::Rc;

use ttvm_vmm::devices::Board;

use super::Replayer;
use crate::engine::{EngineError, StepEnv};
use crate::events::{Event, EventKind, IoData};
use crate::recording::Recording;

/// `tests/traces/timer.ttvm` with `events` as its log.
fn recording_with(events: Vec<Event>) -> Rc<Recording> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/traces/timer.ttvm");
    let mut rec = Recording::open(&path).expect("the committed timer trace opens without KVM");
    rec.events_end = events.last().map_or(0, |e| e.icount + 1);
    rec.events = events;
    Rc::new(rec)
}

fn divergence(r: Result<impl std::fmt::Debug, EngineError>) -> String {
    match r {
        Err(EngineError::Divergence(d)) => format!("{}; expected {:?}", d.actual, d.expected),
        other => panic!("not a divergence: {other:?}"),
    }
}

#[test]
fn a_logged_port_read_is_given_back_and_consumed() {
    let rec = recording_with(vec![
        Event { icount: 3, kind: EventKind::PortIn { port: 0x3fd, data: IoData::from_slice(&[0x60]) } },
        Event { icount: 5, kind: EventKind::PortIn { port: 0x3fd, data: IoData::from_slice(&[0x20]) } },
    ]);
    let mut env = Replayer::new(rec);
    let mut board = Board::new(0);
    let mut data = [0u8; 1];
    env.port_in(&mut board, 3, 0x3fd, &mut data, 0x1000).unwrap();
    assert_eq!(data, [0x60]);
    env.port_in(&mut board, 5, 0x3fd, &mut data, 0x1000).unwrap();
    assert_eq!(data, [0x20], "the second read gets the second logged value");
}

#[test]
fn a_read_of_another_port_or_size_diverges_and_names_both() {
    let logged = Event { icount: 3, kind: EventKind::PortIn { port: 0x3fd, data: IoData::from_slice(&[0x60]) } };
    let mut env = Replayer::new(recording_with(vec![logged.clone()]));
    let mut board = Board::new(0);
    let report = divergence(env.port_in(&mut board, 3, 0x3f8, &mut [0u8; 1], 0x1000));
    assert!(report.contains("in port 0x03f8, 1 bytes"), "{report}");
    assert!(report.contains("0x3fd") || report.contains("1021"), "the logged event is named: {report}");
    let report = divergence(env.port_in(&mut board, 3, 0x3fd, &mut [0u8; 2], 0x1000));
    assert!(report.contains("2 bytes"), "{report}");
}

#[test]
fn a_write_with_other_data_diverges() {
    let mut env = Replayer::new(recording_with(vec![Event {
        icount: 7,
        kind: EventKind::PortOut { port: 0x80, data: IoData::from_slice(&[1]) },
    }]));
    let mut board = Board::new(0);
    let report = divergence(env.port_out(&mut board, 7, 0x80, &[2], 0x1000));
    assert!(report.contains("out port 0x0080"), "{report}");
}

#[test]
fn interrupts_come_at_their_icount_and_only_into_an_open_window() {
    let irq = Event { icount: 10, kind: EventKind::Interrupt { vector: 0x20 } };
    let mut env = Replayer::new(recording_with(vec![irq.clone()]));
    let mut board = Board::new(0);
    assert_eq!(env.at_boundary(&mut board, 9, true).unwrap(), None, "not yet");
    let report = divergence(env.at_boundary(&mut board, 10, false));
    assert!(report.contains("cannot take an interrupt"), "{report}");
    assert_eq!(env.at_boundary(&mut board, 10, true).unwrap(), Some(0x20));

    // A replay that reaches a later step without having done the event has left history.
    let mut env = Replayer::new(recording_with(vec![irq]));
    let report = divergence(env.at_boundary(&mut board, 11, true));
    assert!(report.contains("went past this event"), "{report}");
}
