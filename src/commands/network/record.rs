//! `ttvm record --vm KERNEL [options] --vm KERNEL [options] … -o DIR`: every VM recorded by
//! its own exact-engine session on its own thread, all on one switch. DIR gets one trace
//! per VM (`vmN-NAME.ttvm`) and the manifest (`network.ttvm-net`) with the VMs and every
//! frame's send and delivery points, built from what each session logged.
//!
//! Exit status as `ttvm run --vm`: the first VM to fail stops the others and its status is
//! the group's; 0 when every VM exited 0. Ctrl-C and `--timeout` stop every VM at a step
//! boundary, and each trace and the manifest are still written whole.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ttvm_replay::clock::ClockMode;
use ttvm_replay::network::manifest::{DeliveryV1, FrameEntryV1, NetworkManifestV1, VmEntryV1, MANIFEST_FILE};
use ttvm_replay::network::record::NetLog;
use ttvm_replay::record::{RecordEnd, RecordOptions, RecordSession, RecordTo, DEFAULT_CHECKPOINT_EVERY};
use ttvm_vmm::console::ConsoleInput;
use ttvm_vmm::devices::virtio_net::mac_for;
use ttvm_vmm::machine::Machine;

use super::args::Network;
use super::port::{Port, SharedSwitch};
use super::run::prefixed_output;
use crate::exit_code::{self, Exit};

/// Set by the `--timeout` timer just before it raises the stop flag, so a VM stopped by it
/// is reported as timed out, not interrupted.
static TIMED_OUT: AtomicBool = AtomicBool::new(false);

/// One VM's recording, as its thread ends it.
struct VmRecorded {
    name: String,
    kernel: String,
    trace: String,
    steps: u64,
    /// Its status as a single `ttvm record` would have exited.
    status: i32,
    exit_status: Option<i32>,
    outcome: String,
    log: NetLog,
}

/// The trace file name of the VM at `index`: position and kernel name, so `ls` sorts them.
fn trace_name(index: usize, name: &str) -> String {
    let base = Path::new(name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("vm{index}-{clean}.ttvm")
}

/// `ttvm record --vm … --vm … -o DIR`.
pub fn record(network: Network) -> Result<i32, Exit> {
    if network.vms.is_empty() {
        return Err(Exit::new(exit_code::BAD_INPUT, "a network needs at least one --vm KERNEL"));
    }
    let Some(dir) = network.options.output.clone() else {
        return Err(Exit::new(exit_code::BAD_INPUT, "record --vm: give the directory for the traces with -o DIR"));
    };
    if network.options.snapshot_every.is_some() {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            "--snapshot-every is for `ttvm run --vm …`; a recording is cut afterwards with `ttvm snapshot DIR --at VM:ICOUNT`",
        ));
    }
    if !network.options.until_failure {
        return record_into(&network, &dir);
    }
    if dir.exists() {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!("--until-failure keeps the failing recording in {}, which exists already", dir.display()),
        ));
    }
    let scratch = dir.with_extension("until-failure.tmp");
    let remove = |p: &Path| {
        if p.exists() {
            std::fs::remove_dir_all(p)
                .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("cannot remove {}: {e}", p.display())))
        } else {
            Ok(())
        }
    };
    for run in 1..=network.options.runs {
        remove(&scratch)?;
        let status = record_into(&network, &scratch)?;
        eprintln!("ttvm: run {run}/{}: status {status}", network.options.runs);
        if status == exit_code::INTERRUPTED || status == exit_code::TIMEOUT {
            remove(&scratch)?;
            return Ok(status);
        }
        if status != 0 {
            std::fs::rename(&scratch, &dir)
                .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("{}: {e}", dir.display())))?;
            eprintln!("ttvm: the failure was recorded on run {run}; the recording is {}", dir.display());
            return Ok(status);
        }
    }
    remove(&scratch)?;
    Err(Exit::new(
        exit_code::CHECK_FAILED,
        format!("no failure in {} runs of the network; nothing kept", network.options.runs),
    ))
}

/// One recording of the network into `dir`.
fn record_into(network: &Network, dir: &Path) -> Result<i32, Exit> {
    let timeout = crate::commands::run::positive_seconds("--timeout", network.options.timeout)?;
    let mut configs = Vec::new();
    for vm in &network.vms {
        configs.push(vm.machine.config()?);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("cannot create {}: {e}", dir.display())))?;
    // Before any trace exists: a Ctrl-C must finalise them, not kill the process.
    let stop = crate::signals::install_stop_flag();
    if let Some(t) = timeout {
        std::thread::spawn(move || {
            std::thread::sleep(t);
            TIMED_OUT.store(true, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
        });
    }
    let shared = SharedSwitch::new(configs.len());
    let first_failure: Arc<Mutex<Option<(usize, i32)>>> = Arc::new(Mutex::new(None));
    let started = Instant::now();
    let mut threads = Vec::new();
    for (index, ((config, name), vm)) in configs.into_iter().zip(&network.vms).enumerate() {
        let port = Port { shared: shared.clone(), index };
        let first_failure = first_failure.clone();
        let kernel = vm.machine.kernel.clone().unwrap_or_default();
        let path = dir.join(trace_name(index, &name));
        let handle = std::thread::Builder::new().name(format!("vm{index}")).spawn(move || {
            let r = record_vm(index, name, kernel, config, port, &path, stop);
            if r.status != 0 {
                let mut first = first_failure.lock().unwrap_or_else(|p| p.into_inner());
                if first.is_none() {
                    *first = Some((index, r.status));
                    stop.store(true, Ordering::SeqCst);
                }
            }
            r
        });
        threads.push(
            handle
                .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("cannot start a thread for VM {index}: {e}")))?,
        );
    }
    let mut vms = Vec::new();
    for (index, t) in threads.into_iter().enumerate() {
        vms.push(t.join().map_err(|_| Exit::new(exit_code::HOST_ERROR, format!("the thread of VM {index} panicked")))?);
    }
    let elapsed = started.elapsed();
    let manifest = build_manifest(&vms, &shared.targets());
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, manifest.encode())
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("writing {}: {e}", path.display())))?;
    let first = *first_failure.lock().unwrap_or_else(|p| p.into_inner());
    for (index, vm) in vms.iter().enumerate() {
        eprintln!(
            "ttvm: VM {index} ({}): {} steps, {} -> {}",
            vm.name,
            vm.steps,
            vm.outcome,
            dir.join(&vm.trace).display()
        );
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "ttvm: recorded {} frames in {secs:.3} s ({:.0} frames/s) -> {}",
        manifest.frames.len(),
        manifest.frames.len() as f64 / secs,
        path.display()
    );
    Ok(first.map_or(0, |(_, status)| status))
}

/// The manifest: the VMs as they ended, and every frame the switch saw with its sender's
/// send point and each receiver's delivery point (none: still queued at the end).
fn build_manifest(vms: &[VmRecorded], targets: &[(u64, Vec<usize>)]) -> NetworkManifestV1 {
    let mut sent = BTreeMap::new();
    let mut delivered = BTreeMap::new();
    for (index, vm) in vms.iter().enumerate() {
        for s in &vm.log.sent {
            sent.insert(s.id, (index as u32, s.at, s.len));
        }
        for &(id, at) in &vm.log.delivered {
            delivered.insert((id, index), at);
        }
    }
    let frames = targets
        .iter()
        .filter_map(|(id, to)| {
            // A frame the switch saw but whose sender's session did not log (it failed
            // mid-boundary) has no send point in any trace: leave it out.
            let &(from, sent_at, len) = sent.get(id)?;
            let to =
                to.iter().map(|&vm| DeliveryV1 { vm: vm as u32, at: delivered.get(&(*id, vm)).copied() }).collect();
            Some(FrameEntryV1 { id: *id, from, sent_at, len, to })
        })
        .collect();
    let vms = vms
        .iter()
        .enumerate()
        .map(|(index, vm)| VmEntryV1 {
            name: vm.name.clone(),
            kernel: vm.kernel.clone(),
            trace: vm.trace.clone(),
            mac: mac_for(index as u8),
            steps: vm.steps,
            exit_status: vm.exit_status,
            outcome: vm.outcome.clone(),
        })
        .collect();
    NetworkManifestV1 { vms, frames }
}

/// Records the VM at `index` into `path` until it stops or `stop` is raised.
fn record_vm(
    index: usize,
    name: String,
    kernel: String,
    config: ttvm_vmm::machine::MachineConfig,
    port: Port,
    path: &Path,
    stop: &'static AtomicBool,
) -> VmRecorded {
    let trace = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let failed = |status: i32, outcome: String, log: NetLog, steps: u64| VmRecorded {
        name: name.clone(),
        kernel: kernel.clone(),
        trace: trace.clone(),
        steps,
        status,
        exit_status: None,
        outcome,
        log,
    };
    let mut machine = match Machine::new(config.clone()) {
        Ok(m) => m,
        Err(e) => {
            let exit = Exit::of(&name, &e);
            return failed(exit.code, format!("could not start: {}", exit.message), NetLog::default(), 0);
        }
    };
    // Before the session starts, so the boot checkpoint holds the card.
    machine.board.attach_net(mac_for(index as u8));
    let options = RecordOptions {
        clock: ClockMode::Icount,
        checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
        kernel_name: name.clone(),
        stepping: ttvm_replay::stepping::host_signature(),
    };
    let to = RecordTo { path, options, output: prefixed_output(index, &name), input: ConsoleInput::none() };
    let mut session = match RecordSession::start_from(machine, config, 0, None, to) {
        Ok(s) => s,
        Err(e) => {
            let exit = crate::commands::record::start_error_exit(&name, path, e);
            return failed(exit.code, format!("could not start: {}", exit.message), NetLog::default(), 0);
        }
    };
    session.set_network(Box::new(port));
    session.set_interrupt(stop);
    let result = session.run(None, stop, 0, |_| {});
    let log = session.network_log().cloned().unwrap_or_default();
    let (end, error) = match result {
        Ok(end) => (end, None),
        Err(e) => (RecordEnd::Interrupted, Some(e)),
    };
    let finished = session.finish(&end);
    let steps = session.icount();
    if let Some(e) = error {
        let kept = if finished.is_ok() { "the trace up to there was kept" } else { "the trace could not be finalised" };
        let code = exit_code::for_kind(ttvm_vmm::error_kind::Classify::kind(&e));
        return failed(code, format!("recording failed at step {steps}: {e}; {kept}"), log, steps);
    }
    if let Err(e) = finished {
        return failed(exit_code::HOST_ERROR, format!("finalising the trace: {e}"), log, steps);
    }
    let (status, exit_status, outcome) = match &end {
        RecordEnd::Guest(s) => {
            let status = exit_code::for_guest_stop(s);
            let own = matches!(s, ttvm_vmm::stop::GuestStop::DebugExit(_)).then_some(status);
            (status, own, format!("{s}"))
        }
        RecordEnd::Interrupted if TIMED_OUT.load(Ordering::SeqCst) => (exit_code::TIMEOUT, None, "timeout".into()),
        RecordEnd::Interrupted => (exit_code::INTERRUPTED, None, "stopped".into()),
        other => (exit_code::STEP_LIMIT, None, other.reason()),
    };
    VmRecorded { name, kernel, trace, steps, status, exit_status, outcome, log }
}
