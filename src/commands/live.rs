//! The CLI side of live checkpoints: `--checkpoint-every`/`--checkpoints`/`--keep` of `ttvm
//! run` and `ttvm resume FILE`, and `ttvm resume DIR`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use ttvm_vmm::clock::HostClock;
use ttvm_vmm::live::restore::{self, Restored};
use ttvm_vmm::live::{LiveCheckpointer, LiveError, LiveSettings};
use ttvm_vmm::machine::Machine;
use ttvm_vmm::snapshot::{LoadedSnapshot, SnapshotOrigin};

use crate::exit_code::{self, Exit};

/// Checkpoints kept when `--keep` is not given.
pub const DEFAULT_KEEP: u32 = 3;

/// Live checkpoint options.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Take a live checkpoint every DURATION of host time (`200ms`, `5s`, `2m`) into
    /// --checkpoints DIR; `ttvm resume DIR` continues from the newest complete one after a
    /// crash (even SIGKILL or power loss).
    #[arg(long, value_name = "DURATION", value_parser = crate::options::parse_duration, requires = "checkpoints")]
    pub checkpoint_every: Option<Duration>,
    /// Directory the live checkpoints go to (created if missing; must not hold checkpoints).
    #[arg(long, value_name = "DIR", requires = "checkpoint_every")]
    pub checkpoints: Option<PathBuf>,
    /// Keep the newest N live checkpoints [default: 3].
    #[arg(long, value_name = "N", requires = "checkpoints", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keep: Option<u32>,
}

impl LiveArgs {
    /// Starts checkpointing `machine` (not yet running) when asked to; `origin` (what it
    /// booted from) goes into the directory, so its checkpoints can start a recording.
    pub fn start(
        &self,
        machine: &mut Machine,
        clock: &HostClock,
        origin: Option<&SnapshotOrigin>,
    ) -> Result<Option<LiveCheckpointer>, Exit> {
        let (Some(every), Some(dir)) = (self.checkpoint_every, &self.checkpoints) else {
            return Ok(None);
        };
        let settings =
            LiveSettings { interval_ms: every.as_millis().max(1) as u64, keep: self.keep.unwrap_or(DEFAULT_KEEP) };
        LiveCheckpointer::start(dir, settings, machine, clock, origin)
            .map(Some)
            .map_err(|e| live_exit(&e, &format!("--checkpoints {}", dir.display())))
    }

    /// Refuses live checkpoints together with `what`, which they do not cover.
    pub fn refuse_with(&self, what: &str) -> Result<(), Exit> {
        if self.checkpoint_every.is_some() {
            return Err(Exit::new(exit_code::BAD_INPUT, format!("--checkpoint-every cannot be combined with {what}")));
        }
        Ok(())
    }

    /// Refuses these options for `ttvm resume DIR`, which keeps the directory's own schedule.
    pub fn refuse_for_dir(&self, dir: &Path) -> Result<(), Exit> {
        if self.checkpoint_every.is_some() || self.checkpoints.is_some() || self.keep.is_some() {
            return Err(Exit::new(
                exit_code::BAD_INPUT,
                format!(
                    "{}: resuming a checkpoint directory goes on checkpointing into it on its own schedule; \
                     --checkpoint-every, --checkpoints and --keep are for a new directory",
                    dir.display()
                ),
            ));
        }
        Ok(())
    }
}

/// The exit status and message of a live-checkpoint error about `what`.
pub fn live_exit(e: &LiveError, what: &str) -> Exit {
    Exit::of(what, e)
}

/// A running machine from a checkpoint directory: the machine, its clock, the checkpointer
/// going on into the directory, and what it booted from (`None`: an older directory).
pub type ResumedDir = (Machine, HostClock, LiveCheckpointer, Option<SnapshotOrigin>);

/// Refuses a directory that holds no checkpoint file.
fn require_checkpoint_dir(dir: &Path) -> Result<(), Exit> {
    if !restore::is_checkpoint_dir(dir) {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!("{}: a directory without live checkpoints (ttvm run --checkpoints DIR makes them)", dir.display()),
        ));
    }
    Ok(())
}

/// `ttvm record --from DIR`: the newest usable checkpoint as the machine a snapshot loads
/// into, with what was skipped reported, and how to name it in messages. The directory is
/// left as it is.
pub fn load_for_recording(dir: &Path) -> Result<(LoadedSnapshot, String), Exit> {
    require_checkpoint_dir(dir)?;
    let (loaded, seq, skipped) = restore::load_for_recording(dir).map_err(|e| live_exit(&e, "record --from"))?;
    for s in &skipped {
        eprintln!("ttvm: {}: {s}; using an older checkpoint", dir.display());
    }
    Ok((loaded, format!("checkpoint {seq} of {}", dir.display())))
}

/// `ttvm resume DIR`: the newest usable checkpoint, with what was skipped reported.
pub fn resume_dir(dir: &Path) -> Result<ResumedDir, Exit> {
    require_checkpoint_dir(dir)?;
    let started = std::time::Instant::now();
    let restored: Restored = restore::load_newest(dir).map_err(|e| live_exit(&e, "resume"))?;
    for s in &restored.skipped {
        eprintln!("ttvm: {}: {s}; using an older checkpoint", dir.display());
    }
    if let Some(note) = &restored.serial_note {
        eprintln!("ttvm: warning: {note}");
    }
    eprintln!(
        "ttvm: resuming {} from checkpoint {} (restored in {:.1} ms) at {:.3} s of guest device time, \
         serial output continuing after byte {}; checkpoints go on every {} ms, keeping {}",
        dir.display(),
        restored.seq,
        started.elapsed().as_secs_f64() * 1e3,
        ttvm_vmm::clock::Clock::now_ns(&restored.clock) as f64 / 1e9,
        restored.serial_len,
        restored.settings.interval_ms,
        restored.settings.keep,
    );
    let origin = restored.origin.clone();
    let (machine, clock, live) =
        restored.start_checkpointing().map_err(|e| live_exit(&e, &dir.display().to_string()))?;
    Ok((machine, clock, live, origin))
}

/// Waits for the writer and prints what the run measured.
pub fn finish(live: LiveCheckpointer) -> Result<(), Exit> {
    let dir = live.dir().to_path_buf();
    let summary = live.finish().map_err(|e| live_exit(&e, &format!("--checkpoints {}", dir.display())))?;
    eprintln!("ttvm: {summary}; in {} (continue with `ttvm resume {}`)", dir.display(), dir.display());
    Ok(())
}

/// `ttvm info DIR`: the checkpoints of a live-checkpoint directory, newest last, each checked
/// as `resume` would check its file (pages are checked when resuming).
pub fn info(dir: &Path) -> Result<i32, Exit> {
    let (checkpoints, packs) = restore::list(dir).map_err(|e| live_exit(&e, "info"))?;
    if checkpoints.is_empty() {
        return Err(Exit::new(exit_code::BAD_INPUT, format!("{}: no live checkpoints in it", dir.display())));
    }
    let size = |name: String| std::fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or(0);
    let pack_bytes: u64 = packs.iter().map(|&p| size(ttvm_vmm::live::writer::pack_name(p))).sum();
    let mut out = format!("live checkpoints in {}\n", dir.display());
    let mut usable = 0;
    for &seq in &checkpoints {
        let bytes = size(ttvm_vmm::live::writer::checkpoint_name(seq));
        match restore::read_checkpoint(dir, seq) {
            Ok(cp) => {
                usable += 1;
                out.push_str(&format!(
                    "  checkpoint {seq}: guest device time {:.3} s, RIP {:#x}, {} non-zero pages, serial byte {}, \
                     {bytes} bytes; every {} ms, keeping {}\n",
                    cp.machine.clock_ns as f64 / 1e9,
                    cp.machine.vcpu.regs.rip,
                    cp.pages.len(),
                    cp.serial_len,
                    cp.settings.interval_ms,
                    cp.settings.keep,
                ));
            }
            Err(e) => out.push_str(&format!("  checkpoint {seq}: DAMAGED: {e}\n")),
        }
    }
    out.push_str(&format!("  {} page packs, {pack_bytes} bytes\n", packs.len()));
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    Ok(if usable == 0 { exit_code::DAMAGED_TRACE } else { 0 })
}
