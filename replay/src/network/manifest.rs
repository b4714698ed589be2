//! `network.ttvm-net`: the manifest of a network recording directory.
//!
//! ```text
//! file := MANIFEST_MAGIC(8) version(u32 LE) bincode(NetworkManifestV1)
//! ```
//! The version names the type of the body, which is frozen: a change is a new version type
//! plus a conversion, and every version stays readable. A newer version is refused by name.

use serde::{Deserialize, Serialize};

/// First 8 bytes of a manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"TTVMNET\n";
/// The version this build writes.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name inside a recording directory.
pub const MANIFEST_FILE: &str = "network.ttvm-net";

/// One VM of the network (its position is its index in [`NetworkManifestV1::vms`], which
/// is also its switch port).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmEntryV1 {
    /// Display name (the kernel's name or path, made unique by the position).
    pub name: String,
    /// The kernel as given on the command line.
    pub kernel: String,
    /// Its trace, a file name inside the directory.
    pub trace: String,
    /// The MAC its card had.
    pub mac: [u8; 6],
    /// Steps it executed.
    pub steps: u64,
    /// Its exit status, if the guest exited by itself.
    pub exit_status: Option<i32>,
    /// How it ended, for people.
    pub outcome: String,
}

/// Where a frame went: the VM it was queued for and the icount at which that VM's card
/// received it (`None`: still at the switch when the recording ended).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryV1 {
    /// The receiving VM's position.
    pub vm: u32,
    /// The icount of the step boundary at which it entered the VM.
    pub at: Option<u64>,
}

/// One frame through the switch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameEntryV1 {
    /// The switch's sequence number.
    pub id: u64,
    /// The sending VM's position.
    pub from: u32,
    /// The icount of the step boundary at which it left the sender's card.
    pub sent_at: u64,
    /// Its length in bytes.
    pub len: u32,
    /// The VMs the switch queued it for (none: dropped).
    pub to: Vec<DeliveryV1>,
}

/// Manifest version 1: the topology (one switch, the VMs on its ports) and every frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkManifestV1 {
    /// The VMs, in position order.
    pub vms: Vec<VmEntryV1>,
    /// The frames, in switch order (ascending `id`).
    pub frames: Vec<FrameEntryV1>,
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not a manifest at all.
    #[error("not a ttvm network manifest (bad magic)")]
    BadMagic,
    /// Written by a newer ttvm.
    #[error("manifest version {found} is newer than this ttvm reads (up to {MANIFEST_VERSION}); upgrade ttvm")]
    Newer {
        /// The version in the file.
        found: u32,
    },
    /// The body does not decode.
    #[error("damaged manifest: {0}")]
    Damaged(String),
    /// It decodes but contradicts itself.
    #[error("inconsistent manifest: {0}")]
    Inconsistent(String),
}

impl NetworkManifestV1 {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MANIFEST_MAGIC.to_vec();
        out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        // Serialising plain structs into a Vec cannot fail.
        out.extend(bincode::serialize(self).unwrap_or_default());
        out
    }

    /// Reads a manifest, refusing a damaged, newer or self-contradicting one.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() < 12 || bytes[..8] != MANIFEST_MAGIC {
            return Err(ManifestError::BadMagic);
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version > MANIFEST_VERSION || version == 0 {
            return Err(ManifestError::Newer { found: version });
        }
        let body = &bytes[12..];
        let m: Self = bincode::deserialize(body).map_err(|e| ManifestError::Damaged(e.to_string()))?;
        if bincode::serialized_size(&m).ok() != Some(body.len() as u64) {
            return Err(ManifestError::Damaged("bytes after the end of the manifest".into()));
        }
        m.validate()?;
        Ok(m)
    }

    /// Checks what the rest of ttvm relies on: positions in range, frames in switch order,
    /// a frame received after it was sent only in the sense of existing VMs, never by its
    /// own sender, and no point past a VM's last step.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let bad = |s: String| Err(ManifestError::Inconsistent(s));
        let n = self.vms.len();
        for (i, f) in self.frames.iter().enumerate() {
            if i > 0 && f.id <= self.frames[i - 1].id {
                return bad(format!("frame {} comes after frame {}", f.id, self.frames[i - 1].id));
            }
            let Some(sender) = self.vms.get(f.from as usize) else {
                return bad(format!("frame {} was sent by VM {}, which does not exist ({n} VMs)", f.id, f.from));
            };
            if f.sent_at > sender.steps {
                return bad(format!("frame {} was sent at icount {} after VM {} ended", f.id, f.sent_at, f.from));
            }
            for d in &f.to {
                let Some(receiver) = self.vms.get(d.vm as usize) else {
                    return bad(format!("frame {} went to VM {}, which does not exist", f.id, d.vm));
                };
                if d.vm == f.from {
                    return bad(format!("frame {} went back to its sender", f.id));
                }
                if d.at.is_some_and(|at| at > receiver.steps) {
                    return bad(format!("frame {} was received after VM {} ended", f.id, d.vm));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two VMs: 0 sends frame 0 at 100, 1 receives it at 150 and answers (frame 1) at 170,
    /// which 0 receives at 230; frame 2 from 0 at 300 is still at the switch at the end.
    pub(crate) fn sample() -> NetworkManifestV1 {
        let vm = |name: &str, steps| VmEntryV1 {
            name: name.into(),
            kernel: name.into(),
            trace: format!("{name}.ttvm"),
            mac: [0x52, 0x54, 0, 0x74, 0x74, 1],
            steps,
            exit_status: Some(0),
            outcome: "exited 0".into(),
        };
        let frame = |id, from, sent_at, to: u32, at| FrameEntryV1 {
            id,
            from,
            sent_at,
            len: 60,
            to: vec![DeliveryV1 { vm: to, at }],
        };
        NetworkManifestV1 {
            vms: vec![vm("a", 400), vm("b", 500)],
            frames: vec![frame(0, 0, 100, 1, Some(150)), frame(1, 1, 170, 0, Some(230)), frame(2, 0, 300, 1, None)],
        }
    }

    #[test]
    fn the_encoding_is_pinned() {
        let m = NetworkManifestV1 {
            vms: vec![VmEntryV1 {
                name: "p".into(),
                kernel: "k".into(),
                trace: "t".into(),
                mac: [1, 2, 3, 4, 5, 6],
                steps: 7,
                exit_status: Some(-1),
                outcome: "o".into(),
            }],
            frames: vec![FrameEntryV1 { id: 9, from: 0, sent_at: 3, len: 60, to: vec![] }],
        };
        let bytes = m.encode();
        let mut expected = b"TTVMNET\n".to_vec();
        expected.extend([1, 0, 0, 0]); // version
        expected.extend([1, 0, 0, 0, 0, 0, 0, 0]); // one VM
        for s in ["p", "k", "t"] {
            expected.extend([1, 0, 0, 0, 0, 0, 0, 0]);
            expected.extend(s.as_bytes());
        }
        expected.extend([1, 2, 3, 4, 5, 6]);
        expected.extend(7u64.to_le_bytes());
        expected.extend([1, 0xff, 0xff, 0xff, 0xff]); // Some(-1)
        expected.extend([1, 0, 0, 0, 0, 0, 0, 0, b'o']);
        expected.extend([1, 0, 0, 0, 0, 0, 0, 0]); // one frame
        expected.extend(9u64.to_le_bytes());
        expected.extend(0u32.to_le_bytes());
        expected.extend(3u64.to_le_bytes());
        expected.extend(60u32.to_le_bytes());
        expected.extend([0u8; 8]); // no deliveries
        assert_eq!(bytes, expected);
        assert_eq!(NetworkManifestV1::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn bad_files_are_refused_by_name() {
        let good = sample().encode();
        assert!(matches!(NetworkManifestV1::decode(b"TTVM"), Err(ManifestError::BadMagic)));
        let mut newer = good.clone();
        newer[8] = 2;
        let err = NetworkManifestV1::decode(&newer).unwrap_err();
        assert!(err.to_string().contains("version 2 is newer"), "{err}");
        let err = NetworkManifestV1::decode(&good[..good.len() - 3]).unwrap_err();
        assert!(matches!(err, ManifestError::Damaged(_)), "{err}");
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(NetworkManifestV1::decode(&longer), Err(ManifestError::Damaged(_))));
        let mut m = sample();
        m.frames[1].to[0].vm = 1;
        let err = NetworkManifestV1::decode(&m.encode()).unwrap_err();
        assert!(err.to_string().contains("went back to its sender"), "{err}");
        let mut m = sample();
        m.frames[0].to[0].at = Some(501);
        assert!(NetworkManifestV1::decode(&m.encode()).unwrap_err().to_string().contains("after VM 1 ended"));
        let mut m = sample();
        m.frames.swap(0, 1);
        assert!(NetworkManifestV1::decode(&m.encode()).unwrap_err().to_string().contains("comes after"));
    }
}
