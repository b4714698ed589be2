//! `ttvm run`: boot a kernel with the free-running engine (no recording), and `ttvm resume`:
//! continue a free run from a snapshot `--save-state` wrote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use ttvm_vmm::clock::{Clock, HostClock};
use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::cpuid::CpuVendor;
use ttvm_vmm::disk::{DiskBackend, FileDisk};
use ttvm_vmm::free_run::{run_free, FreeRunEnd, FreeRunOptions};
use ttvm_vmm::live::LiveCheckpointer;
use ttvm_vmm::machine::Machine;
use ttvm_vmm::profile::ProfileWriter;
use ttvm_vmm::snapshot::{self, SnapshotOrigin};

use crate::commands::panic_watch::{PanicWatch, PANIC_EXIT};
use crate::exit_code::{self, Exit};
use crate::options::{MachineArgs, SerialArgs, SymbolArgs};

/// Arguments of `ttvm run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The machine: kernel, RAM, command line, serial, initrd, disk.
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Run device time (timer interrupts, the RTC, the guest's idea of elapsed time) N
    /// times slower than host time, so a guest whose ring-0 code the host emulates slowly
    /// still has time between timer ticks [default: 10 for a Linux kernel, 1 otherwise].
    /// A snapshot keeps it; `resume` continues at the same rate.
    #[arg(long, value_name = "N", value_parser = slowdown_range())]
    pub slowdown: Option<u32>,
    /// Boot at free-run speed, then record with the exact engine into `-o TRACE` from the
    /// moment a line of the guest's serial output matches REGEX (boot once, record only the
    /// bug). The trace starts there and is self-contained; --timeout bounds the free part.
    #[arg(long, value_name = "REGEX", requires = "output", conflicts_with_all = ["save_state", "profile"])]
    pub record_from_output: Option<String>,
    /// The trace --record-from-output writes.
    #[arg(short, long, value_name = "TRACE", requires = "record_from_output")]
    pub output: Option<PathBuf>,
    /// How long the free run goes and what it leaves behind.
    #[command(flatten)]
    pub free: FreeRunArgs,
    /// A network: `ttvm run [--timeout S] --vm KERNEL [--cmdline C] [--mem M] --vm KERNEL …`
    /// runs each VM on its own thread with a virtio-net card (PCI 00:02.0, IRQ 10, MAC
    /// 52:54:00:74:74:NN with NN its position from 1) on one virtual switch; the options
    /// after a --vm belong to that VM. Exit status: the first failing VM's, else 0.
    #[arg(long = "vm", value_name = "KERNEL")]
    pub vm: Vec<String>,
}

/// A booted machine about to run freely: its disk (an image written in place, or a
/// branch's disk kept in memory), its device
/// clock, what it booted from (for its snapshots) and the kernel's symbols.
pub struct FreeStart {
    /// The machine.
    pub machine: Machine,
    /// What backs its disk, if it has one.
    pub disk: Option<Box<dyn DiskBackend>>,
    /// Its device clock.
    pub clock: HostClock,
    /// What it booted from; `None` for a machine resumed from an older snapshot.
    pub origin: Option<SnapshotOrigin>,
    /// Kernel symbols for messages.
    pub symbols: Option<ttvm_vmm::symbols::SymbolTable>,
    /// Live checkpoints to take while it runs (`--checkpoint-every`), or to go on taking
    /// (`resume DIR`).
    pub live: Option<LiveCheckpointer>,
}

/// Arguments of `ttvm resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// A snapshot written by `ttvm run --save-state` (or an earlier `ttvm resume --save-state`),
    /// or a directory of live checkpoints (`ttvm run --checkpoints DIR`): its newest complete
    /// one, after a crash or a kill; or a network snapshot (`ttvm snapshot DIR --at VM:ICOUNT
    /// -o SNAP`): every VM from the cut, on one switch, the frames in flight delivered first.
    pub snapshot: PathBuf,
    /// Where the guest's serial port reads and writes.
    #[command(flatten)]
    pub serial: SerialArgs,
    /// The disk image the snapshot's machine had (`run --disk`), read and written in place.
    #[arg(long, value_name = "FILE")]
    pub disk: Option<PathBuf>,
    /// Device time N times slower than host time from here on, instead of the rate the
    /// snapshot was running at (a guest that calibrated its timers against the old rate
    /// sees its clocks drift).
    #[arg(long, value_name = "N", value_parser = slowdown_range())]
    pub slowdown: Option<u32>,
    /// How long the free run goes and what it leaves behind.
    #[command(flatten)]
    pub free: FreeRunArgs,
    /// A network snapshot only: take consistent snapshots of the resumed network every
    /// DURATION (`50ms`, `5s`, `2m`) into --snapshots DIR, as `ttvm run --vm …
    /// --snapshot-every` does, so it can be resumed again (the newest 3 kept).
    #[arg(long, value_name = "DURATION", value_parser = crate::options::parse_duration, requires = "snapshots")]
    pub snapshot_every: Option<std::time::Duration>,
    /// With --snapshot-every: the directory the snapshots go to (created if missing; must
    /// be empty).
    #[arg(long, value_name = "DIR", requires = "snapshot_every")]
    pub snapshots: Option<PathBuf>,
}

/// `--slowdown`: 1 (host speed) to 1000.
fn slowdown_range() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..=1000)
}

/// How long a free run goes and what it leaves behind.
#[derive(Debug, Args)]
pub struct FreeRunArgs {
    /// Stop after this many seconds of host time (exit status 73).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Kernel symbols for names in messages.
    #[command(flatten)]
    pub symbols: SymbolArgs,
    /// Sample the guest RIP every 10 ms of host time and write where the guest spent its
    /// time to FILE, rewritten every minute and when the run ends (function names with
    /// --symbols).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// When the run is stopped (--timeout or Ctrl-C), write the whole machine (RAM, vCPU,
    /// devices, clocks) to FILE; `ttvm resume FILE` continues from there.
    #[arg(long, value_name = "FILE")]
    pub save_state: Option<PathBuf>,
    /// Live checkpoints while it runs (`--checkpoint-every`, `--checkpoints`, `--keep`).
    #[command(flatten)]
    pub live: super::live::LiveArgs,
}

impl FreeRunArgs {
    /// `--timeout` as a duration, refused unless a positive number of seconds.
    pub fn timeout(&self) -> Result<Option<Duration>, Exit> {
        positive_seconds("--timeout", self.timeout)
    }
}

/// An option's seconds as a duration, refused unless a positive number.
pub fn positive_seconds(option: &str, seconds: Option<f64>) -> Result<Option<Duration>, Exit> {
    match seconds {
        Some(t) if t.is_finite() && t > 0.0 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => Err(Exit::new(exit_code::BAD_INPUT, format!("{option} {t}: must be a positive number of seconds"))),
        None => Ok(None),
    }
}

/// `ttvm run`: the exit status.
pub fn run(args: RunArgs) -> Result<i32, Exit> {
    let (config, name) = args.machine.config()?;
    let is_linux = ttvm_vmm::boot::looks_like_linux(&config.kernel);
    let slowdown = args.slowdown.unwrap_or(if is_linux { LINUX_SLOWDOWN } else { 1 });
    let symbols = args.free.symbols.load(Some(&config.kernel))?;
    let disk = open_disk(args.machine.disk.as_deref())?;
    let mut machine = Machine::new(config.clone()).map_err(|e| Exit::of(&name, &e))?;
    if let Some(d) = &disk {
        machine.board.attach_disk(d.capacity());
    }
    let origin = SnapshotOrigin {
        kernel_name: name,
        machine: config,
        neutral_vendor: machine.vm.cpuid().vendor_choice() == CpuVendor::Neutral,
    };
    let clock = HostClock::new(slowdown);
    if let (Some(pattern), Some(trace)) = (&args.record_from_output, &args.output) {
        args.free.live.refuse_with("--record-from-output")?;
        let free = FreeStart { machine, disk: boxed(disk), clock, origin: Some(origin), symbols, live: None };
        return crate::commands::run_then_record::run_then_record(free, pattern, trace, &args);
    }
    if disk.is_some() {
        args.free.live.refuse_with("--disk (the image is written in place, outside the checkpoints)")?;
    }
    let live = args.free.live.start(&mut machine, &clock, Some(&origin))?;
    let free = FreeStart { machine, disk: boxed(disk), clock, origin: Some(origin), symbols, live };
    let output = args.machine.serial.output(ConsoleOutput::Stdout)?;
    let input = args.machine.serial.input()?;
    drive(free, output, input, &args.free)
}

/// `--disk FILE` for a free run: the image, read and written in place.
fn open_disk(path: Option<&Path>) -> Result<Option<FileDisk>, Exit> {
    path.map(|p| FileDisk::open(p).map_err(|e| Exit::of("--disk", &e))).transpose()
}

fn boxed(disk: Option<FileDisk>) -> Option<Box<dyn DiskBackend>> {
    disk.map(|d| Box::new(d) as Box<dyn DiskBackend>)
}

/// Whether the disk image given for a saved machine (`resume`, `record --from`) fits it:
/// a machine with a disk needs its image, one without takes none, and the sizes agree.
pub fn check_snapshot_disk(machine: &Machine, image_sectors: Option<u64>) -> Result<(), Exit> {
    match (image_sectors, machine.board.virtio_blk.as_ref()) {
        (Some(image), Some(blk)) if image != blk.capacity() => Err(Exit::new(
            exit_code::BAD_INPUT,
            format!("--disk: the snapshot's disk has {} sectors, the image {image}", blk.capacity()),
        )),
        (None, Some(_)) => {
            Err(Exit::new(exit_code::BAD_INPUT, "the snapshot has a disk: give its image with --disk FILE"))
        }
        (Some(_), None) => Err(Exit::new(exit_code::BAD_INPUT, "--disk: the snapshot's machine has no disk")),
        _ => Ok(()),
    }
}

/// `--slowdown` for a Linux kernel when not given: its 250 Hz tick costs about 4 ms of
/// emulated ring 0 on PVM hosts, the whole tick period at host speed (see `HostClock`).
pub const LINUX_SLOWDOWN: u32 = 10;

/// `ttvm resume`: the exit status.
pub fn resume(args: ResumeArgs) -> Result<i32, Exit> {
    if super::network::resume::is_network_snapshot(&args.snapshot) {
        return super::network::resume::resume(&args);
    }
    if args.snapshot_every.is_some() {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            "--snapshot-every is for a network snapshot; one machine's resume takes --checkpoint-every D --checkpoints DIR",
        ));
    }
    // A snapshot holds RAM, not the kernel image, so the symbols cannot be checked against it.
    let symbols = args.free.symbols.load(None)?;
    if args.snapshot.is_dir() {
        args.free.live.refuse_for_dir(&args.snapshot)?;
        if args.slowdown.is_some() {
            return Err(Exit::new(
                exit_code::BAD_INPUT,
                "--slowdown: a checkpoint directory resumes at the rate its guest calibrated against",
            ));
        }
        let (machine, clock, live, origin) = super::live::resume_dir(&args.snapshot)?;
        let output = args.serial.output(ConsoleOutput::Stdout)?;
        let input = args.serial.input()?;
        let free = FreeStart { machine, disk: None, clock, origin, symbols, live: Some(live) };
        return drive(free, output, input, &args.free);
    }
    let loaded = snapshot::load(&args.snapshot).map_err(|e| Exit::of("", &e))?;
    let (mut machine, mut clock, origin) = (loaded.machine, loaded.clock, loaded.origin);
    if let Some(n) = args.slowdown {
        clock = HostClock::resumed_at(clock.now_ns(), n);
    }
    let rate = match clock.slowdown() {
        1 => "at host speed".to_string(),
        n => format!("{n} times slower than host time"),
    };
    eprintln!(
        "ttvm: resuming {} at {:.3} s of guest device time (running {rate}), RIP {:#x}",
        args.snapshot.display(),
        clock.now_ns() as f64 / 1e9,
        machine.vm.vcpu().rip()
    );
    let output = args.serial.output(ConsoleOutput::Stdout)?;
    let input = args.serial.input()?;
    let disk = open_disk(args.disk.as_deref())?;
    check_snapshot_disk(&machine, disk.as_ref().map(|d| d.capacity()))?;
    if disk.is_some() {
        args.free.live.refuse_with("--disk (the image is written in place, outside the checkpoints)")?;
    }
    let live = args.free.live.start(&mut machine, &clock, origin.as_ref())?;
    drive(FreeStart { machine, disk: boxed(disk), clock, origin, symbols, live }, output, input, &args.free)
}

/// Runs `machine` with the free engine until the guest stops, the timeout expires or the
/// user presses Ctrl-C, then writes the profile and the snapshot that were asked for.
pub(crate) fn drive(
    free: FreeStart,
    output: ConsoleOutput,
    mut input: ConsoleInput,
    args: &FreeRunArgs,
) -> Result<i32, Exit> {
    let FreeStart { mut machine, mut disk, clock, origin, symbols, mut live } = free;
    let timeout = args.timeout()?;
    if let Some(p) = &args.save_state {
        check_writable(p)?;
    }
    // Ctrl-C ends the run through the loop, so the profile and the snapshot are still written.
    let stop_flag = crate::signals::install_stop_flag();
    let (mut output, panic) = PanicWatch::wrap(output, stop_flag);
    let options = FreeRunOptions { timeout, symbols, stop: Some(stop_flag), clock };
    // Created before the run so a bad path fails now, not after an hour of booting.
    let mut profile = match &args.profile {
        Some(p) => Some(
            ProfileWriter::create(p, options.symbols.as_ref())
                .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("--profile {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let backend = disk.as_mut().map(|d| d.as_mut() as &mut dyn DiskBackend);
    let end = run_free(&mut machine, backend, &mut output, &mut input, &options, profile.as_mut(), live.as_mut());
    if let Some(live) = live {
        super::live::finish(live)?;
    }
    if let (Some(profile), Some(path)) = (profile, &args.profile) {
        let samples = profile
            .finish()
            .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("--profile {}: {e}", path.display())))?;
        eprintln!("ttvm: profile of {samples} samples written to {}", path.display());
    }
    let end = end.map_err(|e| Exit::of("", &e))?;
    let code = match &end {
        FreeRunEnd::Guest { stop, detail } => {
            match stop {
                ttvm_vmm::stop::GuestStop::DebugExit(_) => {}
                ttvm_vmm::stop::GuestStop::Halted => eprintln!("ttvm: {stop} ({detail})"),
                _ => eprintln!("ttvm: {stop}\n{detail}"),
            }
            exit_code::for_guest_stop(stop)
        }
        FreeRunEnd::Timeout => {
            eprintln!(
                "ttvm: timeout after {:.1} s; {}",
                args.timeout.unwrap_or_default(),
                where_guest_was(&machine, &options)
            );
            exit_code::TIMEOUT
        }
        FreeRunEnd::Interrupted => match panic.reason() {
            Some(reason) => {
                eprintln!("ttvm: the guest kernel panicked: {reason}");
                PANIC_EXIT
            }
            None => {
                eprintln!("ttvm: interrupted; {}", where_guest_was(&machine, &options));
                exit_code::INTERRUPTED
            }
        },
    };
    let guest_ended = matches!(end, FreeRunEnd::Guest { .. }) || panic.reason().is_some();
    if let Some(path) = &args.save_state {
        if guest_ended {
            eprintln!("ttvm: the guest stopped by itself; no snapshot written to {}", path.display());
        } else {
            snapshot::save(&mut machine, &options.clock, origin.as_ref(), path).map_err(|e| Exit::of("", &e))?;
            eprintln!(
                "ttvm: machine state saved to {}; continue with `ttvm resume {}`",
                path.display(),
                path.display()
            );
        }
    }
    Ok(code)
}

/// Fails now, not after the run, if `path` cannot be created.
fn check_writable(path: &Path) -> Result<(), Exit> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("--save-state {}: {e}", path.display())))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Where the guest was at its last exit, for a run that ended without the guest stopping:
/// a kernel that hangs or spins shows its function (with `--symbols`) and whether it was in
/// user mode.
fn where_guest_was(machine: &Machine, options: &FreeRunOptions) -> String {
    let vcpu = machine.vm.vcpu();
    let (rip, ring) = (vcpu.rip(), vcpu.sregs().cs.dpl);
    let name = options.symbols.as_ref().and_then(|s| s.describe(rip));
    match name {
        Some(name) => format!("the guest was at RIP {rip:#x} ({name}) in ring {ring}"),
        None => format!("the guest was at RIP {rip:#x} in ring {ring}"),
    }
}
