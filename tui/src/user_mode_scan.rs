//! Finds where the guest ran in user mode, in the background (`ttvm_replay::privilege`):
//! a thread replays, on a machine of its own, the intervals of the trace that can hold user
//! mode, and sends each interval's stretches as it finishes it, so the timeline fills in
//! while the user works. Dropping the scan asks the thread to stop after its interval.

use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::Arc;

use ttvm_replay::privilege::UserSpan;

/// What the thread reports.
enum Found {
    /// One interval's stretches.
    Spans(Vec<UserSpan>),
    /// The whole trace is covered.
    Done,
    /// The search failed (its message).
    Failed(String),
}

/// The search in progress.
#[derive(Debug)]
pub struct UserModeScan {
    rx: Receiver<Found>,
    cancel: Arc<AtomicBool>,
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Found::Spans(s) => write!(f, "Spans({})", s.len()),
            Found::Done => f.write_str("Done"),
            Found::Failed(e) => write!(f, "Failed({e})"),
        }
    }
}

/// How the search stands after [`UserModeScan::poll`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanState {
    /// Still running.
    Running,
    /// Finished.
    Done,
    /// Failed with this message.
    Failed(String),
}

impl UserModeScan {
    /// Starts searching the trace at `path`.
    pub fn start(path: &Path) -> Self {
        let (tx, rx) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let (path, stop) = (path.to_path_buf(), cancel.clone());
        let spawned = std::thread::Builder::new().name("user-mode-scan".into()).spawn(move || {
            let result = ttvm_replay::recording::Recording::open(&path).map_err(|e| e.to_string()).and_then(|rec| {
                ttvm_replay::privilege::user_spans(
                    Rc::new(rec),
                    &ttvm_replay::stepping::host_signature(),
                    |_, spans| {
                        let _ = tx.send(Found::Spans(spans.to_vec()));
                    },
                    || stop.load(Ordering::Relaxed),
                )
                .map_err(|e| e.to_string())
            });
            let _ = tx.send(match result {
                Ok(_) => Found::Done,
                Err(e) => Found::Failed(e),
            });
        });
        if let Err(e) = spawned {
            let (tx, rx) = channel();
            let _ = tx.send(Found::Failed(format!("cannot start the search: {e}")));
            return Self { rx, cancel };
        }
        Self { rx, cancel }
    }

    /// Adds what the thread has found since the last call to `spans` (kept sorted and
    /// merged) and says how the search stands.
    pub fn poll(&mut self, spans: &mut Vec<UserSpan>) -> ScanState {
        loop {
            match self.rx.try_recv() {
                Ok(Found::Spans(found)) => {
                    for s in found {
                        match spans.last_mut() {
                            Some(last) if last.1 == s.0 => last.1 = s.1,
                            _ => spans.push(s),
                        }
                    }
                }
                Ok(Found::Done) => return ScanState::Done,
                Ok(Found::Failed(e)) => return ScanState::Failed(e),
                Err(TryRecvError::Empty) => return ScanState::Running,
                Err(TryRecvError::Disconnected) => return ScanState::Done,
            }
        }
    }

    /// Waits for the search to end (tests).
    pub fn wait(&mut self, spans: &mut Vec<UserSpan>) -> ScanState {
        loop {
            match self.poll(spans) {
                ScanState::Running => std::thread::sleep(std::time::Duration::from_millis(20)),
                other => return other,
            }
        }
    }
}

impl Drop for UserModeScan {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}
