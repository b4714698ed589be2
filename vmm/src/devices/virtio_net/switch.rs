//! The virtual switch that connects the VMs of a network: a plain state machine, frames in
//! and frames out per port, no threads and no clock. Whoever drives it (one thread per VM
//! under `ttvm run`, a replay under `ttvm replay`) decides when frames move.
//!
//! Ports are the VMs' positions; port `i` owns the MAC [`mac_for`]`(i)`, so forwarding
//! needs no learning: a frame goes to the port whose MAC is its destination, a broadcast or
//! multicast frame to every other port, anything else is dropped. Every frame that enters
//! gets a sequence number, which names it in messages and in a recording's manifest.

use std::collections::VecDeque;

use super::{mac_for, MIN_FRAME};

/// Frames a port holds for its VM before the switch drops more (a real switch's buffer).
pub const PORT_QUEUE_FRAMES: usize = 256;

/// A frame on its way through the switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchedFrame {
    /// Sequence number: the order frames entered the switch, from 0.
    pub id: u64,
    /// The port (VM) that sent it.
    pub from: usize,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

/// Frame counts, for the user and for measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchStats {
    /// Frames that entered.
    pub sent: u64,
    /// Copies handed to a port's queue.
    pub queued: u64,
    /// Frames dropped: no port has the destination, too short, or a full port queue.
    pub dropped: u64,
}

/// The switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switch {
    ports: Vec<VecDeque<SwitchedFrame>>,
    next_id: u64,
    stats: SwitchStats,
}

impl Switch {
    /// A switch with `ports` ports (at most 255: the MAC's last byte numbers them).
    pub fn new(ports: usize) -> Self {
        Self { ports: vec![VecDeque::new(); ports.min(255)], next_id: 0, stats: SwitchStats::default() }
    }

    /// Number of ports.
    pub fn ports(&self) -> usize {
        self.ports.len()
    }

    /// Counts so far.
    pub fn stats(&self) -> SwitchStats {
        self.stats
    }

    /// The port that owns `mac`, if any.
    fn port_of(&self, mac: &[u8]) -> Option<usize> {
        (0..self.ports.len()).find(|&p| mac_for(p as u8) == mac)
    }

    /// A frame from port `from` enters; returns its sequence number and the ports it was
    /// queued for (empty if dropped).
    pub fn send(&mut self, from: usize, data: Vec<u8>) -> (u64, Vec<usize>) {
        let id = self.next_id;
        self.next_id += 1;
        self.stats.sent += 1;
        let targets: Vec<usize> = if data.len() < MIN_FRAME || from >= self.ports.len() {
            Vec::new()
        } else if data[0] & 1 != 0 {
            (0..self.ports.len()).filter(|&p| p != from).collect()
        } else {
            self.port_of(&data[..6]).filter(|&p| p != from).into_iter().collect()
        };
        let mut queued = Vec::new();
        for p in targets {
            if self.ports[p].len() < PORT_QUEUE_FRAMES {
                self.ports[p].push_back(SwitchedFrame { id, from, data: data.clone() });
                queued.push(p);
            }
        }
        self.stats.queued += queued.len() as u64;
        if queued.is_empty() {
            self.stats.dropped += 1;
        }
        (id, queued)
    }

    /// Queues `data` from port `from` for port `to` directly, without forwarding: a frame
    /// that was already on its way to `to` when a network was snapshotted, put back in the
    /// channel when it resumes. Returns its new sequence number, or `None` if `to` is not a
    /// port or its queue is full.
    pub fn enqueue(&mut self, from: usize, to: usize, data: Vec<u8>) -> Option<u64> {
        let queue = self.ports.get_mut(to).filter(|q| q.len() < PORT_QUEUE_FRAMES)?;
        let id = self.next_id;
        self.next_id += 1;
        queue.push_back(SwitchedFrame { id, from, data });
        self.stats.sent += 1;
        self.stats.queued += 1;
        Some(id)
    }

    /// Every frame waiting at a port, as (port, frame), in port order and oldest first at
    /// each: with every VM paused, the frames in flight (a network's live snapshot).
    pub fn queued(&self) -> Vec<(usize, SwitchedFrame)> {
        self.ports.iter().enumerate().flat_map(|(p, q)| q.iter().map(move |f| (p, f.clone()))).collect()
    }

    /// Whether port `port` has a frame waiting.
    pub fn has_frame(&self, port: usize) -> bool {
        self.ports.get(port).is_some_and(|q| !q.is_empty())
    }

    /// The id of the oldest frame waiting at `port`.
    pub fn oldest_id(&self, port: usize) -> Option<u64> {
        self.ports.get(port)?.front().map(|f| f.id)
    }

    /// Takes the oldest frame waiting at `port`.
    pub fn take(&mut self, port: usize) -> Option<SwitchedFrame> {
        self.ports.get_mut(port)?.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6], n: u8) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x88, 0xb5, n]);
        f
    }

    #[test]
    fn an_enqueued_frame_waits_at_its_port_ahead_of_later_ones() {
        let mut s = Switch::new(2);
        assert_eq!(s.enqueue(1, 0, vec![7; 60]), Some(0));
        s.send(1, frame(mac_for(0), mac_for(1), 2));
        assert_eq!(s.enqueue(0, 5, vec![7; 60]), None, "no port 5");
        assert_eq!(s.take(0).map(|f| (f.id, f.from, f.data)), Some((0, 1, vec![7; 60])));
        assert_eq!(s.take(0).map(|f| f.id), Some(1));
        assert_eq!(s.stats(), SwitchStats { sent: 2, queued: 2, dropped: 0 });
    }

    #[test]
    fn the_queued_frames_are_listed_by_port_without_being_taken() {
        let mut s = Switch::new(3);
        s.send(0, frame([0xff; 6], mac_for(0), 1));
        s.send(2, frame(mac_for(0), mac_for(2), 2));
        let listed: Vec<(usize, u64, usize)> = s.queued().into_iter().map(|(p, f)| (p, f.id, f.from)).collect();
        assert_eq!(listed, [(0, 1, 2), (1, 0, 0), (2, 0, 0)], "the broadcast waits at ports 1 and 2");
        assert!(s.has_frame(0) && s.has_frame(1) && s.has_frame(2), "listing takes nothing");
        s.take(1);
        assert_eq!(s.queued().len(), 2);
    }

    #[test]
    fn unicast_goes_to_the_owner_broadcast_to_all_others() {
        let mut s = Switch::new(3);
        let (id, to) = s.send(0, frame(mac_for(2), mac_for(0), 1));
        assert_eq!((id, to), (0, vec![2]));
        assert!(!s.has_frame(1) && s.has_frame(2));
        let got = s.take(2).unwrap();
        assert_eq!((got.id, got.from, got.data[14]), (0, 0, 1));
        let (id, to) = s.send(1, frame([0xff; 6], mac_for(1), 2));
        assert_eq!((id, to), (1, vec![0, 2]));
        assert_eq!(s.take(0).unwrap().id, 1);
        assert_eq!(s.take(0), None);
        assert_eq!(s.stats(), SwitchStats { sent: 2, queued: 3, dropped: 0 });
    }

    #[test]
    fn unknown_short_and_looped_frames_are_dropped() {
        let mut s = Switch::new(2);
        assert!(s.send(0, frame([0x52, 0, 0, 0, 0, 9], mac_for(0), 1)).1.is_empty());
        assert!(s.send(0, vec![0xff; 13]).1.is_empty());
        assert!(s.send(0, frame(mac_for(0), mac_for(0), 1)).1.is_empty(), "not back to its sender");
        assert!(s.send(5, frame(mac_for(1), mac_for(0), 1)).1.is_empty(), "no such port");
        assert_eq!(s.stats().dropped, 4);
        assert_eq!(s.stats().sent, 4);
    }

    #[test]
    fn a_full_port_queue_drops_further_frames() {
        let mut s = Switch::new(2);
        for i in 0..PORT_QUEUE_FRAMES {
            assert_eq!(s.send(0, frame(mac_for(1), mac_for(0), i as u8)).1, vec![1]);
        }
        assert!(s.send(0, frame(mac_for(1), mac_for(0), 0)).1.is_empty());
        assert_eq!(s.take(1).unwrap().id, 0, "oldest first");
        assert_eq!(s.send(0, frame(mac_for(1), mac_for(0), 0)).1, vec![1]);
    }
}
