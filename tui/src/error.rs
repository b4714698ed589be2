//! The terminal UI's errors. Opening a trace can fail the way `ttvm replay` fails (the CLI maps
//! those to its exit statuses); everything that goes wrong after the UI is up is shown in the
//! UI instead, so only terminal I/O ends a running session with an error.

use ttvm_replay::replay::ReplayError;
use ttvm_replay::timeline::TimelineError;
use ttvm_replay::trace::TraceError;

/// Why `ttvm tui` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// The trace could not be opened or decoded.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The machine to replay it on could not be built (no KVM, incompatible host, damaged
    /// boot checkpoint).
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// Another timeline failure.
    #[error(transparent)]
    Timeline(TimelineError),
    /// A network recording's manifest cannot be used.
    #[error(transparent)]
    Manifest(#[from] ttvm_replay::network::manifest::ManifestError),
    /// A network recording directory that is not one, or misses a trace.
    #[error("{0}")]
    NetworkDir(String),
    /// Standard input/output is not a terminal.
    #[error("ttvm tui needs a terminal (stdin and stdout must be a tty)")]
    NotATerminal,
    /// Reading keys or drawing failed.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

impl From<TimelineError> for TuiError {
    fn from(e: TimelineError) -> Self {
        // Keep replay and trace errors as themselves: the CLI maps them to exit statuses.
        match e {
            TimelineError::Replay(r) => TuiError::Replay(r),
            TimelineError::Trace(t) => TuiError::Trace(t),
            other => TuiError::Timeline(other),
        }
    }
}

impl ttvm_vmm::error_kind::Classify for TuiError {
    fn kind(&self) -> ttvm_vmm::error_kind::ErrorKind {
        match self {
            Self::Trace(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Replay(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Timeline(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::NotATerminal | Self::Manifest(_) | Self::NetworkDir(_) => ttvm_vmm::error_kind::ErrorKind::BadInput,
            Self::Terminal(_) => ttvm_vmm::error_kind::ErrorKind::Host,
        }
    }
}
