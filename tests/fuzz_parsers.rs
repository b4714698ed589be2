//! Fuzzing everything that reads untrusted bytes: the trace reader and its decoders (header,
//! chunks, index, events, checkpoints, pages, end record), kernel loading (ELF and bzImage
//! headers), gdb packet framing and monitor commands. Mutation-based and deterministic
//! (seeded), on the stable toolchain: every input must give an answer (Ok or a typed
//! error), never a panic, and a few properties are checked on the way.
//!
//! The default suite runs a short pass; `TTVM_FUZZ_ITERS=N` sets the iterations of each
//! target (docs/FUZZING.md has the long runs and what they found). No KVM needed.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ttvm_replay::recording::Recording;
use ttvm_replay::trace::{ChunkKind, EndRecord, TraceFile, TraceWriter};

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Iterations per target: `default` unless TTVM_FUZZ_ITERS says otherwise.
fn iterations(default: usize) -> usize {
    std::env::var("TTVM_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Values that break length and offset arithmetic.
const INTERESTING: [u64; 10] = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 1 << 32, u64::MAX];

/// One random edit of `data`: flip bits, overwrite with an interesting value, truncate,
/// duplicate a slice, insert random bytes.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let n = [1, 2, 4, 8][rng.below(4)].min(len - i);
                data[i..i + n].copy_from_slice(&v[..n]);
            }
            2 if len > 0 => data.truncate(rng.below(len)),
            3 if len > 1 => {
                let a = rng.below(len);
                let b = a + rng.below((len - a).min(64));
                let at = rng.below(len);
                let piece = data[a..b].to_vec();
                data.splice(at..at, piece);
            }
            _ => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
        }
    }
}

/// Runs `f`, turning a panic into a test failure that names the input.
fn no_panic<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("?");
            let saved = std::env::temp_dir().join(format!("ttvm-fuzz-{what}.bin"));
            let _ = std::fs::write(&saved, input);
            panic!("{what}: panicked ({msg}) on an input of {} bytes, saved to {}", input.len(), saved.display());
        }
    }
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/traces/formats/v3-neutral-hello.ttvm")
}

/// Opens and decodes everything a trace holds, as `ttvm info` would.
fn read_all(path: &Path) -> Result<(), String> {
    let rec = Recording::open(path).map_err(|e| e.to_string())?;
    let _ = rec.counts();
    let _ = rec.console_lines();
    let _ = rec.serial_output_before(u64::MAX);
    let _ = rec.length();
    Ok(())
}

#[test]
fn fuzz_trace_files_with_random_damage() {
    let seed = std::fs::read(fixture()).expect("fixture");
    let dir = common::tempdir();
    let path = dir.path().join("t.ttvm");
    let mut rng = Rng(0x7474_766d_0001);
    let (n, mut opened) = (iterations(300), 0);
    for _ in 0..n {
        let mut data = seed.clone();
        // Damage near the framing more often than inside the large kernel image.
        if rng.below(2) == 0 {
            let keep = 64 + rng.below(4096);
            let tail = data.split_off(data.len().saturating_sub(keep));
            let mut t = tail;
            mutate(&mut rng, &mut t);
            data.extend_from_slice(&t);
        } else {
            mutate(&mut rng, &mut data);
        }
        std::fs::write(&path, &data).expect("write");
        if no_panic("trace-file", &data, || read_all(&path)).is_ok() {
            opened += 1;
        }
    }
    eprintln!("fuzz trace files: {n} inputs, {opened} still opened (a cut in the tail is a recoverable truncation)");
}

/// Structure-aware: decompressed chunk payloads are edited and the trace rewritten with
/// valid checksums, as a forger (or a buggy writer) would, so the decoders behind the
/// checksums see the damage.
#[test]
fn fuzz_chunk_payloads_behind_valid_checksums() {
    let t = TraceFile::open(&fixture()).expect("fixture");
    let chunks: Vec<(ChunkKind, Vec<u8>)> =
        t.chunks.iter().map(|c| (c.kind, t.payload(c).expect("payload").into_owned())).collect();
    let dir = common::tempdir();
    let path = dir.path().join("t.ttvm");
    let mut rng = Rng(0x7474_766d_0002);
    let (n, mut opened) = (iterations(300), 0);
    for _ in 0..n {
        let victim = rng.below(chunks.len());
        let mut w = TraceWriter::create(&path, &t.header).expect("create");
        let mut end = None;
        for (i, (kind, raw)) in chunks.iter().enumerate() {
            let mut raw = raw.clone();
            if i == victim {
                mutate(&mut rng, &mut raw);
            }
            if *kind == ChunkKind::End {
                end = Some(raw);
            } else {
                w.write_chunk(*kind, &raw, rng.below(2) == 0).expect("write chunk");
            }
        }
        if let Some(raw) = end {
            // A damaged end record that still decodes is finished normally; one that does
            // not is written raw, as a damaged file would have it.
            match bincode::deserialize::<EndRecord>(&raw) {
                Ok(e) => w.finish(&e).expect("finish"),
                Err(_) => {
                    w.write_chunk(ChunkKind::End, &raw, false).expect("write end");
                }
            }
        }
        drop(w);
        let data = std::fs::read(&path).expect("read back");
        if no_panic("chunk-payload", &data, || read_all(&path)).is_ok() {
            opened += 1;
        }
    }
    eprintln!("fuzz chunk payloads: {n} forged traces, {opened} decoded without an error");
}

#[test]
fn fuzz_kernel_images() {
    let elf = ttvm_sample_kernels::get("hello").expect("hello").elf.to_vec();
    // A bzImage-shaped seed: boot sector signature, "HdrS" at 0x202, a protocol version,
    // setup sectors and a payload offset, then some payload.
    let mut bz = vec![0u8; 0x4000];
    bz[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    bz[0x1f1] = 4;
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    bz[0x248..0x24c].copy_from_slice(&0x100u32.to_le_bytes());
    bz[0x24c..0x250].copy_from_slice(&0x200u32.to_le_bytes());
    let mut rng = Rng(0x7474_766d_0003);
    let n = iterations(2000);
    for i in 0..n {
        let mut data = if i % 2 == 0 { elf.clone() } else { bz.clone() };
        mutate(&mut rng, &mut data);
        no_panic("kernel-image", &data, || {
            let _ = ttvm_vmm::boot::prepare(&data);
        });
    }
    eprintln!("fuzz kernel images: {n} inputs");
}

#[test]
fn fuzz_gdb_packet_framing() {
    use ttvm_gdb::framing::{Framer, Item};
    let mut rng = Rng(0x7474_766d_0004);
    let seeds: [&[u8]; 4] = [b"$qSupported:multiprocess+#c6", b"$g#67", b"+$m1000,4#5e\x03$bc#c5-", b"$vCont;s#b8"];
    let n = iterations(3000);
    let mut packets = 0;
    for _ in 0..n {
        let mut data = seeds[rng.below(seeds.len())].repeat(1 + rng.below(3));
        mutate(&mut rng, &mut data);
        no_panic("gdb-framing", &data, || {
            let mut f = Framer::new(&data[..], 64);
            for _ in 0..data.len() + 2 {
                match f.next_item().expect("reading a slice cannot fail") {
                    Item::Eof => break,
                    Item::Packet(p) => {
                        // Property: only whole packets whose checksum is right get through.
                        assert!(p.first() == Some(&b'$') && p.len() >= 4 && p.len() <= 64, "{p:?}");
                        let body = &p[1..p.len() - 3];
                        let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
                        let hex =
                            std::str::from_utf8(&p[p.len() - 2..]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                        assert_eq!(hex, Some(sum), "{p:?}");
                        packets += 1;
                    }
                    _ => {}
                }
            }
        });
    }
    eprintln!("fuzz gdb framing: {n} byte streams, {packets} packets passed on");
}

#[test]
fn fuzz_monitor_commands() {
    let words = [
        "when",
        "goto",
        "checkpoints",
        "events",
        "info",
        "last-write",
        "serial",
        "help",
        "0x",
        "1000",
        "-1",
        "+",
        "0xffffffffffffffffff",
        "18446744073709551616",
        " ",
        "\t",
        "k",
        "",
        "ä",
        "$",
        "99999999999999999999",
    ];
    let mut rng = Rng(0x7474_766d_0005);
    let n = iterations(5000);
    for _ in 0..n {
        let mut text = String::new();
        for _ in 0..rng.below(5) {
            text.push_str(words[rng.below(words.len())]);
            if rng.below(2) == 0 {
                text.push(' ');
            }
        }
        let mut bytes = text.clone().into_bytes();
        if rng.below(4) == 0 {
            mutate(&mut rng, &mut bytes);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        no_panic("monitor", text.as_bytes(), || {
            let _ = ttvm_gdb::monitor::parse(&text);
            let _ = ttvm_gdb::monitor::parse_number(&text);
        });
    }
    eprintln!("fuzz monitor commands: {n} command lines");
}

#[test]
fn fuzz_snapshot_files() {
    use ttvm_vmm::snapshot::check;
    let seed = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timer-v2.snap"))
        .expect("snapshot fixture");
    let path = Path::new("fuzzed.snap");
    let state = check(path, &seed[..]).expect("the fixture itself checks");
    assert_eq!(state.mem_size, 128 << 20);
    let mut rng = Rng(0x7474_766d_0006);
    let (n, mut accepted) = (iterations(1000), 0);
    for _ in 0..n {
        let mut data = seed.clone();
        mutate(&mut rng, &mut data);
        if no_panic("snapshot", &data, || check(path, &data[..]).is_ok()) {
            accepted += 1;
        }
    }
    eprintln!("fuzz snapshots: {n} inputs, {accepted} accepted");
}
