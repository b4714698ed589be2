//! Every bit of a trace's framing is guarded (format 3): a single flipped bit anywhere in
//! the preamble, the header, any chunk header or the trailer is reported (an error, or a
//! trace no longer called finalised), never read as a valid trace. No KVM needed.

use std::path::Path;

use ttvm_replay::clock::ClockMode;
use ttvm_replay::trace::format::{kernel_hash, CHUNK_HEADER_LEN, PREAMBLE_LEN, TRAILER_LEN};
use ttvm_replay::trace::{ChunkKind, EndRecord, HostRecord, TraceFile, TraceHeader, TraceWriter};
use ttvm_vmm::cpuid::{CpuidModel, NEUTRAL_VENDOR};
use ttvm_vmm::machine::MachineConfig;

fn write_small_trace(path: &Path) {
    let machine = MachineConfig::new(b"\x7fELF a small kernel".to_vec(), "x=1");
    let header = TraceHeader {
        ttvm_version: "0.1.0".into(),
        kernel_name: "small".into(),
        kernel_hash: kernel_hash(&machine.kernel),
        cpuid: CpuidModel::for_vendor(NEUTRAL_VENDOR),
        stepping: "ttvm-step/1".into(),
        clock: ClockMode::Icount,
        ns_per_step: 10,
        checkpoint_every: 25_000,
        created_unix_secs: 0,
        machine,
        host: Some(HostRecord { cpu: "cpu".into(), undefined_flags: "flags/2".into() }),
        disk: None,
        lineage: None,
    };
    let mut w = TraceWriter::create(path, &header).unwrap();
    w.write_chunk(ChunkKind::Events, &[7u8; 40], true).unwrap();
    w.write_chunk(ChunkKind::Pages, &[1u8; 64], false).unwrap();
    w.finish(&EndRecord { final_icount: 5, stop: None, reason: "test".into(), final_digest: 9 }).unwrap();
}

/// Whether a reader notices the file is not the one written.
fn noticed(path: &Path) -> bool {
    match TraceFile::open(path) {
        Err(_) => true,
        Ok(t) => !t.finalised || t.recovery_note.is_some(),
    }
}

#[test]
fn every_framing_bit_flip_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.ttvm");
    write_small_trace(&good);
    let bytes = std::fs::read(&good).unwrap();
    let t = TraceFile::open(&good).expect("the unflipped trace reads");
    assert!(t.finalised && t.recovery_note.is_none());
    assert_eq!(t.chunks.len(), 3, "events, pages, end (the index is not listed)");

    // Framing: preamble + header, every chunk header (index included), the trailer.
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut ranges: Vec<std::ops::Range<usize>> = std::iter::once(0..PREAMBLE_LEN + header_len).collect();
    let index_offset = u64::from_le_bytes(bytes[bytes.len() - TRAILER_LEN..bytes.len() - 8].try_into().unwrap());
    for off in t.chunks.iter().map(|c| c.offset).chain([index_offset]) {
        ranges.push(off as usize..off as usize + CHUNK_HEADER_LEN);
    }
    ranges.push(bytes.len() - TRAILER_LEN..bytes.len());

    let flipped = dir.path().join("flipped.ttvm");
    let (mut tried, mut missed) = (0, Vec::new());
    for r in ranges {
        for i in r {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                std::fs::write(&flipped, &b).unwrap();
                tried += 1;
                if !noticed(&flipped) {
                    missed.push((i, bit));
                }
            }
        }
    }
    assert!(tried > 2000, "only {tried} flips tried");
    assert!(
        missed.is_empty(),
        "{} of {tried} flips went unnoticed, e.g. byte/bit {:?}",
        missed.len(),
        &missed[..missed.len().min(10)]
    );
    eprintln!("every one of {tried} framing bit flips was noticed");
}
