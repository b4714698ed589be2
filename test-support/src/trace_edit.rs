//! Editing a recorded trace so that only replay can notice: chunks are rewritten with
//! valid checksums.

use std::path::Path;

use ttvm_replay::event_log::EVENTS_HEADER_LEN;
use ttvm_replay::events::{encode, Decoder, Event};
use ttvm_replay::trace::{ChunkKind, EndRecord, TraceFile, TraceWriter};

/// Copies the trace `src` to `dst` chunk by chunk, letting `edit` change each chunk's raw
/// (decompressed) payload first; checksums are recomputed.
pub fn rewrite_trace(src: &Path, dst: &Path, mut edit: impl FnMut(ChunkKind, &mut Vec<u8>)) {
    let t = TraceFile::open(src).expect("open the trace to rewrite");
    let mut w = TraceWriter::create(dst, &t.header).expect("create the rewritten trace");
    for c in &t.chunks {
        let mut raw = t.payload(c).expect("chunk payload").into_owned();
        edit(c.kind, &mut raw);
        if c.kind == ChunkKind::End {
            let end: EndRecord = bincode::deserialize(&raw).expect("end record");
            w.finish(&end).expect("finish");
        } else {
            w.write_chunk(c.kind, &raw, true).expect("write chunk");
        }
    }
}

/// Rewrites `src` into `dst` with `edit` applied to events until it accepts one (returns
/// true); panics if none was accepted.
pub fn rewrite_events(src: &Path, dst: &Path, mut edit: impl FnMut(&mut Event) -> bool) {
    let mut edited = false;
    rewrite_trace(src, dst, |kind, raw| {
        if kind != ChunkKind::Events || edited {
            return;
        }
        let base = u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes"));
        let mut d = Decoder::new(&raw[EVENTS_HEADER_LEN..], base);
        let mut events = Vec::new();
        while let Some(e) = d.next_event().expect("decode") {
            events.push(e);
        }
        let mut out = raw[..EVENTS_HEADER_LEN].to_vec();
        let mut prev = base;
        for e in &mut events {
            if !edited && edit(e) {
                edited = true;
            }
            encode(&mut out, e, prev);
            prev = e.icount;
        }
        *raw = out;
    });
    assert!(edited, "nothing to edit");
}
