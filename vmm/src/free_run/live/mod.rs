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
pub mod image;
pub mod restore;
pub mod stats;
pub mod writer;

use std::path::PathBuf;

pub use capture::LiveCheckpointer;
pub use format::LiveSettings;

use std::time::{Duration, Instant};

use crate::clock::HostClock;
use crate::machine::Machine;

/// What the free engine asks of whoever pauses the guest now and then to save it while it
/// runs: a single machine's [`LiveCheckpointer`], or one VM's part in a network's live
/// consistent snapshots (`ttvm run --vm … --snapshot-every`), whose pause also waits for
/// the other VMs. The engine calls [`checkpoint`](Self::checkpoint) between two KVM_RUNs
/// with no exit left to complete, when [`is_due`](Self::is_due).
pub trait LivePause {
    /// Whether a pause is due at `now`.
    fn is_due(&self, now: Instant) -> bool;
    /// Host time until the next pause is due (the engine kicks the vCPU out by then).
    fn until_due(&self, now: Instant) -> Duration;
    /// Takes the pause's capture.
    fn checkpoint(&mut self, machine: &mut Machine, clock: &HostClock) -> Result<(), LiveError>;
    /// The run stops (Ctrl-C, timeout): whatever should be kept of the machine as it stops.
    fn final_checkpoint(&mut self, machine: &mut Machine, clock: &HostClock) -> Result<(), LiveError>;
    /// Guest serial output.
    fn on_serial(&mut self, bytes: &[u8]);
}

impl LivePause for LiveCheckpointer {
    fn is_due(&self, now: Instant) -> bool {
        LiveCheckpointer::is_due(self, now)
    }
    fn until_due(&self, now: Instant) -> Duration {
        LiveCheckpointer::until_due(self, now)
    }
    fn checkpoint(&mut self, machine: &mut Machine, clock: &HostClock) -> Result<(), LiveError> {
        LiveCheckpointer::checkpoint(self, machine, clock)
    }
    fn final_checkpoint(&mut self, machine: &mut Machine, clock: &HostClock) -> Result<(), LiveError> {
        LiveCheckpointer::final_checkpoint(self, machine, clock)
    }
    fn on_serial(&mut self, bytes: &[u8]) {
        LiveCheckpointer::on_serial(self, bytes)
    }
}

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
