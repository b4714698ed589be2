//! ttvm's own engines, run in-process so each phase is timed on its own: `ttvm record`
//! (exact engine, icount clock), `ttvm replay --verify`, and `ttvm run` (free engine).

use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;
use ttvm_replay::clock::ClockMode;
use ttvm_replay::record::{RecordEnd, RecordOptions, RecordSession, DEFAULT_CHECKPOINT_EVERY};
use ttvm_replay::trace::{ChunkKind, TraceFile};
use ttvm_vmm::clock::HostClock;
use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::free_run::{run_free, FreeRunEnd, FreeRunOptions};
use ttvm_vmm::machine::{Machine, MachineConfig};

use ttvm::commands::replay::{open_recording, verify_whole};
use ttvm::exit_code::{self, Exit};

/// Longest a free run may take before it counts as a failure.
const FREE_RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// A guest to run: a bundled sample kernel, its command line and RAM size.
#[derive(Clone, Debug, Serialize)]
pub struct Guest {
    /// Sample kernel name.
    pub kernel: String,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest RAM in bytes.
    pub mem: u64,
    /// Steps between checkpoints when recording.
    pub checkpoint_every: u64,
}

impl Guest {
    /// A guest with 128 MiB of RAM and the default checkpoint interval.
    pub fn new(kernel: &str, cmdline: &str) -> Self {
        Self {
            kernel: kernel.to_string(),
            cmdline: cmdline.to_string(),
            mem: ttvm_vmm::machine::DEFAULT_MEM_SIZE,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
        }
    }

    /// The kernel image.
    pub fn elf(&self) -> Result<&'static [u8], Exit> {
        ttvm_sample_kernels::get(&self.kernel)
            .map(|k| k.elf)
            .ok_or_else(|| Exit::new(exit_code::BAD_INPUT, format!("no bundled sample kernel {:?}", self.kernel)))
    }

    /// The machine configuration (RTC at the epoch, so runs are comparable).
    pub fn config(&self) -> Result<MachineConfig, Exit> {
        let mut c = MachineConfig::new(self.elf()?.to_vec(), self.cmdline.clone());
        c.mem_size = self.mem;
        Ok(c)
    }
}

/// Cost of one checkpoint taken while recording.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CheckpointSample {
    /// Where it was taken.
    pub icount: u64,
    /// Pages dirtied since the previous checkpoint (all non-zero pages for the boot image).
    pub dirty_pages: u32,
    /// Of those, pages whose content was new to the trace.
    pub new_pages: u32,
    /// Trace bytes it added.
    pub bytes: u64,
    /// Time to take it, in milliseconds.
    pub ms: f64,
}

/// Where a trace's bytes go.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct TraceComposition {
    /// The whole file.
    pub total_bytes: u64,
    /// Preamble and header (the embedded kernel image is most of it).
    pub header_bytes: u64,
    /// The boot checkpoint (its pages and record).
    pub boot_bytes: u64,
    /// Everything after the boot checkpoint: events, later checkpoints, end record, index.
    pub history_bytes: u64,
}

impl TraceComposition {
    fn of(path: &Path) -> Result<Self, Exit> {
        let f = TraceFile::open(path).map_err(|e| Exit::of(path.display(), &e))?;
        let total = f.file_len();
        let header = f.chunks.first().map_or(total, |c| c.offset);
        let boot_end = f
            .chunks
            .iter()
            .find(|c| c.kind == ChunkKind::Checkpoint)
            .map_or(header, |c| c.payload_start + u64::from(c.payload_len));
        Ok(Self {
            total_bytes: total,
            header_bytes: header,
            boot_bytes: boot_end.saturating_sub(header),
            history_bytes: total.saturating_sub(boot_end),
        })
    }
}

/// One `ttvm record`.
#[derive(Clone, Debug, Serialize)]
pub struct RecordRun {
    /// Steps recorded.
    pub steps: u64,
    /// Seconds in the recording loop (steps and checkpoints after the boot one).
    pub loop_secs: f64,
    /// Seconds from building the machine to the finalised trace.
    pub total_secs: f64,
    /// Events logged.
    pub events: u64,
    /// How the recording ended.
    pub end: String,
    /// Trace size breakdown.
    pub trace: TraceComposition,
    /// Every checkpoint's cost (the first is the boot image).
    pub checkpoints: Vec<CheckpointSample>,
}

/// Records `guest` into `path` with the exact engine and the icount clock.
pub fn record(guest: &Guest, path: &Path) -> Result<RecordRun, Exit> {
    let options = RecordOptions {
        clock: ClockMode::Icount,
        checkpoint_every: guest.checkpoint_every,
        kernel_name: guest.kernel.clone(),
        stepping: ttvm_replay::stepping::host_signature(),
    };
    let started = Instant::now();
    let mut session =
        RecordSession::start(guest.config()?, path, options, ConsoleOutput::Discard, ConsoleInput::none())
            .map_err(|e| Exit::of("recording", &e))?;
    let never = AtomicBool::new(false);
    let loop_start = Instant::now();
    let end = session.run(None, &never, 0, |_| {}).map_err(|e| Exit::of("recording", &e))?;
    let loop_secs = loop_start.elapsed().as_secs_f64();
    let progress = session.finish(&end).map_err(|e| Exit::of("recording", &e))?;
    let total_secs = started.elapsed().as_secs_f64();
    if !matches!(end, RecordEnd::Guest(_)) {
        return Err(Exit::new(
            exit_code::HOST_ERROR,
            format!("recording {} {:?} ended early: {}", guest.kernel, guest.cmdline, end.reason()),
        ));
    }
    let checkpoints = session
        .checkpoint_stats()
        .iter()
        .map(|c| CheckpointSample {
            icount: c.icount,
            dirty_pages: c.dirty_pages,
            new_pages: c.new_pages,
            bytes: c.bytes,
            ms: c.duration.as_secs_f64() * 1e3,
        })
        .collect();
    Ok(RecordRun {
        steps: progress.steps,
        loop_secs,
        total_secs,
        events: progress.events,
        end: end.reason(),
        trace: TraceComposition::of(path)?,
        checkpoints,
    })
}

/// One `ttvm replay --verify`.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayRun {
    /// Steps replayed.
    pub steps: u64,
    /// Seconds replaying and checking (from the boot checkpoint to the final digest).
    pub loop_secs: f64,
    /// Seconds including opening the trace and building the machine.
    pub total_secs: f64,
}

/// Replays the whole trace at `path`, checking everything, as `ttvm replay --verify` does.
pub fn replay_verify(path: &Path) -> Result<ReplayRun, Exit> {
    let started = Instant::now();
    let rec = open_recording(path)?;
    let (steps, loop_secs) = verify_whole(path, Rc::clone(&rec), false)?;
    Ok(ReplayRun { steps, loop_secs, total_secs: started.elapsed().as_secs_f64() })
}

/// One `ttvm run`.
#[derive(Clone, Debug, Serialize)]
pub struct FreeRun {
    /// Seconds in the free engine.
    pub secs: f64,
    /// Seconds including building the machine.
    pub total_secs: f64,
    /// How the guest ended.
    pub end: String,
}

/// Runs `guest` with the free engine (plain KVM_RUN, host clock).
pub fn free_run(guest: &Guest) -> Result<FreeRun, Exit> {
    let started = Instant::now();
    let mut machine = Machine::new(guest.config()?).map_err(|e| Exit::of("ttvm run", &e))?;
    let options =
        FreeRunOptions { timeout: Some(FREE_RUN_TIMEOUT), symbols: None, stop: None, clock: HostClock::new(1) };
    let run_start = Instant::now();
    let end =
        run_free(&mut machine, None, &mut ConsoleOutput::Discard, &mut ConsoleInput::none(), &options, None, None)
            .map_err(|e| Exit::new(exit_code::KVM_INTERNAL, format!("ttvm run: {e}")))?;
    let secs = run_start.elapsed().as_secs_f64();
    let end = match end {
        FreeRunEnd::Guest { stop, .. } => stop.to_string(),
        FreeRunEnd::Timeout | FreeRunEnd::Interrupted => {
            return Err(Exit::new(exit_code::TIMEOUT, format!("ttvm run {}: timeout", guest.kernel)));
        }
    };
    Ok(FreeRun { secs, total_secs: started.elapsed().as_secs_f64(), end })
}
