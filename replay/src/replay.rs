//! Replaying a trace: the exact engine fed from the log, checking every guest action
//! against it, with checkpoints verified as they are passed.

use std::collections::VecDeque;
use std::rc::Rc;

use ttvm_vmm::console::ConsoleOutput;
use ttvm_vmm::devices::virtio_blk::{DiskOpKind, VirtioBlkState};
use ttvm_vmm::devices::{Board, BoardState};
use ttvm_vmm::machine::{Machine, MachineError};

use crate::checkpoint::{page_difference, ram_digest, register_differences, register_digest};
use crate::clock::{ClockMode, NS_PER_STEP};
use crate::disk::TraceDisk;
use crate::divergence::Divergence;
use crate::engine::{Emulated, Engine, EngineError, HaltOutcome, StepEnv, StepOutcome, StepRules};
use crate::events::{Event, EventKind, StopKind};
use crate::persist::{EngineClockState, SavedEngineState, StateError};
use crate::ram::{PageOverlay, RamError, RamTracker};
use crate::record::final_digest;
use crate::recording::Recording;

/// How many past events a divergence report shows.
const RECENT_EVENTS: usize = 8;

/// Errors while replaying.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The machine could not be rebuilt.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// This host cannot replay the trace faithfully.
    #[error("this host cannot replay the trace: {0}")]
    Incompatible(String),
    /// RAM could not be rebuilt (damaged page store).
    #[error(transparent)]
    Ram(#[from] RamError),
    /// The replay diverged.
    #[error("{0}")]
    Divergence(Box<Divergence>),
    /// Other engine failures.
    #[error(transparent)]
    Engine(EngineError),
    /// vCPU state could not be restored or read.
    #[error(transparent)]
    Vcpu(#[from] ttvm_vmm::vcpu::VcpuError),
    /// A checkpoint holds a state no machine could be in.
    #[error("cannot restore the checkpoint: {0}")]
    InvalidState(#[from] StateError),
    /// A position outside the recorded history was asked for.
    #[error("icount {requested} is past the end of the recorded history ({length} steps)")]
    PastEnd {
        /// Requested icount.
        requested: u64,
        /// History length.
        length: u64,
    },
}

/// Result of one replay step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayStep {
    /// A step was replayed.
    Stepped,
    /// A step was replayed and the guest stopped in it (the recording's end).
    Stopped(StopKind),
    /// Already at the end of the recorded history; nothing ran.
    AtEnd,
}

/// The replay environment: the log cursor and output regeneration.
#[derive(Debug)]
pub struct Replayer {
    rec: Rc<Recording>,
    cursor: usize,
    expected_out: VecDeque<u8>,
    generated_out: VecDeque<u8>,
    out_buf: Vec<u8>,
    idle_ns: u64,
    /// Where regenerated serial output is echoed (None: nowhere).
    pub echo: Option<ConsoleOutput>,
    /// While a free run of an interval may still fall back (`free_interval.rs`), the
    /// output to echo waits here, so a fallback does not echo it twice.
    pub(crate) held_echo: Option<Vec<u8>>,
    /// The disk as the trace holds it, if the recording had one.
    pub(crate) disk: Option<TraceDisk>,
}

impl Replayer {
    /// A replay environment at the start of `rec`'s log.
    pub(crate) fn new(rec: Rc<Recording>) -> Self {
        let disk = rec.header().disk.as_ref().map(|_| TraceDisk::new(rec.clone()));
        Self {
            rec,
            cursor: 0,
            expected_out: VecDeque::new(),
            generated_out: VecDeque::new(),
            out_buf: Vec::new(),
            idle_ns: 0,
            echo: None,
            held_echo: None,
            disk,
        }
    }

    fn divergence(&self, icount: u64, rip: u64, actual: String) -> EngineError {
        let expected = self.peek_driving().cloned();
        let start = self.cursor.saturating_sub(RECENT_EVENTS);
        EngineError::Divergence(Box::new(Divergence {
            icount,
            expected,
            actual,
            rip,
            disassembly: String::new(),
            recent: self.rec.events[start..self.cursor].to_vec(),
        }))
    }

    fn skip_info(&mut self) {
        while let Some(e) = self.rec.events.get(self.cursor) {
            if e.kind.drives_replay() {
                break;
            }
            if let EventKind::SerialOut { byte } = e.kind {
                self.expected_out.push_back(byte);
            }
            self.cursor += 1;
        }
    }

    fn peek_driving(&self) -> Option<&Event> {
        self.rec.events[self.cursor..].iter().find(|e| e.kind.drives_replay())
    }

    /// Takes the next driving event if it is at `icount` and `accept` returns a value for it.
    fn take<T>(
        &mut self,
        icount: u64,
        rip: u64,
        actual: impl FnOnce() -> String,
        accept: impl FnOnce(&EventKind) -> Option<T>,
    ) -> Result<T, EngineError> {
        self.skip_info();
        let hit = match self.rec.events.get(self.cursor) {
            Some(e) if e.icount == icount => accept(&e.kind),
            _ => None,
        };
        match hit {
            Some(v) => {
                self.cursor += 1;
                Ok(v)
            }
            None => Err(self.divergence(icount, rip, actual())),
        }
    }

    fn now_ns(&self, icount: u64) -> u64 {
        icount * NS_PER_STEP + self.idle_ns
    }

    /// Device time at the start of step `icount` (for a branch that continues from it).
    pub(crate) fn device_time_ns(&self, icount: u64) -> u64 {
        self.now_ns(icount)
    }

    fn compare_output(&mut self, icount: u64, rip: u64) -> Result<(), EngineError> {
        self.skip_info();
        while let (Some(&g), Some(&e)) = (self.generated_out.front(), self.expected_out.front()) {
            if g != e {
                return Err(self.divergence(
                    icount,
                    rip,
                    format!("serial output {:?} where the recording has {:?}", g as char, e as char),
                ));
            }
            self.generated_out.pop_front();
            self.expected_out.pop_front();
        }
        Ok(())
    }

    /// Checks what a prefix of the history ending at `icount` can be checked against:
    /// every driving event recorded before `icount` was done, and the serial output
    /// recorded before it was produced, no more and no less.
    fn check_prefix(&mut self, icount: u64, rip: u64) -> Result<(), EngineError> {
        self.compare_output(icount, rip)?;
        if let Some(e) = self.peek_driving() {
            if e.icount < icount {
                return Err(self.divergence(
                    icount,
                    rip,
                    format!("the guest reached icount {icount} without doing this event"),
                ));
            }
        }
        // Serial bytes are logged right after the OUT that wrote them, so what compare_output
        // read ahead (up to the next driving event) is all owed before `icount`.
        let owed = self.expected_out.len();
        if owed != 0 || !self.generated_out.is_empty() {
            return Err(self.divergence(
                icount,
                rip,
                format!(
                    "serial output differs at icount {icount}: {owed} recorded bytes not produced, {} produced bytes not recorded",
                    self.generated_out.len()
                ),
            ));
        }
        Ok(())
    }

    /// Resets the cursor to the first event of step `icount`.
    fn seek(&mut self, icount: u64, idle_ns: u64) {
        if let Some(disk) = &mut self.disk {
            disk.rewind(icount);
        }
        self.cursor = self.rec.first_event_at(icount);
        self.expected_out.clear();
        self.generated_out.clear();
        self.idle_ns = idle_ns;
    }
}

impl Replayer {
    /// Completes disk requests where the recording did (its `DiskDone`), reading the trace's
    /// disk, and checks each access against the log.
    fn complete_disk(&mut self, machine: &mut Machine, icount: u64) -> Result<(), EngineError> {
        let Some(disk) = self.disk.as_mut() else {
            return Err(self.divergence(icount, 0, "a disk completion, but the trace's machine has no disk".into()));
        };
        let done = machine.complete_disk(disk).map_err(|e| EngineError::Io(std::io::Error::other(e)))?;
        if let Some(e) = done.errors.first() {
            return Err(self.divergence(icount, 0, format!("the guest's disk request cannot be replayed: {e}")));
        }
        for op in &done.ops {
            let sectors = (op.data.len() / 512) as u32;
            let what = || match op.kind {
                DiskOpKind::Read => EventKind::DiskRead { sector: op.sector, sectors }.describe(),
                DiskOpKind::Write => format!(
                    "disk write sector {} +{sectors} (data digest {:#018x})",
                    op.sector,
                    xxhash_rust::xxh3::xxh3_64(&op.data)
                ),
            };
            self.take(icount, 0, what, |k| match (op.kind, k) {
                (DiskOpKind::Read, EventKind::DiskRead { sector, sectors: n }) => {
                    (*sector == op.sector && *n == sectors).then_some(())
                }
                (DiskOpKind::Write, EventKind::DiskWrite { sector, data }) => {
                    (*sector == op.sector && *data == op.data).then_some(())
                }
                _ => None,
            })?;
        }
        let requests = done.requests;
        self.take(
            icount,
            0,
            || EventKind::DiskDone { requests }.describe(),
            |k| matches!(k, EventKind::DiskDone { requests: r } if *r == requests).then_some(()),
        )?;
        Ok(())
    }

    /// The network card at a boundary, as the recording did: its due transmissions leave
    /// (each checked against the log's `NetTx`, like serial output), then the log's `NetRx`
    /// frames of this boundary enter. No switch and no host clock: the log is the network.
    fn net_at_boundary(&mut self, machine: &mut Machine, icount: u64) -> Result<(), EngineError> {
        if machine.board.virtio_net.is_none() {
            return Ok(());
        }
        let mem_err = |e: ttvm_vmm::memory::MemoryError| EngineError::Io(std::io::Error::other(e.to_string()));
        if machine.board.net_tx_due(self.now_ns(icount)) {
            let out = machine.transmit_net().map_err(mem_err)?;
            for (n, data) in out.frames.iter().enumerate() {
                let what = || {
                    format!(
                        "network frame {} of this boundary sent: {} bytes (digest {:#018x})",
                        n + 1,
                        data.len(),
                        xxhash_rust::xxh3::xxh3_64(data)
                    )
                };
                self.take(icount, 0, what, |k| matches!(k, EventKind::NetTx { data: d } if d == data).then_some(()))?;
            }
        }
        self.skip_info();
        while let Some(Event { icount: i, kind: EventKind::NetRx { frame, data } }) = self.rec.events.get(self.cursor) {
            if *i != icount {
                break;
            }
            let (frame, data) = (*frame, data.clone());
            if !machine.receive_net(&data).map_err(mem_err)? {
                return Err(self.divergence(
                    icount,
                    0,
                    format!("network frame {frame} cannot be delivered: the card has no receive buffer here"),
                ));
            }
            self.cursor += 1;
            self.skip_info();
        }
        Ok(())
    }
}

impl StepEnv for Replayer {
    /// Completes disk requests where the recording did (its `DiskDone`), reading the trace's
    /// disk, and checks each access against the log.
    fn devices_at_boundary(&mut self, machine: &mut Machine, icount: u64) -> Result<(), EngineError> {
        self.skip_info();
        let disk_here = matches!(
            self.rec.events.get(self.cursor),
            Some(Event { icount: i, kind: EventKind::DiskRead { .. } | EventKind::DiskWrite { .. } | EventKind::DiskDone { .. } })
                if *i == icount
        );
        if disk_here {
            self.complete_disk(machine, icount)?;
        }
        self.net_at_boundary(machine, icount)
    }
    fn at_boundary(&mut self, _board: &mut Board, icount: u64, window_open: bool) -> Result<Option<u8>, EngineError> {
        self.skip_info();
        match self.rec.events.get(self.cursor) {
            Some(e) if e.icount < icount => {
                Err(self.divergence(icount, 0, "the guest went past this event without doing it".into()))
            }
            Some(Event { icount: i, kind: EventKind::Interrupt { vector } }) if *i == icount => {
                let v = *vector;
                if !window_open {
                    return Err(self.divergence(
                        icount,
                        0,
                        "the guest cannot take an interrupt here (IF clear or interrupt shadow)".into(),
                    ));
                }
                self.cursor += 1;
                Ok(Some(v))
            }
            _ => Ok(None),
        }
    }

    fn port_in(
        &mut self,
        _board: &mut Board,
        icount: u64,
        port: u16,
        data: &mut [u8],
        rip: u64,
    ) -> Result<(), EngineError> {
        let len = data.len();
        let v = self.take(
            icount,
            rip,
            || format!("in port {port:#06x}, {len} bytes"),
            |k| match k {
                EventKind::PortIn { port: p, data: d } if *p == port && d.as_slice().len() == len => Some(d.clone()),
                _ => None,
            },
        )?;
        data.copy_from_slice(v.as_slice());
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
        self.take(
            icount,
            rip,
            || format!("out port {port:#06x} <- {:?}", crate::events::IoData::from_slice(data)),
            |k| match k {
                EventKind::PortOut { port: p, data: d } if *p == port && d.as_slice() == data => Some(()),
                _ => None,
            },
        )?;
        let outcome = board.pio_write(port, data, self.now_ns(icount));
        board.drain_serial_output(&mut self.out_buf);
        if !self.out_buf.is_empty() {
            if let Some(held) = &mut self.held_echo {
                held.extend_from_slice(&self.out_buf);
            } else if let Some(echo) = &mut self.echo {
                echo.write(&self.out_buf);
            }
            self.generated_out.extend(self.out_buf.drain(..));
        }
        self.compare_output(icount, rip)?;
        if let Some(code) = outcome.exit_code {
            let stop = StopKind::DebugExit(code);
            self.take(
                icount,
                rip,
                || format!("guest exit with status {code}"),
                |k| (*k == EventKind::Stop(stop.clone())).then_some(()),
            )?;
            return Ok(Some(stop));
        }
        Ok(None)
    }

    fn mmio_read(
        &mut self,
        _board: &mut Board,
        icount: u64,
        addr: u64,
        data: &mut [u8],
        rip: u64,
    ) -> Result<(), EngineError> {
        let len = data.len();
        let v = self.take(
            icount,
            rip,
            || format!("MMIO read {addr:#x}, {len} bytes"),
            |k| match k {
                EventKind::MmioRead { addr: a, data: d } if *a == addr && d.as_slice().len() == len => Some(d.clone()),
                _ => None,
            },
        )?;
        data.copy_from_slice(v.as_slice());
        Ok(())
    }

    fn mmio_write(
        &mut self,
        _board: &mut Board,
        icount: u64,
        addr: u64,
        data: &[u8],
        rip: u64,
    ) -> Result<(), EngineError> {
        self.take(
            icount,
            rip,
            || format!("MMIO write {addr:#x} <- {:?}", crate::events::IoData::from_slice(data)),
            |k| match k {
                EventKind::MmioWrite { addr: a, data: d } if *a == addr && d.as_slice() == data => Some(()),
                _ => None,
            },
        )
    }

    fn emulated_value(&mut self, _board: &mut Board, icount: u64, what: Emulated) -> Result<u64, EngineError> {
        self.take(
            icount,
            0,
            || format!("{what:?}"),
            |k| match (what, k) {
                (Emulated::Rdtsc, EventKind::Rdtsc { value })
                | (Emulated::Rdtscp, EventKind::Rdtscp { value })
                | (Emulated::Rdrand, EventKind::Rdrand { value })
                | (Emulated::Rdseed, EventKind::Rdseed { value })
                | (Emulated::RdmsrTsc, EventKind::RdmsrTsc { value }) => Some(*value),
                _ => None,
            },
        )
    }

    fn halt(&mut self, _board: &mut Board, icount: u64, interrupts_enabled: bool) -> Result<HaltOutcome, EngineError> {
        self.skip_info();
        if let Some(Event { icount: i, kind: EventKind::Stop(StopKind::Halted) }) = self.rec.events.get(self.cursor) {
            if *i == icount {
                self.cursor += 1;
                return Ok(HaltOutcome::Stop(StopKind::Halted));
            }
        }
        if !interrupts_enabled {
            return Err(self.divergence(icount, 0, "HLT with interrupts disabled".into()));
        }
        Ok(HaltOutcome::Continue)
    }

    fn guest_stop(&mut self, _board: &mut Board, icount: u64, stop: &StopKind) -> Result<(), EngineError> {
        let s = stop.clone();
        self.take(icount, 0, || EventKind::Stop(stop.clone()).describe(), |k| (*k == EventKind::Stop(s)).then_some(()))
    }
}

/// An in-memory checkpoint made during replay (used by the timeline). It holds the same
/// state types as a trace checkpoint and is restored through the same checks.
#[derive(Clone, Debug)]
pub struct MemoryCheckpoint {
    /// The persistent checkpoint RAM is based on.
    pub base: u32,
    /// Engine state.
    pub engine: SavedEngineState,
    /// vCPU state.
    pub vcpu: ttvm_vmm::vcpu::VcpuState,
    /// Device state.
    pub board: BoardState,
    /// The disk device, if any.
    pub disk: Option<VirtioBlkState>,
    /// The network card, if any.
    pub net: Option<ttvm_vmm::devices::virtio_net::VirtioNetState>,
    /// Pages differing from `base`.
    pub pages: PageOverlay,
    /// HLT time skipped so far (for the replay board's clock).
    pub idle_ns: u64,
}

impl MemoryCheckpoint {
    /// Approximate memory held.
    pub fn bytes(&self) -> usize {
        self.pages.bytes() + std::mem::size_of::<Self>() + self.vcpu.xsave.len() * 4
    }
}

/// A replay in progress.
#[derive(Debug)]
pub struct ReplaySession {
    /// The engine and machine.
    pub engine: Engine,
    /// The recording.
    pub rec: Rc<Recording>,
    pub(crate) env: Replayer,
    pub(crate) ram: RamTracker,
    /// Next persistent checkpoint to verify when its icount is reached.
    pub(crate) next_checkpoint: usize,
    /// Whether passing a checkpoint compares the state with it.
    pub verify_checkpoints: bool,
    /// RAM pages the last restore rewrote (for benchmarks: restore cost follows it).
    pub last_restore_pages: usize,
    /// Intervals whose free run did not match: they are single-stepped.
    pub(crate) free_failed: std::collections::HashSet<usize>,
    /// Why the last free run left the recorded path (counted when its interval falls back).
    pub(crate) free_fallback: Option<crate::free_fallback::Fallback>,
    /// What free runs of intervals did.
    pub free_stats: crate::free_interval::FreeIntervalStats,
    /// What seeks into intervals did (`free_seek.rs`).
    pub free_seek_stats: crate::free_seek::FreeSeekStats,
}

/// Checks that this host can replay `rec` faithfully: same CPUID model and stepping
/// semantics. Returns the reasons it cannot.
pub fn compatibility_problems(
    rec: &Recording,
    host_cpuid: &ttvm_vmm::cpuid::CpuidModel,
    host_stepping: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let h = rec.header();
    let diffs = h.cpuid.differences(host_cpuid);
    if !diffs.is_empty() {
        out.push(format!(
            "the CPUID model differs (recorded on a {} CPU, this host is {}): {}",
            h.cpuid.vendor().trim(),
            host_cpuid.vendor().trim(),
            diffs.join("; ")
        ));
    }
    if !crate::stepping::compatible(&h.stepping, host_stepping) {
        out.push(format!(
            "the single-step semantics differ: recorded with \"{}\", this host gives \"{host_stepping}\"",
            h.stepping
        ));
    }
    out
}

impl ReplaySession {
    /// Builds the machine for `rec` and positions it at checkpoint 0 (icount 0).
    /// `host_stepping` is this host's single-step signature.
    pub fn new(rec: Rc<Recording>, host_stepping: &str) -> Result<Self, ReplayError> {
        let vendor = rec.header().cpuid.vendor_choice();
        let mut machine = Machine::with_vendor(rec.header().machine.clone(), Some(vendor))?;
        let problems = compatibility_problems(&rec, machine.vm.cpuid(), host_stepping);
        if !problems.is_empty() {
            return Err(ReplayError::Incompatible(problems.join("\n")));
        }
        let ram = RamTracker::full_restore(&mut machine.vm, &rec, 0)?;
        let mut engine = Engine::new(machine);
        engine.rules = StepRules::for_replay(rec.file.version, &rec.header().stepping, host_stepping);
        let mut s = Self {
            engine,
            env: Replayer::new(rec.clone()),
            rec,
            ram,
            next_checkpoint: 0,
            verify_checkpoints: true,
            last_restore_pages: 0,
            free_failed: Default::default(),
            free_fallback: None,
            free_stats: Default::default(),
            free_seek_stats: Default::default(),
        };
        s.restore_checkpoint(0)?;
        Ok(s)
    }

    /// Replaces the recording with a longer version of the same trace (live debugging
    /// appends to the trace while the past is replayed). Checkpoint indices stay valid
    /// because traces only grow.
    pub fn set_recording(&mut self, rec: Rc<Recording>) {
        // Events are only appended, so the cursor stays valid.
        if let Some(disk) = &mut self.env.disk {
            disk.set_recording(rec.clone());
        }
        self.env.rec = rec.clone();
        self.rec = rec;
    }

    /// Echo regenerated serial output somewhere.
    pub fn set_echo(&mut self, echo: Option<ConsoleOutput>) {
        self.env.echo = echo;
    }

    /// Current position.
    pub fn icount(&self) -> u64 {
        self.engine.icount()
    }

    /// Moves to persistent checkpoint `k` without replaying.
    pub fn restore_checkpoint(&mut self, k: usize) -> Result<(), ReplayError> {
        let cp = &self.rec.checkpoints[k];
        let board = cp.restore_board()?;
        self.last_restore_pages = self.ram.restore(&mut self.engine.machine.vm, &self.rec, k as u32, None)?;
        self.engine.machine.vm.vcpu_mut().restore_state(&cp.vcpu)?;
        self.engine.machine.board = board;
        self.engine.set_state(cp.engine.into());
        self.env.seek(cp.engine.icount, idle_of(&cp.clock));
        // The checkpoint itself need not be verified: it was just loaded.
        self.next_checkpoint = k + 1;
        Ok(())
    }

    /// Captures the current state as an in-memory checkpoint.
    pub fn capture(&mut self) -> Result<MemoryCheckpoint, ReplayError> {
        let pages = self.ram.capture_overlay(&self.engine.machine.vm)?;
        Ok(MemoryCheckpoint {
            base: self.ram.base(),
            engine: self.engine.state().into(),
            vcpu: self.engine.machine.vm.vcpu_mut().save_state()?,
            board: self.engine.machine.board.state(),
            disk: self.engine.machine.board.disk_state(),
            net: self.engine.machine.board.net_state(),
            pages,
            idle_ns: self.env.idle_ns,
        })
    }

    /// Moves to an in-memory checkpoint.
    pub fn restore_memory(&mut self, m: &MemoryCheckpoint) -> Result<(), ReplayError> {
        let mut board = Board::from_state(&m.board).map_err(StateError::from)?;
        board.restore_disk(m.disk.as_ref()).map_err(StateError::from)?;
        board.restore_net(m.net.as_ref()).map_err(StateError::from)?;
        self.last_restore_pages = self.ram.restore(&mut self.engine.machine.vm, &self.rec, m.base, Some(&m.pages))?;
        self.engine.machine.vm.vcpu_mut().restore_state(&m.vcpu)?;
        self.engine.machine.board = board;
        self.engine.set_state(m.engine.into());
        self.env.seek(m.engine.icount, m.idle_ns);
        self.next_checkpoint = self.rec.checkpoints.partition_point(|c| c.engine.icount <= m.engine.icount);
        Ok(())
    }

    fn verify_checkpoint(&mut self, k: usize) -> Result<(), ReplayError> {
        let cp = &self.rec.checkpoints[k];
        let icount = cp.engine.icount;
        let state = self.engine.machine.vm.vcpu_mut().save_state()?;
        let mut problems = Vec::new();
        if register_digest(&state) != cp.register_digest {
            let named = register_differences(&state, &cp.vcpu);
            problems.push(if named.is_empty() {
                // The recorded state does not hash to its own digest: the trace is damaged.
                "registers differ from the recorded digest, but equal the recorded state".to_string()
            } else {
                format!("registers differ: {}", named.join(", "))
            });
            let only_arithmetic_flags = state.regs.rflags != cp.vcpu.regs.rflags
                && (state.regs.rflags ^ cp.vcpu.regs.rflags) & !ttvm_vmm::undefined_flags::ARITHMETIC == 0
                && named.len() == 1;
            if only_arithmetic_flags && !self.engine.rules.canonical_flags {
                problems.push(format!(
                    "only arithmetic flags differ, which this format-{} trace keeps as the recording CPU \
                     left them where an instruction leaves them undefined: it replays only on a CPU that \
                     leaves the same (this host: {}); traces of format {} and later do not depend on it",
                    self.rec.file.version,
                    ttvm_vmm::host_cpu::describe(),
                    crate::trace::CANONICAL_FLAGS_SINCE
                ));
            }
        }
        let dirty = cp.dirty_pages().map_err(|e| {
            RamError::Trace(crate::trace::TraceError::Corrupted {
                offset: 0,
                what: format!("checkpoint {k}"),
                reason: e.to_string(),
            })
        })?;
        let mut page = vec![0u8; ttvm_vmm::memory::PAGE_SIZE];
        let mut bad_pages = 0usize;
        let mut first_difference = None;
        for (pfn, &blob) in dirty.iter().zip(&cp.blobs) {
            self.rec.copy_page(blob, &mut page).map_err(RamError::Trace)?;
            let actual = self.engine.machine.vm.ram().page(pfn as usize);
            if actual != &page[..] {
                bad_pages += 1;
                if first_difference.is_none() {
                    first_difference = page_difference(pfn, actual, &page);
                }
            }
        }
        if let Some(first) = first_difference {
            problems.push(format!("{bad_pages} RAM pages differ, the first at {first}"));
        }
        if problems.is_empty() {
            return Ok(());
        }
        let regs = self.engine.machine.vm.vcpu().regs();
        let sregs = self.engine.machine.vm.vcpu().sregs();
        Err(ReplayError::Divergence(Box::new(Divergence {
            icount,
            expected: None,
            actual: format!("state at checkpoint {k} does not match the recording: {}", problems.join("; ")),
            rip: regs.rip,
            disassembly: ttvm_vmm::disasm::describe_at_rip(self.engine.machine.vm.ram(), &regs, &sregs),
            recent: Vec::new(),
        })))
    }

    /// Passes the persistent checkpoints up to `icount`, comparing the state with the one
    /// at `icount` (if verifying).
    pub(crate) fn verify_due_checkpoints(&mut self, icount: u64) -> Result<(), ReplayError> {
        while let Some(cp) = self.rec.checkpoints.get(self.next_checkpoint) {
            if cp.engine.icount > icount {
                break;
            }
            if cp.engine.icount == icount && self.verify_checkpoints {
                self.verify_checkpoint(self.next_checkpoint)?;
            }
            self.next_checkpoint += 1;
        }
        Ok(())
    }

    /// Replays one step.
    pub fn step(&mut self) -> Result<ReplayStep, ReplayError> {
        let icount = self.engine.icount();
        if icount >= self.rec.length() {
            return Ok(ReplayStep::AtEnd);
        }
        self.verify_due_checkpoints(icount)?;
        match self.engine.step(&mut self.env) {
            Ok(StepOutcome::Continue) => Ok(ReplayStep::Stepped),
            Ok(StepOutcome::Stopped(s)) => Ok(ReplayStep::Stopped(s)),
            Err(EngineError::Divergence(mut d)) => {
                let regs = self.engine.machine.vm.vcpu().regs();
                let sregs = self.engine.machine.vm.vcpu().sregs();
                if d.rip == 0 {
                    d.rip = regs.rip;
                }
                d.disassembly = ttvm_vmm::disasm::describe_at_rip(self.engine.machine.vm.ram(), &regs, &sregs);
                Err(ReplayError::Divergence(d))
            }
            Err(e) => Err(ReplayError::Engine(e)),
        }
    }

    fn check_prefix(&mut self, icount: u64, rip: u64) -> Result<(), ReplayError> {
        self.env.check_prefix(icount, rip).map_err(|e| match e {
            EngineError::Divergence(d) => ReplayError::Divergence(d),
            e => ReplayError::Engine(e),
        })
    }

    /// Checks a replayed prefix of the history at the current icount: the events and
    /// serial output recorded before it, and the state against the checkpoint recorded
    /// at it, if there is one. Returns that checkpoint's index.
    pub fn verify_prefix_end(&mut self) -> Result<Option<usize>, ReplayError> {
        let icount = self.engine.icount();
        let rip = self.engine.machine.vm.vcpu().rip();
        self.check_prefix(icount, rip)?;
        let k = self.rec.checkpoints.partition_point(|c| c.engine.icount < icount);
        match self.rec.checkpoints.get(k) {
            Some(cp) if cp.engine.icount == icount && self.verify_checkpoints => {
                self.verify_checkpoint(k)?;
                Ok(Some(k))
            }
            _ => Ok(None),
        }
    }

    /// Checks, at the end of a finalised recording, that the output and the final state
    /// match: the checkpoint recorded at the last step (format 3), which names any register
    /// or page that differs, then the digest of the registers and all of RAM.
    pub fn verify_end(&mut self) -> Result<(), ReplayError> {
        let final_checkpoint = self.verify_prefix_end()?;
        let icount = self.engine.icount();
        let rip = self.engine.machine.vm.vcpu().rip();
        let Some(end) = self.rec.end.clone() else {
            return Ok(());
        };
        let state = self.engine.machine.vm.vcpu_mut().save_state()?;
        let digest = final_digest(register_digest(&state), ram_digest(self.engine.machine.vm.ram()));
        if digest == end.final_digest {
            return Ok(());
        }
        let what = match final_checkpoint {
            // The registers and the pages dirtied since the last checkpoint matched it, so
            // the difference is in RAM the recording did not write: compare all of it.
            Some(k) => match self.first_ram_difference(k)? {
                Some(first) => format!("RAM differs outside the pages the recording wrote, first at {first}"),
                None => "the trace's final digest does not match its own final checkpoint (damaged trace)".into(),
            },
            None => format!(
                "(format {} traces keep one digest of the registers and all of RAM together, and no final \
                 checkpoint: from format 3 on this names what differs)",
                self.rec.file.version
            ),
        };
        Err(ReplayError::Divergence(Box::new(Divergence {
            icount,
            expected: None,
            actual: format!(
                "final state digest {digest:#018x} differs from the recorded {:#018x}: {what}",
                end.final_digest
            ),
            rip,
            disassembly: String::new(),
            recent: Vec::new(),
        })))
    }

    /// Compares all of RAM with the recorded image at checkpoint `k`: how many pages
    /// differ and where the first difference is.
    fn first_ram_difference(&self, k: usize) -> Result<Option<String>, ReplayError> {
        let ram = self.engine.machine.vm.ram();
        let mut recorded = vec![0u8; ttvm_vmm::memory::PAGE_SIZE];
        let (mut count, mut first) = (0usize, None);
        for pfn in 0..ram.pages() as u32 {
            match self.rec.pages.version_at(pfn, k as u32) {
                Some(blob) => self.rec.copy_page(blob, &mut recorded).map_err(RamError::Trace)?,
                None => recorded.fill(0),
            }
            let actual = ram.page(pfn as usize);
            if actual != &recorded[..] {
                count += 1;
                first = first.or_else(|| page_difference(pfn, actual, &recorded));
            }
        }
        Ok(first.map(|f| format!("{f} ({count} pages differ)")))
    }

    /// The persistent checkpoint RAM is currently based on.
    pub fn ram_base(&self) -> u32 {
        self.ram.base()
    }
}

fn idle_of(clock: &EngineClockState) -> u64 {
    match clock.mode {
        ClockMode::Icount => clock.idle_ns,
        ClockMode::Realtime => 0,
    }
}

impl ttvm_vmm::error_kind::Classify for ReplayError {
    fn kind(&self) -> ttvm_vmm::error_kind::ErrorKind {
        match self {
            Self::Machine(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Incompatible(_) => ttvm_vmm::error_kind::ErrorKind::IncompatibleHost,
            Self::Ram(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Divergence(_) => ttvm_vmm::error_kind::ErrorKind::Divergence,
            Self::Engine(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::Vcpu(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::InvalidState(e) => ttvm_vmm::error_kind::Classify::kind(e),
            Self::PastEnd { .. } => ttvm_vmm::error_kind::ErrorKind::BadInput,
        }
    }
}

#[cfg(test)]
mod replayer_tests;
