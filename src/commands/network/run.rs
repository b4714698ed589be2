//! Running a network with the free engine: one thread per VM, all on one [`SharedSwitch`].
//!
//! The group's exit status is the status of the first VM (in time) that ended with a
//! non-zero status; that ending also stops the other VMs (they would otherwise wait for
//! frames forever), and they are reported as stopped, not as failures of their own. When
//! every VM exits 0 the status is 0. Each VM's outcome is printed on stderr.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ttvm_vmm::clock::HostClock;
use ttvm_vmm::console::{ConsoleInput, ConsoleOutput, WatchedOutput};
use ttvm_vmm::devices::virtio_net::mac_for;
use ttvm_vmm::free_run::{run_free_networked, FreeRunEnd, FreeRunOptions};
use ttvm_vmm::machine::{Machine, MachineConfig};

use super::args::Network;
use super::live_snapshot::{self, LiveSnapshots};
use super::port::{Port, SharedSwitch};
use crate::commands::panic_watch::{PanicWatch, PANIC_EXIT};
use crate::exit_code::{self, Exit};

/// How one VM ended.
#[derive(Debug)]
pub struct Outcome {
    /// What to tell the user.
    pub text: String,
    /// Its status as a single `ttvm run` would have exited.
    pub status: i32,
}

/// The first VM to fail (position, status), shared by the threads.
type FirstFailure = Arc<Mutex<Option<(usize, i32)>>>;

/// Never raised: the per-VM output only prefixes lines, it watches for none.
static NEVER: AtomicBool = AtomicBool::new(false);

/// Serial output shown line by line as `[POS NAME] line`, so the VMs' lines do not mix.
pub(super) fn prefixed_output(index: usize, name: &str) -> ConsoleOutput {
    let prefix = format!("[{index} {name}] ");
    let print = move |line: &[u8]| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(prefix.as_bytes());
        let _ = out.write_all(line);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
        false
    };
    ConsoleOutput::Watched(Box::new(WatchedOutput::new(ConsoleOutput::Discard, print, &NEVER)))
}

/// `ttvm run --vm … --vm …`: the group's exit status (see the module comment).
pub fn run(network: Network) -> Result<i32, Exit> {
    if network.vms.is_empty() {
        return Err(Exit::new(exit_code::BAD_INPUT, "a network needs at least one --vm KERNEL"));
    }
    if network.options.output.is_some() {
        return Err(Exit::new(exit_code::BAD_INPUT, "run --vm: -o is for `ttvm record --vm … -o DIR`"));
    }
    let timeout = crate::commands::run::positive_seconds("--timeout", network.options.timeout)?;
    // Every configuration is read before any VM starts, so a bad kernel path fails now.
    let mut configs = Vec::new();
    for vm in &network.vms {
        configs.push(vm.machine.config()?);
    }
    let shared = SharedSwitch::new(configs.len());
    let names = configs.iter().zip(&network.vms).map(|((_, name), vm)| live_snapshot::VmName {
        name: name.clone(),
        kernel: vm.machine.kernel.clone().unwrap_or_default(),
    });
    let o = &network.options;
    let live = LiveSnapshots::start(o.snapshot_every, o.snapshots.clone(), o.keep, names.collect(), shared.clone())?;
    let starts = configs.into_iter().map(|(config, name)| (name, VmStart::Boot(config))).collect();
    let status = run_group(starts, shared, timeout, live.clone())?;
    match live {
        Some(l) => l.finish().map(|()| status),
        None => Ok(status),
    }
}

/// How a VM's thread gets its machine.
pub(super) enum VmStart {
    /// Boots the configuration with a card on its port.
    Boot(MachineConfig),
    /// Loads a free-run snapshot whose machine has its card (`ttvm resume SNAP`).
    Resume(PathBuf),
    /// Nothing to run: the VM had already ended (at a snapshot's cut).
    Ended(Outcome),
}

/// Runs each VM of `starts` (name and start, in position order) on its own thread on
/// `shared` until all have ended, each taking its part in `live` snapshots if given; the
/// group's exit status (see the module comment).
pub(super) fn run_group(
    starts: Vec<(String, VmStart)>,
    shared: Arc<SharedSwitch>,
    timeout: Option<Duration>,
    live: Option<Arc<LiveSnapshots>>,
) -> Result<i32, Exit> {
    let stop = crate::signals::install_stop_flag();
    let first_failure: FirstFailure = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let threads: Vec<_> = starts
        .into_iter()
        .enumerate()
        .map(|(index, (name, start))| {
            let port = Port { shared: shared.clone(), index };
            let first_failure = first_failure.clone();
            let thread_name = format!("vm{index}");
            let live = live.clone();
            let handle = std::thread::Builder::new().name(thread_name).spawn(move || {
                let outcome = run_vm(index, &name, start, port, timeout, stop, live.clone());
                if let Some(l) = &live {
                    l.leave(index, Some(&outcome));
                }
                if outcome.status != 0 {
                    let mut first = first_failure.lock().unwrap_or_else(|p| p.into_inner());
                    // A VM whose kernel panicked raised the stop flag itself: the others may
                    // report being stopped before it reports why.
                    let stopped_first = matches!(*first, Some((_, s)) if s == exit_code::INTERRUPTED);
                    if first.is_none() || (stopped_first && outcome.status != exit_code::INTERRUPTED) {
                        *first = Some((index, outcome.status));
                        // The others would wait for this VM's frames forever.
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                (name, outcome)
            });
            handle.map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("cannot start a thread for VM {index}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut outcomes = Vec::new();
    for (index, t) in threads.into_iter().enumerate() {
        let (name, outcome) =
            t.join().map_err(|_| Exit::new(exit_code::HOST_ERROR, format!("the thread of VM {index} panicked")))?;
        outcomes.push((name, outcome));
    }
    let elapsed = started.elapsed();
    let first = *first_failure.lock().unwrap_or_else(|p| p.into_inner());
    for (index, (name, outcome)) in outcomes.iter().enumerate() {
        let note = match first {
            // A VM's own Ctrl-C ending is not a failure that stopped the others.
            Some((f, status))
                if f != index && status != exit_code::INTERRUPTED && outcome.status == exit_code::INTERRUPTED =>
            {
                format!(" (stopped because VM {f} ended first)")
            }
            _ => String::new(),
        };
        eprintln!("ttvm: VM {index} ({name}): {}{note}", outcome.text);
    }
    let stats = shared.stats();
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "ttvm: switch: {} frames sent, {} delivered to ports, {} dropped in {:.3} s ({:.0} frames/s)",
        stats.sent,
        stats.queued,
        stats.dropped,
        secs,
        stats.sent as f64 / secs
    );
    Ok(first.map_or(0, |(_, status)| status))
}

/// Boots (or loads) and runs the VM at `index` on its port until it ends.
fn run_vm(
    index: usize,
    name: &str,
    start: VmStart,
    mut port: Port,
    timeout: Option<Duration>,
    stop: &'static AtomicBool,
    live: Option<Arc<LiveSnapshots>>,
) -> Outcome {
    let could_not_start =
        |exit: Exit| Outcome { text: format!("could not start: {}", exit.message), status: exit.code };
    let (mut machine, clock, origin) = match start {
        VmStart::Ended(outcome) => return outcome,
        VmStart::Boot(config) => {
            let is_linux = ttvm_vmm::boot::looks_like_linux(&config.kernel);
            let slowdown = if is_linux { crate::commands::run::LINUX_SLOWDOWN } else { 1 };
            let mut machine = match Machine::new(config.clone()) {
                Ok(m) => m,
                Err(e) => return could_not_start(Exit::of(name, &e)),
            };
            machine.board.attach_net(mac_for(index as u8));
            let origin = live_snapshot::origin(name, config, &machine);
            (machine, HostClock::new(slowdown), Some(origin))
        }
        VmStart::Resume(path) => match ttvm_vmm::snapshot::load(&path) {
            Ok(loaded) => (loaded.machine, loaded.clock, loaded.origin),
            Err(e) => return could_not_start(Exit::of("", &e)),
        },
    };
    let (mut output, panic) = PanicWatch::wrap(prefixed_output(index, name), stop);
    let mut input = ConsoleInput::none();
    let options = FreeRunOptions { timeout, symbols: None, stop: Some(stop), clock };
    let mut member = match live.map(|l| l.join(index, &mut machine, origin)).transpose() {
        Ok(m) => m,
        Err(e) => return could_not_start(Exit::of("--snapshots", &e)),
    };
    let pause = member.as_mut().map(|m| m as &mut dyn ttvm_vmm::live::LivePause);
    let end = run_free_networked(&mut machine, None, Some(&mut port), &mut output, &mut input, &options, None, pause);
    let outcome = match end {
        Ok(FreeRunEnd::Guest { stop, detail }) => {
            let status = exit_code::for_guest_stop(&stop);
            let text = match (&stop, detail.is_empty()) {
                (ttvm_vmm::stop::GuestStop::DebugExit(_), _) | (_, true) => format!("{stop}"),
                _ => format!("{stop} ({})", detail.lines().next().unwrap_or_default()),
            };
            Outcome { text, status }
        }
        Ok(FreeRunEnd::Timeout) => Outcome {
            text: format!("timeout; the guest was at RIP {:#x}", machine.vm.vcpu().rip()),
            status: exit_code::TIMEOUT,
        },
        Ok(FreeRunEnd::Interrupted) => match panic.reason() {
            Some(reason) => Outcome { text: format!("the guest kernel panicked: {reason}"), status: PANIC_EXIT },
            None => Outcome {
                text: format!("stopped; the guest was at RIP {:#x}", machine.vm.vcpu().rip()),
                status: exit_code::INTERRUPTED,
            },
        },
        Err(e) => {
            let exit = Exit::of("", &e);
            Outcome { text: format!("failed: {}", exit.message), status: exit.code }
        }
    };
    if outcome.status == 0 {
        if let Some(m) = member.as_mut() {
            m.ended(&mut machine, &clock);
        }
    }
    // The image thread finishes before the VM leaves the snapshots.
    drop(member);
    outcome
}
