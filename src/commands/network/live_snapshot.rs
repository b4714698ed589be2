//! Live consistent snapshots of a running network: `ttvm run --vm … --vm … --snapshot-every
//! D --snapshots DIR` writes DIR/NNNNNN/ every D, each in the format `ttvm snapshot DIR
//! --at` writes (one free-run snapshot per VM and a `NetSnapshotManifestV1` with the frames
//! in flight), so `ttvm resume DIR/NNNNNN` (or `ttvm resume DIR`: the newest complete one)
//! continues the whole network.
//!
//! Why the cut is consistent: in this in-process network a frame moves only through the
//! [`SharedSwitch`], and only on its VMs' threads. When a snapshot is due every running VM
//! pauses at its next exit (a barrier: the engine kicks each vCPU out at the due time) and
//! none goes on until all have arrived. Each VM's state is taken when it arrives; from then
//! on it neither sends nor takes a frame until the barrier opens, so no frame received in
//! its state can have been sent after the sender's state was taken. When the last VM
//! arrives the switch's queues are exactly the channel state (every frame sent and not yet
//! taken by its receiver's card) and are copied, with their destinations, into the manifest
//! (frames a guest handed to its card but the card has not sent yet are in the card's
//! state, as in a recorded snapshot). That is Chandy–Lamport with the markers replaced by
//! the barrier, which a single process can afford.
//!
//! Keeping the pause short: each VM's part is a live checkpoint's ([`ImageCapture`]: dirty
//! log, write protection, copy after the resume); images and the manifest are written by
//! other threads. A VM that has ended with status 0 stays in later snapshots as ended (its
//! last image is linked into them); a VM that fails or is stopped ends the snapshots.
//!
//! On disk (what makes a crash at any point harmless): each image is written under a
//! temporary name, fsynced and renamed; once all are, the snapshot's directory is fsynced,
//! the manifest written the same way and renamed into place, and the directory and DIR
//! fsynced. The manifest is the commit: a directory without one is not a snapshot, and
//! `ttvm resume DIR` passes over it. Snapshots beyond `--keep` are removed manifest first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ttvm_replay::network::snapshot::{EndedV1, InFlightFrameV1, NetSnapshotManifestV1, SnapVmV1, NET_SNAPSHOT_FILE};
use ttvm_vmm::clock::HostClock;
use ttvm_vmm::live::image::{ImageCapture, ImageWritten};
use ttvm_vmm::live::{LiveError, LivePause};
use ttvm_vmm::machine::Machine;
use ttvm_vmm::snapshot::SnapshotOrigin;

use super::port::SharedSwitch;
use super::run::Outcome;
use crate::exit_code::{self, Exit};

/// Snapshots captured but not yet committed before the next one is put off: a slow disk
/// then costs snapshots, never guest time or unbounded memory.
const MAX_PENDING: usize = 2;

/// The image number of a VM's machine as it ended with status 0: it stands for the VM in
/// snapshots taken after it ended when no snapshot before had an image of it (Ctrl-C after
/// a short-lived VM ended, with no periodic snapshot yet). Written to DIR/[`ENDED_DIR`]/,
/// which is not a snapshot and is removed at the end. (After helper-23's fix on s7-livesnap2.)
const ENDED_SEQ: u64 = u64::MAX - 1;

/// Where the ended VMs' images go inside DIR.
const ENDED_DIR: &str = "ended";

/// The directory of snapshot `seq` inside DIR.
pub fn snapshot_dir(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:06}"))
}

/// The sequence number of a snapshot directory's name.
pub fn snapshot_seq(name: &str) -> Option<u64> {
    (name.len() == 6 && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse().ok()).flatten()
}

/// One VM as the manifest names it.
#[derive(Clone, Debug)]
pub struct VmName {
    /// Display name.
    pub name: String,
    /// The kernel as given.
    pub kernel: String,
}

/// The barrier's state.
#[derive(Debug)]
struct Barrier {
    /// The next snapshot's number.
    next_seq: u64,
    /// The snapshot being taken: the first VM to arrive opened it.
    open: Option<u64>,
    /// Which VMs have arrived (and captured) for it.
    arrived: Vec<bool>,
    /// Which VMs are still running.
    running: Vec<bool>,
    /// How the VMs that ended with status 0 ended.
    ended: Vec<Option<EndedV1>>,
    /// Bumped each time a snapshot is complete: what the waiting VMs wait for.
    generation: u64,
    /// No more snapshots (a VM failed or was stopped, or every VM has ended).
    closed: bool,
    /// Snapshots put off while the writers caught up.
    postponed: u64,
}

/// What one VM's pauses measured.
#[derive(Clone, Debug, Default)]
struct VmPauses {
    /// From arriving at the barrier to going on: what the guest sees.
    pauses: Vec<Duration>,
    /// This VM's own capture within it (the rest is waiting for the other VMs).
    captures: Vec<Duration>,
    dirtied: Vec<u64>,
    copy_mode: String,
}

/// A snapshot every VM has captured, for the committer.
struct Captured {
    seq: u64,
    /// Which VMs captured an image for it (the others had ended).
    captured: Vec<bool>,
    ended: Vec<Option<EndedV1>>,
    in_flight: Vec<InFlightFrameV1>,
}

/// What the committer did.
#[derive(Debug, Default)]
struct Committed {
    count: u64,
    newest: Option<u64>,
    bytes: u64,
    most_in_flight: usize,
    errors: Vec<String>,
}

/// The network's live snapshots: the schedule, the barrier and the committer thread.
pub struct LiveSnapshots {
    dir: PathBuf,
    interval: Duration,
    started: Instant,
    /// When the next snapshot is due, in ns after `started` (`u64::MAX`: never).
    due_ns: AtomicU64,
    barrier: Mutex<Barrier>,
    turned: Condvar,
    switch: Arc<SharedSwitch>,
    images: Mutex<Option<mpsc::Sender<ImageWritten>>>,
    captured: Mutex<Option<mpsc::Sender<Captured>>>,
    pending: Arc<AtomicUsize>,
    committer: Mutex<Option<JoinHandle<Committed>>>,
    pauses: Mutex<Vec<VmPauses>>,
    names: Vec<VmName>,
}

/// What a booted VM's images say it came from (as `ttvm run --save-state` says it).
pub fn origin(name: &str, config: ttvm_vmm::machine::MachineConfig, machine: &Machine) -> SnapshotOrigin {
    SnapshotOrigin {
        kernel_name: name.to_string(),
        machine: config,
        neutral_vendor: machine.vm.cpuid().vendor_choice() == ttvm_vmm::cpuid::CpuVendor::Neutral,
    }
}

/// Refuses a `--snapshots DIR` that is not a missing or empty directory, before any VM boots.
fn check_dir(dir: &Path) -> Result<(), Exit> {
    if !dir.exists() {
        return Ok(());
    }
    let empty = dir.is_dir() && std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
    if !empty {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!("--snapshots {}: exists and is not an empty directory; give a new one", dir.display()),
        ));
    }
    Ok(())
}

impl LiveSnapshots {
    /// The live snapshots the options ask for (`None`: none), the directory checked and
    /// created and the committer started; no VM has booted yet.
    pub fn start(
        every: Option<Duration>,
        dir: Option<PathBuf>,
        keep: Option<u32>,
        names: Vec<VmName>,
        switch: Arc<SharedSwitch>,
    ) -> Result<Option<Arc<Self>>, Exit> {
        let (Some(every), Some(dir)) = (every, dir) else {
            return Ok(None);
        };
        check_dir(&dir)?;
        std::fs::create_dir_all(&dir).map_err(|e| {
            Exit::new(exit_code::HOST_ERROR, format!("--snapshots {}: cannot create it: {e}", dir.display()))
        })?;
        let keep = keep.unwrap_or(crate::commands::live::DEFAULT_KEEP) as usize;
        let n = names.len();
        let (image_tx, image_rx) = mpsc::channel();
        let (captured_tx, captured_rx) = mpsc::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let committer = Committer { dir: dir.clone(), keep, names: names.clone(), pending: pending.clone() };
        let thread = std::thread::Builder::new()
            .name("ttvm-snap-commit".into())
            .spawn(move || committer.run(captured_rx, image_rx))
            .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("cannot start the snapshot committer: {e}")))?;
        let started = Instant::now();
        Ok(Some(Arc::new(Self {
            dir,
            interval: every,
            started,
            due_ns: AtomicU64::new(every.as_nanos() as u64),
            barrier: Mutex::new(Barrier {
                next_seq: 1,
                open: None,
                arrived: vec![false; n],
                running: vec![true; n],
                ended: vec![None; n],
                generation: 0,
                closed: false,
                postponed: 0,
            }),
            turned: Condvar::new(),
            switch,
            images: Mutex::new(Some(image_tx)),
            captured: Mutex::new(Some(captured_tx)),
            pending,
            committer: Mutex::new(Some(thread)),
            pauses: Mutex::new(vec![VmPauses::default(); n]),
            names,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Barrier> {
        self.barrier.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn schedule_next(&self) {
        let next = self.now_ns().saturating_add(self.interval.as_nanos() as u64);
        self.due_ns.store(next, Ordering::SeqCst);
    }

    /// VM `vm`'s part, its machine (not running yet) the base of its images (if the
    /// snapshots have already ended, its pauses never come due).
    pub fn join(
        self: &Arc<Self>,
        vm: usize,
        machine: &mut Machine,
        origin: Option<SnapshotOrigin>,
    ) -> Result<Member, LiveError> {
        let dir = self.dir.clone();
        let name = image_name(vm, &self.names[vm].name);
        let path_for = Box::new(move |seq| match seq {
            ENDED_SEQ => dir.join(ENDED_DIR).join(&name),
            seq => snapshot_dir(&dir, seq).join(&name),
        });
        let done = self.images.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or(LiveError::WriterGone)?;
        let capture = ImageCapture::start(vm, machine, origin, path_for, done)?;
        let copy_mode = capture.copy_mode().to_string();
        self.pauses.lock().unwrap_or_else(|p| p.into_inner())[vm].copy_mode = copy_mode;
        Ok(Member { net: Arc::clone(self), vm, capture: Some(capture), pauses: VmPauses::default() })
    }

    /// The snapshot every running VM has now captured: the switch's queues are the frames
    /// in flight; hand it to the committer and let the VMs go on.
    fn complete(&self, b: &mut Barrier, seq: u64) {
        let mut in_flight: Vec<InFlightFrameV1> = self
            .switch
            .in_flight()
            .into_iter()
            .map(|(to, f)| InFlightFrameV1 { id: f.id, from: f.from as u32, sent_at: 0, to: to as u32, data: f.data })
            .collect();
        // In switch order, as a recorded snapshot lists them (a broadcast's copies share an id).
        in_flight.sort_by_key(|f| (f.id, f.to));
        let captured = Captured { seq, captured: b.arrived.clone(), ended: b.ended.clone(), in_flight };
        let sent =
            self.captured.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|c| c.send(captured).is_ok());
        if sent {
            self.pending.fetch_add(1, Ordering::SeqCst);
        } else {
            b.closed = true;
        }
        b.open = None;
        b.arrived.iter_mut().for_each(|a| *a = false);
        b.generation += 1;
        if b.closed {
            self.due_ns.store(u64::MAX, Ordering::SeqCst);
        } else {
            self.schedule_next();
        }
        self.turned.notify_all();
    }

    /// Whether every running VM has arrived.
    fn all_arrived(b: &Barrier) -> bool {
        b.running.iter().zip(&b.arrived).all(|(&r, &a)| !r || a)
    }

    /// No more snapshots: the one being taken (if any) is dropped and its waiters released.
    fn close(&self, b: &mut Barrier) {
        b.closed = true;
        b.open = None;
        b.generation += 1;
        self.due_ns.store(u64::MAX, Ordering::SeqCst);
        self.turned.notify_all();
    }

    /// VM `vm` has ended (or could not start) with `outcome`: with status 0 it stays in
    /// later snapshots as ended; otherwise the snapshots end (the run is stopping). Every
    /// VM's thread calls this once it is done, whatever happened, so the others never wait
    /// for it at the barrier.
    pub fn leave(&self, vm: usize, outcome: Option<&Outcome>) {
        let mut b = self.lock();
        if !b.running.get(vm).copied().unwrap_or(false) {
            return;
        }
        b.running[vm] = false;
        match outcome {
            Some(o) if o.status == 0 => {
                b.ended[vm] = Some(EndedV1 { status: o.status, outcome: o.text.clone() });
            }
            _ => self.close(&mut b),
        }
        if b.running.iter().all(|r| !r) {
            self.close(&mut b);
        }
        if let Some(seq) = b.open {
            if Self::all_arrived(&b) {
                self.complete(&mut b, seq);
            }
        }
    }

    /// The pause of VM `vm` (between two instructions): arrive, capture, wait for the others.
    /// `last`: the run is stopping (Ctrl-C, timeout), so a snapshot is taken now whatever
    /// the schedule and the writers' backlog say.
    fn pause(
        &self,
        member: &mut Member,
        machine: &mut Machine,
        clock: &HostClock,
        last: bool,
    ) -> Result<(), LiveError> {
        let arrived = Instant::now();
        let mut b = self.lock();
        if b.closed {
            return Ok(());
        }
        let seq = match b.open {
            Some(seq) => seq,
            None => {
                // Another VM's arrival may have moved the schedule since this one looked.
                if !last && self.now_ns() < self.due_ns.load(Ordering::SeqCst) {
                    return Ok(());
                }
                if !last && self.pending.load(Ordering::SeqCst) >= MAX_PENDING {
                    b.postponed += 1;
                    self.schedule_next();
                    return Ok(());
                }
                let seq = b.next_seq;
                b.next_seq += 1;
                b.open = Some(seq);
                seq
            }
        };
        drop(b);
        let Some(capture) = member.capture.as_mut() else { return Ok(()) };
        let capturing = Instant::now();
        let dirtied = capture.capture(seq, machine, clock);
        let captured = capturing.elapsed();
        let mut b = self.lock();
        let dirtied = match dirtied {
            Ok(d) => d,
            Err(e) => {
                self.close(&mut b);
                return Err(e);
            }
        };
        if b.open != Some(seq) {
            // Closed while this VM captured: nothing to wait for.
            return Ok(());
        }
        b.arrived[member.vm] = true;
        if Self::all_arrived(&b) {
            self.complete(&mut b, seq);
        } else {
            let generation = b.generation;
            while b.generation == generation {
                b = self.turned.wait(b).unwrap_or_else(|p| p.into_inner());
            }
        }
        drop(b);
        member.pauses.pauses.push(arrived.elapsed());
        member.pauses.captures.push(captured);
        member.pauses.dirtied.push(dirtied);
        Ok(())
    }

    /// Waits for the committer and prints what the snapshots measured: one line per VM and
    /// one for the directory.
    pub fn finish(&self) -> Result<(), Exit> {
        // The VMs have ended: their image threads are done, so these are the last senders.
        self.images.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.captured.lock().unwrap_or_else(|p| p.into_inner()).take();
        let committer = self.committer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let done = match committer.map(JoinHandle::join) {
            Some(Ok(c)) => c,
            _ => return Err(Exit::new(exit_code::HOST_ERROR, "the snapshot committer panicked")),
        };
        remove_uncommitted(&self.dir, done.newest);
        // Committed snapshots hold their own links or copies of these.
        let _ = std::fs::remove_dir_all(self.dir.join(ENDED_DIR));
        let pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (vm, p) in pauses.iter().enumerate() {
            eprintln!("ttvm: VM {vm} ({}): {}", self.names[vm].name, pause_summary(p));
        }
        let postponed = self.lock().postponed;
        let each = if done.count > 0 { done.bytes as f64 / done.count as f64 / (1 << 20) as f64 } else { 0.0 };
        let mut line = format!(
            "ttvm: {} consistent network snapshots committed in {} every {} ms ({:.2} MiB each on average, \
             at most {} frames in flight)",
            done.count,
            self.dir.display(),
            self.interval.as_millis(),
            each,
            done.most_in_flight
        );
        if postponed > 0 {
            line += &format!("; {postponed} postponed while the writers caught up");
        }
        if let Some(newest) = done.newest {
            line += &format!("; continue the newest with `ttvm resume {}`", snapshot_dir(&self.dir, newest).display());
        }
        eprintln!("{line}");
        if let Some(e) = done.errors.first() {
            return Err(Exit::new(exit_code::HOST_ERROR, format!("--snapshots {}: {e}", self.dir.display())));
        }
        Ok(())
    }
}

/// One line for one VM's pauses (median, p99, max), pages dirtied and how they were copied.
fn pause_summary(p: &VmPauses) -> String {
    use ttvm_vmm::live::stats::percentile;
    let mut d = p.pauses.clone();
    d.sort_unstable();
    let mut c = p.captures.clone();
    c.sort_unstable();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    let max_dirty = p.dirtied.iter().max().copied().unwrap_or(0);
    format!(
        "{} snapshot pauses: median {:.3} ms, p99 {:.3} ms, max {:.3} ms (its own capture: median {:.3} ms, \
         p99 {:.3} ms; the rest waits for the other VMs); at most {} pages ({:.1} MiB) dirtied between two; pages {}",
        d.len(),
        ms(percentile(&d, 50.0)),
        ms(percentile(&d, 99.0)),
        ms(d.last().copied().unwrap_or_default()),
        ms(percentile(&c, 50.0)),
        ms(percentile(&c, 99.0)),
        max_dirty,
        max_dirty as f64 * 4096.0 / (1 << 20) as f64,
        if p.copy_mode.is_empty() { "not captured" } else { &p.copy_mode },
    )
}

/// The image file name of VM `vm` (as `ttvm snapshot` names them).
fn image_name(vm: usize, name: &str) -> String {
    super::snapshot::snapshot_name(vm, name)
}

/// Removes snapshot directories newer than the newest committed one: captured when the
/// run stopped, never committed.
fn remove_uncommitted(dir: &Path, newest: Option<u64>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(seq) = snapshot_seq(&name) {
            if newest.is_none_or(|n| seq > n) && !e.path().join(NET_SNAPSHOT_FILE).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// One VM's part, handed to the free engine as its [`LivePause`].
pub struct Member {
    net: Arc<LiveSnapshots>,
    vm: usize,
    capture: Option<ImageCapture>,
    pauses: VmPauses,
}

impl Drop for Member {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The thread will not get to say how its VM ended: end the snapshots.
            self.net.leave(self.vm, None);
        }
        // The image thread finishes what it was given (the committer waits for it).
        if let Some(c) = self.capture.take() {
            let _ = c.finish();
        }
        let mut all = self.net.pauses.lock().unwrap_or_else(|p| p.into_inner());
        all[self.vm].pauses = std::mem::take(&mut self.pauses.pauses);
        all[self.vm].captures = std::mem::take(&mut self.pauses.captures);
        all[self.vm].dirtied = std::mem::take(&mut self.pauses.dirtied);
    }
}

impl LivePause for Member {
    fn is_due(&self, _now: Instant) -> bool {
        self.net.now_ns() >= self.net.due_ns.load(Ordering::Relaxed)
    }

    fn until_due(&self, _now: Instant) -> Duration {
        Duration::from_nanos(self.net.due_ns.load(Ordering::Relaxed).saturating_sub(self.net.now_ns()))
    }

    fn checkpoint(&mut self, machine: &mut Machine, clock: &HostClock) -> Result<(), LiveError> {
        let net = Arc::clone(&self.net);
        net.pause(self, machine, clock, false)
    }

    /// Ctrl-C and the timeout stop every VM: they meet at the barrier one last time, so the
    /// network as it stops (machines and frames between them) is kept. The other VMs are
    /// made due at once, so each comes to the barrier at its next exit, if it is not
    /// stopping already; a VM whose guest has ended has left and is not waited for.
    fn final_checkpoint(&mut self, machine: &mut Machine, clock: &HostClock) -> Result<(), LiveError> {
        let net = Arc::clone(&self.net);
        net.due_ns.store(0, Ordering::SeqCst);
        net.pause(self, machine, clock, true)
    }

    fn on_serial(&mut self, _bytes: &[u8]) {}
}

impl Member {
    /// The VM has ended with status 0 (`machine` as it ended): its image, to stand for it in
    /// later snapshots if none before had one (see [`ENDED_SEQ`]).
    pub fn ended(&mut self, machine: &mut Machine, clock: &HostClock) {
        if self.net.lock().closed {
            return;
        }
        if let Some(c) = self.capture.as_mut() {
            // Without it a later snapshot is dropped, as before there was this image.
            let _ = c.capture(ENDED_SEQ, machine, clock);
        }
    }
}

/// An image not (yet) waited for: a VM's ended image goes to `ended`, a snapshot's to
/// `early` until its snapshot is committed.
fn sort_image(w: ImageWritten, early: &mut HashMap<(u64, usize), ImageWritten>, ended: &mut [Option<PathBuf>]) {
    if w.seq != ENDED_SEQ {
        early.insert((w.seq, w.vm), w);
    } else if let (None, Some(slot)) = (&w.error, ended.get_mut(w.vm)) {
        *slot = Some(w.path);
    }
}

/// The committer thread: writes each captured snapshot's manifest once its images are.
struct Committer {
    dir: PathBuf,
    keep: usize,
    names: Vec<VmName>,
    pending: Arc<AtomicUsize>,
}

impl Committer {
    fn run(self, captured: mpsc::Receiver<Captured>, images: mpsc::Receiver<ImageWritten>) -> Committed {
        let mut done = Committed::default();
        // Images that came in before their snapshot was waited for, by (seq, vm).
        let mut early: HashMap<(u64, usize), ImageWritten> = HashMap::new();
        // Each VM's newest committed image: what an ended VM's later snapshots link to.
        let mut last: Vec<Option<PathBuf>> = vec![None; self.names.len()];
        let mut kept: Vec<u64> = Vec::new();
        // The ended VMs' own images (see `ENDED_SEQ`), by VM.
        let mut ended: Vec<Option<PathBuf>> = vec![None; self.names.len()];
        for snap in captured {
            // A VM not in this snapshot left before it: its ended image, if any, was sent
            // before it left.
            while let Ok(w) = images.try_recv() {
                sort_image(w, &mut early, &mut ended);
            }
            let mut written: Vec<Option<ImageWritten>> = (0..self.names.len()).map(|_| None).collect();
            let mut missing = snap.captured.iter().filter(|&&c| c).count();
            for (vm, slot) in written.iter_mut().enumerate() {
                if let Some(w) = early.remove(&(snap.seq, vm)) {
                    *slot = Some(w);
                    missing -= 1;
                }
            }
            while missing > 0 {
                let Ok(w) = images.recv() else { break };
                if w.seq == snap.seq && snap.captured.get(w.vm).copied().unwrap_or(false) {
                    let vm = w.vm;
                    written[vm] = Some(w);
                    missing -= 1;
                } else {
                    sort_image(w, &mut early, &mut ended);
                }
            }
            let result = if missing > 0 {
                Err(format!("snapshot {}: an image thread stopped", snap.seq))
            } else {
                self.commit(&snap, &written, &mut last, &ended)
            };
            self.pending.fetch_sub(1, Ordering::SeqCst);
            match result {
                Ok(None) => {
                    let _ = std::fs::remove_dir_all(snapshot_dir(&self.dir, snap.seq));
                }
                Ok(Some(bytes)) => {
                    done.count += 1;
                    done.newest = Some(snap.seq);
                    done.bytes += bytes;
                    done.most_in_flight = done.most_in_flight.max(snap.in_flight.len());
                    kept.push(snap.seq);
                    if let Err(e) = self.drop_old(&mut kept) {
                        done.errors.push(e);
                    }
                }
                Err(e) => {
                    eprintln!("ttvm: live snapshot {} not kept: {e}", snap.seq);
                    let _ = std::fs::remove_dir_all(snapshot_dir(&self.dir, snap.seq));
                    done.errors.push(e);
                }
            }
        }
        done
    }

    /// Links the ended VMs' images in, writes the manifest (the commit) in the order the
    /// module describes; the snapshot's size, or `None` when a VM ended before it had an
    /// image of its own (nothing can stand for it; the run is ending anyway).
    fn commit(
        &self,
        snap: &Captured,
        written: &[Option<ImageWritten>],
        last: &mut [Option<PathBuf>],
        ended: &[Option<PathBuf>],
    ) -> Result<Option<u64>, String> {
        let dir = snapshot_dir(&self.dir, snap.seq);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut bytes = 0;
        let mut vms = Vec::new();
        for (vm, v) in self.names.iter().enumerate() {
            let file = image_name(vm, &v.name);
            let path = dir.join(&file);
            match &written[vm] {
                Some(w) => {
                    if let Some(e) = &w.error {
                        return Err(format!("VM {vm}'s image: {e}"));
                    }
                    bytes += w.bytes;
                }
                None => {
                    // Ended before this snapshot: its newest image stands for it.
                    // Ended before this snapshot: its newest image stands for it, or the one
                    // taken as it ended.
                    let Some(from) = last[vm].as_ref().or(ended[vm].as_ref()) else { return Ok(None) };
                    if std::fs::hard_link(from, &path).is_err() {
                        std::fs::copy(from, &path).map_err(|e| format!("{}: {e}", path.display()))?;
                    }
                }
            }
            let mac = ttvm_vmm::devices::virtio_net::mac_for(vm as u8);
            vms.push(SnapVmV1 {
                name: v.name.clone(),
                kernel: v.kernel.clone(),
                mac,
                icount: 0,
                recorded_steps: 0,
                snapshot: file,
                ended: snap.ended[vm].clone(),
            });
        }
        let sync = |d: &Path| ttvm_vmm::live::writer::sync_dir(d).map_err(|e| e.to_string());
        sync(&dir)?;
        let manifest = NetSnapshotManifestV1 {
            source: format!("live snapshot {} of a running network", snap.seq),
            at: (0, 0),
            vms,
            in_flight: snap.in_flight.clone(),
        };
        let encoded = manifest.encode();
        let tmp = dir.join(format!("{NET_SNAPSHOT_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&encoded)?;
            f.sync_all()?;
            std::fs::rename(&tmp, dir.join(NET_SNAPSHOT_FILE))
        };
        write().map_err(|e| format!("{}: {e}", tmp.display()))?;
        sync(&dir)?;
        sync(&self.dir)?;
        for (vm, v) in self.names.iter().enumerate() {
            last[vm] = Some(dir.join(image_name(vm, &v.name)));
        }
        Ok(Some(bytes + encoded.len() as u64))
    }

    /// Removes the snapshots beyond `keep`, oldest first, each manifest first (so a crash
    /// in between leaves an uncommitted directory, never a snapshot missing an image).
    fn drop_old(&self, kept: &mut Vec<u64>) -> Result<(), String> {
        while kept.len() > self.keep.max(1) {
            let seq = kept.remove(0);
            let dir = snapshot_dir(&self.dir, seq);
            match std::fs::remove_file(dir.join(NET_SNAPSHOT_FILE)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", dir.display())),
            }
            ttvm_vmm::live::writer::sync_dir(&dir).map_err(|e| e.to_string())?;
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_directories_are_six_digits() {
        let d = snapshot_dir(Path::new("x"), 42);
        assert_eq!(d, Path::new("x/000042"));
        assert_eq!(snapshot_seq("000042"), Some(42));
        assert_eq!(snapshot_seq("00042"), None);
        assert_eq!(snapshot_seq("00004a"), None);
        assert_eq!(snapshot_seq("000042.tmp"), None);
    }

    #[test]
    fn a_missing_or_empty_directory_is_taken_anything_else_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(check_dir(&tmp.path().join("new")).is_ok());
        assert!(check_dir(tmp.path()).is_ok());
        std::fs::write(tmp.path().join("f"), b"x").unwrap();
        assert_eq!(check_dir(tmp.path()).unwrap_err().code, exit_code::BAD_INPUT);
        assert_eq!(check_dir(&tmp.path().join("f")).unwrap_err().code, exit_code::BAD_INPUT);
    }
}
