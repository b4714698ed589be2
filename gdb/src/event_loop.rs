//! The session loop: bytes from gdb go through the [`Framer`] into gdbstub's state
//! machine; resume requests are carried out on the timeline while a watcher thread looks
//! for Ctrl-C.
//!
//! gdbstub's own blocking loop ends the session on any packet its parser rejects. Here
//! such a packet is answered with an error and the session goes on with a fresh protocol
//! state machine, into which the set-up packets gdb sent at connect time (`qSupported`,
//! `QStartNoAckMode`) are replayed silently so the negotiated features stay the same. The
//! target (timeline, breakpoints) is untouched by this.

use std::net::TcpStream;

use gdbstub::common::Signal;
use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStubBuilder, GdbStubError, SingleThreadStopReason};

use crate::conn::Conn;
use crate::error::GdbError;
use crate::framing::{Framer, Item, Reject};
use crate::resume::Outcome;
use crate::target::TtvmTarget;

/// Size of the packet buffer (also the largest packet gdb may send; advertised to gdb).
pub const PACKET_BUFFER: usize = 16 * 1024;

/// How a gdb session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeEnd {
    /// gdb detached (`detach`, `quit`, `disconnect`).
    Detached,
    /// gdb killed the target (`kill`).
    Killed,
    /// The connection closed without either.
    ConnectionClosed,
}

type Machine<'a, 't> = GdbStubStateMachine<'a, TtvmTarget<'t>, Conn>;
type StubError = GdbStubError<GdbError, std::io::Error>;

/// Why driving a protocol state machine stopped without the session ending.
enum Failure {
    /// gdbstub rejected what gdb sent: answer with an error and start over.
    Protocol(String),
    /// The session cannot go on.
    Fatal(GdbError),
    /// The connection went away.
    Closed,
}

impl From<StubError> for Failure {
    fn from(e: StubError) -> Self {
        if e.is_connection_error() {
            Failure::Closed
        } else if e.is_target_error() {
            Failure::Fatal(e.into_target_error().unwrap_or_else(|| GdbError::Protocol("target error".into())))
        } else {
            Failure::Protocol(e.to_string())
        }
    }
}

/// The packets that configure a session, kept to be replayed into a new state machine.
#[derive(Debug, Default)]
struct Setup {
    supported: Option<Vec<u8>>,
    no_ack: bool,
}

impl Setup {
    fn note(&mut self, packet: &[u8]) {
        let body = packet.get(1..packet.len().saturating_sub(3)).unwrap_or_default();
        if body.starts_with(b"qSupported") {
            self.supported = Some(packet.to_vec());
        } else if body == b"QStartNoAckMode" {
            self.no_ack = true;
        }
    }

    fn packets(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self.supported.iter().cloned().collect();
        if self.no_ack {
            out.push(crate::framing::frame(b"QStartNoAckMode"));
        }
        out
    }
}

/// Serves one connection until gdb detaches, kills, or hangs up.
pub fn run_session(target: &mut TtvmTarget<'_>, stream: &TcpStream) -> Result<ServeEnd, GdbError> {
    let mut framer = Framer::new(stream.try_clone()?, PACKET_BUFFER);
    let mut setup = Setup::default();
    loop {
        let mut buf = vec![0u8; PACKET_BUFFER];
        let stub = GdbStubBuilder::new(Conn::new(stream.try_clone()?))
            .with_packet_buffer(&mut buf)
            .build()
            .map_err(|e| GdbError::Protocol(e.to_string()))?;
        let result = match stub.run_state_machine(target) {
            Ok(sm) => match replay_setup(sm, target, &setup) {
                Ok(sm) => drive(sm, target, &mut framer, &mut setup),
                // Cannot happen with packets that were accepted before; if it does, go on
                // without them rather than failing the same way again.
                Err(Failure::Protocol(what)) => {
                    eprintln!("ttvm: could not restore the session set-up ({what}); continuing without it");
                    setup = Setup::default();
                    continue;
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(end) => return Ok(end),
            Err(Failure::Closed) => return Ok(ServeEnd::ConnectionClosed),
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Protocol(what)) => {
                eprintln!("ttvm: gdb sent a packet that could not be handled ({what}); answered with an error");
                let mut conn = Conn::new(stream.try_clone()?);
                if !setup.no_ack {
                    conn.send_raw(b"+")?;
                }
                conn.send_packet(b"E16")?;
            }
        }
    }
}

/// Feeds a whole packet into the state machine.
fn feed<'a, 't>(
    mut sm: Machine<'a, 't>,
    target: &mut TtvmTarget<'t>,
    packet: &[u8],
) -> Result<Machine<'a, 't>, Failure> {
    for &b in packet {
        sm = match sm {
            GdbStubStateMachine::Idle(g) => g.incoming_data(target, b)?,
            GdbStubStateMachine::Running(g) => g.incoming_data(target, b)?,
            other => return Ok(other),
        };
    }
    // Resume packets are acknowledged ('+') but their reply comes only when the target
    // stops; gdb must get the ACK now or it would resend the packet.
    match &mut sm {
        GdbStubStateMachine::Idle(g) => Connection::flush(g.borrow_conn()),
        GdbStubStateMachine::Running(g) => Connection::flush(g.borrow_conn()),
        _ => Ok(()),
    }
    .map_err(|_| Failure::Closed)?;
    Ok(sm)
}

fn set_muted(sm: &mut Machine<'_, '_>, on: bool) {
    match sm {
        GdbStubStateMachine::Idle(g) => g.borrow_conn().muted = on,
        GdbStubStateMachine::Running(g) => g.borrow_conn().muted = on,
        GdbStubStateMachine::CtrlCInterrupt(g) => g.borrow_conn().muted = on,
        GdbStubStateMachine::Disconnected(g) => g.borrow_conn().muted = on,
    }
}

fn replay_setup<'a, 't>(
    mut sm: Machine<'a, 't>,
    target: &mut TtvmTarget<'t>,
    setup: &Setup,
) -> Result<Machine<'a, 't>, Failure> {
    set_muted(&mut sm, true);
    for p in setup.packets() {
        sm = feed(sm, target, &p)?;
    }
    set_muted(&mut sm, false);
    Ok(sm)
}

/// Answers a packet the framer dropped, the way the remote protocol expects.
fn answer_rejected(conn: &mut Conn, why: Reject, no_ack: bool) -> std::io::Result<()> {
    match why {
        // A corrupted packet is NACKed so gdb sends it again (in no-ack mode gdb does not
        // expect that, and times out on its own).
        Reject::BadChecksum if !no_ack => conn.send_raw(b"-"),
        Reject::BadChecksum => Ok(()),
        Reject::TooLong => {
            eprintln!("ttvm: gdb sent a packet longer than {PACKET_BUFFER} bytes; answered with an error");
            if !no_ack {
                conn.send_raw(b"+")?;
            }
            conn.send_packet(b"E16")
        }
    }
}

/// What running the target produced.
enum Ran {
    Stopped(SingleThreadStopReason<u64>),
    Interrupted,
    Closed,
}

fn run_target(target: &mut TtvmTarget<'_>, framer: &mut Framer<TcpStream>) -> Ran {
    // A Ctrl-C that arrived together with the resume packet sits in the framer's buffer,
    // where the watcher thread cannot see it.
    if framer.has_buffered() {
        match framer.next_item() {
            Ok(Item::Interrupt) => {
                target.resume = None;
                return Ran::Interrupted;
            }
            Ok(Item::Eof) | Err(_) => return Ran::Closed,
            Ok(other) => framer.push_back(other),
        }
    }
    match target.execute() {
        Outcome::Stopped(r) => Ran::Stopped(r),
        Outcome::Interrupted => match framer.next_item() {
            Ok(Item::Eof) | Err(_) => Ran::Closed,
            Ok(Item::Interrupt) => Ran::Interrupted,
            // Not a Ctrl-C, but the run did stop: report that, then handle the packet.
            Ok(other) => {
                framer.push_back(other);
                Ran::Interrupted
            }
        },
    }
}

fn drive<'a, 't>(
    mut sm: Machine<'a, 't>,
    target: &mut TtvmTarget<'t>,
    framer: &mut Framer<TcpStream>,
    setup: &mut Setup,
) -> Result<ServeEnd, Failure> {
    // Whether the Ctrl-C being handled arrived while the target was stopped (then there is
    // nothing to stop, and no stop reply is due).
    let mut ctrl_c_while_idle = false;
    loop {
        sm = match sm {
            GdbStubStateMachine::Idle(mut g) => match framer.next_item().map_err(|_| Failure::Closed)? {
                Item::Eof => return Err(Failure::Closed),
                Item::Interrupt => {
                    ctrl_c_while_idle = true;
                    g.incoming_data(target, 0x03)?
                }
                // gdb NACKs when a reply takes longer than its remote timeout (a long
                // monitor command) and keeps waiting for it; on TCP nothing was lost, so
                // there is nothing to resend.
                Item::Nack => GdbStubStateMachine::Idle(g),
                Item::Rejected(why) => {
                    answer_rejected(g.borrow_conn(), why, setup.no_ack).map_err(|_| Failure::Closed)?;
                    GdbStubStateMachine::Idle(g)
                }
                Item::Packet(p) => {
                    // Another VM of the network may have moved this one meanwhile.
                    target.apply_network_move();
                    let next = feed(GdbStubStateMachine::Idle(g), target, &p)?;
                    // Only packets gdbstub accepted are replayed after a restart (a bad one
                    // would fail again, forever).
                    setup.note(&p);
                    next
                }
            },
            GdbStubStateMachine::Running(mut g) => match run_target(target, framer) {
                Ran::Stopped(reason) => {
                    if let (SingleThreadStopReason::Signal(Signal::SIGABRT), Some(msg)) = (reason, &target.last_error) {
                        // gdb prints console output that precedes a stop reply.
                        g.borrow_conn().console(&format!("ttvm: {msg}\n")).map_err(|_| Failure::Closed)?;
                    }
                    g.report_stop(target, reason)?
                }
                Ran::Interrupted => {
                    ctrl_c_while_idle = false;
                    g.incoming_data(target, 0x03)?
                }
                Ran::Closed => return Err(Failure::Closed),
            },
            GdbStubStateMachine::CtrlCInterrupt(g) => {
                let reason = (!ctrl_c_while_idle).then_some(SingleThreadStopReason::<u64>::Signal(Signal::SIGINT));
                g.interrupt_handled(target, reason)?
            }
            GdbStubStateMachine::Disconnected(g) => {
                return Ok(match g.get_reason() {
                    DisconnectReason::Kill => ServeEnd::Killed,
                    _ => ServeEnd::Detached,
                })
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::frame;

    #[test]
    fn setup_packets_are_remembered() {
        let mut s = Setup::default();
        s.note(&frame(b"qSupported:multiprocess+;swbreak+"));
        s.note(&frame(b"g"));
        assert!(!s.no_ack);
        s.note(&frame(b"QStartNoAckMode"));
        s.note(&frame(b"qSupported:xmlRegisters=i386"));
        assert_eq!(s.packets(), vec![frame(b"qSupported:xmlRegisters=i386"), frame(b"QStartNoAckMode")]);
        // A minimal packet must not make the body slicing panic.
        s.note(b"$#00");
    }
}
