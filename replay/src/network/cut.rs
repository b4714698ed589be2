//! The causally consistent cut through one VM's point (`ttvm snapshot DIR --at VM:ICOUNT`).
//!
//! A cut gives every VM a position; it is consistent when no frame is received before the
//! cut but sent after it (Chandy and Lamport; VNsnap's condition for a network of VMs).
//! The cut through (vm, icount) keeps that VM exactly there and every other VM as late as
//! possible: each starts at its last step and moves back to just before any reception whose
//! frame was sent after its sender's position, which can move its own sends out of the cut
//! and so move others back in turn. Positions only decrease, so this ends; the result is
//! the latest consistent cut with the chosen VM at its point (cuts closed under union have a
//! unique latest one). Frames sent before the cut and not received before it are the
//! channel state: in flight at the cut, to be delivered again when resuming from it.

use super::manifest::NetworkManifestV1;

/// A frame in flight at a cut: sent before it, not yet received by `to` at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// The frame's switch sequence number.
    pub frame: u64,
    /// The VM it is on its way to.
    pub to: u32,
}

/// A consistent cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// Each VM's position (icount), in VM order.
    pub positions: Vec<u64>,
    /// The frames in flight, in switch order.
    pub in_flight: Vec<InFlight>,
}

/// Why no cut goes through the point asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CutError {
    /// No such VM.
    #[error("VM {vm} does not exist (the network has {count} VMs)")]
    NoSuchVm {
        /// The VM asked for.
        vm: usize,
        /// How many there are.
        count: usize,
    },
    /// Past the VM's end.
    #[error("VM {vm} ran {steps} steps; icount {icount} is past its end")]
    PastEnd {
        /// The VM.
        vm: usize,
        /// Its point.
        icount: u64,
        /// Its length.
        steps: u64,
    },
    /// The manifest's frames are not causally ordered (a VM received, before the point, a
    /// frame that depends on one it sends after it): the recording is damaged.
    #[error("frame {frame} received by VM {vm} before icount {icount} depends on what VM {vm} sends after it")]
    Acausal {
        /// The frame.
        frame: u64,
        /// The VM.
        vm: usize,
        /// Its point.
        icount: u64,
    },
}

/// The latest consistent cut that has VM `vm` at `icount` (see the module comment).
pub fn consistent_cut(m: &NetworkManifestV1, vm: usize, icount: u64) -> Result<Cut, CutError> {
    let Some(entry) = m.vms.get(vm) else { return Err(CutError::NoSuchVm { vm, count: m.vms.len() }) };
    if icount > entry.steps {
        return Err(CutError::PastEnd { vm, icount, steps: entry.steps });
    }
    let mut positions: Vec<u64> = m.vms.iter().map(|v| v.steps).collect();
    positions[vm] = icount;
    loop {
        let mut moved = false;
        for f in &m.frames {
            let sent_inside = f.sent_at < positions[f.from as usize];
            if sent_inside {
                continue;
            }
            for d in &f.to {
                let Some(at) = d.at else { continue };
                let to = d.vm as usize;
                if at < positions[to] {
                    if to == vm {
                        return Err(CutError::Acausal { frame: f.id, vm, icount });
                    }
                    // Back to just before the reception: the frame is not yet in.
                    positions[to] = at;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let in_flight = m
        .frames
        .iter()
        .filter(|f| f.sent_at < positions[f.from as usize])
        .flat_map(|f| {
            let positions = &positions;
            f.to.iter()
                .filter(move |d| d.at.is_none_or(|at| at >= positions[d.vm as usize]))
                .map(move |d| InFlight { frame: f.id, to: d.vm })
        })
        .collect();
    Ok(Cut { positions, in_flight })
}

#[cfg(test)]
mod tests {
    use super::super::manifest::tests::sample;
    use super::super::manifest::{DeliveryV1, FrameEntryV1};
    use super::*;

    /// Every reception inside the cut has its send inside the cut.
    fn is_consistent(m: &NetworkManifestV1, cut: &Cut) -> bool {
        m.frames.iter().all(|f| {
            f.to.iter().all(|d| {
                d.at.is_none_or(|at| at >= cut.positions[d.vm as usize]) || f.sent_at < cut.positions[f.from as usize]
            })
        })
    }

    #[test]
    fn a_point_before_a_send_pulls_the_receiver_back_before_the_reception() {
        let m = sample();
        // VM 0 before it sent frame 0: VM 1 must not have received it yet; nothing in flight.
        let cut = consistent_cut(&m, 0, 100).unwrap();
        assert_eq!(cut.positions, vec![100, 150]);
        assert!(cut.in_flight.is_empty());
        assert!(is_consistent(&m, &cut));
        // Just after the send: VM 1 runs to its end, so its answer (frame 1) is on its way
        // to VM 0; frame 2 is not sent yet.
        let cut = consistent_cut(&m, 0, 101).unwrap();
        assert_eq!(cut.positions, vec![101, 500]);
        assert_eq!(cut.in_flight, vec![InFlight { frame: 1, to: 0 }]);
    }

    #[test]
    fn frames_sent_but_not_received_are_in_flight() {
        let m = sample();
        // VM 1 at 160: it received frame 0 but has not answered, so VM 0 stops just before
        // the answer arrives (230), before it sends frame 2: nothing in flight.
        let cut = consistent_cut(&m, 1, 160).unwrap();
        assert_eq!(cut.positions, vec![230, 160]);
        assert!(cut.in_flight.is_empty());
        // VM 1 at its end: VM 0 runs to its end too, where frame 2 waits at the switch.
        let cut = consistent_cut(&m, 1, 500).unwrap();
        assert_eq!(cut.positions, vec![400, 500]);
        assert_eq!(cut.in_flight, vec![InFlight { frame: 2, to: 1 }]);
        // VM 0 at 200: frame 1 (sent by VM 1 at 170) has left VM 1 but not reached VM 0.
        let cut = consistent_cut(&m, 0, 200).unwrap();
        assert_eq!(cut.positions, vec![200, 500]);
        assert_eq!(cut.in_flight, vec![InFlight { frame: 1, to: 0 }]);
        assert!(is_consistent(&m, &cut));
    }

    #[test]
    fn moving_one_vm_back_cascades_through_a_chain() {
        // 0 -> 1 at (10 -> 20), 1 -> 2 at (30 -> 40): cutting VM 0 before its send pulls
        // VM 1 before the reception, so VM 1's send is out, so VM 2 goes back too.
        let mut m = sample();
        m.vms.push(m.vms[1].clone());
        let d = |vm, at| DeliveryV1 { vm, at: Some(at) };
        m.frames = vec![
            FrameEntryV1 { id: 0, from: 0, sent_at: 10, len: 60, to: vec![d(1, 20)] },
            FrameEntryV1 { id: 1, from: 1, sent_at: 30, len: 60, to: vec![d(2, 40)] },
        ];
        let cut = consistent_cut(&m, 0, 5).unwrap();
        assert_eq!(cut.positions, vec![5, 20, 40]);
        assert!(is_consistent(&m, &cut));
    }

    #[test]
    fn bad_points_are_refused() {
        let m = sample();
        assert_eq!(consistent_cut(&m, 2, 0), Err(CutError::NoSuchVm { vm: 2, count: 2 }));
        assert!(matches!(consistent_cut(&m, 0, 401), Err(CutError::PastEnd { .. })));
        // A recording where VM 0 received (at 50) an answer to what it only sends at 100.
        let mut m = sample();
        m.frames[1].to[0].at = Some(50);
        assert!(matches!(consistent_cut(&m, 0, 60), Err(CutError::Acausal { frame: 1, vm: 0, .. })));
    }

    #[test]
    fn every_cut_of_every_point_is_consistent_and_keeps_the_point() {
        let m = sample();
        for vm in 0..m.vms.len() {
            for icount in 0..=m.vms[vm].steps {
                let cut = consistent_cut(&m, vm, icount).unwrap();
                assert_eq!(cut.positions[vm], icount);
                assert!(is_consistent(&m, &cut), "{vm}:{icount} {cut:?}");
            }
        }
    }
}
