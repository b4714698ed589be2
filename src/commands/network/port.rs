//! The switch shared by the VM threads of `ttvm run`: the plain [`Switch`] behind a mutex,
//! and a condition variable so a halted VM wakes as soon as a frame arrives for it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ttvm_vmm::devices::virtio_net::link::NetLink;
use ttvm_vmm::devices::virtio_net::switch::{Switch, SwitchStats, SwitchedFrame};

/// The switch and its wake-up.
#[derive(Debug)]
pub struct SharedSwitch {
    switch: Mutex<Switch>,
    arrived: Condvar,
    /// Each frame's id and the ports it was queued for (a recording's manifest lists them).
    targets: Mutex<Vec<(u64, Vec<usize>)>>,
}

impl SharedSwitch {
    /// A switch with `ports` ports.
    pub fn new(ports: usize) -> Arc<Self> {
        Arc::new(Self {
            switch: Mutex::new(Switch::new(ports)),
            arrived: Condvar::new(),
            targets: Mutex::new(Vec::new()),
        })
    }

    fn note_targets(&self, id: u64, to: Vec<usize>) {
        self.targets.lock().unwrap_or_else(|p| p.into_inner()).push((id, to));
    }

    /// Every frame sent so far: its id and the ports it was queued for.
    pub fn targets(&self) -> Vec<(u64, Vec<usize>)> {
        let mut t = self.targets.lock().unwrap_or_else(|p| p.into_inner()).clone();
        t.sort_by_key(|(id, _)| *id);
        t
    }

    fn lock(&self) -> MutexGuard<'_, Switch> {
        // A VM thread that panicked holding the lock left a consistent switch (every
        // method finishes its update before returning): keep going.
        self.switch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a frame that was in flight to port `to` when the network was snapshotted back
    /// in the channel, ahead of anything sent from now on; false if `to` cannot take it.
    pub fn preload(&self, from: usize, to: usize, data: Vec<u8>) -> bool {
        let id = self.lock().enqueue(from, to, data);
        if let Some(id) = id {
            self.note_targets(id, vec![to]);
        }
        id.is_some()
    }

    /// The frames waiting at the ports, as (port, frame): with every VM paused, exactly
    /// the frames in flight.
    pub fn in_flight(&self) -> Vec<(usize, SwitchedFrame)> {
        self.lock().queued()
    }

    /// Counts so far.
    pub fn stats(&self) -> SwitchStats {
        self.lock().stats()
    }
}

/// One VM's port.
#[derive(Debug)]
pub struct Port {
    /// The switch.
    pub shared: Arc<SharedSwitch>,
    /// The VM's position.
    pub index: usize,
}

impl NetLink for Port {
    fn send(&mut self, frame: Vec<u8>) -> u64 {
        let (id, to) = self.shared.lock().send(self.index, frame);
        if !to.is_empty() {
            self.shared.arrived.notify_all();
        }
        self.shared.note_targets(id, to);
        id
    }

    fn has_frame(&self) -> bool {
        self.shared.lock().has_frame(self.index)
    }

    fn oldest_id(&self) -> Option<u64> {
        self.shared.lock().oldest_id(self.index)
    }

    fn take(&mut self) -> Option<SwitchedFrame> {
        self.shared.lock().take(self.index)
    }

    fn wait(&self, timeout: Duration) {
        let guard = self.shared.lock();
        if guard.has_frame(self.index) {
            return;
        }
        let _ = self.shared.arrived.wait_timeout_while(guard, timeout, |s| !s.has_frame(self.index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ttvm_vmm::devices::virtio_net::mac_for;

    #[test]
    fn a_frame_sent_on_one_port_wakes_and_reaches_the_other() {
        let shared = SharedSwitch::new(2);
        let mut a = Port { shared: shared.clone(), index: 0 };
        let mut b = Port { shared: shared.clone(), index: 1 };
        let waiter = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            b.wait(Duration::from_secs(10));
            (started.elapsed(), b.take())
        });
        std::thread::sleep(Duration::from_millis(20));
        let mut frame = mac_for(1).to_vec();
        frame.extend_from_slice(&mac_for(0));
        frame.extend_from_slice(&[0x88, 0xb5, 42]);
        a.send(frame.clone());
        let (waited, got) = waiter.join().unwrap();
        assert!(waited < Duration::from_secs(5), "woken by the frame, not the timeout: {waited:?}");
        assert_eq!(got.map(|f| (f.from, f.data)), Some((0, frame)));
        assert!(!a.has_frame());
        assert_eq!(shared.stats().sent, 1);
    }
}
