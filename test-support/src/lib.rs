//! What ttvm's tests share, in one place: KVM gating ([`require_kvm`]), the `ttvm` binary
//! ([`ttvm`], [`run`], [`text`]), sample kernels ([`kernel_path`], [`symbol`],
//! [`record_sample`]), trace editing that only replay can notice ([`rewrite_trace`],
//! [`rewrite_events`]), golden encodings ([`golden`]) and a real terminal ([`tmux`]).

pub mod golden;
pub mod tmux;
mod trace_edit;

pub use trace_edit::{rewrite_events, rewrite_trace};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;

use ttvm_replay::record::{RecordEnd, RecordOptions, RecordSession};
use ttvm_vmm::console::{ConsoleInput, ConsoleOutput};
use ttvm_vmm::machine::MachineConfig;

/// Whether KVM tests should run. Without /dev/kvm they fail with a clear message, unless
/// `TTVM_SKIP_KVM=1` asks to skip them, which is announced loudly.
pub fn require_kvm(test: &str) -> bool {
    if std::env::var("TTVM_SKIP_KVM").is_ok_and(|v| v == "1") {
        eprintln!("########## SKIPPED {test}: TTVM_SKIP_KVM=1 is set; this KVM test did not run ##########");
        return false;
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        panic!(
            "{test} needs /dev/kvm, which cannot be opened ({e}). Run on a host with KVM, or set \
             TTVM_SKIP_KVM=1 to skip KVM tests explicitly."
        );
    }
    true
}

/// The `ttvm` binary under test: `$TTVM_BIN`, else the one cargo built next to the test
/// executable (`target/<profile>/ttvm`, which `cargo test --workspace` builds).
pub fn ttvm_path() -> PathBuf {
    if let Some(p) = std::env::var_os("TTVM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test runs from target/<profile>/deps");
    let ttvm = profile_dir.join("ttvm");
    assert!(
        ttvm.exists(),
        "{} is not built: run the tests with `cargo test --workspace` (scripts/test.sh), or set TTVM_BIN",
        ttvm.display()
    );
    ttvm
}

/// A `ttvm` command with stdin closed.
pub fn ttvm() -> Command {
    let mut c = Command::new(ttvm_path());
    c.stdin(Stdio::null());
    c
}

/// Runs ttvm with `args`, returning its output.
pub fn run(args: &[&str]) -> Output {
    ttvm().args(args).output().expect("spawn ttvm")
}

/// Exit status, stdout and stderr as one string, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Records the `bench` kernel (compute between a few prints: most intervals hold no
/// event, so free runs have intervals to run) with a checkpoint every 10 000 steps into
/// `dir/bench.ttvm`, through the binary.
pub fn record_bench_free_intervals(dir: &Path) -> PathBuf {
    let t = dir.join("bench.ttvm");
    let path = t.to_str().expect("temporary paths are UTF-8");
    let o = run(&["record", "bench", "--cmdline", "size=16 rounds=2", "--checkpoint-every", "10000", "-q", "-o", path]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    t
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The ELF of a bundled sample kernel (with symbols).
pub fn kernel_path(name: &str) -> PathBuf {
    PathBuf::from(ttvm_sample_kernels::get(name).unwrap_or_else(|| panic!("no sample kernel {name}")).path)
}

/// Address of `symbol` in an ELF.
pub fn symbol(elf: &Path, symbol: &str) -> u64 {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(elf).expect("read ELF");
    let file = object::File::parse(&*data).expect("parse ELF");
    file.symbols()
        .find(|s| s.name() == Ok(symbol))
        .unwrap_or_else(|| panic!("{symbol} not in {}", elf.display()))
        .address()
}

/// Records sample kernel `name` with `cmdline` through the library into
/// `dir/NAME.ttvm` (icount clock, `mem_size` bytes of RAM, the RTC at a fixed time, so the
/// trace is the same every time), until the guest stops or `max_steps`.
pub fn record_sample(
    dir: &Path,
    name: &str,
    cmdline: &str,
    checkpoint_every: u64,
    mem_size: u64,
    max_steps: Option<u64>,
) -> (PathBuf, RecordEnd) {
    let k = ttvm_sample_kernels::get(name).unwrap_or_else(|| panic!("no sample kernel {name}"));
    let out = dir.join(format!("{name}.ttvm"));
    let options = RecordOptions {
        clock: ttvm_replay::clock::ClockMode::Icount,
        checkpoint_every,
        kernel_name: name.into(),
        stepping: ttvm_replay::stepping::host_signature(),
    };
    let config = MachineConfig {
        mem_size,
        kernel: k.elf.to_vec(),
        cmdline: cmdline.into(),
        rtc_base_unix_secs: 1_700_000_000,
        initrd: Vec::new(),
    };
    let mut s = RecordSession::start(config, &out, options, ConsoleOutput::Discard, ConsoleInput::none())
        .expect("start recording");
    let end = s.run(max_steps, &AtomicBool::new(false), 0, |_| {}).expect("record");
    s.finish(&end).expect("finish trace");
    (out, end)
}
