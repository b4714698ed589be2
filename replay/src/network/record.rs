//! A recording VM's side of the network: its port on the switch, and what it logged about
//! frames (each sent frame's switch id and icount, each delivered frame's), from which the
//! network command builds the manifest.
//!
//! Frames move only at the VM's step boundaries (`Recorder::devices_at_boundary`): the
//! card's due transmissions leave first (each logged as `NetTx`), then waiting frames enter
//! while the card has a receive buffer (each logged as `NetRx` with its id), so replay can
//! deliver them from the log at the same icount without a switch. Only frames that entered
//! the network before this boundary's first transmission are taken at it: another VM's
//! thread may answer that transmission at once, and an answer logged as taken at the
//! boundary that sent what it answers has no consistent cut between them.

use ttvm_vmm::devices::virtio_net::link::NetLink;
use ttvm_vmm::machine::Machine;

use crate::engine::EngineError;
use crate::events::EventKind;

/// A frame this VM sent: the switch's id and the boundary it left at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentFrame {
    /// The switch's sequence number.
    pub id: u64,
    /// The icount of the boundary.
    pub at: u64,
    /// Its length.
    pub len: u32,
}

/// What a VM's recording logged about the network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetLog {
    /// Frames sent, in order.
    pub sent: Vec<SentFrame>,
    /// Frames delivered: (id, icount), in order.
    pub delivered: Vec<(u64, u64)>,
}

/// The recorder's network port and log.
pub struct NetRecorder {
    link: Box<dyn NetLink + Send>,
    /// What was logged so far.
    pub log: NetLog,
    /// Whether the card had a receive buffer at the last boundary (the halt wait wakes only
    /// for a frame it can deliver, so a guest without buffers does not spin on HLT).
    rx_ready: bool,
}

impl std::fmt::Debug for NetRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetRecorder").field("log", &self.log).finish()
    }
}

impl NetRecorder {
    /// A recorder on `link`.
    pub fn new(link: Box<dyn NetLink + Send>) -> Self {
        Self { link, log: NetLog::default(), rx_ready: false }
    }

    /// Exchanges frames at the boundary `icount` (device time `now`); `log` logs an event.
    pub fn exchange(
        &mut self,
        machine: &mut Machine,
        icount: u64,
        now: u64,
        log: &mut dyn FnMut(EventKind),
    ) -> Result<(), EngineError> {
        let mem_err = |e: ttvm_vmm::memory::MemoryError| EngineError::Io(std::io::Error::other(e.to_string()));
        // The first frame this boundary sends: frames that entered the network after it may
        // answer it, and must not be logged as taken at the same boundary (a cut could not
        // tell them apart), so they wait for the next one.
        let mut first_sent: Option<u64> = None;
        if machine.board.net_tx_due(now) {
            let out = machine.transmit_net().map_err(mem_err)?;
            for data in out.frames {
                log(EventKind::NetTx { data: data.clone() });
                let len = data.len() as u32;
                let id = self.link.send(data);
                first_sent.get_or_insert(id);
                self.log.sent.push(SentFrame { id, at: icount, len });
            }
        }
        self.rx_ready = machine.net_rx_ready().map_err(mem_err)?;
        let earlier = |id: u64| first_sent.is_none_or(|t| id < t);
        while self.rx_ready && self.link.oldest_id().is_some_and(earlier) {
            let Some(frame) = self.link.take() else { break };
            if !machine.receive_net(&frame.data).map_err(mem_err)? {
                // rx_ready said a buffer was posted: not taking it would lose the frame.
                return Err(EngineError::Io(std::io::Error::other("the network card refused a frame it had room for")));
            }
            log(EventKind::NetRx { frame: frame.id, data: frame.data });
            self.log.delivered.push((frame.id, icount));
            self.rx_ready = machine.net_rx_ready().map_err(mem_err)?;
        }
        Ok(())
    }

    /// Whether a halted guest should wake: a frame is waiting and the card can take it.
    pub fn wakes(&self) -> bool {
        self.rx_ready && self.link.has_frame()
    }

    /// Sleeps until a frame is waiting or `timeout` passed.
    pub fn wait(&self, timeout: std::time::Duration) {
        self.link.wait(timeout);
    }
}
