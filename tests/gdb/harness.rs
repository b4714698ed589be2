//! Shared by the gdb integration tests (`tests/gdb_*.rs`): record a trace with the ttvm
//! binary, serve it with `ttvm replay TRACE --gdb 127.0.0.1:0` (the server prints the
//! port it got, so tests never race for ports), and drive the real gdb in batch mode with
//! a Python script from `tests/gdb/` that prints `MARK key values...` lines.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common;

/// Longest a gdb session may take before the test fails.
pub const GDB_TIMEOUT: Duration = Duration::from_secs(120);

/// The directory with the gdb scripts.
pub fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("gdb")
}

/// Records `kernel` with `cmdline` (icount clock) into `dir`; the guest may exit with any
/// status (a panicking kernel is the point of some tests).
pub fn record(dir: &Path, kernel: &str, cmdline: &str) -> PathBuf {
    let out = dir.join(format!("{kernel}.ttvm"));
    let o =
        common::run(&["record", kernel, "-o", out.to_str().unwrap(), "--clock", "icount", "--cmdline", cmdline, "-q"]);
    assert!(out.exists() && o.status.code().is_some(), "recording {kernel} failed:\n{}", common::text(&o));
    out
}

/// One recording per (kernel, cmdline) for the whole test binary (tests run in parallel
/// and share it read-only).
pub fn shared_trace(kernel: &str, cmdline: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static TRACES: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let dir = DIR.get_or_init(common::tempdir);
    let mut traces = TRACES.lock().unwrap_or_else(|e| e.into_inner());
    let map = traces.get_or_insert_with(HashMap::new);
    let key = format!("{kernel} {cmdline}");
    if let Some(p) = map.get(&key) {
        return p.clone();
    }
    let sub = dir.path().join(map.len().to_string());
    std::fs::create_dir_all(&sub).unwrap();
    let p = record(&sub, kernel, cmdline);
    map.insert(key, p.clone());
    p
}

fn pump(mut r: impl Read + Send + 'static, sink: Arc<Mutex<String>>, lines: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut pending = String::new();
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.lock().unwrap_or_else(|e| e.into_inner()).push_str(&text);
            if let Some(tx) = &lines {
                pending.push_str(&text);
                while let Some(i) = pending.find('\n') {
                    let _ = tx.send(pending[..i].to_string());
                    pending.drain(..=i);
                }
            }
        }
    });
}

/// A running `ttvm replay --gdb` server.
pub struct Server {
    child: Child,
    /// The address gdb connects to.
    pub addr: String,
    /// The kernel ELF the server suggests to gdb.
    pub kernel: PathBuf,
    stderr: Arc<Mutex<String>>,
}

/// Starts a server for `trace` on an OS-chosen port.
pub fn serve(trace: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["replay", trace.to_str().unwrap(), "--gdb", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    spawn_server(&args)
}

/// Starts `ttvm debug KERNEL` (live recording into `trace`) on an OS-chosen port.
pub fn serve_live(kernel: &str, cmdline: &str, trace: &Path) -> Server {
    spawn_server(&["debug", kernel, "--cmdline", cmdline, "-o", trace.to_str().unwrap(), "--gdb", "127.0.0.1:0"])
}

/// Spawns a gdb server (`replay --gdb` or `debug`) and waits for its address line.
fn spawn_server(args: &[&str]) -> Server {
    spawn_server_for(args, 1).0
}

/// Starts `ttvm replay DIR --gdb 127.0.0.1:0` for a network recording of `vms` VMs: the
/// server (its address is VM 0's) and every VM's (address, kernel), in VM order.
pub fn serve_network(dir: &Path, vms: usize) -> (Server, Vec<(String, PathBuf)>) {
    spawn_server_for(&["replay", dir.to_str().unwrap(), "--gdb", "127.0.0.1:0"], vms)
}

/// Spawns a server and waits for `ports` address lines ("VM N (NAME): serving …" for a
/// network, in any order); returns them in VM order.
fn spawn_server_for(args: &[&str], ports: usize) -> (Server, Vec<(String, PathBuf)>) {
    let mut child =
        common::ttvm().args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn ttvm gdb server");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    pump(child.stderr.take().unwrap(), stderr.clone(), Some(tx));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut found: Vec<(usize, String, PathBuf)> = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("to gdb on ") => {
                let addr = line.split("to gdb on ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
                let kernel = line.split("connect with: gdb ").nth(1).unwrap().split(" -ex").next().unwrap();
                let vm = line
                    .split("ttvm: VM ")
                    .nth(1)
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                found.push((vm, addr, PathBuf::from(kernel)));
                if found.len() == ports {
                    found.sort_by_key(|f| f.0);
                    let all: Vec<(String, PathBuf)> = found.into_iter().map(|(_, a, k)| (a, k)).collect();
                    let (addr, kernel) = all[0].clone();
                    return (Server { child, addr, kernel, stderr }, all);
                }
            }
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start: {}", stderr.lock().unwrap());
            }
        }
    }
}

impl Server {
    /// What the server printed so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits for the server to exit on its own; returns its status and stderr.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for server") {
                std::thread::sleep(Duration::from_millis(50)); // let the stderr pump finish
                return (st, self.stderr());
            }
            if Instant::now() > deadline {
                panic!("server did not exit after gdb left:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs gdb in batch mode against `server` with `script` (a file in `tests/gdb/`), after
/// the `-ex` commands in `pre`. Returns everything gdb printed. Panics on timeout.
pub fn gdb(server: &Server, pre: &[&str], script: &str) -> String {
    gdb_with(server, pre, script, Some(&server.kernel))
}

/// Like [`gdb`], with an explicit ELF for symbols, or none (gdb then only knows the
/// target description: registers, memory, stepping).
pub fn gdb_with(server: &Server, pre: &[&str], script: &str, elf: Option<&Path>) -> String {
    gdb_at(server, &server.addr, pre, script, elf)
}

/// Like [`gdb_with`], connecting to `addr`, one of `server`'s ports (a network's VM).
pub fn gdb_at(server: &Server, addr: &str, pre: &[&str], script: &str, elf: Option<&Path>) -> String {
    let dir = scripts_dir();
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx", "-ex", "set confirm off", "-ex", "set pagination off", "-ex", "set width 0"])
        .arg("-ex")
        .arg(format!("python import sys; sys.path.insert(0, {:?})", dir.to_str().unwrap()))
        .arg("-ex")
        .arg(format!("target remote {addr}"));
    for p in pre {
        cmd.arg("-ex").arg(p);
    }
    cmd.arg("-x").arg(dir.join(script));
    if let Some(elf) = elf {
        cmd.arg(elf);
    }
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run gdb");
    let out = Arc::new(Mutex::new(String::new()));
    pump(child.stdout.take().unwrap(), out.clone(), None);
    pump(child.stderr.take().unwrap(), out.clone(), None);
    let deadline = Instant::now() + GDB_TIMEOUT;
    loop {
        if child.try_wait().expect("wait for gdb").is_some() {
            std::thread::sleep(Duration::from_millis(50));
            return out.lock().unwrap_or_else(|e| e.into_inner()).clone();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "gdb timed out after {GDB_TIMEOUT:?}:\n{}\n--- server:\n{}",
                out.lock().unwrap_or_else(|e| e.into_inner()),
                server.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The values of every `MARK key ...` line, in order.
pub fn marks(out: &str, key: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter_map(|l| l.strip_prefix("MARK "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key)).then(|| w.map(str::to_string).collect())
        })
        .collect()
}

/// The single `MARK key ...` line's values.
pub fn mark(out: &str, key: &str) -> Vec<String> {
    let m = marks(out, key);
    assert_eq!(m.len(), 1, "expected one MARK {key}, got {m:?} in:\n{out}");
    m.into_iter().next().unwrap()
}

/// Parses hex without 0x.
pub fn hex(s: &str) -> u64 {
    u64::from_str_radix(s, 16).unwrap_or_else(|_| panic!("not hex: {s}"))
}
