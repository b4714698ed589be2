//! Why a guest stopped: the one enum both engines report and traces record (as
//! `ttvm_replay::events::StopKind`, whose encoding it keeps: variant order and shapes are
//! part of the trace format).

use serde::{Deserialize, Serialize};

/// How the guest stopped by itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestStop {
    /// Debug-exit port write with this status.
    DebugExit(u32),
    /// Triple fault (CPU shutdown).
    TripleFault,
    /// HLT with interrupts disabled, or with nothing left that could wake the CPU.
    Halted,
    /// KVM could not continue (internal error, failed entry, unexpected exit).
    InternalError(String),
}

impl std::fmt::Display for GuestStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DebugExit(code) => write!(f, "guest exited with status {code} (debug-exit port)"),
            Self::TripleFault => f.write_str("guest triple fault (CPU shutdown)"),
            Self::Halted => f.write_str("guest halted with interrupts disabled; nothing can wake it"),
            Self::InternalError(reason) => write!(f, "KVM internal error: {reason}"),
        }
    }
}
