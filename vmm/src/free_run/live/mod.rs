//! Live checkpoints of a free run (`ttvm run --checkpoint-every D --checkpoints DIR`) and
//! restart from them (`ttvm resume DIR`).
//!
//! The vCPU thread ([`capture::LiveCheckpointer`]) pauses the guest only to read KVM's dirty
//! log, write-protect the dirty pages (a copier thread, [`cow`], copies them after the guest
//! resumes, each before the guest can write it again) and capture the vCPU, TSC, devices
//! and device clock; a writer thread ([`writer`]) hashes, deduplicates by content, compresses
//! and writes them in an order that survives SIGKILL and power loss. [`restore`] picks the
//! newest checkpoint that checks out completely, reporting and skipping damaged ones.
//! The on-disk format is in [`format`].

pub(crate) mod capture;
pub(crate) mod cow;
pub(crate) mod format;
pub mod restore;
pub(crate) mod stats;
pub mod writer;

use std::path::PathBuf;

pub use capture::LiveCheckpointer;
pub use format::LiveSettings;

/// The guest's serial output, in the checkpoint directory: each checkpoint records its
/// length, and a resumed run cuts it back to that length and appends, so the file reads as
/// one uninterrupted run.
pub const SERIAL_LOG: &str = "serial.log";

/// What the machine booted from (`format::encode_origin`), in the checkpoint directory.
pub const ORIGIN: &str = "origin.ttvmlo";

/// Errors of live checkpointing and restart.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// A file of the directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// `--checkpoints DIR` already holds checkpoints of another run.
    #[error("{0} already holds checkpoints; continue them with `ttvm resume {0}` or choose an empty directory")]
    NotEmpty(PathBuf),
    /// No checkpoint of the directory can be used.
    #[error("{dir}: no usable checkpoint{}", if .reasons.is_empty() { String::new() } else { format!(" ({})", .reasons.join("; ")) })]
    NoCheckpoint {
        /// The directory.
        dir: PathBuf,
        /// Why each candidate was refused.
        reasons: Vec<String>,
    },
    /// The directory's origin file cannot be used.
    #[error("{path}: damaged: {reason}")]
    DamagedOrigin {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Capturing the vCPU failed.
    #[error(transparent)]
    Vcpu(#[from] crate::vcpu::VcpuError),
    /// Reading the dirty log or building a VM failed.
    #[error(transparent)]
    Vm(#[from] crate::vm::VmError),
    /// The writer thread stopped (its own error is reported when the run ends).
    #[error("the checkpoint writer stopped")]
    WriterGone,
}

impl crate::error_kind::Classify for LiveError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            Self::NotEmpty(_) => ErrorKind::BadInput,
            Self::NoCheckpoint { .. } | Self::DamagedOrigin { .. } => ErrorKind::Damaged,
            Self::Vcpu(e) => crate::error_kind::Classify::kind(e),
            Self::Vm(e) => crate::error_kind::Classify::kind(e),
            Self::Io { .. } | Self::WriterGone => ErrorKind::Host,
        }
    }
}
