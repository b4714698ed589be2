//! `monitor frames`: for a VM's trace in a network recording (`ttvm record --vm … -o DIR`),
//! the frames around the current position with both ends: what this VM sent (when, to
//! whom, when each receiver got it) and what it received (when, from whom, sent when).
//!
//! The frames come from the manifest next to the trace (`network.ttvm-net`), which holds
//! every frame's send and delivery points; the trace itself is replayed alone, as any
//! trace, so nothing here moves the position.

use std::fmt::Write;

use ttvm_replay::network::manifest::{NetworkManifestV1, MANIFEST_FILE};

use crate::target::TtvmTarget;

/// Frames shown before and after the current position.
const AROUND: usize = 6;

/// One frame as this VM saw it: its own icount, and the line describing it.
struct Seen {
    at: u64,
    text: String,
}

impl TtvmTarget<'_> {
    /// `monitor frames`.
    pub(crate) fn frames(&self) -> String {
        let rec = self.tl.recording();
        let Some(path) = rec.path.clone() else {
            return "error: this replay does not know its trace file, so it cannot find its network".into();
        };
        let manifest_path = path.with_file_name(MANIFEST_FILE);
        let bytes = match std::fs::read(&manifest_path) {
            Ok(b) => b,
            Err(_) => {
                return format!("{} is not part of a network recording: no {MANIFEST_FILE} next to it", path.display())
            }
        };
        let m = match NetworkManifestV1::decode(&bytes) {
            Ok(m) => m,
            Err(e) => return format!("error: {}: {e}", manifest_path.display()),
        };
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(me) = m.vms.iter().position(|v| v.trace == file) else {
            return format!("error: {} does not list {file}", manifest_path.display());
        };
        let name = |vm: u32| m.vms.get(vm as usize).map_or("?", |v| v.name.as_str());
        let mut seen = Vec::new();
        for f in &m.frames {
            if f.from as usize == me {
                let ends: Vec<String> =
                    f.to.iter()
                        .map(|d| match d.at {
                            Some(at) => format!("VM {} ({}) received it at icount {at}", d.vm, name(d.vm)),
                            None => format!("VM {} ({}) never took it", d.vm, name(d.vm)),
                        })
                        .collect();
                let text = format!("sent frame #{} ({} bytes); {}", f.id, f.len, ends.join(", "));
                seen.push(Seen { at: f.sent_at, text });
            }
            for d in f.to.iter().filter(|d| d.vm as usize == me) {
                if let Some(at) = d.at {
                    let text = format!(
                        "received frame #{} ({} bytes), sent by VM {} ({}) at icount {}",
                        f.id,
                        f.len,
                        f.from,
                        name(f.from),
                        f.sent_at
                    );
                    seen.push(Seen { at, text });
                }
            }
        }
        seen.sort_by_key(|s| s.at);
        let now = self.tl.icount();
        let split = seen.partition_point(|s| s.at < now);
        let from = split.saturating_sub(AROUND);
        let to = (split + AROUND).min(seen.len());
        let mut out = format!(
            "VM {me} ({}) of {}: {} frames in its history; around icount {now}:\n",
            m.vms[me].name,
            manifest_path.parent().map_or_else(String::new, |p| p.display().to_string()),
            seen.len()
        );
        for (i, s) in seen.iter().enumerate().take(to).skip(from) {
            if i == split {
                let _ = writeln!(out, "  -- now: icount {now}");
            }
            let _ = writeln!(out, "  icount {:>10}  {}", s.at, s.text);
        }
        if split == to {
            let _ = writeln!(out, "  -- now: icount {now}");
        }
        out
    }
}
