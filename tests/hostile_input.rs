//! Faults a hostile but honest user can cause, driven the way a probe found them: signals
//! while the guest waits for input, a full disk, two recordings into one file, nonsense
//! options. Each ends with a clear message and the documented status, and nothing recorded
//! is lost.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{require_kvm, run, text};

/// Waits for `child` to exit; a hang (no exit within `limit`) kills it and fails the test.
fn wait_or_kill(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

#[test]
fn sigint_and_sigterm_stop_a_recording_waiting_for_input() {
    if !require_kvm("sigint_and_sigterm_stop_a_recording_waiting_for_input") {
        return;
    }
    let dir = common::tempdir();
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let trace = dir.path().join(format!("entropy-{name}.ttvm"));
        // Serial input from a pipe that stays open and silent: the guest waits in HLT.
        let mut child = common::ttvm()
            .args(["record", "entropy", "--cmdline", "lines=3", "-o", trace.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let _input = child.stdin.take();
        // Wait until the guest says it waits for input (it then sits in HLT).
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        while !line.contains("entropy: echoing 3 line(s)") {
            line.clear();
            assert!(std::io::BufRead::read_line(&mut out, &mut line).expect("read") > 0, "{name}: no prompt");
        }
        std::thread::sleep(Duration::from_millis(200));
        signal(&child, sig);
        let status = wait_or_kill(&mut child, Duration::from_secs(30), name);
        assert_eq!(status.code(), Some(130), "{name}");
        let o = run(&["info", "--json", trace.to_str().unwrap()]);
        let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(info["finalised"], true, "{name}: {}", text(&o));
        assert_eq!(info["end_reason"], "interrupted by the user", "{name}");
        let o = run(&["replay", "--verify", "-q", trace.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
    }
}

/// Serial input from a pipe that closes while the guest still expects lines: nothing can
/// wake it any more (the entropy kernel runs no timer while it waits), so the recording
/// ends as a halt, status 72 as the README's table says, finalised and verifiable.
#[test]
fn serial_input_that_ends_while_the_guest_waits_ends_the_recording_as_a_halt() {
    use std::io::Write;
    if !require_kvm("serial_input_that_ends_while_the_guest_waits_ends_the_recording_as_a_halt") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("closed.ttvm");
    let mut child = common::ttvm()
        .args(["record", "entropy", "--cmdline", "lines=3", "--serial-in", "/dev/stdin", "-o"])
        .arg(&trace)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // One line of the three, then the pipe closes.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"one\n").expect("write");
    drop(stdin);
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the recording still waits for input from a closed pipe");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().expect("output");
    assert_eq!(o.status.code(), Some(72), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("echo: one"), "the line was read: {}", text(&o));
    assert!(text(&o).contains("(halted with nothing to wake it)"), "{}", text(&o));
    let o = run(&["replay", "--verify", "-q", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A small tmpfs, unmounted when dropped.
struct SmallFs(std::path::PathBuf);

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_host_error_and_keeps_what_fitted() {
    if !require_kvm("a_full_disk_is_a_host_error_and_keeps_what_fitted") {
        return;
    }
    let dir = common::tempdir();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=600k", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(mounted, "this test mounts a 600 KiB tmpfs to fill it, which needs root (CI runs as root)");
    let _fs = SmallFs(mnt.clone());
    let trace = mnt.join("bench.ttvm");
    let o = run(&["record", "bench", "-q", "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "a full disk is the host's failure, not KVM's: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No space left on device"), "{}", text(&o));
    // Finalising may or may not still fit; the message says which.
    assert!(err.contains("was kept in") || err.contains("up to there are readable in"), "{}", text(&o));
    // What fitted is a readable, verifiable (if unfinalised) trace.
    let o = run(&["info", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A write that fails part way through a recording without a full disk or root: a file
/// size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so the write fails with EFBIG instead of
/// killing the process) stops the trace growing. It is a host error (1) naming the OS's
/// reason, and the steps written before it stay readable.
#[test]
fn a_write_error_while_recording_is_a_host_error_and_keeps_what_was_written() {
    use std::os::unix::process::CommandExt;
    if !require_kvm("a_write_error_while_recording_is_a_host_error_and_keeps_what_was_written") {
        return;
    }
    let dir = common::tempdir();
    // Room for the header, the boot checkpoint and a few more: `bench` with a checkpoint
    // every 5 000 steps outgrows it within a few checkpoints.
    let first = dir.path().join("one-step.ttvm");
    let o = run(&["record", "bench", "-q", "--max-steps", "1", "-o", first.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(74), "{}", text(&o));
    let limit = std::fs::metadata(&first).unwrap().len() + (256 << 10);
    let trace = dir.path().join("limited.ttvm");
    let mut cmd = common::ttvm();
    cmd.args(["record", "bench", "-q", "--checkpoint-every", "5000", "-o", trace.to_str().unwrap()]);
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, signal).
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = cmd.output().expect("spawn ttvm");
    assert_eq!(o.status.code(), Some(1), "a failed trace write is a host error, not KVM's (70): {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("recording failed at step") && err.contains("File too large"), "{}", text(&o));
    // Finalising needs a write too: the message says what is left instead of "kept".
    assert!(err.contains("could not be finalised; its complete chunks up to there are readable"), "{}", text(&o));
    assert!(std::fs::metadata(&trace).unwrap().len() <= limit, "the limit held");
    let o = run(&["info", "--json", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(info["finalised"], false, "{info}");
    assert!(info["steps"].as_u64().is_some_and(|n| n > 0), "the steps written before the failure: {info}");
}

#[test]
fn a_second_recording_into_the_same_file_is_refused() {
    if !require_kvm("a_second_recording_into_the_same_file_is_refused") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("bench.ttvm");
    let mut first = common::ttvm()
        .args(["record", "bench", "-q", "-o", trace.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while std::fs::metadata(&trace).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "the first recording never started writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = run(&["record", "hello", "-q", "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("being written by another ttvm"), "{}", text(&o));
    // The first is unaffected: stop it and verify what it wrote.
    signal(&first, libc::SIGINT);
    assert_eq!(wait_or_kill(&mut first, Duration::from_secs(30), "first recording").code(), Some(130));
    let o = run(&["replay", "--verify", "-q", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["info", "--json", trace.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"kernel\": \"bench\""), "{}", text(&o));
}

#[test]
fn nonsense_recording_options_are_refused() {
    let o = run(&["record", "hello", "--checkpoint-every", "0", "-o", "/nonexistent/never.ttvm"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--checkpoint-every"), "{}", text(&o));
}

#[path = "gdb/harness.rs"]
mod harness;

/// A trace truncated underneath a running `replay --gdb` (re-recorded in place, say) does
/// not crash the server: it read the history when it started, and keeps serving it.
#[test]
fn a_trace_truncated_under_the_gdb_server_does_not_crash_it() {
    if !require_kvm("a_trace_truncated_under_the_gdb_server_does_not_crash_it") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("memcorrupt.ttvm");
    std::fs::copy(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces/memcorrupt.ttvm"), &trace)
        .expect("copy the committed trace");
    let elf = dir.path().join("memcorrupt.elf");
    let server = harness::serve(&trace, &["--write-kernel", elf.to_str().unwrap()]);
    std::fs::OpenOptions::new().write(true).open(&trace).and_then(|f| f.set_len(1000)).expect("truncate");
    let out = harness::gdb(&server, &[], "truncated.py");
    let after = harness::mark(&out, "after");
    let hex = |s: &str| u64::from_str_radix(s, 16).expect("hex");
    let (at, length) = (hex(&after[0]), hex(&after[1]));
    assert_eq!(at, length / 2 - 1, "{out}");
    assert!(!server.stderr().contains("SIGBUS"), "{}", server.stderr());
    // The user is told the file no longer holds what is being served.
    let note = "memcorrupt.ttvm changed on disk since it was loaded (it is now 1000 bytes); still serving the history";
    assert!(server.stderr().contains(note), "{}", server.stderr());
}

/// The gdb server outlives its connections: a port probe that connects and closes, then
/// gdb's `disconnect` and a second `target remote`, each find it still serving, at the
/// position the previous client left; `detach` ends it. A non-loopback address warns.
#[test]
fn the_gdb_server_serves_one_client_after_another() {
    if !require_kvm("the_gdb_server_serves_one_client_after_another") {
        return;
    }
    let trace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces/timer.ttvm");
    let server = harness::serve(&trace, &[]);
    // A port probe.
    drop(std::net::TcpStream::connect(&server.addr).expect("probe connects"));
    let start = Instant::now();
    while !server.stderr().contains("waiting for the next one") {
        assert!(start.elapsed() < Duration::from_secs(20), "no word of the closed probe: {}", server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let pre = format!("python server = {:?}", server.addr);
    let out = harness::gdb(&server, &[&pre], "reconnect.py");
    let hex = |s: &str| u64::from_str_radix(s, 16).expect("hex");
    let first = hex(&harness::mark(&out, "first")[0]);
    assert_eq!(first, 2, "{out}");
    assert_eq!(hex(&harness::mark(&out, "second")[0]), first, "the second client starts where the first left\n{out}");
    assert_eq!(hex(&harness::mark(&out, "stepped")[0]), first + 1, "{out}");
    let (status, err) = server.wait(Duration::from_secs(30));
    assert!(status.success() && err.contains("gdb detached"), "{err}");
    assert_eq!(err.matches("gdb connected from 127.0.0.1").count(), 3, "{err}");
    assert!(!err.contains("changed on disk"), "an untouched trace is not reported: {err}");

    // Binding every interface works, with a warning that names the risk.
    let mut child = common::ttvm()
        .args(["replay", trace.to_str().unwrap(), "--gdb", "0.0.0.0:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut text = String::new();
    while !text.contains("connect with") {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut err, &mut line).expect("read") > 0, "{text}");
        text.push_str(&line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains("warning") && text.contains("not on loopback") && text.contains("read the guest's memory"),
        "{text}"
    );
}

/// A forged trace is refused before anything trusts it: an embedded kernel that is not the
/// one the header's hash names (consistently re-checksummed), and a format version edited
/// in the preamble (format 3 covers it with the header checksum), are damage (76).
#[test]
fn forged_kernels_and_edited_versions_are_damage() {
    use ttvm_replay::trace::TraceFile;
    let dir = common::tempdir();
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces/timer.ttvm");
    let forged = dir.path().join("forged.ttvm");
    let t = TraceFile::open(&good).expect("committed trace");
    let mut header = t.header.clone();
    let last = header.machine.kernel.len() - 1;
    header.machine.kernel[last] ^= 0x01; // the header still names the original's hash
    let mut w = ttvm_replay::trace::TraceWriter::create(&forged, &header).expect("create");
    for c in &t.chunks {
        let raw = t.payload(c).expect("payload").into_owned();
        if c.kind == ttvm_replay::trace::ChunkKind::End {
            w.finish(&bincode::deserialize(&raw).expect("end")).expect("finish");
        } else {
            w.write_chunk(c.kind, &raw, true).expect("chunk");
        }
    }
    drop(w);
    for cmd in [vec!["info"], vec!["replay", "--verify"], vec!["check", "--expect-exit", "0"]] {
        let mut args = cmd.clone();
        args.insert(1, forged.to_str().unwrap());
        let o = run(&args);
        assert_eq!(o.status.code(), Some(76), "{cmd:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("embedded kernel image does not match"), "{}", text(&o));
    }
    // Lowering the preamble's format version (3 -> 2) breaks the header checksum.
    let mut bytes = std::fs::read(&good).expect("read");
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let edited = dir.path().join("edited.ttvm");
    std::fs::write(&edited, &bytes).expect("write");
    let o = run(&["replay", "--verify", edited.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("checksum mismatch"), "{}", text(&o));
}

/// A reader that goes away (`ttvm kernels | head -0`) ends the listing quietly: no panic.
#[test]
fn a_closed_stdout_does_not_panic_a_listing() {
    let mut child = common::ttvm().arg("kernels").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    // Closed before the child writes: its first write fails with EPIPE.
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{}", text(&o));
}
