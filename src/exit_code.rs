//! ttvm's process exit statuses. A guest that exits through the debug-exit port passes its
//! status through unchanged; ttvm's own outcomes use the codes below, chosen away from the
//! small numbers guests typically use.

use ttvm_vmm::error_kind::{Classify, ErrorKind};

/// Host-side failure not covered below (I/O error writing a file, ...).
pub const HOST_ERROR: i32 = 1;
/// Bad input: unusable kernel file, bad arguments, a file that is not a trace or snapshot.
pub const BAD_INPUT: i32 = 2;
/// /dev/kvm missing or unusable.
pub const NO_KVM: i32 = 3;
/// KVM reported an internal error or an unexpected exit.
pub const KVM_INTERNAL: i32 = 70;
/// The guest triple-faulted (CPU shutdown).
pub const TRIPLE_FAULT: i32 = 71;
/// The guest halted with interrupts disabled.
pub const HALTED: i32 = 72;
/// `--timeout` expired.
pub const TIMEOUT: i32 = 73;
/// `--max-steps` reached before the guest exited.
pub const STEP_LIMIT: i32 = 74;
/// Replay diverged from the recording.
pub const DIVERGENCE: i32 = 75;
/// The trace or snapshot is damaged (truncated, corrupted, newer format).
pub const DAMAGED_TRACE: i32 = 76;
/// The trace was recorded on a host whose CPU model or single-step semantics differ.
pub const INCOMPATIBLE: i32 = 78;
/// `ttvm check`: the recorded outcome is not the expected one.
pub const CHECK_FAILED: i32 = 77;
/// The guest kernel panicked (Linux's end-of-panic line on the console: `commands/panic_watch.rs`).
pub const GUEST_PANIC: i32 = 79;
/// SIGINT/SIGTERM ended the run (128 + SIGINT, as shells report it).
pub const INTERRUPTED: i32 = 130;

/// A failure that maps to a specific exit status.
#[derive(Debug)]
pub struct Exit {
    /// Process exit status.
    pub code: i32,
    /// Message printed on stderr (may be empty).
    pub message: String,
}

impl Exit {
    /// An exit with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The one table from a failure's kind to ttvm's exit status.
pub fn for_kind(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::BadInput => BAD_INPUT,
        ErrorKind::NoKvm => NO_KVM,
        ErrorKind::Damaged => DAMAGED_TRACE,
        ErrorKind::IncompatibleHost => INCOMPATIBLE,
        ErrorKind::Divergence => DIVERGENCE,
        ErrorKind::KvmInternal => KVM_INTERNAL,
        ErrorKind::Interrupted => INTERRUPTED,
        ErrorKind::Host => HOST_ERROR,
    }
}

impl Exit {
    /// The exit for library error `e`, its message prefixed with `context` (a file, a
    /// kernel name) when that is not empty.
    pub fn of(context: impl std::fmt::Display, e: &(impl Classify + std::fmt::Display)) -> Self {
        let context = context.to_string();
        let message = if context.is_empty() { e.to_string() } else { format!("{context}: {e}") };
        Self::new(for_kind(e.kind()), message)
    }
}

/// Maps how the guest stopped to the exit status: a guest's own exit status passes
/// through (its low 8 bits, as a process's would).
pub fn for_guest_stop(stop: &ttvm_vmm::stop::GuestStop) -> i32 {
    use ttvm_vmm::stop::GuestStop;
    match stop {
        GuestStop::DebugExit(code) => (*code & 0xff) as i32,
        GuestStop::TripleFault => TRIPLE_FAULT,
        GuestStop::Halted => HALTED,
        GuestStop::InternalError(_) => KVM_INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statuses scripts depend on (README "Exit statuses"): pinned per kind.
    #[test]
    fn every_kind_has_its_documented_status() {
        let table = [
            (ErrorKind::BadInput, 2),
            (ErrorKind::NoKvm, 3),
            (ErrorKind::KvmInternal, 70),
            (ErrorKind::Divergence, 75),
            (ErrorKind::Damaged, 76),
            (ErrorKind::IncompatibleHost, 78),
            (ErrorKind::Interrupted, 130),
            (ErrorKind::Host, 1),
        ];
        for (kind, status) in table {
            assert_eq!(for_kind(kind), status, "{kind:?}");
        }
    }
}
