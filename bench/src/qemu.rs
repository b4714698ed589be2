//! QEMU, the comparison: finding `qemu-system-x86_64` (7.2, TCG), booting the same PVH ELF
//! with the same command line, plain and with `-icount shift=auto,rr=record|replay`, and
//! starting a replay with a gdb stub for the reverse-debugging latencies.
//!
//! Found as: `--qemu PATH`, `$TTVM_QEMU`, `target/qemu/root/usr/bin/qemu-system-x86_64`
//! (where `scripts/bench.sh` unpacks Debian's package), then `$PATH`. Firmware directories
//! (`-L`) come from `--qemu-firmware`, `$TTVM_QEMU_FIRMWARE`, or `usr/share/{qemu,seabios}`
//! next to an unpacked binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Where `scripts/bench.sh` unpacks QEMU, relative to the repository.
pub const PRIVATE_ROOT: &str = "target/qemu/root";

/// A usable QEMU.
#[derive(Clone, Debug, Serialize)]
pub struct Qemu {
    /// The binary.
    pub bin: PathBuf,
    /// `-L` directories.
    pub firmware: Vec<PathBuf>,
    /// First line of `--version`.
    pub version: String,
    /// `qemu-img`, for the snapshot image `rrsnapshot` needs.
    pub img: Option<PathBuf>,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Finds QEMU; `Err` is the reason to skip the QEMU measurements.
pub fn find(bin: Option<&Path>, firmware: Option<&str>) -> Result<Qemu, String> {
    let env_bin = std::env::var_os("TTVM_QEMU").map(PathBuf::from);
    let private = PathBuf::from(PRIVATE_ROOT).join("usr/bin/qemu-system-x86_64");
    let bin = match bin.map(Path::to_path_buf).or(env_bin) {
        Some(b) if b.is_file() => b,
        Some(b) => return Err(format!("{} does not exist", b.display())),
        None if private.is_file() => private,
        None => on_path("qemu-system-x86_64").ok_or_else(|| {
            "qemu-system-x86_64 not found (scripts/bench.sh installs it; or set TTVM_QEMU / --qemu)".to_string()
        })?,
    };
    let out = Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --version failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("")
        ));
    }
    let version = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string();
    let firmware = match firmware.map(str::to_string).or_else(|| std::env::var("TTVM_QEMU_FIRMWARE").ok()) {
        Some(list) => std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect(),
        None => beside_binary(&bin),
    };
    let img = bin.parent().map(|d| d.join("qemu-img")).filter(|p| p.is_file()).or_else(|| on_path("qemu-img"));
    Ok(Qemu { bin, firmware, version, img })
}

/// `<root>/usr/share/{qemu,seabios}` for a binary at `<root>/usr/bin/`.
fn beside_binary(bin: &Path) -> Vec<PathBuf> {
    let Some(share) = bin.parent().and_then(Path::parent).map(|usr| usr.join("share")) else { return Vec::new() };
    ["qemu", "seabios"].iter().map(|d| share.join(d)).filter(|p| p.is_dir()).collect()
}

/// Plain TCG, or record/replay.
#[derive(Clone, Debug)]
pub enum Mode {
    /// `-accel tcg`, no icount.
    Plain,
    /// `-icount shift=auto,rr=record,rrfile=FILE[,rrsnapshot=init]`.
    Record(RrFiles),
    /// `-icount shift=auto,rr=replay,rrfile=FILE[,rrsnapshot=init]`.
    Replay(RrFiles),
}

/// The files of a QEMU recording.
#[derive(Clone, Debug)]
pub struct RrFiles {
    /// The replay log.
    pub log: PathBuf,
    /// A qcow2 image holding the `init` snapshot (for reverse debugging), if any.
    pub snapshot_disk: Option<PathBuf>,
}

/// A guest for QEMU: the ELF file, its command line, where serial output goes.
#[derive(Clone, Debug)]
pub struct Boot<'a> {
    /// Kernel ELF (PVH).
    pub kernel: &'a Path,
    /// `-append`.
    pub cmdline: &'a str,
    /// Serial output file.
    pub serial: &'a Path,
}

impl Qemu {
    fn args(&self, boot: &Boot<'_>, mode: &Mode) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        for fw in &self.firmware {
            a.push("-L".into());
            a.push(fw.into());
        }
        a.push("-kernel".into());
        a.push(boot.kernel.into());
        for s in ["-append", boot.cmdline, "-m", "128M", "-accel", "tcg", "-nographic", "-monitor", "none"] {
            a.push(s.into());
        }
        a.push("-serial".into());
        let mut serial = OsString::from("file:");
        serial.push(boot.serial);
        a.push(serial);
        for s in ["-net", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"] {
            a.push(s.into());
        }
        let rr = |what: &str, f: &RrFiles, a: &mut Vec<OsString>| {
            let mut icount = OsString::from(format!("shift=auto,rr={what},rrfile="));
            icount.push(&f.log);
            if let Some(disk) = &f.snapshot_disk {
                icount.push(",rrsnapshot=init");
                a.push("-drive".into());
                let mut d = OsString::from("file=");
                d.push(disk);
                d.push(",if=none,id=rr");
                a.push(d);
            }
            a.push("-icount".into());
            a.push(icount);
        };
        match mode {
            Mode::Plain => {}
            Mode::Record(f) => rr("record", f, &mut a),
            Mode::Replay(f) => rr("replay", f, &mut a),
        }
        a
    }

    /// Creates an empty qcow2 image for `rrsnapshot`.
    pub fn create_snapshot_disk(&self, path: &Path) -> Result<(), String> {
        let img = self.img.as_ref().ok_or("qemu-img not found (it holds the rrsnapshot image)")?;
        let _ = std::fs::remove_file(path);
        let out = Command::new(img)
            .args(["create", "-q", "-f", "qcow2"])
            .arg(path)
            .arg("1G")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", img.display()))?;
        if !out.status.success() {
            return Err(format!("qemu-img create failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(())
    }

    /// Boots `boot` in `mode` and waits for QEMU to exit (the guest's debug-exit).
    pub fn run(&self, boot: &Boot<'_>, mode: &Mode, timeout: Duration) -> Result<QemuRun, String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(self.args(boot, mode)).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let (status, stderr) = wait_with_timeout(child, timeout)?;
        let wall_secs = started.elapsed().as_secs_f64();
        let status = status.ok_or_else(|| format!("QEMU did not finish within {} s", timeout.as_secs()))?;
        // isa-debug-exit: QEMU exits with (code << 1) | 1.
        let guest_status = (status & 1 == 1).then_some(status >> 1);
        if guest_status.is_none() {
            return Err(format!(
                "QEMU exited with status {status} without a guest debug-exit: {}",
                stderr.lines().last().unwrap_or("")
            ));
        }
        Ok(QemuRun { wall_secs, guest_status })
    }

    /// Starts a replay stopped at reset with a gdb stub on 127.0.0.1:`port`.
    pub fn start_gdb_replay(&self, boot: &Boot<'_>, files: &RrFiles, port: u16) -> Result<Child, String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(self.args(boot, &Mode::Replay(files.clone())))
            .arg("-gdb")
            .arg(format!("tcp:127.0.0.1:{port}"))
            .arg("-S")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().map_err(|e| format!("cannot start {}: {e}", self.bin.display()))
    }
}

/// One QEMU boot to the guest's exit.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct QemuRun {
    /// Seconds from starting QEMU to its exit.
    pub wall_secs: f64,
    /// The guest's exit status, from isa-debug-exit.
    pub guest_status: Option<i32>,
}

/// Waits for `child`; kills it after `timeout`. Returns its exit code (None if killed)
/// and its stderr.
pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> Result<(Option<i32>, String), String> {
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let r = child.wait();
        let _ = tx.send(());
        r
    });
    let timed_out = rx.recv_timeout(timeout).is_err();
    if timed_out {
        kill(pid);
    }
    let status = waiter.join().map_err(|_| "waiting for QEMU panicked".to_string())?;
    let status = status.map_err(|e| format!("waiting for QEMU: {e}"))?;
    let stderr = reader.join().unwrap_or_default();
    Ok((if timed_out { None } else { status.code() }, stderr))
}

/// Sends SIGKILL to a process this benchmark started.
pub fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid of a child we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (QEMU needs a number up front).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free TCP port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}
