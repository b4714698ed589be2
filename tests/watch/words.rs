//! Words to watch in a recorded trace, found from its recorded page versions (shared by
//! `tests/watch_skip.rs` and `tests/gdb_watch.rs`). The sample kernels identity-map their
//! memory, so a guest-physical word is watched at the same virtual address.
#![allow(dead_code)]

use std::collections::HashMap;
use std::rc::Rc;

use ttvm_replay::mem_access::AccessDecoder;
use ttvm_replay::recording::Recording;
use ttvm_replay::replay::{ReplaySession, ReplayStep};
use ttvm_replay::stepping::host_signature;

/// The checkpoints whose interval wrote frame `f` (`k` for the interval ending at `k`).
pub fn written(rec: &Recording, f: u32) -> Vec<usize> {
    (1..rec.checkpoints.len()).filter(|&k| rec.pages.written_before(k as u32).is_some_and(|w| w.contains(f))).collect()
}

fn page_at(rec: &Recording, f: u32, k: usize) -> Vec<u8> {
    match rec.pages.version_at(f, k as u32) {
        Some(blob) => rec.page(blob).unwrap().to_vec(),
        None => vec![0u8; 4096],
    }
}

/// A word of a page last written in the first half of the history, whose value that last
/// writing interval changed: (the checkpoint ending that interval, the word's address).
/// A write watchpoint on it fires last in that interval.
pub fn changed_far_back(rec: &Recording) -> (usize, u64) {
    let length = rec.length();
    (0..rec.pages.frames() as u32)
        .filter_map(|f| {
            let last = *written(rec, f).last()?;
            if rec.checkpoints[last].engine.icount >= length / 2 {
                return None;
            }
            let (a, b) = (page_at(rec, f, last - 1), page_at(rec, f, last));
            let o = (0..512).find(|&i| a[i * 8..i * 8 + 8] != b[i * 8..i * 8 + 8])?;
            Some((last, u64::from(f) * 4096 + o as u64 * 8))
        })
        .max()
        .expect("a page last changed in the first half of the history")
}

/// The start of 16 bytes across two pages stored at boot that no interval writes (the
/// kernel's code): a write watchpoint there never fires.
pub fn never_written(rec: &Recording) -> u64 {
    (0..rec.pages.frames() as u32 - 1)
        .find(|&f| {
            rec.pages.version_at(f, 0).is_some()
                && rec.pages.version_at(f + 1, 0).is_some()
                && written(rec, f).is_empty()
                && written(rec, f + 1).is_empty()
        })
        .map(|f| u64::from(f + 1) * 4096 - 8)
        .expect("two adjacent pages never written after boot")
}

/// Per aligned quadword, the last step that read it, and the first at or after `from` (as
/// stepping decides: the decoder).
pub fn reads(rec: &Rc<Recording>, from: u64) -> (HashMap<u64, u64>, HashMap<u64, u64>) {
    let decoder = AccessDecoder::new().unwrap();
    let mut s = ReplaySession::new(rec.clone(), &host_signature()).unwrap();
    let (mut last, mut first) = (HashMap::new(), HashMap::new());
    loop {
        let (next, at) = (decoder.next_step(&s.engine.machine), s.icount());
        let done = match s.step().unwrap() {
            ReplayStep::Stepped => false,
            ReplayStep::Stopped(_) => true,
            ReplayStep::AtEnd => break,
        };
        if next.ran(&s.engine.machine, s.engine.last_step_injected()) {
            for a in next.accesses.iter().filter(|a| a.read) {
                for q in (a.addr & !7..a.addr + a.size).step_by(8) {
                    last.insert(q, at);
                    if at >= from {
                        first.entry(q).or_insert(at);
                    }
                }
            }
        }
        if done {
            break;
        }
    }
    (last, first)
}
