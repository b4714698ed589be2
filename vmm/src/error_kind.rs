//! What kind of failure an error is: the one classification every crate's errors give, so
//! the CLI maps kinds to exit statuses in one table instead of matching into other
//! crates' error types.

/// The kind of a failure, as a user (or a CI script reading the exit status) cares about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Something the user gave is unusable: a kernel, an argument, a file that is not a
    /// trace or snapshot, a port in use.
    BadInput,
    /// /dev/kvm is missing or unusable.
    NoKvm,
    /// A trace or snapshot is damaged (truncated, corrupted, from a newer format).
    Damaged,
    /// The trace was recorded on a host this one cannot stand in for.
    IncompatibleHost,
    /// Replay no longer matches the recording.
    Divergence,
    /// KVM failed or exited in a way ttvm cannot continue from.
    KvmInternal,
    /// The user interrupted (Ctrl-C, SIGTERM).
    Interrupted,
    /// Anything else on the host's side (an I/O error writing a file, a failed system call).
    Host,
}

/// An error that knows its [`ErrorKind`]. Wrapping errors delegate to what they wrap.
pub trait Classify {
    /// The kind of this failure.
    fn kind(&self) -> ErrorKind;
}
