//! `ttvm snapshot DIR --at VM:ICOUNT -o SNAP`: a causally consistent global snapshot of a
//! recorded network, cut through one VM's point.
//!
//! The cut comes from the manifest alone (`ttvm_replay::network::cut`: every other VM as
//! late as it can be without having received a frame sent after the cut). Each VM's trace
//! is then replayed to its position, verified on the way as `ttvm replay` verifies it (its
//! events and the checkpoints it passes), and its machine there is written as a free-run
//! snapshot (format 4 on: with its network card). The frames in flight at the cut, the
//! channel state, are taken from their senders' logs (`NetTx`) and written with their
//! destinations into SNAP's manifest, so `ttvm resume SNAP` delivers each exactly once.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use ttvm_replay::network::cut::{consistent_cut, Cut, CutError};
use ttvm_replay::network::frames::sent_bytes;
use ttvm_replay::network::manifest::NetworkManifestV1;
use ttvm_replay::network::snapshot::{EndedV1, InFlightFrameV1, NetSnapshotManifestV1, SnapVmV1, NET_SNAPSHOT_FILE};
use ttvm_replay::recording::Recording;
use ttvm_vmm::clock::HostClock;
use ttvm_vmm::cpuid::CpuVendor;
use ttvm_vmm::snapshot::SnapshotOrigin;

use super::dir;
use crate::commands::replay::{replay_to, session, stopped_before};
use crate::exit_code::{self, Exit};

/// Arguments of `ttvm snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// A network recording directory (`ttvm record --vm … --vm … -o DIR`).
    pub dir: PathBuf,
    /// The point the cut goes through: a VM (its position or its name, as `ttvm info DIR`
    /// lists them) and a step of its history, e.g. `ping:12000` or `0:12000`.
    #[arg(long, value_name = "VM:ICOUNT")]
    pub at: String,
    /// The snapshot directory to write (created; must not exist or be empty).
    #[arg(short, long, value_name = "SNAP")]
    pub output: PathBuf,
}

/// The VM and icount of `--at`, the VM named by position or name.
pub fn parse_point(at: &str, m: &NetworkManifestV1) -> Result<(usize, u64), Exit> {
    let bad = |why: String| Exit::new(exit_code::BAD_INPUT, format!("--at {at}: {why}"));
    let Some((vm, icount)) = at.rsplit_once(':') else {
        return Err(bad("give VM:ICOUNT (a VM's position or name, a colon, a step)".into()));
    };
    let icount: u64 = icount.parse().map_err(|_| bad(format!("{icount:?} is not a step number")))?;
    let listed = || m.vms.iter().enumerate().map(|(i, v)| format!("{i} {}", v.name)).collect::<Vec<_>>().join(", ");
    let index = match vm.parse::<usize>() {
        Ok(i) if i < m.vms.len() => i,
        Ok(i) => return Err(bad(format!("there is no VM {i}; the network's VMs are {}", listed()))),
        Err(_) => m
            .vms
            .iter()
            .position(|v| v.name == vm)
            .ok_or_else(|| bad(format!("no VM is called {vm:?}; the network's VMs are {}", listed())))?,
    };
    Ok((index, icount))
}

/// The snapshot file name of VM `index`.
pub(super) fn snapshot_name(index: usize, name: &str) -> String {
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("vm{index}-{clean}.snap")
}

/// `ttvm snapshot`: the exit status.
pub fn run(args: SnapshotArgs) -> Result<i32, Exit> {
    let started = Instant::now();
    if !dir::is_network_dir(&args.dir) {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!(
                "{}: not a network recording (no {}); `ttvm snapshot` cuts a directory written by \
                 `ttvm record --vm … --vm … -o DIR`",
                args.dir.display(),
                ttvm_replay::network::manifest::MANIFEST_FILE
            ),
        ));
    }
    let m = dir::load_manifest(&args.dir)?;
    let (vm, icount) = parse_point(&args.at, &m)?;
    let cut = consistent_cut(&m, vm, icount).map_err(|e| {
        let code = if matches!(e, CutError::Acausal { .. }) { exit_code::DAMAGED_TRACE } else { exit_code::BAD_INPUT };
        Exit::new(code, format!("--at {}: {e}", args.at))
    })?;
    prepare_output(&args.output)?;
    let recs = dir::open_all(&args.dir, &m)?;
    let logs: Vec<&[ttvm_replay::events::Event]> = recs.iter().map(|(_, r)| r.events.as_slice()).collect();
    let bytes = sent_bytes(&m, &logs);
    let mut in_flight = Vec::new();
    for f in &cut.in_flight {
        let Some(entry) = m.frames.iter().find(|e| e.id == f.frame) else { continue };
        let Some(data) = bytes.get(&f.frame) else {
            return Err(Exit::new(
                exit_code::DAMAGED_TRACE,
                format!(
                    "frame {} is in flight at the cut, but VM {}'s trace does not hold its bytes",
                    f.frame, entry.from
                ),
            ));
        };
        in_flight.push(InFlightFrameV1 {
            id: f.frame,
            from: entry.from,
            sent_at: entry.sent_at,
            to: f.to,
            data: data.to_vec(),
        });
    }
    let mut vms = Vec::new();
    for (index, (path, rec)) in recs.iter().enumerate() {
        let at = cut.positions[index];
        let file = snapshot_name(index, &m.vms[index].name);
        let t = Instant::now();
        let ended = snapshot_vm(path, rec, at, &args.output.join(&file))?;
        eprintln!(
            "ttvm: VM {index} ({}): replayed and verified to icount {at} in {:.2} s",
            m.vms[index].name,
            t.elapsed().as_secs_f64()
        );
        vms.push(SnapVmV1 {
            name: m.vms[index].name.clone(),
            kernel: m.vms[index].kernel.clone(),
            mac: m.vms[index].mac,
            icount: at,
            recorded_steps: m.vms[index].steps,
            snapshot: file,
            ended,
        });
    }
    let manifest =
        NetSnapshotManifestV1 { source: args.dir.display().to_string(), at: (vm as u32, icount), vms, in_flight };
    let path = args.output.join(NET_SNAPSHOT_FILE);
    std::fs::write(&path, manifest.encode())
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("writing {}: {e}", path.display())))?;
    print_cut(&m, &cut, &manifest);
    let size: u64 = std::fs::read_dir(&args.output)
        .map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|md| md.len()).sum())
        .unwrap_or(0);
    eprintln!(
        "ttvm: consistent snapshot of {} VMs and {} frames in flight written to {} ({:.1} MiB) in {:.2} s; \
         continue with `ttvm resume {}`",
        manifest.vms.len(),
        manifest.in_flight.len(),
        args.output.display(),
        size as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64(),
        args.output.display()
    );
    Ok(0)
}

/// Creates SNAP, refusing one that holds files already (a snapshot is never half-mixed
/// with another).
fn prepare_output(out: &Path) -> Result<(), Exit> {
    if out.exists() {
        let empty = out.is_dir() && std::fs::read_dir(out).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !empty {
            return Err(Exit::new(
                exit_code::BAD_INPUT,
                format!("-o {}: exists and is not an empty directory; give a new one", out.display()),
            ));
        }
    }
    std::fs::create_dir_all(out)
        .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("cannot create {}: {e}", out.display())))
}

/// Replays `rec` to `at`, verifying it, and writes its machine there to `file`. Returns how
/// the VM had ended if its guest stopped in its last step and `at` is its end.
fn snapshot_vm(path: &Path, rec: &std::rc::Rc<Recording>, at: u64, file: &Path) -> Result<Option<EndedV1>, Exit> {
    let length = rec.length();
    let mut s = session(path, rec.clone())?;
    s.restore_checkpoint(rec.checkpoint_before(at)).map_err(|e| Exit::of(path.display(), &e))?;
    if replay_to(path, &mut s, at, false)? {
        return Err(stopped_before(path, s.icount(), at, length));
    }
    let ended = match rec.end.as_ref().and_then(|e| e.stop.as_ref()) {
        Some(stop) if at == length => {
            Some(EndedV1 { status: exit_code::for_guest_stop(stop), outcome: format!("{stop}") })
        }
        _ => None,
    };
    let header = rec.header();
    let origin = SnapshotOrigin {
        kernel_name: header.kernel_name.clone(),
        neutral_vendor: header.cpuid.vendor_choice() == CpuVendor::Neutral,
        machine: header.machine.clone(),
    };
    // The free engine that resumes it keeps device time going from the recording's there,
    // at host speed (the recording's clock is derived from icount, not the host).
    let clock = HostClock::resumed_at(s.device_time_ns(), 1);
    ttvm_vmm::snapshot::save(&mut s.engine.machine, &clock, Some(&origin), file).map_err(|e| Exit::of("", &e))?;
    Ok(ended)
}

/// The cut on stdout: each VM's position and the frames in flight.
fn print_cut(m: &NetworkManifestV1, cut: &Cut, snap: &NetSnapshotManifestV1) {
    let (vm, icount) = snap.at;
    let mut out = format!(
        "consistent cut through VM {vm} ({}) at icount {icount}:\n",
        m.vms.get(vm as usize).map_or("?", |v| v.name.as_str())
    );
    for (i, (v, p)) in snap.vms.iter().zip(&cut.positions).enumerate() {
        let ended = v.ended.as_ref().map_or(String::new(), |e| format!(" (had ended: {})", e.outcome));
        out += &format!("  VM {i} {:<10} at icount {p} of {}{ended}\n", v.name, v.recorded_steps);
    }
    out += &format!("frames in flight: {}\n", snap.in_flight.len());
    for f in &snap.in_flight {
        out += &format!("  #{:<5} VM {} @{} -> VM {} ({} bytes)\n", f.id, f.from, f.sent_at, f.to, f.data.len());
    }
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
}
