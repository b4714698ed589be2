//! What the UI knows about a trace without replaying it: the event log indexed for fast
//! navigation and drawing, the serial output split into lines with the icount each line was
//! printed at, checkpoints and how the run ended.
//!
//! Everything here is computed once when the trace is opened, so drawing a frame or finding
//! the next event is a binary search, never a scan of the log.

use std::collections::BTreeMap;

use ttvm_replay::events::{Event, EventClass, EventKind, StopKind};
use ttvm_replay::recording::Recording;

/// How the recorded run ended, as the timeline's end marker shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum EndState {
    /// Debug-exit with status 0.
    CleanExit,
    /// Debug-exit with a non-zero status: the sample kernels' panic path exits 13.
    Panic(u32),
    /// The CPU shut down.
    TripleFault,
    /// HLT with nothing left to wake the CPU.
    Halted,
    /// KVM could not continue.
    KvmError(String),
    /// The guest kernel panicked (its reason): the recording ended at its last panic line.
    KernelPanic(String),
    /// The recording was stopped from outside (step limit, Ctrl-C, user mode).
    Stopped(String),
    /// No end record: the recording was killed, or the trace is truncated.
    #[default]
    Unfinished,
}

impl EndState {
    /// Short label for the timeline.
    pub fn label(&self) -> String {
        match self {
            EndState::CleanExit => "exit 0".into(),
            EndState::Panic(c) => format!("panic (exit {c})"),
            EndState::TripleFault => "triple fault".into(),
            EndState::Halted => "halted".into(),
            EndState::KvmError(e) => format!("KVM error: {e}"),
            EndState::KernelPanic(r) => format!("kernel panic: {r}"),
            EndState::Stopped(r) => format!("stopped: {r}"),
            EndState::Unfinished => "unfinished trace".into(),
        }
    }

    /// Whether the run ended in a failure a developer would look at.
    pub fn is_failure(&self) -> bool {
        !matches!(self, EndState::CleanExit | EndState::Stopped(_))
    }
}

/// One line of serial output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialLine {
    /// Index of its first byte in [`TraceInfo::serial`].
    pub start: usize,
    /// Index one past its last byte, excluding the newline.
    pub end: usize,
    /// The position just after the step that printed its last byte (its newline, when it has
    /// one): at this icount the whole line is on the console.
    pub printed_at: u64,
}

/// The trace, indexed for the UI.
#[derive(Clone, Debug, Default)]
pub struct TraceInfo {
    /// Shown in the title: kernel name and trace file name.
    pub title: String,
    /// Steps in the history.
    pub length: u64,
    /// Icounts of the persistent checkpoints.
    pub checkpoints: Vec<u64>,
    /// Every event in order.
    pub events: Vec<Event>,
    /// The icount of every event (for counting per timeline column).
    pub event_icounts: Vec<u64>,
    /// Icounts of the events of each class, in order (a class absent from the trace has no
    /// entry).
    pub by_class: BTreeMap<EventClass, Vec<u64>>,
    /// (icount, vector) of every injected interrupt.
    pub interrupts: Vec<(u64, u8)>,
    /// Serial output bytes in order.
    pub serial: Vec<u8>,
    /// The icount of the step that output each byte of `serial`.
    pub serial_icounts: Vec<u64>,
    /// `serial` split into lines.
    pub lines: Vec<SerialLine>,
    /// The icount of the step that completed each line (`printed_at - 1`).
    pub line_icounts: Vec<u64>,
    /// How the run ended.
    pub end: EndState,
    /// A note from opening a damaged trace (what was recovered).
    pub note: Option<String>,
}

impl TraceInfo {
    /// Indexes an opened recording.
    pub fn from_recording(rec: &Recording, file_name: &str) -> Self {
        let end = match &rec.end {
            None => EndState::Unfinished,
            Some(e) => match &e.stop {
                Some(StopKind::DebugExit(0)) => EndState::CleanExit,
                Some(StopKind::DebugExit(c)) => EndState::Panic(*c),
                Some(StopKind::TripleFault) => EndState::TripleFault,
                Some(StopKind::Halted) => EndState::Halted,
                Some(StopKind::InternalError(m)) => EndState::KvmError(m.clone()),
                None => match e.reason.strip_prefix("the guest kernel panicked: ") {
                    Some(why) => EndState::KernelPanic(why.to_string()),
                    None => EndState::Stopped(e.reason.clone()),
                },
            },
        };
        let checkpoints = rec.checkpoints.iter().map(|c| c.engine.icount).collect();
        let mut info = Self::from_parts(rec.length(), checkpoints, rec.events.clone(), end);
        info.title = format!("{} · {file_name}", rec.header().kernel_name);
        info.note = rec.file.recovery_note.clone();
        info
    }

    /// Indexes a history given by its parts (tests build small synthetic ones).
    pub fn from_parts(length: u64, checkpoints: Vec<u64>, events: Vec<Event>, end: EndState) -> Self {
        let mut by_class: BTreeMap<EventClass, Vec<u64>> = BTreeMap::new();
        let mut interrupts = Vec::new();
        let mut serial = Vec::new();
        let mut serial_icounts = Vec::new();
        for e in &events {
            by_class.entry(e.kind.class()).or_default().push(e.icount);
            match e.kind {
                EventKind::Interrupt { vector } => interrupts.push((e.icount, vector)),
                EventKind::SerialOut { byte } => {
                    serial.push(byte);
                    serial_icounts.push(e.icount);
                }
                _ => {}
            }
        }
        let lines = split_lines(&serial, &serial_icounts);
        let line_icounts = lines.iter().map(|l| l.printed_at - 1).collect();
        let event_icounts = events.iter().map(|e| e.icount).collect();
        Self {
            title: String::new(),
            length,
            checkpoints,
            events,
            event_icounts,
            by_class,
            interrupts,
            serial,
            serial_icounts,
            lines,
            line_icounts,
            end,
            note: None,
        }
    }

    /// Icounts of the events of `class`.
    pub fn class_icounts(&self, class: EventClass) -> &[u64] {
        self.by_class.get(&class).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Classes present in the trace, in display order.
    pub fn classes(&self) -> Vec<EventClass> {
        EventClass::ALL.into_iter().filter(|c| self.by_class.contains_key(c)).collect()
    }

    /// Index of the first event at or after `icount`.
    pub fn first_event_at(&self, icount: u64) -> usize {
        self.events.partition_point(|e| e.icount < icount)
    }

    /// Icount of the first event strictly after position `icount`, in `icounts`.
    pub fn next_in(icounts: &[u64], icount: u64) -> Option<u64> {
        icounts.get(icounts.partition_point(|&i| i <= icount)).copied()
    }

    /// Icount of the last event strictly before position `icount`, in `icounts`.
    pub fn prev_in(icounts: &[u64], icount: u64) -> Option<u64> {
        let n = icounts.partition_point(|&i| i < icount);
        n.checked_sub(1).map(|k| icounts[k])
    }

    /// Number of events in `icounts` in `[from, to)`.
    pub fn count_in(icounts: &[u64], from: u64, to: u64) -> usize {
        icounts.partition_point(|&i| i < to) - icounts.partition_point(|&i| i < from)
    }

    /// Serial bytes output before position `icount` (the console shows exactly these).
    pub fn serial_len_at(&self, icount: u64) -> usize {
        self.serial_icounts.partition_point(|&i| i < icount)
    }

    /// The text of line `k`.
    pub fn line_text(&self, k: usize) -> String {
        let l = self.lines[k];
        printable(&self.serial[l.start..l.end])
    }

    /// Lines whose text contains `needle` (exact, then case-insensitively if nothing
    /// matches exactly).
    pub fn search(&self, needle: &str) -> Vec<usize> {
        if needle.is_empty() {
            return Vec::new();
        }
        let exact: Vec<usize> = (0..self.lines.len()).filter(|&k| self.line_text(k).contains(needle)).collect();
        if !exact.is_empty() {
            return exact;
        }
        let lower = needle.to_lowercase();
        (0..self.lines.len()).filter(|&k| self.line_text(k).to_lowercase().contains(&lower)).collect()
    }
}

fn split_lines(serial: &[u8], icounts: &[u64]) -> Vec<SerialLine> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, &b) in serial.iter().enumerate() {
        if b == b'\n' {
            lines.push(SerialLine { start, end: i, printed_at: icounts[i] + 1 });
            start = i + 1;
        }
    }
    if start < serial.len() {
        lines.push(SerialLine { start, end: serial.len(), printed_at: icounts[serial.len() - 1] + 1 });
    }
    lines
}

/// Console text as it can be drawn: carriage returns dropped, other control bytes and
/// non-UTF-8 shown as `·`, so guest output can never move the host terminal's cursor.
pub fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|&c| c != '\r')
        .map(|c| if c.is_control() || c == '\u{fffd}' { '·' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(icount: u64, s: &str) -> Vec<Event> {
        s.bytes().map(|byte| Event { icount, kind: EventKind::SerialOut { byte } }).collect()
    }

    #[test]
    fn lines_know_when_they_were_printed() {
        let mut ev = out(10, "ab\n");
        ev.extend(out(20, "c\x1b[2Jd\n"));
        ev.extend(out(30, "tail"));
        let info = TraceInfo::from_parts(40, vec![0], ev, EndState::CleanExit);
        assert_eq!(info.lines.len(), 3);
        assert_eq!(info.lines[0].printed_at, 11);
        assert_eq!(info.line_text(1), "c·[2Jd");
        assert_eq!(info.line_text(2), "tail");
        assert_eq!(info.serial_len_at(10), 0);
        assert_eq!(info.serial_len_at(11), 3);
        assert_eq!(info.search("TAIL"), vec![2]);
        assert_eq!(info.search("a"), vec![0, 2]);
    }

    #[test]
    fn next_and_prev_are_strict() {
        let v = [5, 5, 9];
        assert_eq!(TraceInfo::next_in(&v, 5), Some(9));
        assert_eq!(TraceInfo::next_in(&v, 4), Some(5));
        assert_eq!(TraceInfo::prev_in(&v, 5), None);
        assert_eq!(TraceInfo::prev_in(&v, 9), Some(5));
        assert_eq!(TraceInfo::count_in(&v, 5, 10), 3);
    }
}
