//! A kernel panic ends a run or a recording.
//!
//! Linux's `panic()` prints `---[ end Kernel panic - not syncing: REASON ]---` last and then
//! loops forever (the default `panic=0`) or reboots after a delay. Left alone, a recording
//! of a crash would go on through that loop until Ctrl-C or `--max-steps`, and a free run
//! until its timeout. So the console output is watched for that line, as crash reporters
//! such as syzkaller do: when it appears, the stop flag is raised and the run or recording
//! ends right after the port write that ended the line, with the panic as its outcome
//! ([`PANIC_EXIT`]). The output is a function of the recorded execution, so the end is at
//! the same icount in every replay.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use ttvm_vmm::console::{ConsoleOutput, WatchedOutput};

use crate::exit_code;

/// What Linux's `panic()` prints last (`kernel/panic.c`).
const END_OF_PANIC: &str = "---[ end Kernel panic - not syncing: ";

/// The exit status of a run or recording the guest kernel's panic ended.
pub const PANIC_EXIT: i32 = exit_code::GUEST_PANIC;

/// Whether a kernel panic was seen, shared with the watched output.
#[derive(Clone, Debug, Default)]
pub struct PanicWatch {
    reason: Arc<Mutex<Option<String>>>,
}

impl PanicWatch {
    /// `output`, watched for the end of a kernel panic; a panic raises `stop`.
    pub fn wrap(output: ConsoleOutput, stop: &'static AtomicBool) -> (ConsoleOutput, Self) {
        let watch = Self::default();
        let seen = Arc::clone(&watch.reason);
        let matcher = move |line: &[u8]| match panic_reason(&String::from_utf8_lossy(line)) {
            Some(reason) => {
                *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                true
            }
            None => false,
        };
        (ConsoleOutput::Watched(Box::new(WatchedOutput::new(output, matcher, stop))), watch)
    }

    /// The panic's reason, once the guest kernel has panicked.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The reason in a line that ends a Linux panic (timestamps and log prefixes before it
/// allowed).
fn panic_reason(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(END_OF_PANIC)?;
    Some(rest.trim_end().trim_end_matches("]---").trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_linux_panic_is_recognised_with_its_reason() {
        assert_eq!(
            panic_reason("[   20.100000] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---").as_deref(),
            Some("sysrq triggered crash")
        );
        assert_eq!(
            panic_reason("---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009 ]---")
                .as_deref(),
            Some("Attempted to kill init! exitcode=0x00000009")
        );
        assert_eq!(panic_reason("Kernel panic - not syncing: sysrq triggered crash"), None, "the start goes on");
        assert_eq!(panic_reason("ordinary output"), None);
    }

    #[test]
    fn a_panic_line_raises_the_flag_and_keeps_the_reason() {
        static STOP: AtomicBool = AtomicBool::new(false);
        let (mut out, watch) = PanicWatch::wrap(ConsoleOutput::Discard, &STOP);
        out.write(b"[ 1.0] Kernel panic - not syncing: boom\r\n");
        assert!(watch.reason().is_none() && !STOP.load(std::sync::atomic::Ordering::SeqCst));
        out.write(b"[ 1.1] ---[ end Kernel panic - not syncing: boom ]---\r\n");
        assert_eq!(watch.reason().as_deref(), Some("boom"));
        assert!(STOP.load(std::sync::atomic::Ordering::SeqCst));
    }
}
