//! Boots sample kernels under QEMU and checks their serial output and exit
//! status (isa-debug-exit: QEMU exits with `(code << 1) | 1`).
//!
//! Environment:
//! - `TTVM_QEMU`: the qemu-system-x86_64 binary (default: the one on PATH;
//!   if there is none the tests print SKIPPED and pass).
//! - `TTVM_QEMU_FIRMWARE`: firmware directories, `:`-separated, each passed
//!   as `-L` (SeaBIOS's `bios-256k.bin`, QEMU's `pvh.bin`/`linuxboot_dma.bin`).
//! - `TTVM_QEMU_ARGS`: extra arguments, space-separated (e.g. `-accel kvm`).
//!
//! See sample-kernels/README.md for setting QEMU up on machines where it does
//! not install with apt-get.
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: TCG boots in well under a second, but `-accel kvm` on hosts that
/// emulate guest ring 0 runs ~1.5 M instructions/s.
const TIMEOUT: Duration = Duration::from_secs(120);

struct Qemu {
    bin: PathBuf,
    firmware: Vec<PathBuf>,
    extra: Vec<String>,
}

fn qemu() -> Option<Qemu> {
    let bin = match std::env::var_os("TTVM_QEMU") {
        Some(b) => {
            let b = PathBuf::from(b);
            assert!(b.is_file(), "TTVM_QEMU={} does not exist", b.display());
            b
        }
        None => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let found = std::env::split_paths(&path).map(|d| d.join("qemu-system-x86_64")).find(|p| p.is_file());
            match found {
                Some(b) => b,
                None => {
                    // Straight to stderr: eprintln! would be captured by the test harness.
                    let _ = writeln!(
                        std::io::stderr(),
                        "SKIPPED: qemu-system-x86_64 not found (set TTVM_QEMU, and TTVM_QEMU_FIRMWARE if needed; \
                         see sample-kernels/README.md)"
                    );
                    return None;
                }
            }
        }
    };
    let firmware =
        std::env::var_os("TTVM_QEMU_FIRMWARE").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
    let extra = std::env::var("TTVM_QEMU_ARGS").unwrap_or_default().split_whitespace().map(String::from).collect();
    Some(Qemu { bin, firmware, extra })
}

struct Run {
    /// QEMU's exit status; None if it was killed after the timeout.
    status: Option<i32>,
    /// Serial output from the kernel's `ttvm-sample <name>` banner on, without CRs.
    serial: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.serial.lines().collect()
    }
}

fn boot(q: &Qemu, name: &str, append: &str) -> Run {
    let k = ttvm_sample_kernels::get(name).unwrap_or_else(|| panic!("no sample kernel {name}"));
    let mut path = PathBuf::from(k.path);
    if !path.is_file() {
        // The build directory moved: use the embedded copy.
        path = std::env::temp_dir().join(format!("ttvm-sample-{}-{}.elf", name, std::process::id()));
        std::fs::write(&path, k.elf).unwrap();
    }
    let mut cmd = Command::new(&q.bin);
    for fw in &q.firmware {
        cmd.arg("-L").arg(fw);
    }
    cmd.arg("-kernel")
        .arg(&path)
        .args(["-append", append])
        // -nographic alone would put the monitor on stdio too; QEMU 7.2 then
        // rejects `-serial stdio`, hence `-monitor none`.
        .args(["-nographic", "-monitor", "none", "-serial", "stdio"])
        .args(["-net", "none", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(&q.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", q.bin.display()));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });

    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = String::from_utf8_lossy(&out_reader.join().unwrap()).replace('\r', "");
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    // Firmware output (SeaBIOS) comes first, without a trailing newline.
    let banner = format!("ttvm-sample {name}");
    let serial = match out.find(&banner) {
        Some(i) => out[i..].to_string(),
        None => panic!("{name}: banner {banner:?} not seen (status {status:?})\nstdout:\n{out}\nstderr:\n{stderr}"),
    };
    Run { status, serial, stderr }
}

/// QEMU's exit status for a guest exit code.
fn qemu_status(code: i32) -> Option<i32> {
    Some(code << 1 | 1)
}

fn assert_run(name: &str, r: &Run, code: i32, expected: &[&str]) {
    let lines = r.lines();
    for e in expected {
        assert!(lines.contains(e), "{name}: missing line {e:?}\nserial:\n{}\nstderr:\n{}", r.serial, r.stderr);
    }
    assert_eq!(r.status, qemu_status(code), "{name}: exit status (None = timed out)\nserial:\n{}", r.serial);
}

#[test]
fn hello_prints_greeting_and_cmdline() {
    let Some(q) = qemu() else { return };
    let r = boot(&q, "hello", "greeting=hi ttvm");
    assert_run("hello", &r, 0, &["ttvm-sample hello", "Hello from ttvm!", "cmdline: greeting=hi ttvm"]);
}

#[test]
fn timer_counts_ticks() {
    let Some(q) = qemu() else { return };
    let r = boot(&q, "timer", "ticks=30");
    assert_run("timer", &r, 0, &["tick 10", "tick 20", "tick 30", "timer: 30 ticks"]);
    assert!(!r.serial.contains("tick 40"), "timer: ran past ticks=30:\n{}", r.serial);
}

#[test]
fn bench_checksum_is_deterministic() {
    let Some(q) = qemu() else { return };
    // Pinned: any change to the workload or its code generation shows here.
    let expected = "bench: checksum=0x7641b025e66b1585 size=64 rounds=2";
    for _ in 0..2 {
        let r = boot(&q, "bench", "size=64 rounds=2");
        assert_run("bench", &r, 0, &[expected]);
    }
}

#[test]
fn memcorrupt_panics_with_exit_code_13() {
    let Some(q) = qemu() else { return };
    let r = boot(&q, "memcorrupt", "");
    let panic = r.lines().into_iter().find(|l| l.starts_with("PANIC: config corrupted: magic=0x8 "));
    assert!(panic.is_some_and(|l| l.contains(" at memcorrupt/main.rs:")), "memcorrupt:\n{}", r.serial);
    assert_eq!(r.status, qemu_status(13), "memcorrupt: exit status\n{}", r.serial);

    let r = boot(&q, "memcorrupt", "events=8");
    assert_run("memcorrupt events=8", &r, 0, &["memcorrupt: ok"]);
}

#[test]
fn stepprobe_reaches_exit_with_qemu_flag() {
    let Some(q) = qemu() else { return };
    let r = boot(&q, "stepprobe", "qemu");
    assert_run("stepprobe", &r, 0, &["stepprobe: running probe"]);
}

/// The reference for ttvm's SYSCALL completion (`vmm/src/x86/user_mode.rs`): on a CPU that
/// carries SYSCALL out itself, the `ring3` kernel prints exactly what the ttvm test expects.
#[test]
fn ring3_syscalls_enter_the_kernel_and_return() {
    let Some(q) = qemu() else { return };
    let r = boot(&q, "ring3", "tick");
    assert_run(
        "ring3",
        &r,
        0,
        &[
            "ring3: first user fetch at 0x200000 faulted (error 0x14); page opened to user mode",
            "ring3: syscall 1 (arg 0x1234) entered with cs=0x10 ss=0x18, user rip=0x200015 rflags=0x246",
            "ring3: after swapgs gs.base=0x22220000 kernel_gs_base=0x11110000",
            "ring3: syscall 2: user code got 7 back from sysret",
            "ring3: user read of kernel page 0x100000 faulted (error 0x5) at 0x33:0x20001e",
        ],
    );
    assert!(r.serial.contains("ring3: ticks so far: "), "ring3 tick: no timer interrupt\n{}", r.serial);
}
