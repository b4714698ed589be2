//! The frames as one VM saw them: each send and each reception at its own icount, with the
//! other end (VM and icount). The pane listing frames around the cursor and the `[` / `]`
//! jumps read this; the lanes draw from the manifest directly.

use ttvm_replay::network::cut::Cut;
use ttvm_replay::network::manifest::NetworkManifestV1;

/// Which end of a frame a point is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// This VM sent it; `peer` got it at `peer_at` (None: never).
    Sent,
    /// This VM received it; `peer` sent it at `peer_at`.
    Received,
}

/// One end of one frame, in the VM's own icounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramePoint {
    /// The icount in this VM.
    pub at: u64,
    /// The frame's switch sequence number.
    pub frame: u64,
    /// Sent or received.
    pub end: End,
    /// The VM at the other end.
    pub peer: u32,
    /// The other end's icount (a send always has one; a delivery may never have happened).
    pub peer_at: Option<u64>,
}

impl FramePoint {
    /// One line for people: "sent #3 to VM 1 (pong), received at 1200".
    pub fn describe(&self, m: &NetworkManifestV1) -> String {
        let name = m.vms.get(self.peer as usize).map_or("?", |v| v.name.as_str());
        match (self.end, self.peer_at) {
            (End::Sent, Some(at)) => format!("@{} sent #{} → VM {} ({name}) @{at}", self.at, self.frame, self.peer),
            (End::Sent, None) => {
                format!("@{} sent #{} → VM {} ({name}), never received", self.at, self.frame, self.peer)
            }
            (End::Received, at) => format!(
                "@{} received #{} ← VM {} ({name}) @{}",
                self.at,
                self.frame,
                self.peer,
                at.map_or("?".into(), |a| a.to_string())
            ),
        }
    }

    /// Whether this end's frame is in flight at `cut` (sent before it, not received).
    pub fn in_flight(&self, vm: usize, cut: &Cut) -> bool {
        let (to, _) = match self.end {
            End::Sent => (self.peer, vm),
            End::Received => (vm as u32, self.peer as usize),
        };
        cut.in_flight.iter().any(|f| f.frame == self.frame && f.to == to)
    }
}

/// Every send and reception of `vm`, by its icount (a frame to several VMs is one send
/// point per receiver).
pub fn frame_points(m: &NetworkManifestV1, vm: usize) -> Vec<FramePoint> {
    let mut out = Vec::new();
    for f in &m.frames {
        for d in &f.to {
            if f.from as usize == vm {
                out.push(FramePoint { at: f.sent_at, frame: f.id, end: End::Sent, peer: d.vm, peer_at: d.at });
            }
            if d.vm as usize == vm {
                if let Some(at) = d.at {
                    out.push(FramePoint {
                        at,
                        frame: f.id,
                        end: End::Received,
                        peer: f.from,
                        peer_at: Some(f.sent_at),
                    });
                }
            }
        }
    }
    out.sort_by_key(|p| (p.at, p.frame));
    out
}
