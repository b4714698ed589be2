//! Branching history: a new recording that starts from a position of a replayed one.
//!
//! The replay's machine at that position (RAM, vCPU, devices, engine clock) is copied into a
//! fresh VM, which becomes checkpoint 0 of a new trace exactly as a `ttvm run --save-state`
//! snapshot does for `ttvm record --from`; the new trace is self-contained and its header
//! names the parent and the branch point ([`Lineage`]). The replay keeps its own machine, so
//! the parent's history stays available to whoever holds the replay.

use std::path::Path;

use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::devices::Board;
use ttvm_vmm::disk::CowDisk;
use ttvm_vmm::machine::Machine;

use crate::persist::StateError;
use crate::record::{RecordError, RecordOptions, RecordSession, RecordTo};
use crate::replay::{ReplayError, ReplaySession};
use crate::trace::format::{Lineage, MAGIC, PREAMBLE_LEN};

/// Why a branch could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BranchError {
    /// The image given for the parent's disk is not the one the parent was recorded from.
    #[error(
        "{image}: not the image the parent trace was recorded from (block {block} differs from what the trace logged)"
    )]
    WrongImage {
        /// The image.
        image: String,
        /// The first logged block it disagrees with.
        block: u64,
    },
    /// The branch's disk could not be set up.
    #[error(transparent)]
    Disk(#[from] ttvm_vmm::disk::DiskError),
    /// The replay's machine could not be copied.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The new recording could not start.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The parent's identity could not be read.
    #[error("reading {path}: {source}")]
    Parent {
        /// The parent trace.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Where a branch goes: the new trace and its console, and the parent it is named after.
pub struct BranchTo<'a> {
    /// The parent trace file (named in the new trace's lineage).
    pub parent: &'a Path,
    /// The new trace file.
    pub path: &'a Path,
    /// Steps between checkpoints of the new trace.
    pub checkpoint_every: u64,
    /// This host's single-step signature.
    pub stepping: String,
    /// Where the branch's serial output goes.
    pub output: ConsoleOutput,
    /// Where the branch's serial input comes from.
    pub input: ConsoleInput,
    /// The image the parent's disk was recorded from, if the user gave it: sectors the
    /// parent never touched are read from it (without it, reading one stops the branch).
    pub disk_image: Option<&'a Path>,
}

/// A trace's identity: the header checksum in its preamble, which covers the kernel, the
/// machine, the recording host and the creation time.
pub fn trace_id(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut preamble = [0u8; PREAMBLE_LEN];
    std::fs::File::open(path)?.read_exact(&mut preamble)?;
    if preamble[..8] != MAGIC {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a ttvm trace"));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&preamble[16..24]);
    Ok(u64::from_le_bytes(id))
}

impl ReplaySession {
    /// Device time at the current position: what the recording's clock read there.
    pub fn device_time_ns(&self) -> u64 {
        self.env.device_time_ns(self.icount())
    }

    /// A new machine in the state of this one (RAM, vCPU, devices), built from the
    /// recording's configuration with the CPUID vendor the guest saw. The replay is left as
    /// it was.
    pub fn fork_machine(&mut self) -> Result<Machine, ReplayError> {
        let header = self.rec.header();
        let vendor = header.cpuid.vendor_choice();
        let mut machine = Machine::with_vendor(header.machine.clone(), Some(vendor))?;
        let source = self.engine.machine.vm.ram().as_slice();
        let target = machine.vm.ram_mut().as_mut_slice();
        if source.len() != target.len() {
            return Err(ReplayError::Engine(crate::engine::EngineError::Kvm {
                icount: self.icount(),
                message: format!("RAM sizes differ ({} vs {} bytes)", source.len(), target.len()),
            }));
        }
        target.copy_from_slice(source);
        let vcpu = self.engine.machine.vm.vcpu_mut().save_state()?;
        machine.vm.vcpu_mut().restore_state(&vcpu)?;
        let board = &self.engine.machine.board;
        machine.board = Board::from_state(&board.state()).map_err(StateError::from)?;
        // The disk device's state is kept apart from the board's (its own checkpoint field).
        machine.board.restore_disk(board.disk_state().as_ref()).map_err(StateError::from)?;
        Ok(machine)
    }

    /// The disk as it is at the current position, for a machine that goes on from here
    /// (`None` if the recording had no disk): every sector the trace holds there (the
    /// blocks the guest read, the writes before this step) over `image`, the image the
    /// recording was made from, if given; an image that disagrees with a block the trace
    /// logged is refused.
    pub fn fork_disk(&self, image: Option<&Path>) -> Result<Option<CowDisk>, BranchError> {
        let (Some(record), Some(disk)) = (&self.rec.header().disk, &self.env.disk) else { return Ok(None) };
        let image = match image {
            Some(path) => {
                let whole = CowDisk::open(path)?;
                if let Some(block) = disk.first_block_unlike(&whole)? {
                    return Err(BranchError::WrongImage { image: path.display().to_string(), block });
                }
                Some((path, whole))
            }
            None => None,
        };
        Ok(Some(CowDisk::branched(record.capacity_sectors, disk.known_sectors(), image)?))
    }
}

/// Starts recording, into `to.path`, the machine `session` is at: a new trace whose
/// checkpoint 0 is that machine, whose device time goes on from the parent's, and whose
/// header names the parent and the branch icount.
pub fn start_branch(session: &mut ReplaySession, to: BranchTo<'_>) -> Result<RecordSession, BranchError> {
    let header = session.rec.header().clone();
    let disk = session.fork_disk(to.disk_image)?;
    let parent_id =
        trace_id(to.parent).map_err(|source| BranchError::Parent { path: to.parent.display().to_string(), source })?;
    let lineage = Lineage {
        parent_file: to.parent.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        parent_id,
        branch_icount: session.icount(),
    };
    let machine = session.fork_machine()?;
    // Device time, and the TSC the exact engine derives from it, go on from the parent's.
    // (The vCPU's TSC MSR is KVM's own and means nothing here: under the exact engine the
    // guest reads the TSC only through RDTSC/RDTSCP, which the engine emulates.)
    let start_ns = session.device_time_ns();
    let options = RecordOptions {
        clock: header.clock,
        checkpoint_every: to.checkpoint_every,
        kernel_name: header.kernel_name.clone(),
        stepping: to.stepping,
    };
    let record_to = RecordTo { path: to.path, options, output: to.output, input: to.input };
    // The new trace's disk record names the parent's image, whatever file stood in for it.
    let image_name = header.disk.as_ref().map(|d| std::path::PathBuf::from(&d.image_name));
    let disk = image_name.as_deref().zip(disk);
    Ok(RecordSession::start_branch(machine, header.machine, start_ns, lineage, disk, record_to)?)
}

impl ttvm_vmm::error_kind::Classify for BranchError {
    fn kind(&self) -> ttvm_vmm::error_kind::ErrorKind {
        match self {
            Self::WrongImage { .. } => ttvm_vmm::error_kind::ErrorKind::BadInput,
            Self::Disk(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Replay(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Record(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Parent { .. } => ttvm_vmm::error_kind::ErrorKind::BadInput,
        }
    }
}
