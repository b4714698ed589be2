//! Recording: the exact engine with live devices, logging every input and output into a
//! trace file, with periodic incremental checkpoints.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::devices::Board;
use ttvm_vmm::disk::{CowDisk, DiskError};
use ttvm_vmm::machine::{Machine, MachineConfig, MachineError};

use crate::checkpoint::{ram_digest, register_digest, CheckpointRecord, PageStoreWriter};
use crate::clock::{ClockMode, EngineClock, NS_PER_STEP};
use crate::disk::DiskRecorder;
use crate::engine::{Emulated, Engine, EngineError, HaltOutcome, StepEnv, StepOutcome, StepRules};
use crate::event_log::EventLogWriter;
use crate::events::{Event, EventKind, IoData, StopKind};
use crate::trace::format::{code_block, kernel_hash, DiskRecord, EndRecord, HostRecord, IntervalCode, Lineage};
use crate::trace::{ChunkKind, TraceHeader, TraceWriter, FORMAT_VERSION};

/// Default steps between checkpoints, chosen from the measurements in docs/PERFORMANCE.md
/// ("Checkpoint policy"): the first reverse step after arriving somewhere replays up to one
/// interval, ~0.2 s at 7-8 µs per step on these hosts, inside the 250 ms target; the
/// recording is no slower than with 4× fewer checkpoints (a checkpoint costs ~0.3 ms), and
/// the trace grows by the pages each interval dirties (2.4 MB per million steps for
/// memory-heavy `bench`, 0.1 MB for `timer`).
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 25_000;

/// Buffered event bytes that trigger writing an events chunk.
const FLUSH_BYTES: usize = 64 << 10;
/// Longest time events stay buffered in memory (bounds what a SIGKILL can lose).
const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Errors while recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The machine could not be built.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The trace could not be written.
    #[error("writing the trace: {0}")]
    Io(#[from] std::io::Error),
    /// Saving vCPU state failed.
    #[error(transparent)]
    Vcpu(#[from] ttvm_vmm::vcpu::VcpuError),
    /// Reading the dirty log failed.
    #[error(transparent)]
    Vm(#[from] ttvm_vmm::vm::VmError),
    /// The disk image could not be opened.
    #[error(transparent)]
    Disk(#[from] ttvm_vmm::disk::DiskError),
}

/// Recording options.
#[derive(Clone, Debug)]
pub struct RecordOptions {
    /// Clock mode.
    pub clock: ClockMode,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Name of the kernel for display.
    pub kernel_name: String,
    /// Signature of this host's single-step semantics.
    pub stepping: String,
}

/// The recording environment: devices, clock, console and event log.
#[derive(Debug)]
pub struct Recorder {
    clock: EngineClock,
    log: EventLogWriter,
    output: ConsoleOutput,
    input: ConsoleInput,
    out_buf: Vec<u8>,
    random: Vec<u64>,
    /// Serial output produced so far (kept for summaries and live debugging).
    pub serial: Vec<u8>,
    /// Set by SIGINT/SIGTERM: the waits inside HLT give up on it, so a guest waiting for
    /// input that never comes cannot keep a recording from stopping.
    interrupt: Option<&'static AtomicBool>,
    /// The disk (`--disk`): the image behind copy-on-write, and what the trace holds of it.
    disk: Option<DiskRecorder>,
    /// The trace's content-addressed page store: checkpoint pages and (format 5) the disk
    /// blocks the guest read or wrote, so each content is stored once whichever came first.
    pages: PageStoreWriter,
    /// The VM's port on a network, if it is in one.
    net: Option<crate::network::record::NetRecorder>,
    /// Whether disk data goes to the page store (format 5's encoding; on unless
    /// `TTVM_DISK_INLINE=1` asks for format 4's inline data, to measure what sharing saves).
    disk_pages: bool,
}

impl Recorder {
    fn log(&mut self, icount: u64, kind: EventKind) {
        let e = Event { icount, kind };
        if self.disk_pages {
            let pages = &mut self.pages;
            self.log.push_with_pages(&e, Some(&mut |page: &[u8]| pages.intern(page)));
        } else {
            self.log.push(&e);
        }
    }

    fn interrupted(&self) -> bool {
        self.interrupt.is_some_and(|f| f.load(Ordering::Relaxed))
    }

    fn host_random(&mut self) -> u64 {
        if self.random.is_empty() {
            let mut buf = [0u8; 512];
            // SAFETY: getrandom writes at most buf.len() bytes into buf.
            let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
            let n = if n > 0 { n as usize } else { 0 };
            for c in buf[..n - n % 8].chunks_exact(8) {
                self.random.push(u64::from_le_bytes(c.try_into().unwrap_or_default()));
            }
            if self.random.is_empty() {
                // getrandom failing is not expected; fall back to the TSC so the guest
                // still gets a (logged) value.
                // SAFETY: RDTSC has no preconditions.
                self.random.push(unsafe { core::arch::x86_64::_rdtsc() });
            }
        }
        self.random.pop().unwrap_or_default()
    }

    fn feed_input(&mut self, board: &mut Board, icount: u64) {
        if self.input.is_live() && icount.is_multiple_of(1024) {
            self.input.poll();
        }
        if self.input.pending().is_empty() || board.serial_input_space() == 0 {
            return;
        }
        let take = self.input.pending().len().min(board.serial_input_space());
        let bytes: Vec<u8> = self.input.pending().iter().take(take).copied().collect();
        let n = board.serial_input(&bytes);
        for &byte in &bytes[..n] {
            self.log(icount, EventKind::SerialIn { byte });
        }
        self.input.consume(n);
    }

    fn drain_output(&mut self, board: &mut Board, icount: u64) {
        board.drain_serial_output(&mut self.out_buf);
        if self.out_buf.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.out_buf);
        for &byte in &bytes {
            self.log(icount, EventKind::SerialOut { byte });
        }
        self.output.write(&bytes);
        self.serial.extend_from_slice(&bytes);
        self.out_buf = bytes;
        self.out_buf.clear();
    }

    fn unmodelled(&mut self, icount: u64, mmio: bool, addr: u64, rip: u64) {
        eprintln!(
            "ttvm: guest touched unmodelled {} {addr:#x} (RIP {rip:#x}, icount {icount}); reads return all ones",
            if mmio { "MMIO" } else { "port" }
        );
        self.log(icount, EventKind::Unmodelled { mmio, addr, rip });
    }
}

impl Recorder {
    /// Completes the disk's due requests and logs what they did.
    fn disk_at_boundary(&mut self, machine: &mut Machine, icount: u64) -> Result<(), EngineError> {
        let Some(disk) = self.disk.as_mut() else { return Ok(()) };
        if !machine.board.disk_due(self.clock.now_ns(icount)) {
            return Ok(());
        }
        // A branch's disk without its image may not hold a sector the guest now reads:
        // found before the device writes guest memory, so the trace kept up to here replays.
        if !disk.backend().holds_every_sector() {
            let ops = machine.pending_disk_ops().map_err(|e| EngineError::Io(std::io::Error::other(e)))?;
            if let Some(sector) = disk.backend().first_unreadable(&ops) {
                return Err(EngineError::Disk { icount, source: DiskError::UnknownAtBranch { sector } });
            }
        }
        let mut done = machine.complete_disk(disk.backend()).map_err(|e| EngineError::Io(std::io::Error::other(e)))?;
        // Reading the disk failed: what the guest got is not reproducible, so the
        // recording stops here.
        if let Some(source) = done.errors.drain(..).next() {
            return Err(EngineError::Disk { icount, source });
        }
        let events = disk.events_for(&done).map_err(|source| EngineError::Disk { icount, source })?;
        for kind in events {
            self.log(icount, kind);
        }
        Ok(())
    }
}

impl StepEnv for Recorder {
    fn devices_at_boundary(&mut self, machine: &mut Machine, icount: u64) -> Result<(), EngineError> {
        self.disk_at_boundary(machine, icount)?;
        if let Some(mut net) = self.net.take() {
            let now = self.clock.now_ns(icount);
            let done = net.exchange(machine, icount, now, &mut |kind| self.log(icount, kind));
            self.net = Some(net);
            done?;
        }
        Ok(())
    }

    fn at_boundary(&mut self, board: &mut Board, icount: u64, window_open: bool) -> Result<Option<u8>, EngineError> {
        let now = self.clock.now_ns(icount);
        board.advance(now);
        self.feed_input(board, icount);
        if window_open && board.interrupt_pending() {
            let vector = board.acknowledge_interrupt();
            self.log(icount, EventKind::Interrupt { vector });
            return Ok(Some(vector));
        }
        Ok(None)
    }

    fn port_in(
        &mut self,
        board: &mut Board,
        icount: u64,
        port: u16,
        data: &mut [u8],
        rip: u64,
    ) -> Result<(), EngineError> {
        let now = self.clock.now_ns(icount);
        let outcome = board.pio_read(port, data, now);
        if outcome.first_unmodelled {
            self.unmodelled(icount, false, u64::from(port), rip);
        }
        self.log(icount, EventKind::PortIn { port, data: IoData::from_slice(data) });
        Ok(())
    }

    fn port_out(
        &mut self,
        board: &mut Board,
        icount: u64,
        port: u16,
        data: &[u8],
        rip: u64,
    ) -> Result<Option<StopKind>, EngineError> {
        let now = self.clock.now_ns(icount);
        let outcome = board.pio_write(port, data, now);
        self.log(icount, EventKind::PortOut { port, data: IoData::from_slice(data) });
        if outcome.first_unmodelled {
            self.unmodelled(icount, false, u64::from(port), rip);
        }
        self.drain_output(board, icount);
        if let Some(code) = outcome.exit_code {
            let stop = StopKind::DebugExit(code);
            self.log(icount, EventKind::Stop(stop.clone()));
            return Ok(Some(stop));
        }
        Ok(None)
    }

    fn mmio_read(
        &mut self,
        board: &mut Board,
        icount: u64,
        addr: u64,
        data: &mut [u8],
        rip: u64,
    ) -> Result<(), EngineError> {
        if board.mmio_read(addr, data).first_unmodelled {
            self.unmodelled(icount, true, addr, rip);
        }
        self.log(icount, EventKind::MmioRead { addr, data: IoData::from_slice(data) });
        Ok(())
    }

    fn mmio_write(
        &mut self,
        board: &mut Board,
        icount: u64,
        addr: u64,
        data: &[u8],
        rip: u64,
    ) -> Result<(), EngineError> {
        if board.mmio_write(addr, data).first_unmodelled {
            self.unmodelled(icount, true, addr, rip);
        }
        self.log(icount, EventKind::MmioWrite { addr, data: IoData::from_slice(data) });
        Ok(())
    }

    fn emulated_value(&mut self, _board: &mut Board, icount: u64, what: Emulated) -> Result<u64, EngineError> {
        let tsc = EngineClock::tsc_at(self.clock.now_ns(icount));
        let (value, kind): (u64, fn(u64) -> EventKind) = match what {
            Emulated::Rdtsc => (tsc, |value| EventKind::Rdtsc { value }),
            Emulated::Rdtscp => (tsc, |value| EventKind::Rdtscp { value }),
            Emulated::RdmsrTsc => (tsc, |value| EventKind::RdmsrTsc { value }),
            Emulated::Rdrand => (self.host_random(), |value| EventKind::Rdrand { value }),
            Emulated::Rdseed => (self.host_random(), |value| EventKind::Rdseed { value }),
        };
        self.log(icount, kind(value));
        Ok(value)
    }

    fn halt(&mut self, board: &mut Board, icount: u64, interrupts_enabled: bool) -> Result<HaltOutcome, EngineError> {
        let stop = |this: &mut Self| {
            this.log(icount, EventKind::Stop(StopKind::Halted));
            Ok(HaltOutcome::Stop(StopKind::Halted))
        };
        if !interrupts_enabled {
            return stop(self);
        }
        loop {
            let now = self.clock.now_ns(icount);
            board.advance(now);
            self.feed_input(board, icount);
            if board.interrupt_pending() || board.disk_due(now) || board.net_tx_due(now) {
                return Ok(HaltOutcome::Continue);
            }
            if let Some(net) = &self.net {
                // A frame for the card: it enters at the next boundary (before any timer
                // deadline, which in icount mode would otherwise be jumped to at once).
                if net.wakes() {
                    return Ok(HaltOutcome::Continue);
                }
                if self.interrupted() {
                    return Ok(HaltOutcome::Continue); // as below
                }
                // Another VM may still send: wait for its frame rather than stop or skip
                // ahead; icount-mode deadlines are taken only if nothing arrives meanwhile.
                net.wait(Duration::from_millis(2));
                if net.wakes() {
                    return Ok(HaltOutcome::Continue);
                }
            }
            match board.next_deadline() {
                Some(deadline) => match self.clock.mode {
                    ClockMode::Icount => {
                        self.clock.idle_until(icount, deadline);
                        let now = self.clock.now_ns(icount);
                        board.advance(now);
                        return Ok(HaltOutcome::Continue);
                    }
                    ClockMode::Realtime => {
                        if self.interrupted() {
                            // End the HLT as if woken (replay's HLT always continues):
                            // the step completes with what it logged, and the record loop
                            // stops before the next one.
                            return Ok(HaltOutcome::Continue);
                        }
                        let wait = deadline.saturating_sub(now).min(1_000_000);
                        std::thread::sleep(Duration::from_nanos(wait.max(1_000)));
                    }
                },
                None if self.input.is_live() => {
                    if self.interrupted() {
                        return Ok(HaltOutcome::Continue); // as above
                    }
                    self.input.poll();
                    if self.input.pending().is_empty() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                None if !self.input.pending().is_empty() => return Ok(HaltOutcome::Continue),
                // On a network another VM may still send (the wait is above).
                None if self.net.is_some() => {}
                None => return stop(self),
            }
        }
    }

    fn guest_stop(&mut self, _board: &mut Board, icount: u64, stop: &StopKind) -> Result<(), EngineError> {
        self.log(icount, EventKind::Stop(stop.clone()));
        Ok(())
    }
}

/// Progress of a recording, for status lines.
#[derive(Clone, Debug, Default)]
pub struct RecordProgress {
    /// Steps recorded.
    pub steps: u64,
    /// Events logged.
    pub events: u64,
    /// Checkpoints taken.
    pub checkpoints: u32,
    /// Trace bytes written.
    pub trace_bytes: u64,
    /// Time since the recording started.
    pub elapsed: Duration,
}

/// How a recording ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordEnd {
    /// The guest stopped.
    Guest(StopKind),
    /// The step limit was reached.
    StepLimit,
    /// The user interrupted (SIGINT/SIGTERM).
    Interrupted,
    /// The guest entered user mode, which cannot be single-stepped here.
    UserMode {
        /// Where.
        rip: u64,
        /// Why it could not be recorded, when this host can step ring 3 but not this entry.
        why: Option<&'static str>,
    },
    /// A live debugging session ended (gdb detached) before the guest stopped.
    Detached,
    /// The guest kernel panicked (it printed the end of a panic; it would loop from here).
    Panicked {
        /// The panic's reason as the kernel printed it.
        reason: String,
    },
}

impl RecordEnd {
    /// Reason text stored in the end record.
    pub fn reason(&self) -> String {
        match self {
            RecordEnd::Guest(s) => EventKind::Stop(s.clone()).describe(),
            RecordEnd::StepLimit => "step limit reached".into(),
            RecordEnd::Interrupted => "interrupted by the user".into(),
            RecordEnd::UserMode { rip, why: None } => {
                format!("guest entered user mode at RIP {rip:#x}; ring 3 cannot be single-stepped on this host")
            }
            RecordEnd::UserMode { rip, why: Some(why) } => {
                format!("guest entered user mode at RIP {rip:#x} in a way ttvm cannot record: {why}")
            }
            RecordEnd::Detached => "the debugger detached".into(),
            RecordEnd::Panicked { reason } => format!("the guest kernel panicked: {reason}"),
        }
    }
}

/// A recording in progress.
#[derive(Debug)]
pub struct RecordSession {
    /// The engine (and machine).
    pub engine: Engine,
    env: Recorder,
    writer: TraceWriter,
    checkpoint_every: u64,
    next_checkpoint: u64,
    checkpoints: u32,
    started: Instant,
    last_flush: Instant,
    finished: bool,
    checkpoint_stats: Vec<CheckpointStat>,
    code: CodePageSet,
    anchors: crate::landmark::AnchorCounter,
}

/// The code the current interval executed (the 16-byte block of every position's RIP since
/// the last checkpoint); written as a `CodePages` chunk when the interval's checkpoint is
/// taken.
#[derive(Debug, Default)]
struct CodePageSet {
    pages: std::collections::BTreeMap<u64, [u64; 4]>,
    /// The last block marked: consecutive steps mostly stay in one.
    last_block: Option<u64>,
}

impl CodePageSet {
    fn note(&mut self, rip: u64) {
        let block = rip >> 4;
        if self.last_block != Some(block) {
            let (word, bit) = code_block(rip);
            self.pages.entry(rip >> 12).or_default()[word] |= bit;
            self.last_block = Some(block);
        }
    }

    fn take(&mut self, checkpoint: u32) -> IntervalCode {
        self.last_block = None;
        IntervalCode { checkpoint, pages: std::mem::take(&mut self.pages).into_iter().collect() }
    }
}

/// Where a recording goes and how: the trace file, the options, the serial console.
pub struct RecordTo<'a> {
    /// The trace file to create.
    pub path: &'a Path,
    /// Clock, checkpoint interval, kernel name, stepping signature.
    pub options: RecordOptions,
    /// Where guest serial output goes (besides the trace).
    pub output: ConsoleOutput,
    /// Where guest serial input comes from.
    pub input: ConsoleInput,
}

/// What one checkpoint cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointStat {
    /// Where it was taken.
    pub icount: u64,
    /// Pages dirtied since the previous checkpoint (all non-zero pages for the boot image).
    pub dirty_pages: u32,
    /// Of those, pages whose content was not already stored.
    pub new_pages: u32,
    /// Trace bytes it added (pages and checkpoint chunks, compressed).
    pub bytes: u64,
    /// Time to take it (dirty log, hashing, compression, vCPU state, writes).
    pub duration: Duration,
}

impl RecordSession {
    /// Builds the machine, creates the trace at `path` and writes the boot checkpoint.
    pub fn start(
        config: MachineConfig,
        path: &Path,
        options: RecordOptions,
        output: ConsoleOutput,
        input: ConsoleInput,
    ) -> Result<Self, RecordError> {
        Self::start_with_disk(config, path, options, output, input, None)
    }

    /// [`RecordSession::start`] with a virtio-blk disk over the raw image `disk`, which the
    /// recording only reads: the guest's writes go to the trace.
    pub fn start_with_disk(
        config: MachineConfig,
        path: &Path,
        options: RecordOptions,
        output: ConsoleOutput,
        input: ConsoleInput,
        disk: Option<&Path>,
    ) -> Result<Self, RecordError> {
        let cow = disk.map(CowDisk::open).transpose()?;
        let mut machine = Machine::new(config.clone())?;
        if let Some(c) = &cow {
            machine.board.attach_disk(c.capacity());
        }
        Self::start_from(machine, config, 0, disk.zip(cow), RecordTo { path, options, output, input })
    }

    /// Starts recording `machine`, which was built from `config` and may already have run
    /// (a `ttvm run --save-state` snapshot): its state becomes the trace's checkpoint 0, so
    /// the trace stays self-contained, and device time goes on from `start_ns`. `disk` is
    /// the image behind the machine's disk, if it has one.
    pub fn start_from(
        machine: Machine,
        config: MachineConfig,
        start_ns: u64,
        disk: Option<(&Path, CowDisk)>,
        to: RecordTo<'_>,
    ) -> Result<Self, RecordError> {
        Self::start_with_lineage(machine, config, start_ns, disk, None, to)
    }

    /// [`RecordSession::start_from`] for a branch of another trace: the header names the
    /// parent and the branch point (`crate::branch::start_branch` builds both), and `disk`
    /// is the disk at the branch point (named after the parent's image).
    pub fn start_branch(
        machine: Machine,
        config: MachineConfig,
        start_ns: u64,
        lineage: Lineage,
        disk: Option<(&Path, CowDisk)>,
        to: RecordTo<'_>,
    ) -> Result<Self, RecordError> {
        Self::start_with_lineage(machine, config, start_ns, disk, Some(lineage), to)
    }

    fn start_with_lineage(
        machine: Machine,
        config: MachineConfig,
        start_ns: u64,
        disk: Option<(&Path, CowDisk)>,
        lineage: Option<Lineage>,
        to: RecordTo<'_>,
    ) -> Result<Self, RecordError> {
        let RecordTo { path, options, output, input } = to;
        let disk_record = disk.as_ref().map(|(p, c)| DiskRecord {
            capacity_sectors: c.capacity(),
            image_name: p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        });
        let cow = disk.map(|(_, c)| c);
        let header = TraceHeader {
            ttvm_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_name: options.kernel_name.clone(),
            kernel_hash: kernel_hash(&config.kernel),
            cpuid: machine.vm.cpuid().clone(),
            stepping: options.stepping.clone(),
            clock: options.clock,
            ns_per_step: NS_PER_STEP,
            checkpoint_every: options.checkpoint_every,
            created_unix_secs: ttvm_vmm::clock::wall_clock_unix_secs(),
            machine: config,
            host: Some(HostRecord {
                cpu: ttvm_vmm::host_cpu::describe(),
                undefined_flags: ttvm_vmm::host_cpu::undefined_flags_profile().to_string(),
            }),
            disk: disk_record,
            lineage,
        };
        let writer = TraceWriter::create(path, &header)?;
        let mut engine = Engine::new(machine);
        engine.rules = StepRules::for_trace(FORMAT_VERSION, &header.stepping);
        let mut s = Self {
            engine,
            env: Recorder {
                clock: EngineClock::starting_at(options.clock, start_ns),
                log: EventLogWriter::default(),
                output,
                input,
                out_buf: Vec::new(),
                random: Vec::new(),
                serial: Vec::new(),
                interrupt: None,
                disk: cow.map(DiskRecorder::new),
                net: None,
                pages: PageStoreWriter::default(),
                disk_pages: std::env::var_os("TTVM_DISK_INLINE").is_none_or(|v| v != "1"),
            },
            writer,
            checkpoint_every: options.checkpoint_every.max(1),
            next_checkpoint: 0,
            checkpoints: 0,
            started: Instant::now(),
            last_flush: Instant::now(),
            finished: false,
            checkpoint_stats: Vec::new(),
            code: CodePageSet::default(),
            anchors: Default::default(),
        };
        s.take_checkpoint()?;
        Ok(s)
    }

    /// Steps recorded so far.
    pub fn icount(&self) -> u64 {
        self.engine.icount()
    }

    /// Serial output so far.
    pub fn serial_output(&self) -> &[u8] {
        &self.env.serial
    }

    /// Writes buffered events to the trace now, so a reader sees every step so far.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.flush_events()
    }

    /// Whether the guest has stopped (nothing more can be recorded).
    pub fn finished(&self) -> bool {
        self.finished
    }

    fn flush_events(&mut self) -> std::io::Result<()> {
        // The disk blocks these events refer to are stored before them, so a reader
        // resolves every reference while reading the file in order.
        if let Some(raw) = self.env.pages.take_chunk() {
            self.writer.write_chunk(ChunkKind::Pages, &raw, true)?;
        }
        let raw = self.env.log.take_chunk(self.engine.icount());
        self.writer.write_chunk(ChunkKind::Events, &raw, true)?;
        self.last_flush = Instant::now();
        Ok(())
    }

    fn take_checkpoint(&mut self) -> Result<(), RecordError> {
        self.flush_events()?;
        if self.checkpoints > 0 {
            let code = self.code.take(self.checkpoints);
            let raw = bincode::serialize(&code).map_err(std::io::Error::other)?;
            self.writer.write_chunk(ChunkKind::CodePages, &raw, true)?;
            // (Format 7's anchors hold the interval's landmark too: its last anchor's.)
            let anchors = self.anchors.take(self.checkpoints, self.engine.icount());
            let raw = bincode::serialize(&anchors).map_err(std::io::Error::other)?;
            self.writer.write_chunk(ChunkKind::Anchors, &raw, true)?;
        }
        let started = Instant::now();
        let bytes_before = self.writer.len();
        let unique_before = self.env.pages.unique_pages();
        let vm = &self.engine.machine.vm;
        let dirty: Vec<u32> = if self.checkpoints == 0 {
            // What KVM logged before the recording (the loader, or a whole free-run boot
            // before `record --from`/`--record-from-output`) is in this checkpoint already;
            // left in the log, it would all be stored again in checkpoint 1.
            vm.take_dirty_pages()?;
            // The boot image: every page that is not all zeroes.
            vm.ram().nonzero_pages()
        } else {
            vm.take_dirty_pages()?
        };
        let mut blobs = Vec::with_capacity(dirty.len());
        for &pfn in &dirty {
            blobs.push(self.env.pages.intern(vm.ram().page(pfn as usize)));
            if self.env.pages.chunk_ready() {
                if let Some(raw) = self.env.pages.take_chunk() {
                    self.writer.write_chunk(ChunkKind::Pages, &raw, true)?;
                }
            }
        }
        if let Some(raw) = self.env.pages.take_chunk() {
            self.writer.write_chunk(ChunkKind::Pages, &raw, true)?;
        }
        let bitmap: roaring::RoaringBitmap = dirty.iter().copied().collect();
        let mut dirty_bytes = Vec::new();
        bitmap.serialize_into(&mut dirty_bytes)?;
        let vcpu = self.engine.machine.vm.vcpu_mut().save_state()?;
        let record = CheckpointRecord {
            index: self.checkpoints,
            engine: self.engine.state().into(),
            clock: self.env.clock.state(),
            register_digest: register_digest(&vcpu),
            vcpu,
            board: self.engine.machine.board.state(),
            dirty: dirty_bytes,
            blobs,
            disk: self.engine.machine.board.disk_state(),
            net: self.engine.machine.board.net_state(),
        };
        let raw = bincode::serialize(&record).map_err(std::io::Error::other)?;
        self.writer.write_chunk(ChunkKind::Checkpoint, &raw, true)?;
        self.checkpoint_stats.push(CheckpointStat {
            icount: self.engine.icount(),
            dirty_pages: dirty.len() as u32,
            new_pages: self.env.pages.unique_pages() - unique_before,
            bytes: self.writer.len() - bytes_before,
            duration: started.elapsed(),
        });
        self.checkpoints += 1;
        self.next_checkpoint = self.engine.icount() + self.checkpoint_every;
        Ok(())
    }

    /// Lets the waits inside an emulated HLT (for live serial input, for realtime
    /// deadlines) give up when `flag` is set (the CLI's SIGINT/SIGTERM flag): the HLT ends
    /// as if woken, so the step is whole, and `run`, which watches the same flag, ends as
    /// interrupted before the next step.
    pub fn set_interrupt(&mut self, flag: &'static AtomicBool) {
        self.env.interrupt = Some(flag);
    }

    /// Plugs the machine's network card (attached before the session started, so the boot
    /// checkpoint holds it) into `link`: from now on frames move at step boundaries and are
    /// logged (see [`crate::network::record`]).
    pub fn set_network(&mut self, link: Box<dyn ttvm_vmm::devices::virtio_net::link::NetLink + Send>) {
        self.env.net = Some(crate::network::record::NetRecorder::new(link));
    }

    /// What was logged about the network so far (`None`: not on one).
    pub fn network_log(&self) -> Option<&crate::network::record::NetLog> {
        self.env.net.as_ref().map(|n| &n.log)
    }

    /// Cost of every checkpoint taken so far (for benchmarks).
    pub fn checkpoint_stats(&self) -> &[CheckpointStat] {
        &self.checkpoint_stats
    }

    /// Records one step (taking a checkpoint first when one is due).
    pub fn step(&mut self) -> Result<StepOutcome, RecordError> {
        let icount = self.engine.icount();
        if icount >= self.next_checkpoint {
            self.take_checkpoint()?;
        } else if self.env.log.buffered_bytes() >= FLUSH_BYTES
            || self.env.pages.chunk_ready()
            || (icount.is_multiple_of(4096) && self.last_flush.elapsed() >= FLUSH_INTERVAL)
        {
            self.flush_events()?;
        }
        let rip = self.engine.machine.vm.vcpu().rip();
        // A step right after an IRETQ is no landmark (see `Engine::last_step_iretq`).
        let after_iretq = self.engine.last_step_iretq();
        let kernel = self.engine.machine.vm.vcpu().sregs().cs.selector & 3 == 0 && !after_iretq;
        let events_before = self.env.log.total;
        if self.anchors.wants_waypoint(icount, kernel) {
            let digest = crate::checkpoint::register_digest(&self.engine.machine.vm.vcpu_mut().save_state()?);
            self.anchors.note_waypoint(icount, digest);
        }
        let outcome = self.engine.step(&mut self.env)?;
        // Only a step that ran is part of the interval (the engine refuses some, e.g. one
        // into user mode on hosts that cannot step it, and the recording ends there).
        if self.engine.icount() > icount {
            self.code.note(rip);
            let anchor = self.env.log.total != events_before || self.engine.last_step_emulated();
            self.anchors.note(rip, icount, kernel, anchor);
            // (An anchor's own step is the engine's in a replay too.)
            if !anchor {
                self.anchors.note_undefined_flags(icount, self.engine.last_step_undefined_flags());
            }
        }
        Ok(outcome)
    }

    /// Records until the guest stops, `max_steps` is reached or `interrupt` is set.
    /// `progress` is called about every `progress_every` steps.
    pub fn run(
        &mut self,
        max_steps: Option<u64>,
        interrupt: &AtomicBool,
        progress_every: u64,
        mut progress: impl FnMut(&RecordProgress),
    ) -> Result<RecordEnd, RecordError> {
        loop {
            if interrupt.load(Ordering::Relaxed) {
                return Ok(RecordEnd::Interrupted);
            }
            if max_steps.is_some_and(|m| self.engine.icount() >= m) {
                return Ok(RecordEnd::StepLimit);
            }
            match self.step() {
                Ok(StepOutcome::Continue) => {}
                Ok(StepOutcome::Stopped(s)) => return Ok(RecordEnd::Guest(s)),
                Err(RecordError::Engine(EngineError::UserMode { rip, .. })) => {
                    return Ok(RecordEnd::UserMode { rip, why: None })
                }
                Err(RecordError::Engine(EngineError::UserModeUnsupported { rip, why, .. })) => {
                    return Ok(RecordEnd::UserMode { rip, why: Some(why) })
                }
                Err(RecordError::Engine(EngineError::Interrupted)) => return Ok(RecordEnd::Interrupted),
                Err(e) => return Err(e),
            }
            if progress_every > 0 && self.engine.icount().is_multiple_of(progress_every) {
                progress(&self.progress());
            }
        }
    }

    /// Current progress figures.
    pub fn progress(&self) -> RecordProgress {
        RecordProgress {
            steps: self.engine.icount(),
            events: self.env.log.total,
            checkpoints: self.checkpoints,
            trace_bytes: self.writer.len() + self.env.log.buffered_bytes() as u64,
            elapsed: self.started.elapsed(),
        }
    }

    /// Events recorded per class.
    pub fn event_counts(&self) -> &std::collections::BTreeMap<crate::events::EventClass, u64> {
        &self.env.log.counts
    }

    /// Digest of the current registers and RAM, as stored in the end record.
    pub fn final_digest(&mut self) -> Result<u64, RecordError> {
        let vcpu = self.engine.machine.vm.vcpu_mut().save_state()?;
        Ok(final_digest(register_digest(&vcpu), ram_digest(self.engine.machine.vm.ram())))
    }

    /// Flushes everything and finalises the trace. Safe to call more than once.
    pub fn finish(&mut self, end: &RecordEnd) -> Result<RecordProgress, RecordError> {
        if !self.finished {
            // A checkpoint at the last step (format 3): replay compares the final state
            // with it field by field and page by page, so a mismatch names what differs.
            if self.checkpoint_stats.last().is_none_or(|c| c.icount < self.engine.icount()) {
                self.take_checkpoint()?;
            }
            self.flush_events()?;
            let stop = match end {
                RecordEnd::Guest(s) => Some(s.clone()),
                _ => None,
            };
            let record = EndRecord {
                final_icount: self.engine.icount(),
                stop,
                reason: end.reason(),
                final_digest: self.final_digest()?,
            };
            self.writer.finish(&record)?;
            self.finished = true;
        }
        Ok(self.progress())
    }

    /// Unique 4 KiB pages stored so far.
    pub fn stored_pages(&self) -> u64 {
        u64::from(self.env.pages.unique_pages())
    }
}

/// Combines register and RAM digests.
pub fn final_digest(registers: u64, ram: u64) -> u64 {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&registers.to_le_bytes());
    b[8..].copy_from_slice(&ram.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&b)
}

impl ttvm_vmm::error_kind::Classify for RecordError {
    fn kind(&self) -> ttvm_vmm::error_kind::ErrorKind {
        match self {
            Self::Machine(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Engine(e) => ttvm_vmm::error_kind::Classify::kind(e),
            // The trace file is locked by another ttvm writing it: like a port in use.
            Self::Io(e) if crate::trace::TraceLocked::in_io_error(e).is_some() => {
                ttvm_vmm::error_kind::ErrorKind::BadInput
            }
            Self::Io(_) => ttvm_vmm::error_kind::ErrorKind::Host,
            Self::Vcpu(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Vm(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Disk(e) => ttvm_vmm::error_kind::Classify::kind(e),
        }
    }
}
