//! Disk-aware checkpoints (format 5, after VEE'11): a checkpoint page whose contents equal
//! a disk block the guest read or wrote is stored once, in the trace's page store, and the
//! disk events refer to it. Driven as a user does: `ttvm record --disk`, then `ttvm info
//! --json` (what the page store holds), `replay --verify`, `check` and `ttvm disk` on the
//! trace; the same recording with `TTVM_DISK_INLINE=1` (format 4's inline disk data) is
//! the baseline.

mod common;

use std::path::Path;

use common::{require_kvm, run, text};

const SECTORS: usize = 64;
/// Reads blocks 1-2 into the kernel's page-aligned buffer, then a partial write (sectors
/// 2-4, inline) and a whole-block write (block 5) through the buffer's first page: at the
/// end the buffer holds block 2 as read and block 5 as written.
const OPS: &str = "read=8:16 write=2:3 write=40:8";

/// An image of incompressible bytes (xorshift), so storing a block twice shows in bytes.
fn make_image(path: &Path) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..SECTORS * 512)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn info(trace: &Path) -> serde_json::Value {
    let o = run(&["info", "--json", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).expect("json")
}

fn record(img: &Path, trace: &Path, inline: bool) {
    let mut c = common::ttvm();
    if inline {
        c.env("TTVM_DISK_INLINE", "1");
    }
    let o = c
        .args([
            "record",
            "disk",
            "--disk",
            img.to_str().unwrap(),
            "--cmdline",
            OPS,
            "-q",
            "-o",
            trace.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_checkpoint_page_equal_to_a_disk_block_is_stored_once() {
    if !require_kvm("a_checkpoint_page_equal_to_a_disk_block_is_stored_once") {
        return;
    }
    let dir = common::tempdir();
    let img = dir.path().join("disk.img");
    let image = make_image(&img);
    let shared = dir.path().join("shared.ttvm");
    let inline = dir.path().join("inline.ttvm");
    record(&img, &shared, false);
    record(&img, &inline, true);

    let s = info(&shared);
    let i = info(&inline);
    assert_eq!(s["format_version"], ttvm_replay::trace::FORMAT_VERSION);
    assert_eq!(s["steps"], i["steps"], "the same guest run");
    let store = &s["page_store"];
    let n = |k: &str| store[k].as_u64().unwrap();
    // Blocks 1 and 2 read, block 5 written (the partial write is inline, not a page).
    assert_eq!(n("disk_pages"), 3, "{store}");
    // The final checkpoint's buffer holds block 2 as read and block 5 as written.
    assert!(n("shared") >= 2, "{store}");
    assert_eq!(n("pages"), n("checkpoint_pages") + n("disk_pages") - n("shared"), "each content once: {store}");
    assert_eq!(i["page_store"]["disk_pages"], 0);
    assert_eq!(i["page_store"]["checkpoint_pages"], store["checkpoint_pages"]);
    // Inline, the two incompressible blocks are in the events and again in a checkpoint.
    let (sb, ib) = (s["file_bytes"].as_u64().unwrap(), i["file_bytes"].as_u64().unwrap());
    assert!(ib >= sb + 2 * 4000, "inline {ib} bytes, shared {sb} bytes");

    let t = shared.to_str().unwrap();
    let o = run(&["replay", "--verify", "-q", t]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["check", t, "--expect-exit", "0", "--expect-output", "disk: wrote 40:8"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // The disk at the end, from the trace alone: the blocks read, the writes over them.
    let end = s["steps"].as_u64().unwrap().to_string();
    let out = dir.path().join("end.img");
    let o = run(&["disk", t, "--at", &end, "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let disk = std::fs::read(&out).unwrap();
    assert_eq!(disk.len(), SECTORS * 512);
    for (at, &b) in disk.iter().enumerate() {
        let s = at / 512;
        let want = match s {
            2..=4 | 40..=47 => ((s * 7 + at % 512) % 251) as u8,
            8..=23 => image[at],
            _ => 0,
        };
        assert_eq!(b, want, "byte {at} (sector {s})");
    }
    let o = run(&["disk", t, "--history", "44"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("sector 44: 1 write(s)"), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("sectors 40..47"), "{}", text(&o));
}
