//! The free-running engine: plain KVM_RUN with device time from the host clock. Used by
//! `ttvm run`; records nothing and is not deterministic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuExit;

use crate::clock::{Clock, HostClock};
use crate::console::{ConsoleInput, ConsoleOutput};
use crate::devices::virtio_net::link::NetLink;
use crate::disasm::describe_at_rip;
use crate::disk::DiskBackend;
use crate::insn::{apply_emulated, classify, code_mode, fetch_at_rip, Special};
use crate::kick::Kicker;
use crate::live::{LiveCheckpointer, LiveError, LivePause};
use crate::machine::Machine;
use crate::profile::ProfileWriter;
use crate::stop::GuestStop;
use crate::user_mode::{PageFaultTrap, SyscallTrap};

/// Longest the loop sleeps in KVM_RUN or HLT without looking at input and the timeout.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Why a free run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FreeRunEnd {
    /// The guest stopped; `detail` says where (a register dump, or the RIP).
    Guest {
        /// Why.
        stop: GuestStop,
        /// Where, for the user.
        detail: String,
    },
    /// `--timeout` expired.
    Timeout,
    /// The stop flag was set (Ctrl-C).
    Interrupted,
}

/// Errors that end a free run abnormally (host-side failures, not guest behaviour).
#[derive(Debug, thiserror::Error)]
pub enum FreeRunError {
    /// KVM_RUN failed.
    #[error("KVM_RUN failed: {0}")]
    Run(kvm_ioctls::Error),
    /// Interrupt injection failed.
    #[error(transparent)]
    Vcpu(#[from] crate::vcpu::VcpuError),
    /// Setting up the timer signal failed.
    #[error("cannot install the SIGALRM handler: {0}")]
    Signal(std::io::Error),
    /// Taking or writing a live checkpoint failed.
    #[error("live checkpoint: {0}")]
    Checkpoint(#[from] LiveError),
    /// Guest RAM could not be viewed for the network card's rings.
    #[error("network card: {0}")]
    Memory(#[from] crate::memory::MemoryError),
}

/// Options of a free run.
#[derive(Clone, Debug, Default)]
pub struct FreeRunOptions {
    /// Stop after this much host time.
    pub timeout: Option<Duration>,
    /// Kernel symbols: messages about guest addresses name the function.
    pub symbols: Option<crate::symbols::SymbolTable>,
    /// Set asynchronously (a SIGINT handler) to end the run at the next exit; the signal
    /// itself gets the vCPU out of KVM_RUN.
    pub stop: Option<&'static AtomicBool>,
    /// Device time: [`HostClock::new`] for a boot, [`HostClock::resumed_at`] for a snapshot
    /// (each with the machine's slowdown).
    pub clock: HostClock,
}

/// The machine's virtio-net card's port on a network (`ttvm run --vm … --vm …`).
pub type NetPort<'a> = Option<&'a mut dyn NetLink>;

impl FreeRunOptions {
    fn stop_requested(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// `rip` for messages: `0x... <function+0x..>` when a symbol covers it.
fn show_rip(options: &FreeRunOptions, rip: u64) -> String {
    match options.symbols.as_ref().and_then(|s| s.describe(rip)) {
        Some(name) => format!("{rip:#x} <{name}>"),
        None => format!("{rip:#x}"),
    }
}

/// Runs `machine` until the guest stops or the timeout expires. Guest serial output goes
/// to `output`; `input` feeds the UART. Unmodelled device accesses are reported once each
/// on stderr. With `profile`, the guest RIP is sampled into it. `disk` is where the
/// virtio-blk disk's sectors live, if the machine has one. With `live`, checkpoints are
/// taken on its schedule and the serial output goes to its log too.
pub fn run_free(
    machine: &mut Machine,
    disk: Option<&mut dyn DiskBackend>,
    output: &mut ConsoleOutput,
    input: &mut ConsoleInput,
    options: &FreeRunOptions,
    profile: Option<&mut ProfileWriter<'_>>,
    live: Option<&mut LiveCheckpointer>,
) -> Result<FreeRunEnd, FreeRunError> {
    run_free_networked(machine, disk, None, output, input, options, profile, live.map(|l| l as &mut dyn LivePause))
}

/// [`run_free`] for a machine on a network: the frames its card sends go to `net`, and
/// frames waiting there enter its receive buffers between exits (in free runs, when they
/// arrive; nothing here is recorded). `live` pauses it now and then: a network's live
/// snapshots pass each VM's part here.
#[allow(clippy::too_many_arguments)]
pub fn run_free_networked(
    machine: &mut Machine,
    mut disk: Option<&mut dyn DiskBackend>,
    mut net: NetPort<'_>,
    output: &mut ConsoleOutput,
    input: &mut ConsoleInput,
    options: &FreeRunOptions,
    mut profile: Option<&mut ProfileWriter<'_>>,
    mut live: Option<&mut dyn LivePause>,
) -> Result<FreeRunEnd, FreeRunError> {
    let clock = options.clock;
    let started = Instant::now();
    let immediate_exit: *mut u8 = &mut machine.vm.vcpu_mut().kvm_run().immediate_exit;
    // SAFETY: the kvm_run page lives as long as the vCPU, which outlives this function's
    // borrow of `machine`; the Kicker is dropped before returning.
    let kicker = unsafe { Kicker::install(immediate_exit) }.map_err(FreeRunError::Signal)?;
    // The RIP KVM reports with each exit (sync regs), read while the exit's data is borrowed:
    // the RIP before KVM_RUN can be far from the instruction that exited.
    // SAFETY: `s.regs` is the sync-regs member of the kvm_run union, which this vCPU
    // enabled (KVM_SYNC_X86_REGS); the page outlives this function's borrow of `machine`.
    let exit_rip: *const u64 = unsafe { &machine.vm.vcpu_mut().kvm_run().s.regs.regs.rip };
    let mut out_buf = Vec::new();
    let mut syscall_trap = SyscallTrap::default();
    // False after an I/O or MMIO exit: KVM finishes that instruction on the next KVM_RUN, so
    // the vCPU state read now would be mid-instruction. A due checkpoint then first lets
    // KVM finish it (KVM_RUN with immediate_exit: completes, then returns EINTR).
    let mut exit_complete = true;
    loop {
        // Not in the middle of a step over the #PF handler: the vCPU is then single-stepping
        // for ttvm, which a snapshot (the guest's state only) would not carry.
        if syscall_trap.is_idle() {
            let end = if options.timeout.is_some_and(|t| started.elapsed() >= t) {
                Some(FreeRunEnd::Timeout)
            } else if options.stop_requested() {
                Some(FreeRunEnd::Interrupted)
            } else {
                None
            };
            if let Some(end) = end {
                if exit_complete {
                    // The machine as it stops goes into a last checkpoint: nothing since
                    // the previous one is lost.
                    if let Some(l) = live.as_deref_mut() {
                        l.final_checkpoint(machine, &clock)?;
                    }
                    return Ok(end);
                }
                // KVM still has the last exit's instruction to finish: let it first, so the
                // state a checkpoint or `--save-state` takes is between two instructions.
                machine.vm.vcpu_mut().set_immediate_exit(true);
            } else if let Some(l) = live.as_deref_mut() {
                if l.is_due(Instant::now()) {
                    if exit_complete {
                        l.checkpoint(machine, &clock)?;
                    } else {
                        machine.vm.vcpu_mut().set_immediate_exit(true);
                    }
                }
            }
        }
        let now = clock.now_ns();
        machine.board.advance(now);
        complete_disk(machine, &mut disk, now);
        exchange_frames(machine, &mut net, now)?;
        feed_input(machine, input);
        let vcpu = machine.vm.vcpu_mut();
        if machine.board.interrupt_pending() {
            if vcpu.interrupt_window_open() {
                let vector = machine.board.acknowledge_interrupt();
                vcpu.inject_interrupt(vector)?;
                vcpu.request_interrupt_window(false);
            } else {
                vcpu.request_interrupt_window(true);
            }
        } else {
            vcpu.request_interrupt_window(false);
        }
        let mut wait = next_wake(machine, now, &clock);
        if let Some(p) = profile.as_deref() {
            // Without its own kick a sample lands on the next exit, which under emulation is
            // often the timer handler's last port write after the whole handler has run.
            wait = wait.min(p.next_sample_in(started.elapsed()));
        }
        if let Some(l) = live.as_deref() {
            // A guest spinning without exits is kicked out when its checkpoint is due.
            wait = wait.min(l.until_due(Instant::now()).max(Duration::from_micros(1)));
        }
        kicker.arm(wait);
        syscall_trap.before_run(&mut machine.vm)?;
        let exit = machine.vm.vcpu_mut().run();
        let now = clock.now_ns();
        // SAFETY: see `exit_rip`; KVM wrote the sync regs before returning to userspace
        // (for every return, interrupted ones included).
        let rip = unsafe { exit_rip.read_volatile() };
        if let Some(p) = profile.as_deref_mut() {
            p.offer(started.elapsed(), rip);
        }
        exit_complete = !matches!(
            exit,
            Ok(VcpuExit::IoIn(..) | VcpuExit::IoOut(..) | VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..))
        );
        match exit {
            Ok(VcpuExit::IoIn(port, data)) => {
                let outcome = machine.board.pio_read(port, data, now);
                if outcome.first_unmodelled {
                    eprintln!(
                        "ttvm: guest read unmodelled port {port:#x} (RIP {}); returning all ones",
                        show_rip(options, rip)
                    );
                }
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                let outcome = machine.board.pio_write(port, data, now);
                machine.board.drain_serial_output(&mut out_buf);
                output.write(&out_buf);
                if let Some(l) = live.as_deref_mut() {
                    l.on_serial(&out_buf);
                }
                out_buf.clear();
                if outcome.first_unmodelled {
                    eprintln!("ttvm: guest wrote unmodelled port {port:#x} (RIP {}); ignored", show_rip(options, rip));
                }
                if outcome.reset {
                    eprintln!("ttvm: the guest reset the machine (port {port:#x}); a reset ends the run with status 0");
                }
                if let Some(code) = outcome.exit_code {
                    return Ok(FreeRunEnd::Guest { stop: GuestStop::DebugExit(code), detail: String::new() });
                }
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if machine.board.mmio_read(addr, data).first_unmodelled {
                    eprintln!(
                        "ttvm: guest read unmodelled MMIO {addr:#x} (RIP {}); returning all ones",
                        show_rip(options, rip)
                    );
                }
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                if machine.board.mmio_write(addr, data).first_unmodelled {
                    eprintln!("ttvm: guest wrote unmodelled MMIO {addr:#x} (RIP {}); ignored", show_rip(options, rip));
                }
            }
            Ok(VcpuExit::Hlt) => {
                let vcpu = machine.vm.vcpu_mut();
                let if_set = vcpu.regs().rflags & (1 << 9) != 0;
                if !if_set {
                    let detail = format!("at RIP {:#x}", vcpu.rip());
                    return Ok(FreeRunEnd::Guest { stop: GuestStop::Halted, detail });
                }
                wait_while_halted(machine, input, &mut net, &clock, options, started, live.as_deref())?;
            }
            Ok(VcpuExit::IrqWindowOpen) => {}
            Ok(VcpuExit::Debug(_)) => {
                if syscall_trap.on_debug_exit(&mut machine.vm)? == PageFaultTrap::NotOurs {
                    let reason = format!("unexpected debug exit at RIP {}", show_rip(options, rip));
                    let detail = machine.register_dump();
                    return Ok(FreeRunEnd::Guest { stop: GuestStop::InternalError(reason), detail });
                }
            }
            Ok(VcpuExit::Shutdown) => {
                return Ok(FreeRunEnd::Guest { stop: GuestStop::TripleFault, detail: machine.register_dump() });
            }
            Ok(VcpuExit::InternalError) => {
                if let Some(stop) = emulate_or_report(machine, options)? {
                    return Ok(FreeRunEnd::Guest { stop, detail: machine.register_dump() });
                }
            }
            Ok(VcpuExit::FailEntry(reason, _)) => {
                let stop = GuestStop::InternalError(format!("KVM_EXIT_FAIL_ENTRY (hardware reason {reason:#x})"));
                return Ok(FreeRunEnd::Guest { stop, detail: machine.register_dump() });
            }
            Ok(other) => {
                let reason = format!("unexpected exit {other:?}");
                return Ok(FreeRunEnd::Guest {
                    stop: GuestStop::InternalError(reason),
                    detail: machine.register_dump(),
                });
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                machine.vm.vcpu_mut().set_immediate_exit(false);
            }
            Err(e) => return Err(FreeRunError::Run(e)),
        }
    }
}

/// KVM reported an internal error, typically an emulation failure: on hosts whose KVM
/// emulates ring-0 code (PVM), instructions it does not implement end up here. ttvm
/// provides RDTSCP, RDRAND and RDSEED in its CPUID model, so those are emulated in
/// userspace, as are INT3, CLAC/STAC, FWAIT, LDMXCSR/STMXCSR, FNCLEX, EMMS and FILD
/// ([`Vm::emulate_failed_instruction`](crate::vm::Vm::emulate_failed_instruction)); anything
/// else is reported with its disassembly.
fn emulate_or_report(machine: &mut Machine, options: &FreeRunOptions) -> Result<Option<GuestStop>, FreeRunError> {
    if machine.vm.emulate_failed_instruction()? {
        return Ok(None);
    }
    let vcpu = machine.vm.vcpu();
    let (mut regs, sregs) = (vcpu.regs(), vcpu.sregs());
    let (bytes, n) = fetch_at_rip(machine.vm.ram(), &regs, &sregs);
    let special = classify(&bytes[..n], code_mode(&sregs));
    let (special, len) = match special {
        Some(s @ (Special::Rdtscp | Special::Rdrand { .. } | Special::Rdseed { .. }, _)) => s,
        _ => {
            let what = describe_at_rip(machine.vm.ram(), &regs, &sregs);
            return Ok(Some(GuestStop::InternalError(format!(
                "KVM_EXIT_INTERNAL_ERROR: KVM could not execute `{what}` at RIP {} \
                 (on hosts whose KVM emulates ring-0 code, such as PVM, most SSE and all \
                 AVX instructions are not implemented: build the kernel without SSE)",
                show_rip(options, regs.rip)
            ))));
        }
    };
    let (value, aux) = match special {
        Special::Rdtscp => (host_tsc(), vcpu.get_msr(crate::msr::TSC_AUX)?),
        _ => (host_random(), 0),
    };
    apply_emulated(&mut regs, special, len, value, aux);
    machine.vm.vcpu_mut().set_regs(&regs);
    Ok(None)
}

fn host_tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn host_random() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_le_bytes(b)
    } else {
        host_tsc().rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15
    }
}

/// Completes the disk's requests once their deadline has passed. A failed image access is
/// the guest's I/O error (the request's status says so) and is reported here.
fn complete_disk(machine: &mut Machine, disk: &mut Option<&mut dyn DiskBackend>, now: u64) {
    let Some(disk) = disk.as_deref_mut() else { return };
    if !machine.board.disk_due(now) {
        return;
    }
    match machine.complete_disk(disk) {
        Ok(done) => {
            for e in &done.errors {
                eprintln!("ttvm: disk: {e}; the guest sees an I/O error");
            }
        }
        Err(e) => eprintln!("ttvm: disk: {e}"),
    }
}

/// Sends what the card has notified and puts waiting frames into its receive buffers, as
/// many as it has buffers for; the rest wait at the switch.
fn exchange_frames(machine: &mut Machine, net: &mut NetPort<'_>, now: u64) -> Result<(), FreeRunError> {
    let Some(net) = net.as_deref_mut() else { return Ok(()) };
    if machine.board.net_tx_due(now) {
        let out = machine.transmit_net()?;
        if out.dropped > 0 {
            eprintln!("ttvm: network card: {} malformed frame(s) from the guest dropped", out.dropped);
        }
        for frame in out.frames {
            net.send(frame);
        }
    }
    while net.has_frame() && machine.net_rx_ready()? {
        if let Some(frame) = net.take() {
            machine.receive_net(&frame.data)?;
        }
    }
    Ok(())
}

/// Whether the network has something for a halted guest: a frame its card can take now,
/// or a transmission due.
fn net_wakes(machine: &mut Machine, net: &NetPort<'_>, now: u64) -> Result<bool, FreeRunError> {
    let Some(net) = net.as_deref() else { return Ok(false) };
    Ok(machine.board.net_tx_due(now) || (net.has_frame() && machine.net_rx_ready()?))
}

fn feed_input(machine: &mut Machine, input: &mut ConsoleInput) {
    input.poll();
    if input.pending().is_empty() || machine.board.serial_input_space() == 0 {
        return;
    }
    let (a, b) = input.pending().as_slices();
    let mut chunk = a.to_vec();
    chunk.extend_from_slice(b);
    let n = machine.board.serial_input(&chunk);
    input.consume(n);
}

/// Host time until the next device deadline (device time runs `clock.slowdown()` times
/// slower), at most [`POLL_INTERVAL`].
fn next_wake(machine: &Machine, now: u64, clock: &HostClock) -> Duration {
    match machine.board.next_deadline() {
        Some(d) if d > now => clock.host_duration(Duration::from_nanos(d - now)).min(POLL_INTERVAL),
        Some(_) => Duration::from_micros(1),
        None => POLL_INTERVAL,
    }
}

/// The guest executed HLT with interrupts enabled: sleep until a device has something
/// (timer deadline or serial input) or the timeout expires.
fn wait_while_halted(
    machine: &mut Machine,
    input: &mut ConsoleInput,
    net: &mut NetPort<'_>,
    clock: &HostClock,
    options: &FreeRunOptions,
    started: Instant,
    live: Option<&dyn LivePause>,
) -> Result<(), FreeRunError> {
    loop {
        let now = clock.now_ns();
        machine.board.advance(now);
        feed_input(machine, input);
        if machine.board.interrupt_pending() || machine.board.disk_due(now) || net_wakes(machine, net, now)? {
            return Ok(());
        }
        if let Some(t) = options.timeout {
            if started.elapsed() >= t {
                return Ok(());
            }
        }
        if options.stop_requested() || live.is_some_and(|l| l.is_due(Instant::now())) {
            return Ok(());
        }
        let nothing_can_wake =
            machine.board.next_deadline().is_none() && !input.is_live() && input.pending().is_empty();
        if nothing_can_wake && options.timeout.is_none() {
            // Still sleep in small steps: a guest with no timer and no input is waiting
            // forever, which the user ends with Ctrl-C or --timeout.
        }
        let nap = next_wake(machine, now, clock).min(Duration::from_millis(1)).max(Duration::from_micros(50));
        match net.as_deref() {
            // A frame for this VM ends the nap at once; one already waiting (no buffer for
            // it yet) does not, or the loop would spin.
            Some(n) if !n.has_frame() => n.wait(nap),
            _ => std::thread::sleep(nap),
        }
    }
}

impl crate::error_kind::Classify for FreeRunError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            Self::Run(_) => crate::error_kind::ErrorKind::KvmInternal,
            Self::Vcpu(e) => crate::error_kind::Classify::kind(e),
            Self::Signal(_) => crate::error_kind::ErrorKind::Host,
            // A live checkpoint that cannot be taken or written: the host's side.
            Self::Checkpoint(_) => crate::error_kind::ErrorKind::Host,
            Self::Memory(e) => crate::error_kind::Classify::kind(e),
        }
    }
}
