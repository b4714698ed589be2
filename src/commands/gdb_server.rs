//! `ttvm replay TRACE --gdb [ADDR:]PORT`: serve a recorded trace to gdb, with reverse
//! execution.

use std::path::{Path, PathBuf};

use ttvm_gdb::ServeEnd;
use ttvm_replay::recording::Recording;
use ttvm_replay::timeline::Timeline;

use crate::commands::replay::open_recording;
use crate::exit_code::{self, Exit};

/// What to tell a user about a Linux bzImage, which gdb cannot load.
pub const BZIMAGE_GDB_NOTE: &str = "the kernel is a bzImage, which gdb cannot load: give gdb the matching vmlinux \
     with debug symbols (Debian: /usr/lib/debug/boot/vmlinux-* from linux-image-*-dbg)";

/// The kernel ELF gdb should load: the file written with `--write-kernel` (for a bzImage,
/// the vmlinux inside it), or the file (or bundled sample) the trace was recorded from if
/// it is still byte-identical and gdb can read it.
pub(crate) fn kernel_for_gdb(rec: &Recording, write_kernel: Option<&Path>) -> Result<Option<PathBuf>, Exit> {
    let h = rec.header();
    let image = &h.machine.kernel;
    let bzimage = ttvm_vmm::boot::bzimage::is_bzimage(image);
    if let Some(out) = write_kernel {
        let written = if bzimage {
            ttvm_vmm::boot::bzimage::BzImage::parse(image)
                .and_then(|b| b.decompress())
                .map_err(|e| Exit::new(exit_code::BAD_INPUT, format!("the trace's bzImage: {e}")))?
        } else {
            image.clone()
        };
        std::fs::write(out, &written)
            .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("--write-kernel {}: {e}", out.display())))?;
        if ttvm_vmm::symbols::SymbolTable::from_elf(&written, "").is_err() {
            eprintln!(
                "ttvm: note: {} has no symbols (the kernel was stripped); for names give gdb the vmlinux with debug \
                 symbols (Debian: linux-image-*-dbg) and ttvm --symbols its System.map",
                out.display()
            );
        }
        return Ok(Some(out.to_path_buf()));
    }
    if bzimage {
        return Ok(None);
    }
    let same = |p: &Path| std::fs::read(p).is_ok_and(|b| b == *image);
    let named = Path::new(&h.kernel_name);
    if same(named) {
        return Ok(Some(named.to_path_buf()));
    }
    Ok(ttvm_sample_kernels::get(&h.kernel_name).map(|k| PathBuf::from(k.path)).filter(|p| same(p)))
}

/// Binds the gdb port, warning when it is reachable from other machines.
pub fn bind_gdb(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, Exit> {
    let listener = ttvm_gdb::bind(addr).map_err(|e| Exit::of("", &e))?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "ttvm: warning: the gdb port {addr} is not on loopback: anyone who can reach it can read the \
             guest's memory and registers (the remote protocol has no authentication); use 127.0.0.1 \
             and an SSH tunnel to debug from another machine"
        );
    }
    Ok(listener)
}

/// Serves `trace` to gdb on `addr`, one connection at a time. Exits 0 when gdb detaches or
/// kills the target; a connection that just closes leaves the server waiting for the next.
pub fn serve_replay(
    trace: &Path,
    addr: &str,
    write_kernel: Option<&Path>,
    symbols: Option<ttvm_vmm::symbols::SymbolTable>,
    step_all: bool,
) -> Result<i32, Exit> {
    let addr = ttvm_gdb::parse_listen_addr(addr).map_err(|e| Exit::of("", &e))?;
    // Taken before the trace is read, so any change after that is noticed.
    let loaded = FileIdentity::of(trace);
    let rec = open_recording(trace)?;
    let kernel = kernel_for_gdb(&rec, write_kernel)?;
    // Bind first: a busy port is reported before the slower machine set-up.
    let listener = bind_gdb(addr)?;
    let served = Served { trace, loaded, rec, kernel, label: String::new(), step_all };
    served.serve(listener, symbols, None)
}

/// A trace opened to be served to gdb.
pub(crate) struct Served<'a> {
    /// The trace file.
    pub trace: &'a Path,
    /// Its identity before it was read.
    pub loaded: Option<FileIdentity>,
    /// Its history.
    pub rec: std::rc::Rc<Recording>,
    /// The kernel ELF to give gdb, when there is one.
    pub kernel: Option<PathBuf>,
    /// What names it in messages besides the file ("VM 1 (pong): " in a network).
    pub label: String,
    /// Single-step everything (`--step-all`): no native runs in seeks, runs and skips.
    pub step_all: bool,
}

impl Served<'_> {
    /// Serves the trace on `listener` until its gdb detaches or kills the target.
    pub(crate) fn serve(
        self,
        listener: std::net::TcpListener,
        symbols: Option<ttvm_vmm::symbols::SymbolTable>,
        peers: Option<ttvm_gdb::network_peers::NetworkPeers>,
    ) -> Result<i32, Exit> {
        let Served { trace, loaded, rec, kernel, label, step_all } = self;
        if let Some(note) = &rec.file.recovery_note {
            eprintln!("ttvm: {label}note: {note}");
        }
        let bzimage = ttvm_vmm::boot::bzimage::is_bzimage(&rec.header().machine.kernel);
        let steps = rec.length();
        let mut timeline =
            Timeline::new(rec, &ttvm_replay::stepping::host_signature()).map_err(|e| Exit::of(trace.display(), &e))?;
        timeline.set_free_runs(!step_all);
        let local = listener.local_addr().map_err(|e| Exit::new(exit_code::HOST_ERROR, e.to_string()))?;
        let kernel_arg = match &kernel {
            Some(p) => p.display().to_string(),
            None if bzimage => "VMLINUX".to_string(),
            None => "KERNEL.elf".to_string(),
        };
        // The connect line comes last: it is what a user (or a test harness) acts on.
        if kernel.is_none() && bzimage {
            eprintln!(
                "ttvm: {label}{BZIMAGE_GDB_NOTE}, or add --write-kernel FILE for the vmlinux unpacked from the bzImage"
            );
        } else if kernel.is_none() {
            eprintln!(
                "ttvm: {label}the kernel the trace was recorded from was not found; add --write-kernel FILE to get its ELF"
            );
        }
        eprintln!(
            "ttvm: {label}serving {} ({steps} steps) to gdb on {local} — connect with: gdb {kernel_arg} -ex 'target remote {local}'",
            trace.display()
        );
        // The history was read into memory when the server started: a trace re-recorded or
        // cut in place meanwhile does not change what is served, but the user should know
        // the file no longer holds it.
        let note_change = |_| {
            let now = FileIdentity::of(trace);
            if now != loaded {
                let state = match &now {
                    Some(n) => format!("it is now {} bytes", n.len),
                    None => "it is gone".to_string(),
                };
                eprintln!(
                    "ttvm: note: {} changed on disk since it was loaded ({state}); still serving the history loaded \
                     at start ({steps} steps)",
                    trace.display()
                );
            }
        };
        let end = ttvm_gdb::serve_network_clients(&mut timeline, listener, symbols, peers, note_change)
            .map_err(|e| Exit::of("", &e))?;
        let how = match end {
            ServeEnd::Detached => "gdb detached",
            ServeEnd::Killed => "gdb killed the session",
            ServeEnd::ConnectionClosed => "gdb closed the connection",
        };
        eprintln!("ttvm: {label}{how} at icount {}", timeline.icount());
        finish_branch(&mut timeline)?;
        Ok(0)
    }
}

/// What identifies a file's contents cheaply: a rewrite or truncation changes at least one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl FileIdentity {
    /// `path`'s identity now; `None` when it cannot be read (gone).
    pub(crate) fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(Self { len: m.len(), modified: m.modified().ok(), inode: m.ino() })
    }
}

/// After a session that branched history (`monitor branch FILE`): finalises the branch's
/// trace with how its guest stopped (or that gdb left before it did).
fn finish_branch(timeline: &mut Timeline) -> Result<(), Exit> {
    if !timeline.is_live() {
        return Ok(());
    }
    let end = match timeline.live_stop() {
        Some(stop) => ttvm_replay::record::RecordEnd::Guest(stop.clone()),
        None => ttvm_replay::record::RecordEnd::Detached,
    };
    let Some(session) = timeline.live_session() else { return Ok(()) };
    let progress =
        session.finish(&end).map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("finalising the branch: {e}")))?;
    eprintln!("ttvm: the branch ended ({}); {} steps recorded", end.reason(), progress.steps);
    Ok(())
}
