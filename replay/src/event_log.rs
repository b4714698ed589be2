//! Recording side of the event stream: events are encoded into a buffer as they happen and
//! cut into `Events` chunks at step boundaries.

use crate::events::{encode_with_pages, Event, EventClass, PageInterner};

/// Header of an `Events` chunk payload: base icount (for the first delta), end icount (all
/// events of steps before it are in this chunk or earlier ones), event count.
pub const EVENTS_HEADER_LEN: usize = 20;

/// Accumulates encoded events.
#[derive(Debug, Default)]
pub struct EventLogWriter {
    buf: Vec<u8>,
    count: u32,
    chunk_base: u64,
    prev_icount: u64,
    /// Events recorded per class, over the whole recording.
    pub counts: std::collections::BTreeMap<EventClass, u64>,
    /// Total events recorded.
    pub total: u64,
}

impl EventLogWriter {
    /// Appends an event (icounts must not decrease).
    pub fn push(&mut self, e: &Event) {
        self.push_with_pages(e, None);
    }

    /// [`EventLogWriter::push`], putting disk data in the page store through `pages`
    /// (format 5; the caller writes the store's pending pages before this chunk).
    pub fn push_with_pages(&mut self, e: &Event, pages: Option<PageInterner<'_>>) {
        if self.count == 0 {
            self.chunk_base = self.prev_icount;
        }
        encode_with_pages(&mut self.buf, e, self.prev_icount, pages);
        self.prev_icount = e.icount;
        self.count += 1;
        self.total += 1;
        *self.counts.entry(e.kind.class()).or_default() += 1;
    }

    /// Bytes buffered.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Cuts the buffered events into a chunk payload covering steps before `end_icount`.
    /// Returns a payload even when empty, so readers learn how far the log is complete.
    pub fn take_chunk(&mut self, end_icount: u64) -> Vec<u8> {
        let mut raw = Vec::with_capacity(EVENTS_HEADER_LEN + self.buf.len());
        let base = if self.count == 0 { self.prev_icount } else { self.chunk_base };
        raw.extend_from_slice(&base.to_le_bytes());
        raw.extend_from_slice(&end_icount.to_le_bytes());
        raw.extend_from_slice(&self.count.to_le_bytes());
        raw.append(&mut self.buf);
        self.count = 0;
        raw
    }
}
