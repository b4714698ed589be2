//! Checking a network recording's frames across its traces: every frame a VM's trace says
//! it received (`NetRx`) must be, byte for byte, the frame the manifest says its sender's
//! trace sent (`NetTx`), at the points the manifest names. Each trace's own replay checks
//! the VM against its log; this checks the logs against each other.

use std::collections::{BTreeMap, BTreeSet};

use super::manifest::NetworkManifestV1;
use crate::events::{Event, EventKind};

/// Where two frames' bytes first differ, for messages.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("byte {i} is {:#04x} where the sender sent {:#04x}", a[i], b[i]),
        None => format!("{} bytes where the sender sent {}", a.len(), b.len()),
    }
}

/// Each frame's bytes as its sender's trace logged them (`events[v]` is VM v's log): VM
/// v's n-th `NetTx` is the n-th frame the manifest lists from v, as [`check_frames`]
/// checks. Frames without a logged send are missing.
pub fn sent_bytes<'a>(m: &NetworkManifestV1, events: &[&'a [Event]]) -> BTreeMap<u64, &'a [u8]> {
    let mut out = BTreeMap::new();
    for (v, log) in events.iter().enumerate() {
        let sent = log.iter().filter_map(|e| match &e.kind {
            EventKind::NetTx { data } => Some(data.as_slice()),
            _ => None,
        });
        let listed = m.frames.iter().filter(|f| f.from as usize == v);
        for (data, f) in sent.zip(listed) {
            out.insert(f.id, data);
        }
    }
    out
}

/// Every disagreement between the manifest and the VMs' event logs (`events[v]` is VM v's
/// log), one message each naming the frame; empty when they agree.
pub fn check_frames(m: &NetworkManifestV1, events: &[&[Event]]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut sent_bytes: BTreeMap<u64, &[u8]> = BTreeMap::new();
    for (v, log) in events.iter().enumerate() {
        let sent: Vec<(u64, &[u8])> = log
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::NetTx { data } => Some((e.icount, data.as_slice())),
                _ => None,
            })
            .collect();
        let listed: Vec<_> = m.frames.iter().filter(|f| f.from as usize == v).collect();
        if sent.len() != listed.len() {
            problems.push(format!(
                "VM {v}'s trace sent {} frames, the manifest lists {} from it",
                sent.len(),
                listed.len()
            ));
        }
        for ((at, data), f) in sent.iter().zip(&listed) {
            if *at != f.sent_at || data.len() != f.len as usize {
                problems.push(format!(
                    "frame {}: the manifest says VM {v} sent {} bytes at icount {}, its trace sent {} bytes at icount {at}",
                    f.id,
                    f.len,
                    f.sent_at,
                    data.len()
                ));
            }
            sent_bytes.insert(f.id, data);
        }
    }
    let mut received = BTreeSet::new();
    for (r, log) in events.iter().enumerate() {
        for e in log.iter() {
            let EventKind::NetRx { frame, data } = &e.kind else { continue };
            received.insert((*frame, r as u32));
            let Some(f) = m.frames.iter().find(|f| f.id == *frame) else {
                problems.push(format!(
                    "frame {frame}: VM {r} received it at icount {}, the manifest has no such frame",
                    e.icount
                ));
                continue;
            };
            match f.to.iter().find(|d| d.vm as usize == r) {
                Some(d) if d.at == Some(e.icount) => {}
                Some(d) => problems.push(format!(
                    "frame {frame}: VM {r} received it at icount {}, the manifest says {}",
                    e.icount,
                    d.at.map_or("never".into(), |a| format!("at icount {a}"))
                )),
                None => {
                    problems.push(format!("frame {frame}: VM {r} received it, the manifest does not send it there"))
                }
            }
            match sent_bytes.get(frame) {
                Some(s) if *s == data.as_slice() => {}
                Some(s) => problems.push(format!(
                    "frame {frame}: VM {r} received bytes that differ from what VM {} sent: {}",
                    f.from,
                    first_difference(data, s)
                )),
                None => problems.push(format!("frame {frame}: VM {r} received it, no trace sent it")),
            }
        }
    }
    for f in &m.frames {
        for d in f.to.iter().filter(|d| d.at.is_some()) {
            if !received.contains(&(f.id, d.vm)) {
                problems
                    .push(format!("frame {}: the manifest says VM {} received it, its trace never did", f.id, d.vm));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::manifest::tests::sample;

    fn ev(icount: u64, kind: EventKind) -> Event {
        Event { icount, kind }
    }

    /// The logs the sample manifest describes: frame n is 60 bytes of n.
    fn logs() -> (Vec<Event>, Vec<Event>) {
        let data = |n: u8| vec![n; 60];
        let a = vec![
            ev(100, EventKind::NetTx { data: data(0) }),
            ev(230, EventKind::NetRx { frame: 1, data: data(1) }),
            ev(300, EventKind::NetTx { data: data(2) }),
        ];
        let b =
            vec![ev(150, EventKind::NetRx { frame: 0, data: data(0) }), ev(170, EventKind::NetTx { data: data(1) })];
        (a, b)
    }

    #[test]
    fn agreeing_logs_pass() {
        let (a, b) = logs();
        assert_eq!(check_frames(&sample(), &[&a, &b]), Vec::<String>::new());
    }

    #[test]
    fn a_flipped_byte_names_the_frame_and_the_byte() {
        let (a, mut b) = logs();
        if let EventKind::NetRx { data, .. } = &mut b[0].kind {
            data[7] ^= 0xff;
        }
        let p = check_frames(&sample(), &[&a, &b]);
        assert_eq!(p, vec!["frame 0: VM 1 received bytes that differ from what VM 0 sent: byte 7 is 0xff where the sender sent 0x00"]);
    }

    #[test]
    fn points_that_differ_from_the_manifest_are_named() {
        let (a, b) = logs();
        let mut m = sample();
        m.frames[1].to[0].at = Some(231);
        m.frames[2].len = 61;
        let p = check_frames(&m, &[&a, &b]);
        assert!(
            p.iter().any(|s| s.starts_with("frame 1: VM 0 received it at icount 230, the manifest says at icount 231")),
            "{p:?}"
        );
        assert!(p.iter().any(|s| s.starts_with("frame 2: the manifest says VM 0 sent 61 bytes")), "{p:?}");
        assert!(check_frames(&m, &[&a, &[]]).len() >= 3);
    }
}
