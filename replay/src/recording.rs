//! A trace loaded for replay: its events, checkpoints and page store, decoded and checked.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use ttvm_vmm::memory::PAGE_SIZE;

use crate::checkpoint::{decode_checkpoint, CheckpointRecord, PageIndex};
use crate::event_log::EVENTS_HEADER_LEN;
use crate::events::{Decoder, Event, EventClass};
use crate::trace::format::{EndRecord, IntervalCode, DISK_PAGES_SINCE};
use crate::trace::{ChunkKind, ChunkRef, IntervalAnchors, IntervalLandmark, TraceError, TraceFile, TraceHeader};

/// A decoded trace.
#[derive(Debug)]
pub struct Recording {
    /// The underlying file.
    pub file: TraceFile,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Steps whose events are all present: replay can run exactly this far.
    pub events_end: u64,
    /// Checkpoints in order.
    pub checkpoints: Vec<CheckpointRecord>,
    /// Page versions per frame.
    pub pages: PageIndex,
    /// How the recording ended (None when it was not finalised).
    pub end: Option<EndRecord>,
    /// For each checkpoint k >= 1, the code executed in the interval that ends at it
    /// (index k - 1); `None` where the trace does not say (formats 1-2, a lost chunk).
    pub interval_code: Vec<Option<IntervalCode>>,
    /// For each interval (by the checkpoint that starts it), its landmark, if the trace
    /// has one (formats 4-6; format 7's anchors hold theirs).
    pub interval_landmarks: Vec<Option<IntervalLandmark>>,
    /// For each interval (by the checkpoint that starts it), its anchors, if the trace has
    /// them (format 7 on).
    pub interval_anchors: Vec<Option<IntervalAnchors>>,
    /// The file it was opened from (`None` when decoded from an already open file): a
    /// branch names it as its parent.
    pub path: Option<std::path::PathBuf>,
    /// The page-store ids the disk events refer to (format 5), in event order.
    pub disk_pages: Vec<u32>,
    /// Blob id -> (index into `page_chunks`, slot).
    blob_location: Vec<(u32, u32)>,
    page_chunks: Vec<ChunkRef>,
    page_cache: RefCell<HashMap<u32, Rc<Vec<u8>>>>,
}

fn corrupted(c: &ChunkRef, reason: impl Into<String>) -> TraceError {
    TraceError::Corrupted {
        offset: c.offset,
        what: format!("{} chunk #{}", c.kind.name(), c.ordinal),
        reason: reason.into(),
    }
}

impl Recording {
    /// Whether a run through the interval that starts at checkpoint `k` can stop at a
    /// breakpoint on one of `addresses`: false only when the trace lists the interval's code
    /// and none of them is in it (unknown intervals may always stop).
    pub fn interval_may_reach(&self, k: usize, addresses: impl IntoIterator<Item = u64>) -> bool {
        match self.interval_code.get(k) {
            Some(Some(code)) => addresses.into_iter().any(|a| code.contains(a)),
            _ => true,
        }
    }

    /// Opens, validates and decodes a trace.
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let mut rec = Self::from_file(TraceFile::open(path)?)?;
        rec.path = Some(path.to_path_buf());
        Ok(rec)
    }

    /// Decodes an open trace file.
    pub fn from_file(file: TraceFile) -> Result<Self, TraceError> {
        let pages_total = (file.header.machine.mem_size as usize) / PAGE_SIZE;
        let mut rec = Self {
            path: None,
            events: Vec::new(),
            events_end: 0,
            checkpoints: Vec::new(),
            pages: PageIndex::new(pages_total),
            end: None,
            interval_code: Vec::new(),
            interval_landmarks: Vec::new(),
            interval_anchors: Vec::new(),
            disk_pages: Vec::new(),
            blob_location: Vec::new(),
            page_chunks: Vec::new(),
            page_cache: RefCell::new(HashMap::new()),
            file,
        };
        let chunks = rec.file.chunks.clone();
        for c in &chunks {
            match c.kind {
                ChunkKind::Events => rec.load_events(c)?,
                ChunkKind::Pages => rec.load_pages(c)?,
                ChunkKind::Checkpoint => rec.load_checkpoint(c)?,
                ChunkKind::End => {
                    let raw = rec.file.payload(c)?;
                    let end: EndRecord = bincode::deserialize(&raw).map_err(|e| corrupted(c, e.to_string()))?;
                    rec.end = Some(end);
                }
                ChunkKind::CodePages => {
                    let raw = rec.file.payload(c)?;
                    let code: IntervalCode = bincode::deserialize(&raw).map_err(|e| corrupted(c, e.to_string()))?;
                    if code.checkpoint as usize != rec.checkpoints.len() || code.checkpoint == 0 {
                        return Err(corrupted(
                            c,
                            format!(
                                "code pages for checkpoint {} after {} checkpoints",
                                code.checkpoint,
                                rec.checkpoints.len()
                            ),
                        ));
                    }
                    if code.pages.windows(2).any(|w| w[0].0 >= w[1].0) || code.pages.iter().any(|p| p.1 == [0; 4]) {
                        return Err(corrupted(c, "code pages are not sorted, or a page has no block"));
                    }
                    let k = code.checkpoint as usize;
                    rec.interval_code.resize(k, None);
                    rec.interval_code[k - 1] = Some(code);
                }
                ChunkKind::Landmark => rec.load_landmark(c)?,
                ChunkKind::Anchors => rec.load_anchors(c)?,
                ChunkKind::Index => {}
            }
        }
        if rec.checkpoints.is_empty() {
            return Err(TraceError::Truncated {
                offset: rec.file.file_len(),
                what: "the trace has no checkpoint (the boot image is missing)".into(),
            });
        }
        for (k, l) in rec.interval_landmarks.iter().enumerate() {
            let end = rec.checkpoints.get(k + 1).map(|c| c.engine.icount);
            if let (Some(l), Some(end)) = (l, end) {
                if l.icount >= end {
                    return Err(TraceError::Corrupted {
                        offset: 0,
                        what: format!("the landmark of checkpoint {}", k + 1),
                        reason: format!("its step {} is not before the checkpoint's ({end})", l.icount),
                    });
                }
            }
        }
        for (k, a) in rec.interval_anchors.iter().enumerate() {
            let end = rec.checkpoints.get(k + 1).map(|c| c.engine.icount);
            if let (Some(a), Some(end)) = (a, end) {
                if a.anchors.last().map(|l| l.anchor) != Some(end) {
                    return Err(TraceError::Corrupted {
                        offset: 0,
                        what: format!("the anchors of checkpoint {}", k + 1),
                        reason: format!("the last one is not the checkpoint's step ({end})"),
                    });
                }
            }
        }
        if let Some(end) = &rec.end {
            if end.final_icount != rec.events_end {
                return Err(TraceError::Corrupted {
                    offset: 0,
                    what: "the end record".into(),
                    reason: format!("final icount {} but events cover {}", end.final_icount, rec.events_end),
                });
            }
        }
        Ok(rec)
    }

    fn load_events(&mut self, c: &ChunkRef) -> Result<(), TraceError> {
        let raw = self.file.payload(c)?;
        if raw.len() < EVENTS_HEADER_LEN {
            return Err(corrupted(c, "events header too short"));
        }
        let base = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
        let end = u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default());
        let count = u32::from_le_bytes(raw[16..20].try_into().unwrap_or_default());
        if end < self.events_end {
            return Err(corrupted(
                c,
                format!("covers steps up to {end}, before the previous chunk's {}", self.events_end),
            ));
        }
        // Format 5's disk events refer to pages stored before their chunk; they come back
        // with the data filled in, so every reader of `events` sees whole blocks and writes.
        let resolve = |id: u32| self.page(id).ok().map(|p| p.to_vec());
        let mut d = if self.file.version >= DISK_PAGES_SINCE {
            Decoder::with_pages(&raw[EVENTS_HEADER_LEN..], base, &resolve)
        } else {
            Decoder::new(&raw[EVENTS_HEADER_LEN..], base)
        };
        let mut decoded = Vec::new();
        let mut last = self.events.last().map(|l| l.icount);
        while let Some(e) = d.next_event().map_err(|e| corrupted(c, e.to_string()))? {
            if e.icount >= end || last.is_some_and(|l| l > e.icount) {
                return Err(corrupted(c, format!("event at icount {} out of order", e.icount)));
            }
            last = Some(e.icount);
            decoded.push(e);
        }
        let disk_pages = std::mem::take(&mut d.disk_pages);
        drop(d);
        let n = decoded.len() as u32;
        self.events.extend(decoded);
        self.disk_pages.extend(disk_pages);
        if n != count {
            return Err(corrupted(c, format!("holds {n} events, header says {count}")));
        }
        self.events_end = end;
        Ok(())
    }

    fn load_pages(&mut self, c: &ChunkRef) -> Result<(), TraceError> {
        let raw = self.file.payload(c)?;
        if raw.len() < 8 {
            return Err(corrupted(c, "pages header too short"));
        }
        let first = u32::from_le_bytes(raw[0..4].try_into().unwrap_or_default());
        let count = u32::from_le_bytes(raw[4..8].try_into().unwrap_or_default());
        if first as usize != self.blob_location.len() {
            return Err(corrupted(c, format!("first page id {first}, expected {}", self.blob_location.len())));
        }
        if raw.len() != 8 + count as usize * PAGE_SIZE {
            return Err(corrupted(c, "length does not match its page count"));
        }
        let chunk_no = self.page_chunks.len() as u32;
        self.page_chunks.push(*c);
        for slot in 0..count {
            self.blob_location.push((chunk_no, slot));
        }
        Ok(())
    }

    /// A landmark comes right after the checkpoint that ends its interval (and that
    /// interval's code list); its step lies in the interval.
    fn load_landmark(&mut self, c: &ChunkRef) -> Result<(), TraceError> {
        let raw = self.file.payload(c)?;
        let l: IntervalLandmark = bincode::deserialize(&raw).map_err(|e| corrupted(c, e.to_string()))?;
        let k = l.checkpoint as usize;
        if k == 0 || k != self.checkpoints.len() {
            return Err(corrupted(
                c,
                format!("landmark of checkpoint {k} after {} checkpoints", self.checkpoints.len()),
            ));
        }
        // (The checkpoint ending the interval comes later in the file: `from_file` checks
        // the other end once it is read.)
        let start = self.checkpoints[k - 1].engine.icount;
        if l.icount < start || l.hits == 0 || l.hits > l.icount - start + 1 {
            return Err(corrupted(c, format!("landmark step {} ({} hits) outside its interval", l.icount, l.hits)));
        }
        self.interval_landmarks.resize(k, None);
        self.interval_landmarks[k - 1] = Some(l);
        Ok(())
    }

    /// Anchors come right after the checkpoint that ends their interval's landmark; each
    /// lies in the interval after the one before, and so does its landmark's stretch.
    fn load_anchors(&mut self, c: &ChunkRef) -> Result<(), TraceError> {
        let raw = self.file.payload(c)?;
        let a = crate::trace::decode_anchors(self.file.version, &raw).map_err(|e| corrupted(c, e.to_string()))?;
        let k = a.checkpoint as usize;
        if k == 0 || k != self.checkpoints.len() {
            return Err(corrupted(
                c,
                format!("anchors of checkpoint {k} after {} checkpoints", self.checkpoints.len()),
            ));
        }
        // The stretch before each anchor starts after the previous one.
        let mut stretch = self.checkpoints[k - 1].engine.icount;
        for l in &a.anchors {
            let fits = if l.hits == 0 {
                l.at == l.anchor && l.rip == 0
            } else {
                l.at >= stretch && l.at < l.anchor && l.hits <= l.at - stretch + 1
            };
            if l.anchor < stretch || !fits {
                return Err(corrupted(
                    c,
                    format!(
                        "anchor at step {} (landmark {} hits, last at {}) outside its stretch",
                        l.anchor, l.hits, l.at
                    ),
                ));
            }
            stretch = l.anchor + 1;
        }
        if a.anchors.is_empty() {
            return Err(corrupted(c, "an interval without its end anchor"));
        }
        // Each waypoint lies inside a stretch, its landmark in the same stretch before it,
        // in step order.
        let mut after = self.checkpoints[k - 1].engine.icount;
        let end = a.anchors.last().map_or(0, |l| l.anchor);
        for w in &a.waypoints {
            let stretch = a
                .anchors
                .iter()
                .rev()
                .find(|l| l.anchor < w.step)
                .map_or(self.checkpoints[k - 1].engine.icount, |l| l.anchor + 1);
            let fits = w.step >= after
                && w.step < end
                && w.hits > 0
                && w.at >= stretch
                && w.at < w.step
                && w.hits <= w.at - stretch + 1;
            if !fits {
                return Err(corrupted(
                    c,
                    format!(
                        "waypoint at step {} (landmark {} hits, last at {}) outside its stretch",
                        w.step, w.hits, w.at
                    ),
                ));
            }
            after = w.step + 1;
        }
        self.interval_anchors.resize(k, None);
        self.interval_anchors[k - 1] = Some(a);
        Ok(())
    }

    fn load_checkpoint(&mut self, c: &ChunkRef) -> Result<(), TraceError> {
        let raw = self.file.payload(c)?;
        let cp = decode_checkpoint(self.file.version, &raw).map_err(|e| corrupted(c, e.to_string()))?;
        let k = self.checkpoints.len() as u32;
        if cp.index != k {
            return Err(corrupted(c, format!("checkpoint {} where {k} was expected", cp.index)));
        }
        if let Some(prev) = self.checkpoints.last() {
            if cp.engine.icount <= prev.engine.icount {
                return Err(corrupted(c, "checkpoint icounts not increasing"));
            }
        }
        cp.validate().map_err(|e| corrupted(c, format!("checkpoint {k} holds an impossible state: {e}")))?;
        // A checkpoint's clock runs in the mode the header says the whole recording ran in;
        // restoring one in another mode would replay with a different notion of time.
        if cp.clock.mode != self.file.header.clock {
            return Err(corrupted(
                c,
                format!(
                    "checkpoint {k}'s clock is in {:?} mode but the header says {:?}",
                    cp.clock.mode, self.file.header.clock
                ),
            ));
        }
        let dirty = cp.dirty_pages().map_err(|e| corrupted(c, e.to_string()))?;
        if cp.blobs.iter().any(|&b| b as usize >= self.blob_location.len()) {
            return Err(corrupted(c, "references a page that is not stored before it"));
        }
        self.pages.add_checkpoint(k, dirty, &cp.blobs).map_err(|e| corrupted(c, e))?;
        self.checkpoints.push(cp);
        Ok(())
    }

    /// Ends the history at step `icount` (no-op past its end): the steps from there on,
    /// their events and the checkpoints after it are dropped, and the recording no longer
    /// counts as finalised. A gdb session that branched keeps its parent's history this way,
    /// up to the branch point (`gdb/src/family.rs`). Disk page references stay: the dropped
    /// events were the last ones, so the kept ones still find theirs by position.
    pub fn truncate_to(&mut self, icount: u64) {
        if icount >= self.events_end {
            return;
        }
        self.events_end = icount;
        self.events.retain(|e| e.icount < icount);
        let kept = self.checkpoints.iter().take_while(|c| c.engine.icount <= icount).count();
        self.checkpoints.truncate(kept);
        // Interval k starts at checkpoint k (landmarks) or ends at checkpoint k + 1 (code).
        self.interval_code.truncate(kept.saturating_sub(1));
        self.interval_landmarks.truncate(kept.saturating_sub(1));
        self.interval_anchors.truncate(kept.saturating_sub(1));
        self.end = None;
    }

    /// The header.
    pub fn header(&self) -> &TraceHeader {
        &self.file.header
    }

    /// Number of steps in the recorded history.
    pub fn length(&self) -> u64 {
        self.events_end
    }

    /// Content of page blob `id`.
    pub fn page(&self, id: u32) -> Result<Rc<Vec<u8>>, TraceError> {
        let (chunk_no, slot) = *self.blob_location.get(id as usize).ok_or_else(|| TraceError::Corrupted {
            offset: 0,
            what: "the page store".into(),
            reason: format!("page id {id} does not exist"),
        })?;
        let chunk = {
            let mut cache = self.page_cache.borrow_mut();
            if let Some(c) = cache.get(&chunk_no) {
                c.clone()
            } else {
                let c = self.page_chunks[chunk_no as usize];
                let raw = Rc::new(self.file.payload(&c)?.into_owned());
                cache.insert(chunk_no, raw.clone());
                raw
            }
        };
        let start = 8 + slot as usize * PAGE_SIZE;
        Ok(Rc::new(chunk[start..start + PAGE_SIZE].to_vec()))
    }

    /// Number of unique pages the page store holds.
    pub fn stored_pages(&self) -> usize {
        self.blob_location.len()
    }

    /// Copies page blob `id` into `out` (4 KiB).
    pub fn copy_page(&self, id: u32, out: &mut [u8]) -> Result<(), TraceError> {
        let p = self.page(id)?;
        out.copy_from_slice(&p);
        Ok(())
    }

    /// Index of the newest checkpoint at or before `icount`.
    pub fn checkpoint_before(&self, icount: u64) -> usize {
        self.checkpoints.partition_point(|c| c.engine.icount <= icount).saturating_sub(1)
    }

    /// Index of the first event at or after `icount`.
    pub fn first_event_at(&self, icount: u64) -> usize {
        self.events.partition_point(|e| e.icount < icount)
    }

    /// Whether the interval that starts at checkpoint `k` logged an event.
    pub fn interval_has_events(&self, k: usize) -> bool {
        let (Some(start), Some(end)) = (self.checkpoints.get(k), self.checkpoints.get(k + 1)) else { return false };
        self.events.get(self.first_event_at(start.engine.icount)).is_some_and(|e| e.icount < end.engine.icount)
    }

    /// Events per class.
    pub fn counts(&self) -> std::collections::BTreeMap<EventClass, u64> {
        let mut m = std::collections::BTreeMap::new();
        for e in &self.events {
            *m.entry(e.kind.class()).or_default() += 1;
        }
        m
    }

    /// The serial output recorded up to (not including) step `icount`.
    /// The serial output as lines (CR LF or LF ended; the last may be unfinished), each
    /// with the icount of its first byte: where in the trace the guest printed it.
    pub fn console_lines(&self) -> Vec<(u64, String)> {
        let mut lines = Vec::new();
        let mut current: Option<(u64, Vec<u8>)> = None;
        for e in &self.events {
            let crate::events::EventKind::SerialOut { byte } = e.kind else { continue };
            let (_, text) = current.get_or_insert_with(|| (e.icount, Vec::new()));
            if byte == b'\n' {
                if let Some((at, mut text)) = current.take() {
                    if text.last() == Some(&b'\r') {
                        text.pop();
                    }
                    lines.push((at, String::from_utf8_lossy(&text).into_owned()));
                }
            } else {
                text.push(byte);
            }
        }
        lines.extend(current.map(|(at, text)| (at, String::from_utf8_lossy(&text).into_owned())));
        lines
    }

    /// The serial output the guest produced before step `icount`.
    pub fn serial_output_before(&self, icount: u64) -> Vec<u8> {
        self.events
            .iter()
            .take_while(|e| e.icount < icount)
            .filter_map(|e| match e.kind {
                crate::events::EventKind::SerialOut { byte } => Some(byte),
                _ => None,
            })
            .collect()
    }
}
