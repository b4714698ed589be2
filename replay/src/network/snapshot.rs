//! `network.ttvm-netsnap`: the manifest of a network snapshot directory
//! (`ttvm snapshot DIR --at VM:ICOUNT -o SNAP`), which `ttvm resume SNAP` reads.
//!
//! ```text
//! file := NET_SNAPSHOT_MAGIC(8) version(u32 LE) bincode(NetSnapshotManifestV1)
//! ```
//! Next to it, each VM's machine at the cut is a free-run snapshot file (format 4 on, which
//! holds the network card). The manifest names the cut (each VM's icount), the topology
//! (the VMs in switch-port order with their MACs) and the channel state: every frame in
//! flight at the cut with its bytes and its destination, which a resumed network delivers
//! before anything else. The version names the body's type, which is frozen: a change is a
//! new version type plus a conversion, and a newer version is refused by name.

use serde::{Deserialize, Serialize};

/// First 8 bytes of the manifest.
pub const NET_SNAPSHOT_MAGIC: [u8; 8] = *b"TTVMNSN\n";
/// The version this build writes and the newest it reads.
pub const NET_SNAPSHOT_VERSION: u32 = 1;
/// The manifest's file name inside a snapshot directory.
pub const NET_SNAPSHOT_FILE: &str = "network.ttvm-netsnap";

/// How a VM had already ended at its cut position (its guest stopped in its last recorded
/// step): a resumed network does not run it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedV1 {
    /// The status a single run would have exited with.
    pub status: i32,
    /// How it ended, for people.
    pub outcome: String,
}

/// One VM at the cut. Its position in [`NetSnapshotManifestV1::vms`] is its switch port.
/// In a live snapshot of a free run (`ttvm run --vm … --snapshot-every D`) nothing was
/// recorded: `icount`, `recorded_steps` and its frames' `sent_at` are 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapVmV1 {
    /// Display name (as in the recording's manifest).
    pub name: String,
    /// The kernel as given when recording.
    pub kernel: String,
    /// Its card's MAC.
    pub mac: [u8; 6],
    /// Its position at the cut: steps executed.
    pub icount: u64,
    /// Steps its recording had in all.
    pub recorded_steps: u64,
    /// Its machine's snapshot, a file name inside the directory.
    pub snapshot: String,
    /// Set when the VM had already ended at its position.
    pub ended: Option<EndedV1>,
}

/// A frame in flight at the cut: sent before it, not received by `to` before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightFrameV1 {
    /// The switch's sequence number in the recording.
    pub id: u64,
    /// The sender's position.
    pub from: u32,
    /// The sender's icount when it left its card.
    pub sent_at: u64,
    /// The VM it is on its way to.
    pub to: u32,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

/// Manifest version 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSnapshotManifestV1 {
    /// The recording directory the snapshot was cut from, for people.
    pub source: String,
    /// The point the cut goes through: (VM, icount).
    pub at: (u32, u64),
    /// The VMs in port order.
    pub vms: Vec<SnapVmV1>,
    /// The frames in flight, in switch order.
    pub in_flight: Vec<InFlightFrameV1>,
}

/// Why a snapshot manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetSnapshotError {
    /// Not a network snapshot manifest.
    #[error("not a ttvm network snapshot manifest (bad magic)")]
    BadMagic,
    /// Written by a newer ttvm.
    #[error("network snapshot version {found} is newer than this ttvm reads (up to {NET_SNAPSHOT_VERSION}); use a newer ttvm")]
    Newer {
        /// The version in the file.
        found: u32,
    },
    /// The body does not decode.
    #[error("damaged network snapshot manifest: {0}")]
    Damaged(String),
    /// It decodes but contradicts itself.
    #[error("inconsistent network snapshot manifest: {0}")]
    Inconsistent(String),
}

impl NetSnapshotManifestV1 {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = NET_SNAPSHOT_MAGIC.to_vec();
        out.extend_from_slice(&NET_SNAPSHOT_VERSION.to_le_bytes());
        // Serialising plain structs into a Vec cannot fail.
        out.extend(bincode::serialize(self).unwrap_or_default());
        out
    }

    /// Reads a manifest, refusing a damaged, newer or self-contradicting one.
    pub fn decode(bytes: &[u8]) -> Result<Self, NetSnapshotError> {
        if bytes.len() < 12 || bytes[..8] != NET_SNAPSHOT_MAGIC {
            return Err(NetSnapshotError::BadMagic);
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version == 0 {
            return Err(NetSnapshotError::Damaged("version 0".into()));
        }
        if version > NET_SNAPSHOT_VERSION {
            return Err(NetSnapshotError::Newer { found: version });
        }
        let body = &bytes[12..];
        let m: Self = bincode::deserialize(body).map_err(|e| NetSnapshotError::Damaged(e.to_string()))?;
        if bincode::serialized_size(&m).ok() != Some(body.len() as u64) {
            return Err(NetSnapshotError::Damaged("bytes after the end of the manifest".into()));
        }
        m.validate()?;
        Ok(m)
    }

    /// What `resume` relies on: the point names a VM at its position, every position is
    /// inside its recording, snapshot names are plain file names, and every frame in flight
    /// goes between two different existing VMs, was sent inside the cut, and is in order.
    pub fn validate(&self) -> Result<(), NetSnapshotError> {
        let bad = |s: String| Err(NetSnapshotError::Inconsistent(s));
        let n = self.vms.len();
        if n == 0 {
            return bad("no VMs".into());
        }
        let (vm, icount) = self.at;
        match self.vms.get(vm as usize) {
            None => return bad(format!("the cut goes through VM {vm}, which does not exist ({n} VMs)")),
            Some(v) if v.icount != icount => {
                return bad(format!("the cut goes through VM {vm} at {icount}, but VM {vm} is at {}", v.icount))
            }
            Some(_) => {}
        }
        for (i, v) in self.vms.iter().enumerate() {
            if v.icount > v.recorded_steps {
                return bad(format!("VM {i} is at icount {} past its {} steps", v.icount, v.recorded_steps));
            }
            let name = std::path::Path::new(&v.snapshot);
            if name.components().count() != 1 || name.file_name().is_none() {
                return bad(format!("VM {i}'s snapshot {:?} is not a file name inside the directory", v.snapshot));
            }
        }
        for (k, f) in self.in_flight.iter().enumerate() {
            if k > 0 && f.id < self.in_flight[k - 1].id {
                return bad(format!("frame {} comes after frame {}", f.id, self.in_flight[k - 1].id));
            }
            let Some(sender) = self.vms.get(f.from as usize) else {
                return bad(format!("frame {} was sent by VM {}, which does not exist", f.id, f.from));
            };
            if f.to as usize >= n || f.to == f.from {
                return bad(format!("frame {} goes to VM {}, which is not another VM of the network", f.id, f.to));
            }
            // A VM of a live snapshot of a free run (`ttvm run --vm … --snapshot-every`) was
            // not recorded (no steps): it has no icounts to order its frames by.
            if sender.recorded_steps > 0 && f.sent_at >= sender.icount {
                return bad(format!("frame {} was sent at icount {}, after VM {}'s cut", f.id, f.sent_at, f.from));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NetSnapshotManifestV1 {
        let vm = |name: &str, icount, ended: Option<EndedV1>| SnapVmV1 {
            name: name.into(),
            kernel: name.into(),
            mac: [0x52, 0x54, 0, 0x74, 0x74, 1],
            icount,
            recorded_steps: 1000,
            snapshot: format!("{name}.snap"),
            ended,
        };
        NetSnapshotManifestV1 {
            source: "net".into(),
            at: (0, 500),
            vms: vec![vm("a", 500, None), vm("b", 1000, Some(EndedV1 { status: 0, outcome: "exited 0".into() }))],
            in_flight: vec![InFlightFrameV1 { id: 3, from: 1, sent_at: 900, to: 0, data: vec![0xaa; 60] }],
        }
    }

    #[test]
    fn the_encoding_is_pinned() {
        let m = NetSnapshotManifestV1 {
            source: "d".into(),
            at: (0, 7),
            vms: vec![SnapVmV1 {
                name: "p".into(),
                kernel: "k".into(),
                mac: [1, 2, 3, 4, 5, 6],
                icount: 7,
                recorded_steps: 9,
                snapshot: "s".into(),
                ended: Some(EndedV1 { status: -1, outcome: "o".into() }),
            }],
            in_flight: vec![],
        };
        let bytes = m.encode();
        let mut expected = b"TTVMNSN\n".to_vec();
        expected.extend([1, 0, 0, 0]); // version
        expected.extend([1, 0, 0, 0, 0, 0, 0, 0, b'd']); // source
        expected.extend(0u32.to_le_bytes()); // at.0
        expected.extend(7u64.to_le_bytes()); // at.1
        expected.extend([1, 0, 0, 0, 0, 0, 0, 0]); // one VM
        for s in ["p", "k"] {
            expected.extend([1, 0, 0, 0, 0, 0, 0, 0]);
            expected.extend(s.as_bytes());
        }
        expected.extend([1, 2, 3, 4, 5, 6]);
        expected.extend(7u64.to_le_bytes());
        expected.extend(9u64.to_le_bytes());
        expected.extend([1, 0, 0, 0, 0, 0, 0, 0, b's']);
        expected.extend([1, 0xff, 0xff, 0xff, 0xff]); // Some(status -1)
        expected.extend([1, 0, 0, 0, 0, 0, 0, 0, b'o']);
        expected.extend([0u8; 8]); // no frames
        assert_eq!(bytes, expected);
        assert_eq!(NetSnapshotManifestV1::decode(&bytes).unwrap(), m);

        // A frame: id, from, sent_at, to, then its bytes with their length.
        let f = InFlightFrameV1 { id: 5, from: 1, sent_at: 2, to: 0, data: vec![9, 8] };
        let mut expected = 5u64.to_le_bytes().to_vec();
        expected.extend(1u32.to_le_bytes());
        expected.extend(2u64.to_le_bytes());
        expected.extend(0u32.to_le_bytes());
        expected.extend([2, 0, 0, 0, 0, 0, 0, 0, 9, 8]);
        assert_eq!(bincode::serialize(&f).unwrap(), expected);
    }

    #[test]
    fn a_manifest_round_trips() {
        let m = sample();
        assert_eq!(NetSnapshotManifestV1::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn bad_files_are_refused_by_name() {
        let good = sample().encode();
        assert!(matches!(NetSnapshotManifestV1::decode(b"TTVMNET\n\x01\0\0\0"), Err(NetSnapshotError::BadMagic)));
        let mut newer = good.clone();
        newer[8] = 2;
        let err = NetSnapshotManifestV1::decode(&newer).unwrap_err();
        assert!(err.to_string().contains("version 2 is newer than this ttvm reads (up to 1)"), "{err}");
        let err = NetSnapshotManifestV1::decode(&good[..good.len() - 3]).unwrap_err();
        assert!(matches!(err, NetSnapshotError::Damaged(_)), "{err}");
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(NetSnapshotManifestV1::decode(&longer), Err(NetSnapshotError::Damaged(_))));

        let refused = |edit: &dyn Fn(&mut NetSnapshotManifestV1), what: &str| {
            let mut m = sample();
            edit(&mut m);
            let err = NetSnapshotManifestV1::decode(&m.encode()).unwrap_err();
            assert!(err.to_string().contains(what), "{what}: {err}");
        };
        refused(&|m| m.at = (2, 500), "VM 2, which does not exist");
        refused(&|m| m.at = (0, 499), "but VM 0 is at 500");
        refused(&|m| m.vms[1].snapshot = "../x.snap".into(), "not a file name");
        refused(&|m| m.vms[1].icount = 1001, "past its 1000 steps");
        refused(&|m| m.in_flight[0].to = 1, "not another VM");
        refused(&|m| m.in_flight[0].sent_at = 1000, "after VM 1's cut");
        refused(&|m| m.vms.clear(), "no VMs");
    }

    #[test]
    fn a_live_snapshot_of_a_free_run_has_no_icounts() {
        let mut m = sample();
        m.at = (0, 0);
        for v in &mut m.vms {
            (v.icount, v.recorded_steps) = (0, 0);
        }
        m.in_flight[0].sent_at = 0;
        assert_eq!(NetSnapshotManifestV1::decode(&m.encode()).unwrap(), m);
        // A recorded sender still orders its frames by icount.
        m.vms[1].recorded_steps = 10;
        assert!(NetSnapshotManifestV1::decode(&m.encode()).unwrap_err().to_string().contains("after VM 1's cut"));
    }
}
