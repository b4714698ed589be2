//! One VM's part in a network's live consistent snapshots (`ttvm run --vm … --vm …
//! --snapshot-every D --snapshots DIR`): at each coordinated pause its dirty pages and state
//! are taken as a live checkpoint takes them (KVM's dirty log read and reset, the dirty
//! pages write-protected for the copier of `cow.rs`, which copies them after the guest
//! resumes; or copied in the pause where userfaultfd cannot write-protect), and an image
//! thread of its own keeps a host copy of the VM's RAM up to date from them and writes each
//! snapshot as a whole free-run snapshot file (`snapshot.rs`, format 4, with the network
//! card), the format `ttvm snapshot DIR --at` writes and `ttvm resume SNAP` reads.
//!
//! So the pause costs what a live checkpoint's does (it grows with the pages dirtied, not
//! with RAM), and writing a whole image every time costs the image thread, not the guest:
//! it knows which pages of its copy are non-zero, so it writes those without scanning RAM.
//! The coordination of the VMs (the barrier, the frames in flight, the manifest) is the
//! network's (`src/commands/network/live_snapshot.rs`).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::cow::{CowCopier, WriteProtect};
use super::writer::{sync_dir, Job};
use super::LiveError;
use crate::clock::HostClock;
use crate::machine::Machine;
use crate::memory::PAGE_SIZE;
use crate::snapshot::SnapshotOrigin;

/// Dirty pages up to which the pause copies them rather than write-protecting them (1 MiB:
/// a memcpy of ~0.2 ms). Measured on the (loaded) PVM host with ping/pong, about 20 dirty
/// pages per snapshot: `UFFDIO_WRITEPROTECT` of those few pages took 3-11 ms in many pauses
/// at a 200 ms or 1 s schedule (dirty log 10-40 µs, state ~0.1 ms; own capture median
/// 3.3 ms against 0.16 ms copying, same session); write protection pays off for the large
/// dirty sets it was made for (docs/PERFORMANCE.md, Networked VMs).
pub const COPY_IN_PAUSE_MAX_PAGES: usize = 256;

/// The sequence number of the base image (the RAM before the guest runs): kept, never
/// written as a snapshot.
const BASE: u64 = u64::MAX;

/// What the image thread did with one snapshot of its VM.
#[derive(Debug)]
pub struct ImageWritten {
    /// The VM's position.
    pub vm: usize,
    /// The snapshot's sequence number.
    pub seq: u64,
    /// The file written.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Why it could not be written, if it could not.
    pub error: Option<String>,
}

/// Where the image of snapshot `seq` goes.
pub type ImagePath = Box<dyn Fn(u64) -> PathBuf + Send>;

/// One VM's capture side and its image thread.
pub struct ImageCapture {
    cow: Option<CowCopier>,
    direct: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    copy_mode: String,
}

impl ImageCapture {
    /// Starts capturing `machine` (VM `vm`, not running yet): its present RAM becomes the
    /// base of the host copy, each snapshot's image is written to `path_for(seq)` and
    /// reported on `done`. `origin` (what it booted from) goes into every image.
    pub fn start(
        vm: usize,
        machine: &mut Machine,
        origin: Option<SnapshotOrigin>,
        path_for: ImagePath,
        done: mpsc::Sender<ImageWritten>,
    ) -> Result<Self, LiveError> {
        let mem_size = machine.vm.ram().size() as usize;
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(format!("ttvm-snap-image{vm}"))
            .spawn(move || image_thread(vm, mem_size, origin, path_for, rx, done))
            .map_err(|source| LiveError::Io { path: PathBuf::from("<image thread>"), source })?;
        // Everything the dirty log has not seen (the loaded kernel) goes into the base; the
        // guest has not run, so this is no pause.
        machine.vm.take_dirty_pages()?;
        let pfns = machine.vm.ram().nonzero_pages();
        let data = copy_pages(machine, &pfns, Vec::new());
        let state = crate::snapshot::machine_state(machine, &HostClock::new(1))?;
        let base = Job { seq: BASE, machine: state, serial_len: 0, pfns, data, net: None };
        if jobs.send(base).is_err() {
            return Err(LiveError::WriterGone);
        }
        let (cow, copy_mode) = if std::env::var_os("TTVM_LIVE_COPY_IN_PAUSE").is_some_and(|v| v == "1") {
            (None, "copied in the pause (TTVM_LIVE_COPY_IN_PAUSE=1)".to_string())
        } else {
            let ram = machine.vm.ram();
            match WriteProtect::register(ram.host_addr(), ram.size()).and_then(|wp| CowCopier::start(wp, jobs.clone()))
            {
                Ok(c) => (
                    Some(c),
                    format!("copied on write above {COPY_IN_PAUSE_MAX_PAGES} dirty pages, in the pause up to that"),
                ),
                Err(e) => (None, format!("copied in the pause (no userfaultfd write protection: {e})")),
            }
        };
        Ok(Self { cow, direct: Some(jobs), thread: Some(thread), copy_mode })
    }

    /// How dirty pages are copied: on write after the pause, or in it and why.
    pub fn copy_mode(&self) -> &str {
        &self.copy_mode
    }

    /// The pause's part (the caller has every VM of the network paused, this one between two
    /// instructions): the pages dirtied since the previous capture and the machine state,
    /// as snapshot `seq`. Returns how many pages were dirtied.
    pub fn capture(&mut self, seq: u64, machine: &mut Machine, clock: &HostClock) -> Result<u64, LiveError> {
        let pfns = machine.vm.take_dirty_pages()?;
        let dirtied = pfns.len() as u64;
        let state = crate::snapshot::machine_state(machine, clock)?;
        let net = machine.board.net_state();
        let mut job = Job { seq, machine: state, serial_len: 0, pfns, data: Vec::new(), net };
        let sent = match self.cow.as_mut() {
            // The copier is free and there are many pages: protect them, it copies them once
            // the guest runs.
            Some(cow) if !cow.busy() && job.pfns.len() > COPY_IN_PAUSE_MAX_PAGES => {
                cow.send_protected(job).map_err(|source| LiveError::Io { path: PathBuf::from("<copier>"), source })?
            }
            // Few pages, or the copier still copying the previous snapshot's (one protection
            // per page at a time): copy these in the pause, passed on after the previous ones.
            Some(cow) => {
                job.data = copy_pages(machine, &job.pfns, job.data);
                cow.send_copied(job)
            }
            None => {
                job.data = copy_pages(machine, &job.pfns, job.data);
                self.direct.as_ref().is_some_and(|d| d.send(job).is_ok())
            }
        };
        if !sent {
            return Err(LiveError::WriterGone);
        }
        Ok(dirtied)
    }

    /// Waits for the copier and the image thread to finish what they were given.
    pub fn finish(mut self) -> Result<(), LiveError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), LiveError> {
        let copied = self.cow.take().map(|mut c| c.finish());
        self.direct = None;
        if let Some(t) = self.thread.take() {
            t.join().map_err(|_| LiveError::WriterGone)?;
        }
        match copied {
            Some(Err(source)) => Err(LiveError::Io { path: PathBuf::from("<copier>"), source }),
            _ => Ok(()),
        }
    }
}

impl Drop for ImageCapture {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// `pfns`' contents now, into `buf`.
fn copy_pages(machine: &Machine, pfns: &[u32], mut buf: Vec<u8>) -> Vec<u8> {
    buf.clear();
    buf.reserve(pfns.len() * PAGE_SIZE);
    let ram = machine.vm.ram().as_slice();
    for &pfn in pfns {
        let at = pfn as usize * PAGE_SIZE;
        buf.extend_from_slice(&ram[at..at + PAGE_SIZE]);
    }
    buf
}

/// The image thread: applies each job's pages to the host copy of RAM and writes every
/// snapshot's image.
fn image_thread(
    vm: usize,
    mem_size: usize,
    origin: Option<SnapshotOrigin>,
    path_for: ImagePath,
    jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<ImageWritten>,
) {
    super::capture::lower_priority();
    // Zeroed by the allocator: pages never written stay unbacked.
    let mut ram = vec![0u8; mem_size];
    let mut nonzero = vec![false; mem_size / PAGE_SIZE];
    for job in jobs {
        for (i, &pfn) in job.pfns.iter().enumerate() {
            let page = &job.data[i * PAGE_SIZE..(i + 1) * PAGE_SIZE];
            let at = pfn as usize * PAGE_SIZE;
            if let Some(slot) = ram.get_mut(at..at + PAGE_SIZE) {
                slot.copy_from_slice(page);
                nonzero[pfn as usize] = page.iter().any(|&b| b != 0);
            }
        }
        if job.seq == BASE {
            continue;
        }
        let path = path_for(job.seq);
        let written = write_image(&path, &job, origin.as_ref(), &ram, &nonzero);
        let report = match written {
            Ok(bytes) => ImageWritten { vm, seq: job.seq, path, bytes, error: None },
            Err(e) => ImageWritten { vm, seq: job.seq, path, bytes: 0, error: Some(e.to_string()) },
        };
        if done.send(report).is_err() {
            return;
        }
    }
}

/// Writes one image through a temporary name, fsynced, renamed (the directory is fsynced
/// by whoever commits the snapshot); its size.
fn write_image(
    path: &Path,
    job: &Job,
    origin: Option<&SnapshotOrigin>,
    ram: &[u8],
    nonzero: &[bool],
) -> Result<u64, LiveError> {
    let io = |source| LiveError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("partial");
    let file = File::create(&tmp).map_err(io)?;
    let pages = nonzero
        .iter()
        .enumerate()
        .filter(|(_, &n)| n)
        .map(|(pfn, _)| (pfn as u32, &ram[pfn * PAGE_SIZE..(pfn + 1) * PAGE_SIZE]));
    let mut out = BufWriter::new(file);
    crate::snapshot::write_snapshot_pages(&mut out, &job.machine, origin, job.net.as_ref(), pages).map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(bytes)
}

/// fsync of a snapshot's directory (its images' renames durable).
pub fn sync(dir: &Path) -> Result<(), LiveError> {
    sync_dir(dir)
}
