//! The vCPU thread's side of live checkpoints: when one is due the free engine calls
//! [`LiveCheckpointer::checkpoint`] between two KVM_RUNs, which reads and resets KVM's dirty
//! log, write-protects the dirty pages for the copier thread to copy after the guest
//! resumes (`cow.rs`), captures the machine state and hands both on. That is the whole
//! guest pause; it is measured here. Where userfaultfd cannot write-protect guest RAM (or
//! `TTVM_LIVE_COPY_IN_PAUSE=1`), the pause copies the dirty pages itself into a buffer the
//! writer gave back (already faulted in, so the copy is a plain memcpy).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cow::{CowCopier, WriteProtect};
use super::format::LiveSettings;
use super::stats::LiveSummary;
use super::writer::{self, Job, WriterState, Written};
use super::{LiveError, SERIAL_LOG};
use crate::clock::HostClock;
use crate::machine::Machine;
use crate::memory::PAGE_SIZE;
use crate::snapshot::SnapshotOrigin;

/// Checkpoints the writer may have queued before the next one is put off: a slow disk then
/// costs checkpoints, never guest time or unbounded memory.
const MAX_IN_FLIGHT: usize = 2;

/// Copy buffers in circulation: one being filled and [`MAX_IN_FLIGHT`] with the writer.
const BUFFERS: usize = MAX_IN_FLIGHT + 1;
/// Size the buffers are faulted in to before the first checkpoint (or the RAM size if less):
/// the dirty volume per interval the downtime goal is set for.
const PREFAULT_BYTES: usize = 16 << 20;

/// `buf` emptied, with room for `size` bytes that are all faulted in.
fn prefaulted(mut buf: Vec<u8>, size: usize) -> Vec<u8> {
    buf.clear();
    if buf.capacity() < size {
        buf = Vec::with_capacity(size);
        // Not zeros: malloc + memset(0) may become calloc, whose pages fault in later.
        buf.resize(size, 1);
        buf.clear();
    }
    buf
}

/// The writer runs at a lower priority than the vCPU thread: on a busy host it is the one
/// that waits.
pub(crate) fn lower_priority() {
    // SAFETY: gettid and setpriority have no memory preconditions; a failure only leaves
    // the priority as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// Takes the checkpoints of one run.
pub struct LiveCheckpointer {
    dir: PathBuf,
    interval: Duration,
    next_due: Instant,
    next_seq: u64,
    jobs: Option<mpsc::Sender<Job>>,
    buffers: mpsc::Receiver<Vec<u8>>,
    reports: mpsc::Receiver<Written>,
    in_flight: Arc<AtomicUsize>,
    writer: Option<JoinHandle<Result<(), LiveError>>>,
    serial: File,
    serial_len: u64,
    serial_error: Option<std::io::Error>,
    summary: LiveSummary,
    /// The copier, when dirty pages are copied on write after the pause.
    cow: Option<CowCopier>,
}

impl LiveCheckpointer {
    /// Starts checkpointing `machine` into `dir` (created if missing; it must not hold
    /// checkpoints already) with a base checkpoint of its present state, taken before the
    /// guest runs again. `origin`, what the machine booted from, is written beside them
    /// (`None`: a machine resumed from a snapshot too old to say).
    pub fn start(
        dir: &Path,
        settings: LiveSettings,
        machine: &mut Machine,
        clock: &HostClock,
        origin: Option<&SnapshotOrigin>,
    ) -> Result<Self, LiveError> {
        let io = |source| LiveError::Io { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            if writer::checkpoint_seq(&name.to_string_lossy()).is_some() {
                return Err(LiveError::NotEmpty(dir.to_path_buf()));
            }
        }
        let log = dir.join(SERIAL_LOG);
        let serial = File::create(&log).map_err(|source| LiveError::Io { path: log, source })?;
        writer::write_origin(dir, origin)?;
        let mut me = Self::spawn(WriterState::new(dir, settings), 0, serial, 0, machine)?;
        // Everything the dirty log has not seen (the loaded kernel, a restored snapshot) goes
        // into the base: all non-zero pages. The guest has not run, so this is no pause.
        machine.vm.take_dirty_pages()?;
        let pfns = machine.vm.ram().nonzero_pages();
        me.send(machine, clock, pfns)?;
        Ok(me)
    }

    /// Goes on checkpointing a machine `restore` rebuilt from checkpoint `seq` of `state`'s
    /// directory: it is the base, the next one is numbered `next_seq`.
    pub(crate) fn resume(
        state: WriterState,
        next_seq: u64,
        serial_len: u64,
        machine: &mut Machine,
    ) -> Result<Self, LiveError> {
        let log = state.dir.join(SERIAL_LOG);
        let serial = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .map_err(|source| LiveError::Io { path: log, source })?;
        // Restoring wrote RAM from the host side, which KVM did not log; start clean.
        machine.vm.take_dirty_pages()?;
        Self::spawn(state, next_seq, serial, serial_len, machine)
    }

    fn spawn(
        mut state: WriterState,
        next_seq: u64,
        serial: File,
        serial_len: u64,
        machine: &Machine,
    ) -> Result<Self, LiveError> {
        let mem_size = machine.vm.ram().size();
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (buffer_tx, buffers) = mpsc::channel();
        let (report_tx, reports) = mpsc::channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&in_flight);
        let interval = Duration::from_millis(state.settings.interval_ms.max(1));
        let dir = state.dir.clone();
        let writer = std::thread::Builder::new()
            .name("ttvm-checkpoint-writer".into())
            .spawn(move || {
                lower_priority();
                // Buffers ready before the first pause, faulted in here rather than by the
                // copy: a fresh 16 MiB buffer costs the pause several milliseconds of faults.
                let mut size = (mem_size as usize).min(PREFAULT_BYTES);
                for _ in 0..BUFFERS {
                    let _ = buffer_tx.send(prefaulted(Vec::new(), size));
                }
                for job in job_rx {
                    let written = state.write(&job);
                    count.fetch_sub(1, Ordering::AcqRel);
                    let _ = report_tx.send(written?);
                    // Handed back at least as large as the largest copy so far.
                    size = size.max(job.data.len());
                    let _ = buffer_tx.send(prefaulted(job.data, size));
                }
                Ok(())
            })
            .map_err(|source| LiveError::Io { path: dir.clone(), source })?;
        let (cow, copy_mode) = Self::copier(machine, &jobs);
        let summary = LiveSummary { copy_mode, ..Default::default() };
        Ok(Self {
            dir,
            interval,
            next_due: Instant::now() + interval,
            next_seq,
            jobs: Some(jobs),
            buffers,
            reports,
            in_flight,
            writer: Some(writer),
            serial,
            serial_len,
            serial_error: None,
            summary,
            cow,
        })
    }

    /// The copy-on-write copier for `machine`'s RAM, passing checkpoints on to `writer`, and
    /// how pages are copied (for the summary).
    fn copier(machine: &Machine, writer: &mpsc::Sender<Job>) -> (Option<CowCopier>, String) {
        if std::env::var_os("TTVM_LIVE_COPY_IN_PAUSE").is_some_and(|v| v == "1") {
            return (None, "copied in the pause (TTVM_LIVE_COPY_IN_PAUSE=1)".into());
        }
        let ram = machine.vm.ram();
        let started =
            WriteProtect::register(ram.host_addr(), ram.size()).and_then(|wp| CowCopier::start(wp, writer.clone()));
        match started {
            Ok(c) => (Some(c), "copied on write".into()),
            Err(e) => (None, format!("copied in the pause (no userfaultfd write protection: {e})")),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a checkpoint is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next_due
    }

    /// Host time until the next checkpoint is due (the engine kicks the vCPU out by then).
    pub fn until_due(&self, now: Instant) -> Duration {
        self.next_due.saturating_duration_since(now)
    }

    /// Guest serial output, appended to `serial.log`.
    pub fn on_serial(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.serial_error.is_some() {
            return;
        }
        match self.serial.write_all(bytes) {
            Ok(()) => self.serial_len += bytes.len() as u64,
            Err(e) => self.serial_error = Some(e),
        }
    }

    /// Takes a live checkpoint (the caller has the vCPU out of KVM_RUN with no exit left to
    /// complete). Put off, not taken, while the writer is [`MAX_IN_FLIGHT`] behind: KVM's
    /// dirty log keeps accumulating for the next one.
    pub fn checkpoint(&mut self, machine: &mut Machine, clock: &HostClock) -> Result<(), LiveError> {
        let paused = Instant::now();
        self.next_due = paused + self.interval;
        let copying = self.cow.as_ref().is_some_and(CowCopier::busy);
        if copying || self.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
            self.summary.postponed += 1;
            return Ok(());
        }
        let pfns = machine.vm.take_dirty_pages()?;
        let dirtied = pfns.len() as u64;
        if self.cow.is_some() {
            self.send_protected(machine, clock, pfns)?;
        } else {
            self.send(machine, clock, pfns)?;
        }
        self.summary.downtimes.push(paused.elapsed());
        self.summary.dirtied.push(dirtied);
        Ok(())
    }

    /// The last checkpoint of a run stopped by Ctrl-C or its timeout (the caller has the vCPU
    /// between two instructions), queued whatever the writer still has to write, so the
    /// directory ends where the guest stopped. Not a pause the guest sees, so it is left out
    /// of the downtime figures.
    pub fn final_checkpoint(&mut self, machine: &mut Machine, clock: &HostClock) -> Result<(), LiveError> {
        let pfns = machine.vm.take_dirty_pages()?;
        self.send(machine, clock, pfns)?;
        self.summary.final_taken = true;
        Ok(())
    }

    /// Copies `pfns` and the machine state and queues them for the writer.
    fn send(&mut self, machine: &mut Machine, clock: &HostClock, pfns: Vec<u32>) -> Result<(), LiveError> {
        let mut data = self.buffers.try_recv().unwrap_or_default();
        data.clear();
        data.reserve(pfns.len() * PAGE_SIZE);
        let ram = machine.vm.ram().as_slice();
        for &pfn in &pfns {
            let at = pfn as usize * PAGE_SIZE;
            data.extend_from_slice(&ram[at..at + PAGE_SIZE]);
        }
        let job = self.job(machine, clock, pfns, data)?;
        let sent = match &mut self.cow {
            Some(cow) => cow.send_copied(job),
            None => self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok()),
        };
        if !sent {
            return Err(self.writer_error());
        }
        Ok(())
    }

    /// Write-protects `pfns` and queues them with the machine state for the copier, which
    /// copies them after the guest resumes.
    fn send_protected(&mut self, machine: &mut Machine, clock: &HostClock, pfns: Vec<u32>) -> Result<(), LiveError> {
        let data = self.buffers.try_recv().unwrap_or_default();
        let job = self.job(machine, clock, pfns, data)?;
        let Some(cow) = self.cow.as_mut() else { return Err(LiveError::WriterGone) };
        match cow.send_protected(job) {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.writer_error()),
            Err(source) => Err(LiveError::Io { path: self.dir.clone(), source }),
        }
    }

    /// The next checkpoint's job: the machine state now, with `pfns` and their `data`.
    fn job(
        &mut self,
        machine: &mut Machine,
        clock: &HostClock,
        pfns: Vec<u32>,
        data: Vec<u8>,
    ) -> Result<Job, LiveError> {
        let state = crate::snapshot::machine_state(machine, clock)?;
        let job = Job { seq: self.next_seq, machine: state, serial_len: self.serial_len, pfns, data, net: None };
        self.next_seq += 1;
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Ok(job)
    }

    /// The copier's or the writer's own error once it has stopped.
    fn writer_error(&mut self) -> LiveError {
        if let Some(Err(source)) = self.cow.take().map(|mut c| c.finish()) {
            return LiveError::Io { path: self.dir.clone(), source };
        }
        self.jobs = None;
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => e,
            _ => LiveError::WriterGone,
        }
    }

    /// Waits for the writer to finish what it was given and returns what the run measured.
    pub fn finish(mut self) -> Result<LiveSummary, LiveError> {
        // The copier passes everything it holds on to the writer before it ends.
        if let Some(Err(source)) = self.cow.take().map(|mut c| c.finish()) {
            return Err(LiveError::Io { path: self.dir.clone(), source });
        }
        self.jobs = None;
        if let Some(w) = self.writer.take() {
            match w.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(LiveError::WriterGone),
            }
        }
        for w in self.reports.try_iter() {
            self.summary.bytes += w.bytes;
            self.summary.stored += w.stored;
            self.summary.deduplicated += w.deduplicated;
        }
        if let Some(source) = self.serial_error.take() {
            return Err(LiveError::Io { path: self.dir.join(SERIAL_LOG), source });
        }
        Ok(std::mem::take(&mut self.summary))
    }
}
