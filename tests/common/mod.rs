//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Whether KVM tests should run. Without /dev/kvm they fail with a clear message, unless
/// `TTVM_SKIP_KVM=1` asks to skip them, which is announced loudly.
pub fn require_kvm(test: &str) -> bool {
    if std::env::var("TTVM_SKIP_KVM").is_ok_and(|v| v == "1") {
        eprintln!("########## SKIPPED {test}: TTVM_SKIP_KVM=1 is set; this KVM test did not run ##########");
        return false;
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        panic!("{test} needs /dev/kvm, which cannot be opened ({e}). Run on a host with KVM, or set TTVM_SKIP_KVM=1 to skip KVM tests explicitly.");
    }
    true
}

/// The ttvm binary under test.
pub fn ttvm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ttvm"));
    c.stdin(Stdio::null());
    c
}

/// Runs ttvm with `args`, returning its output.
pub fn run(args: &[&str]) -> Output {
    ttvm().args(args).output().expect("spawn ttvm")
}

/// stdout and stderr as one string, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Copies the trace `src` to `dst` chunk by chunk, letting `edit` change each chunk's raw
/// (decompressed) payload first; checksums are recomputed, so only replay can notice.
pub fn rewrite_trace(src: &Path, dst: &Path, mut edit: impl FnMut(ttvm_replay::trace::ChunkKind, &mut Vec<u8>)) {
    use ttvm_replay::trace::{ChunkKind, EndRecord, TraceFile, TraceWriter};
    let t = TraceFile::open(src).expect("open the trace to rewrite");
    let mut w = TraceWriter::create(dst, &t.header).expect("create the rewritten trace");
    for c in &t.chunks {
        let mut raw = t.payload(c).expect("chunk payload").into_owned();
        edit(c.kind, &mut raw);
        if c.kind == ChunkKind::End {
            let end: EndRecord = bincode::deserialize(&raw).expect("end record");
            w.finish(&end).expect("finish");
        } else {
            w.write_chunk(c.kind, &raw, true).expect("write chunk");
        }
    }
}
