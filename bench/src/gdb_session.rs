//! Driving the real gdb in batch mode against a gdb stub (ttvm's or QEMU's) with the timing
//! script `gdb_latency.py`, with a watchdog: a session that prints nothing for too long is
//! killed and reported as hung, keeping the measurements it printed before.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::qemu::{kill, Boot, Qemu, RrFiles};

/// The script gdb runs.
const SCRIPT: &str = include_str!("gdb_latency.py");

/// How long `ttvm replay --gdb` may take to open a trace and start listening.
const SERVER_START: Duration = Duration::from_secs(300);

/// A gdb stub to time.
pub enum Stub<'a> {
    /// `ttvm replay TRACE --gdb 127.0.0.1:0`.
    Ttvm {
        /// The trace.
        trace: &'a Path,
    },
    /// `qemu-system-x86_64 ... rr=replay ... -gdb tcp:127.0.0.1:PORT -S`.
    Qemu {
        /// QEMU.
        qemu: &'a Qemu,
        /// The guest.
        boot: Boot<'a>,
        /// The recording.
        files: &'a RrFiles,
    },
}

impl Stub<'_> {
    fn name(&self) -> &'static str {
        match self {
            Stub::Ttvm { .. } => "ttvm",
            Stub::Qemu { .. } => "qemu",
        }
    }
}

/// What one gdb session printed.
#[derive(Debug, Default)]
pub struct SessionOutput {
    /// Every `MARK ...` line, split into words (without `MARK`).
    pub marks: Vec<Vec<String>>,
    /// The watchdog killed the session.
    pub hung: bool,
    /// Everything gdb printed (for error messages).
    pub log: String,
}

/// `gdb --version`'s first line, or why gdb cannot be used.
pub fn gdb_version() -> Result<String, String> {
    let out = Command::new("gdb")
        .args(["--batch", "--version"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("gdb not found ({e}); install it with apt-get install gdb"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("").trim().to_string();
    if !out.status.success() || first.is_empty() {
        return Err("gdb --version failed".into());
    }
    let py = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "python print('py-ok')"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !String::from_utf8_lossy(&py.stdout).contains("py-ok") {
        return Err(format!("{first} has no Python support"));
    }
    Ok(first)
}

/// Starts `ttvm replay TRACE --gdb 127.0.0.1:0` and returns it with the address it prints.
fn start_ttvm(trace: &Path) -> Result<(Child, String), String> {
    // The product binary, which cargo builds next to this harness.
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the ttvm binary: {e}"))?.with_file_name("ttvm");
    let mut child = Command::new(exe)
        .arg("replay")
        .arg(trace)
        .args(["--gdb", "127.0.0.1:0", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start ttvm replay --gdb: {e}"))?;
    let Some(stderr) = child.stderr.take() else {
        kill_and_reap(&mut child);
        return Err("no stderr from ttvm replay --gdb".into());
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + SERVER_START;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.split("to gdb on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    // Keep draining stderr so the server never blocks on a full pipe.
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return Ok((child, addr));
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => {
                kill_and_reap(&mut child);
                return Err(format!("ttvm replay --gdb did not start listening: {}", seen.trim()));
            }
        }
    }
}

fn kill_and_reap(child: &mut Child) {
    kill(child.id());
    let _ = child.wait();
}

/// Runs one gdb session: starts the stub, runs the script with `ops`, stops everything.
/// `idle` is the longest gdb may stay silent before the session counts as hung.
pub fn run(
    stub: &Stub<'_>,
    elf: &Path,
    ops: &[serde_json::Value],
    workdir: &Path,
    idle: Duration,
) -> Result<SessionOutput, String> {
    let script = workdir.join("gdb_latency.py");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    let ops_file = workdir.join(format!("gdb-ops-{}.json", stub.name()));
    let ops_text = serde_json::to_string(ops).map_err(|e| e.to_string())?;
    std::fs::write(&ops_file, ops_text).map_err(|e| format!("{}: {e}", ops_file.display()))?;
    let (mut server, addr) = match stub {
        Stub::Ttvm { trace } => start_ttvm(trace)?,
        Stub::Qemu { qemu, boot, files } => {
            let port = super::qemu::free_port()?;
            (qemu.start_gdb_replay(boot, files, port)?, format!("127.0.0.1:{port}"))
        }
    };
    let result = run_gdb(stub.name(), &addr, elf, &script, &ops_file, idle);
    kill_and_reap(&mut server);
    result
}

fn py_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn run_gdb(
    target: &str,
    addr: &str,
    elf: &Path,
    script: &Path,
    ops_file: &Path,
    idle: Duration,
) -> Result<SessionOutput, String> {
    let vars = format!("python TARGET = {target:?}; ADDR = {addr:?}; OPS_FILE = {}", py_str(ops_file));
    let mut gdb = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "set confirm off", "-ex", "set pagination off", "-ex", "set width 0"])
        .args(["-ex", &vars])
        .arg("-x")
        .arg(script)
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run gdb: {e}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let pumps: Vec<Box<dyn Read + Send>> = [
        gdb.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        gdb.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for r in pumps {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut out = SessionOutput::default();
    loop {
        match rx.recv_timeout(idle) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("MARK ") {
                    out.marks.push(rest.split_whitespace().map(str::to_string).collect());
                }
                out.log.push_str(&line);
                out.log.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                out.hung = true;
                break;
            }
        }
    }
    kill_and_reap(&mut gdb);
    Ok(out)
}

/// Writes `bytes` as `name` in `workdir` (the kernel ELF gdb and QEMU load).
pub fn write_file(workdir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let p = workdir.join(name);
    std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}
