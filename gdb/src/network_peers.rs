//! One VM of a network recording served next to the others (`ttvm replay DIR --gdb PORT`,
//! one gdb port per VM): `monitor goto` on one VM moves every other VM to the causally
//! consistent cut through the new position.
//!
//! Each VM's timeline lives on its own server thread (a timeline owns a KVM VM and is not
//! shared), so a move cannot be carried out by the VM that asked for it. It is left as a
//! request for the other VMs' threads instead, which carry it out before they handle their
//! gdb's next packet, or when a gdb first connects. To the user on that other gdb this is
//! the same as having moved at once: every question it asks is answered at the new
//! position (after `maintenance flush register-cache`, as after any `monitor goto`). A VM
//! whose gdb is in the middle of a run moves when that run stops.
//!
//! The cut is `ttvm_replay::network::cut::consistent_cut`: the latest one that keeps the
//! moving VM at its new position, the same rule `ttvm snapshot DIR --at` uses.

use std::fmt::Write;
use std::sync::{Arc, Mutex};

use ttvm_replay::network::cut::consistent_cut;
use ttvm_replay::network::manifest::NetworkManifestV1;

use crate::target::TtvmTarget;

/// What the VMs' server threads share: the manifest and each VM's pending move.
#[derive(Debug)]
struct Shared {
    manifest: NetworkManifestV1,
    /// For each VM, the icount another VM's `monitor goto` asked it to move to.
    moves: Vec<Mutex<Option<u64>>>,
}

/// One VM's handle on its network (give each VM's target its own).
#[derive(Clone, Debug)]
pub struct NetworkPeers {
    me: usize,
    shared: Arc<Shared>,
}

impl NetworkPeers {
    /// One handle per VM of `manifest`, in VM order.
    pub fn for_network(manifest: NetworkManifestV1) -> Vec<NetworkPeers> {
        let moves = manifest.vms.iter().map(|_| Mutex::new(None)).collect();
        let shared = Arc::new(Shared { manifest, moves });
        (0..shared.manifest.vms.len()).map(|me| NetworkPeers { me, shared: shared.clone() }).collect()
    }

    /// This VM's position in the network.
    pub fn vm(&self) -> usize {
        self.me
    }

    /// This VM's name.
    pub fn name(&self) -> &str {
        self.shared.manifest.vms.get(self.me).map_or("?", |v| v.name.as_str())
    }

    fn slot(&self, vm: usize) -> std::sync::MutexGuard<'_, Option<u64>> {
        // A thread that panicked while holding the lock left a plain Option behind.
        self.shared.moves[vm].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The move another VM asked this one to make, taken (it is made once).
    fn take_move(&self) -> Option<u64> {
        self.slot(self.me).take()
    }

    /// Asks every other VM to move to the consistent cut through this VM at `icount`; the
    /// lines to show the user, one per VM.
    fn move_others(&self, icount: u64) -> String {
        let m = &self.shared.manifest;
        let cut = match consistent_cut(m, self.me, icount) {
            Ok(c) => c,
            Err(e) => return format!("error: the other VMs stay where they are: {e}"),
        };
        let mut out = format!("the consistent cut through VM {} ({}) at icount {icount}:", self.me, self.name());
        for (vm, &at) in cut.positions.iter().enumerate() {
            if vm == self.me {
                continue;
            }
            *self.slot(vm) = Some(at);
            let _ = write!(out, "\n  VM {vm} ({}) moves to icount {at}", m.vms[vm].name);
        }
        let in_flight: Vec<String> = cut.in_flight.iter().map(|f| format!("#{} to VM {}", f.frame, f.to)).collect();
        if in_flight.is_empty() {
            out.push_str("\n  no frame is in flight at the cut");
        } else {
            let _ = write!(out, "\n  frames in flight at the cut: {}", in_flight.join(", "));
        }
        out.push_str("\n  (each VM moves before its gdb's next request; refresh its view there too)");
        out
    }
}

impl TtvmTarget<'_> {
    /// After this VM moved to `icount` by `monitor goto`: moves the others to the cut.
    pub(crate) fn moved_in_network(&self, icount: u64) -> Option<String> {
        self.peers.as_ref().map(|p| p.move_others(icount))
    }

    /// Carries out a move another VM asked for, if any (called before each gdb request).
    pub fn apply_network_move(&mut self) {
        let Some(at) = self.peers.as_ref().and_then(NetworkPeers::take_move) else { return };
        let (vm, name) = self.peers.as_ref().map(|p| (p.vm(), p.name().to_string())).unwrap_or_default();
        match self.tl.seek(at) {
            Ok(_) => eprintln!("ttvm: VM {vm} ({name}) moved to icount {at}, the consistent cut"),
            Err(e) => {
                let msg = format!("moving to the consistent cut at icount {at} failed: {e}");
                eprintln!("ttvm: VM {vm} ({name}): {msg}");
                self.last_error = Some(msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ttvm_replay::network::manifest::{DeliveryV1, FrameEntryV1, VmEntryV1};

    fn two_vms() -> NetworkManifestV1 {
        let vm = |name: &str, steps| VmEntryV1 {
            name: name.into(),
            kernel: name.into(),
            trace: format!("{name}.ttvm"),
            mac: [0; 6],
            steps,
            exit_status: Some(0),
            outcome: "exit 0".into(),
        };
        // Frame 0: VM 0 at 100 → VM 1 at 200; frame 1: VM 1 at 300 → VM 0 at 400.
        let frame = |id, from, sent_at, to, at| FrameEntryV1 {
            id,
            from,
            sent_at,
            len: 60,
            to: vec![DeliveryV1 { vm: to, at: Some(at) }],
        };
        NetworkManifestV1 {
            vms: vec![vm("a", 1000), vm("b", 1000)],
            frames: vec![frame(0, 0, 100, 1, 200), frame(1, 1, 300, 0, 400)],
        }
    }

    #[test]
    fn a_move_is_left_for_the_other_vms_once() {
        let peers = NetworkPeers::for_network(two_vms());
        // VM 0 before it sent frame 0: VM 1 must not have received it.
        let text = peers[0].move_others(50);
        assert!(text.contains("VM 1 (b) moves to icount 200"), "{text}");
        assert!(text.contains("no frame is in flight"), "{text}");
        assert_eq!(peers[1].take_move(), Some(200));
        assert_eq!(peers[1].take_move(), None, "a move is made once");
        assert_eq!(peers[0].take_move(), None, "the VM that moved has nothing to do");
        // VM 0 after it sent frame 0 but before frame 1 arrived: frame 1 is received after
        // the cut, so VM 1 may stay at its end, and frame 1 is in flight.
        let text = peers[0].move_others(150);
        assert!(text.contains("VM 1 (b) moves to icount 1000"), "{text}");
        assert!(text.contains("frames in flight at the cut: #1 to VM 0"), "{text}");
    }

    #[test]
    fn a_point_past_the_end_moves_nobody() {
        let peers = NetworkPeers::for_network(two_vms());
        let text = peers[1].move_others(5000);
        assert!(text.starts_with("error: the other VMs stay where they are"), "{text}");
        assert_eq!(peers[0].take_move(), None);
    }
}
