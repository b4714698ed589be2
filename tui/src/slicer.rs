//! Time slices for long timeline operations. The timeline is not `Send` (it holds `Rc`s) and
//! lives on the UI thread, so a long seek or run would freeze the screen. It does, however,
//! stop promptly with `Stop::Interrupted` when its interrupt flag is raised, and carries on
//! from where it stopped: a later `seek` to the same target, or `continue_run` with the same
//! run. This thread raises the flag when a slice is over; the UI redraws, reads keys, and
//! carries on (or not, if Esc was pressed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    deadline: Option<Instant>,
    quit: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// Raises an interrupt flag when the current slice is over.
#[derive(Debug)]
pub struct Slicer {
    shared: Arc<Shared>,
    flag: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Slicer {
    /// A slicer that raises `flag`.
    pub fn new(flag: Arc<AtomicBool>) -> Self {
        let shared = Arc::new(Shared::default());
        let (s, f) = (shared.clone(), flag.clone());
        let thread = std::thread::Builder::new().name("ttvm-tui-slicer".into()).spawn(move || run(&s, &f)).ok();
        Self { shared, flag, thread }
    }

    /// Starts a slice of `length`.
    pub fn arm(&self, length: Duration) {
        let mut st = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.deadline = Some(Instant::now() + length);
        self.shared.wake.notify_one();
    }

    /// Ends the slice: after this returns the flag is down and stays down until the next
    /// `arm`, so it cannot cut short an operation that is not sliced.
    pub fn disarm(&self) {
        let mut st = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.deadline = None;
        // Under the lock, so the thread cannot raise it again after this.
        self.flag.store(false, Ordering::SeqCst);
    }

    /// Whether the slicing thread is running (if it could not be spawned, operations simply
    /// run to completion without redraws).
    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }
}

fn run(shared: &Shared, flag: &AtomicBool) {
    let mut st = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if st.quit {
            return;
        }
        st = match st.deadline {
            None => shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    flag.store(true, Ordering::SeqCst);
                    st.deadline = None;
                    st
                } else {
                    shared.wake.wait_timeout(st, d - now).unwrap_or_else(PoisonError::into_inner).0
                }
            }
        };
    }
}

impl Drop for Slicer {
    fn drop(&mut self) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.quit = true;
            self.shared.wake.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_the_flag_after_the_slice_and_never_after_disarm() {
        let flag = Arc::new(AtomicBool::new(false));
        let s = Slicer::new(flag.clone());
        assert!(s.is_running());
        s.arm(Duration::from_millis(5));
        let t0 = Instant::now();
        while !flag.load(Ordering::SeqCst) {
            assert!(t0.elapsed() < Duration::from_secs(5), "flag never raised");
            std::thread::yield_now();
        }
        s.disarm();
        assert!(!flag.load(Ordering::SeqCst));
        s.arm(Duration::from_millis(20));
        s.disarm();
        std::thread::sleep(Duration::from_millis(40));
        assert!(!flag.load(Ordering::SeqCst), "a disarmed slice must not raise the flag");
    }
}
