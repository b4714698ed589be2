//! The virtio-blk disk as a user drives it: `ttvm run --disk` writes the image, `ttvm
//! record --disk` never modifies it and its trace replays without it, and a trace whose
//! disk history was edited diverges. The guest is the `disk` sample kernel (its own
//! virtio-blk driver), whose output the tests compute independently from the image.

mod common;

use std::path::{Path, PathBuf};

use common::{require_kvm, rewrite_trace, run, text};
use ttvm_replay::event_log::EVENTS_HEADER_LEN;
use ttvm_replay::events::{encode, Decoder, EventKind};
use ttvm_replay::recording::Recording;
use ttvm_replay::trace::ChunkKind;

const SECTORS: usize = 64;
const OPS: &str = "read=0:4 write=2:3 read=0:8 read=60:4";

/// A 64-sector image whose bytes are all distinct enough to notice a wrong sector.
fn make_image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let bytes: Vec<u8> = (0..SECTORS * 512).map(|i| ((i * 13 + i / 512) % 256) as u8).collect();
    let path = dir.join("disk.img");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// The image after the kernel's `write=2:3`: byte i of sector s is (s*7 + i) % 251.
fn after_writes(image: &[u8]) -> Vec<u8> {
    let mut out = image.to_vec();
    for s in 2..5 {
        for i in 0..512 {
            out[s * 512 + i] = ((s * 7 + i) % 251) as u8;
        }
    }
    out
}

fn sum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |a, &b| a.wrapping_add(u32::from(b)))
}

/// What the kernel prints for OPS over `image`.
fn expected_lines(image: &[u8]) -> Vec<String> {
    let after = after_writes(image);
    vec![
        format!("disk: read 0:4 sum={:#010x}", sum(&image[..4 * 512])),
        "disk: wrote 2:3".to_string(),
        format!("disk: read 0:8 sum={:#010x}", sum(&after[..8 * 512])),
        format!("disk: read 60:4 sum={:#010x}", sum(&after[60 * 512..64 * 512])),
    ]
}

fn assert_lines(stdout: &str, image: &[u8]) {
    for line in expected_lines(image) {
        assert!(stdout.contains(&line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn run_with_a_disk_writes_the_image() {
    if !require_kvm("run_with_a_disk_writes_the_image") {
        return;
    }
    let dir = common::tempdir();
    let (img, before) = make_image(dir.path());
    let o = run(&["run", "disk", "--disk", img.to_str().unwrap(), "--cmdline", OPS, "--timeout", "60"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("disk: virtio-blk at 00:01.0, io 0xc000, irq 11"), "{stdout}");
    assert!(stdout.contains("disk: capacity 64 sectors"), "{stdout}");
    assert_lines(&stdout, &before);
    assert!(std::fs::read(&img).unwrap() == after_writes(&before), "run --disk writes through to the image");
}

#[test]
fn record_never_modifies_the_image_and_replay_needs_none() {
    if !require_kvm("record_never_modifies_the_image_and_replay_needs_none") {
        return;
    }
    let dir = common::tempdir();
    let (img, before) = make_image(dir.path());
    let traces: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("disk{i}.ttvm"))).collect();
    for t in &traces {
        // Checkpoints close together, so one falls between the write and the read after it.
        let o = run(&[
            "record",
            "disk",
            "--disk",
            img.to_str().unwrap(),
            "--cmdline",
            OPS,
            "--checkpoint-every",
            "500",
            "-o",
            t.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert_lines(&String::from_utf8_lossy(&o.stdout), &before);
        assert!(std::fs::read(&img).unwrap() == before, "record left the image as it was");
    }
    // The trace is the disk's history: without the image, it still verifies.
    std::fs::remove_file(&img).unwrap();
    let t = traces[0].to_str().unwrap();
    let o = run(&["replay", "--verify", "-q", t]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let last = expected_lines(&before).pop().unwrap();
    let o = run(&["check", t, "--expect-exit", "0", "--expect-output", &regex_escape(&last)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Completions are placed by icount, not by the host: both recordings did each disk
    // event at the same step, and the trace holds the blocks read (block 0 and block 7),
    // once each, and the write.
    let disk_events = |p: &Path| -> Vec<(u64, EventKind)> {
        let rec = Recording::open(p).unwrap();
        rec.events
            .iter()
            .filter(|e| matches!(e.kind.class(), ttvm_replay::events::EventClass::Disk))
            .map(|e| (e.icount, e.kind.clone()))
            .collect()
    };
    let (a, b) = (disk_events(&traces[0]), disk_events(&traces[1]));
    assert_eq!(a, b, "two recordings complete the same requests at the same icounts");
    let blocks: Vec<u64> = a
        .iter()
        .filter_map(|(_, k)| match k {
            EventKind::DiskBlock { block, .. } => Some(*block),
            _ => None,
        })
        .collect();
    assert_eq!(blocks, vec![0, 7], "each block the guest read from the image, once");
    let writes: Vec<&EventKind> =
        a.iter().map(|(_, k)| k).filter(|k| matches!(k, EventKind::DiskWrite { .. })).collect();
    assert!(
        matches!(writes[..], [EventKind::DiskWrite { sector: 2, data }] if data[..] == after_writes(&before)[1024..2560]),
        "{writes:?}"
    );
    let info = run(&["info", t]);
    let info = String::from_utf8_lossy(&info.stdout);
    let version = format!("format version {}", ttvm_replay::trace::FORMAT_VERSION);
    assert!(info.contains(&version) && info.contains("disk "), "{info}");
    assert!(
        info.contains(
            "disk:        virtio-blk over disk.img, 64 sectors (32 KiB); the trace holds 2 blocks read and 1 writes"
        ),
        "{info}"
    );

    // The disk at any instant, from the trace alone: before the write completed it is the
    // image (the blocks the guest read; the rest zero), after it the image with the write.
    let write_at = a.iter().find(|(_, k)| matches!(k, EventKind::DiskWrite { .. })).unwrap().0;

    // A replay that starts at a checkpoint after the write rebuilds the disk the trace held
    // then: the read of sectors 0..8 after it must see the written sectors 2..4.
    let rec = Recording::open(&traces[0]).unwrap();
    let k = rec.checkpoints.iter().position(|c| c.engine.icount > write_at).unwrap();
    let from = rec.checkpoints[k].engine.icount;
    let read_at = a.iter().find(|(_, e)| matches!(e, EventKind::DiskRead { sector: 0, sectors: 8 })).unwrap().0;
    assert!(write_at < from && from < read_at, "checkpoint {k} at {from}: write at {write_at}, read at {read_at}");
    assert!(rec.checkpoints[k].disk.is_some(), "checkpoints hold the device");
    let o = run(&["replay", "--verify", "-q", t, "--from-checkpoint", &k.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let at = |icount: u64, base: Option<&Path>| -> Vec<u8> {
        let out = dir.path().join(format!("at-{icount}.img"));
        let n = icount.to_string();
        let mut args = vec!["disk", t, "--at", &n, "-o", out.to_str().unwrap()];
        if let Some(b) = base {
            args.extend(["--base", b.to_str().unwrap()]);
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        std::fs::read(out).unwrap()
    };
    let before_write = at(write_at, None);
    assert_eq!(&before_write[..8 * 512], &before[..8 * 512], "block 0, from the trace");
    assert_eq!(&before_write[56 * 512..], &before[56 * 512..], "block 7, from the trace");
    assert!(before_write[8 * 512..56 * 512].iter().all(|&b| b == 0), "blocks never read are zero");
    let base = dir.path().join("base.img");
    std::fs::write(&base, &before).unwrap();
    assert!(at(write_at, Some(&base)) == before);
    assert!(at(write_at + 1, Some(&base)) == after_writes(&before));

    // Who wrote sector 3: the request the kernel's driver queued, found by replaying to it.
    let elf = common::kernel_path("disk");
    let o = run(&["disk", t, "--history", "3", "--symbols", elf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("sector 3: 1 write(s)"), "{out}");
    assert!(out.contains(&format!("icount {write_at:>12}  sectors 2..4  queued at icount")), "{out}");
    assert!(out.contains("Device7request"), "the queueing function is named: {out}");
    let o = run(&["disk", t, "--history", "40"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("sector 40: never written"), "{}", text(&o));
}

/// Escapes a line for `--expect-output`, a regex.
fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() || c == ' ' { vec![c] } else { vec!['\\', c] }).collect()
}

/// Copies `src` to `dst` with `edit` applied to every disk event.
fn edit_disk_events(src: &Path, dst: &Path, mut edit: impl FnMut(&mut EventKind) -> bool) -> bool {
    let mut edited = false;
    rewrite_trace(src, dst, |kind, raw| {
        if kind != ChunkKind::Events {
            return;
        }
        let base = u64::from_le_bytes(raw[0..8].try_into().unwrap());
        let mut d = Decoder::new(&raw[EVENTS_HEADER_LEN..], base);
        let mut out = raw[..EVENTS_HEADER_LEN].to_vec();
        let mut prev = base;
        while let Some(mut e) = d.next_event().unwrap() {
            edited |= edit(&mut e.kind);
            encode(&mut out, &e, prev);
            prev = e.icount;
        }
        *raw = out;
    });
    edited
}

#[test]
fn edited_disk_history_is_a_divergence() {
    if !require_kvm("edited_disk_history_is_a_divergence") {
        return;
    }
    let dir = common::tempdir();
    let (img, _) = make_image(dir.path());
    let good = dir.path().join("good.ttvm");
    // Disk data inline in the events (format 4's encoding, which format 5 still reads), so
    // editing an event edits the disk history alone: in the page store a block's contents
    // may also be a checkpoint page (tests/disk_checkpoints.rs covers that encoding).
    let o = common::ttvm()
        .env("TTVM_DISK_INLINE", "1")
        .args(["record", "disk", "--disk", img.to_str().unwrap(), "--cmdline", OPS, "-q", "-o", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A block the guest read, changed: the guest sums other bytes and prints another line.
    let read_edited = dir.path().join("read-edited.ttvm");
    assert!(edit_disk_events(&good, &read_edited, |k| match k {
        EventKind::DiskBlock { block: 0, data } => {
            data[5] ^= 0x40;
            true
        }
        _ => false,
    }));
    let o = run(&["replay", "--verify", "-q", read_edited.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    // The first thing that differs is a digit of the sum the kernel prints on COM1.
    assert!(String::from_utf8_lossy(&o.stderr).contains("out port 0x03f8"), "{}", text(&o));

    // A write whose recorded data is not what the guest wrote.
    let write_edited = dir.path().join("write-edited.ttvm");
    assert!(edit_disk_events(&good, &write_edited, |k| match k {
        EventKind::DiskWrite { data, .. } => {
            data[0] ^= 1;
            true
        }
        _ => false,
    }));
    let o = run(&["replay", "--verify", "-q", write_edited.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("disk write sector 2 +3"), "{}", text(&o));

    // A block the recording never logged: replay cannot make it up.
    let block_dropped = dir.path().join("block-dropped.ttvm");
    assert!(edit_disk_events(&good, &block_dropped, |k| match k {
        EventKind::DiskBlock { block, .. } if *block == 7 => {
            *block = 6;
            true
        }
        _ => false,
    }));
    let o = run(&["replay", "--verify", "-q", block_dropped.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sector 60 was never read in the recording"), "{}", text(&o));
}

#[test]
fn a_missing_or_empty_image_is_bad_input() {
    let dir = common::tempdir();
    let missing = dir.path().join("nope.img");
    let trace = dir.path().join("t.ttvm");
    let record = ["record", "disk", "--disk", missing.to_str().unwrap(), "-o", trace.to_str().unwrap()];
    for args in [&["run", "disk", "--disk", missing.to_str().unwrap()][..], &record[..]] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open disk image"), "{}", text(&o));
    }
    let empty = dir.path().join("empty.img");
    std::fs::write(&empty, [0u8; 100]).unwrap();
    let o = run(&["run", "disk", "--disk", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least one 512-byte sector"), "{}", text(&o));
}

#[test]
fn a_snapshot_keeps_the_disk_device_and_resume_needs_its_image() {
    if !require_kvm("a_snapshot_keeps_the_disk_device_and_resume_needs_its_image") {
        return;
    }
    let dir = common::tempdir();
    let (img, before) = make_image(dir.path());
    let reference = dir.path().join("reference.img");
    std::fs::write(&reference, &before).unwrap();
    // Long enough (about 4 s) that a 0.5 s timeout stops it in the middle.
    let ops: String = (1..=30).map(|i| format!("write={}:32 read=0:64 ", i % 32)).collect();
    let snap = dir.path().join("s.snap");
    let o = run(&[
        "run",
        "disk",
        "--disk",
        img.to_str().unwrap(),
        "--cmdline",
        &ops,
        "--timeout",
        "0.5",
        "--save-state",
        snap.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(73), "the run must be cut by its timeout: {}", text(&o));
    let first = String::from_utf8_lossy(&o.stdout).into_owned();
    let o = run(&["resume", snap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the snapshot has a disk: give its image with --disk FILE"));
    let o = run(&["resume", snap.to_str().unwrap(), "--disk", img.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rest = String::from_utf8_lossy(&o.stdout).into_owned();
    // The two halves print what one uninterrupted run prints, and leave the same image.
    let o = run(&["run", "disk", "--disk", reference.to_str().unwrap(), "--cmdline", &ops]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ops_lines = |s: &str| -> Vec<String> {
        s.lines().filter(|l| l.starts_with("disk: read") || l.starts_with("disk: wrote")).map(str::to_owned).collect()
    };
    // The stop can fall inside a line: its start ends the first half, its rest begins the
    // second, so the halves are joined before they are split into lines.
    let halves = ops_lines(&format!("{first}{rest}"));
    assert_eq!(halves, ops_lines(&String::from_utf8_lossy(&o.stdout)), "first half:\n{first}\nsecond:\n{rest}");
    assert!(std::fs::read(&img).unwrap() == std::fs::read(&reference).unwrap(), "same image");
}
