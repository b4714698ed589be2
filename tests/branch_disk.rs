//! `ttvm branch` of a trace whose guest has a disk: the branch starts with the disk as it
//! was at the branch point, taken from the trace alone (or from the parent's image for
//! sectors the parent never touched), and its own trace holds what it needs to replay.
//! The guest is the `disk` sample kernel.

mod common;

use std::path::Path;

use common::{require_kvm, run, text};

const SECTORS: usize = 64;
const OPS: &str = "read=0:4 write=2:3 read=0:8 read=60:4";

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The step at which the console line starting with `prefix` was printed
/// (`ttvm info --console`: `  ICOUNT | line`).
fn console_step(trace: &str, prefix: &str) -> u64 {
    let console = ok(&run(&["info", "--console", trace]));
    console
        .lines()
        .find_map(|l| {
            let (step, line) = l.split_once(" | ")?;
            line.starts_with(prefix).then(|| step.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{console}"))
}

fn steps(trace: &str) -> u64 {
    let o = run(&["info", "--json", trace]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    v["steps"].as_u64().expect("steps")
}

/// Lines of `out` that the kernel prints for its disk operations.
fn disk_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("disk: read") || l.starts_with("disk: wrote")).collect()
}

fn make_image(dir: &Path) -> (String, Vec<u8>) {
    let bytes: Vec<u8> = (0..SECTORS * 512).map(|i| ((i * 13 + i / 512) % 256) as u8).collect();
    let path = dir.join("disk.img");
    std::fs::write(&path, &bytes).unwrap();
    (path.to_str().unwrap().to_string(), bytes)
}

#[test]
fn a_branch_of_a_disk_trace_goes_on_with_the_disk_as_it_was() {
    if !require_kvm("a_branch_of_a_disk_trace_goes_on_with_the_disk_as_it_was") {
        return;
    }
    let dir = common::tempdir();
    let (img, image) = make_image(dir.path());
    let parent = dir.path().join("parent.ttvm");
    let p = parent.to_str().unwrap();
    let parent_out = ok(&run(&["record", "disk", "--disk", &img, "--cmdline", OPS, "-o", p]));
    let parent_lines = disk_lines(&parent_out);
    assert_eq!(parent_lines.len(), 4, "{parent_out}");

    // After the write: the branch reads back the parent's write and block 7, which the
    // parent read only after the branch point, all from the trace (no image given).
    let at = console_step(p, "disk: wrote 2:3") + 1;
    let child = dir.path().join("child.ttvm");
    let c = child.to_str().unwrap();
    let out = ok(&run(&["branch", p, "--at", &at.to_string(), "-o", c]));
    assert_eq!(disk_lines(&out), parent_lines[2..], "the branch goes on as the parent did");

    // Its trace replays alone and holds the disk as the branch saw it: the parent's write
    // to sectors 2-4 is in the branch's first block although the branch never wrote it.
    let alone = common::tempdir();
    let moved = alone.path().join("child.ttvm");
    std::fs::copy(&child, &moved).unwrap();
    let m = moved.to_str().unwrap();
    ok(&run(&["replay", "--verify", "-q", m]));
    let out_img = alone.path().join("at-end.img");
    ok(&run(&["disk", m, "--at", &steps(m).to_string(), "-o", out_img.to_str().unwrap()]));
    let at_end = std::fs::read(&out_img).unwrap();
    for s in 2..5 {
        let expect: Vec<u8> = (0..512).map(|i| ((s * 7 + i) % 251) as u8).collect();
        assert_eq!(at_end[s * 512..(s + 1) * 512], expect[..], "sector {s} holds the parent's write");
    }
    assert_eq!(at_end[60 * 512..64 * 512], image[60 * 512..64 * 512], "block 7 as the image held it");

    // A parent cut before its last read never held sector 60: without the image the branch
    // stops before the device answers (its trace up to there replays); with it, it goes on.
    let cut = dir.path().join("cut.ttvm");
    let k = cut.to_str().unwrap();
    let limit = console_step(p, "disk: read 0:8") + 1;
    let o =
        run(&["record", "disk", "--disk", &img, "--cmdline", OPS, "-o", k, "-q", "--max-steps", &limit.to_string()]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let end = steps(k).to_string();
    let stuck = dir.path().join("stuck.ttvm");
    let o = run(&["branch", k, "--at", &end, "-o", stuck.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sector 60 is not in the parent trace") && err.contains("--disk FILE"), "{err}");
    ok(&run(&["replay", "--verify", "-q", stuck.to_str().unwrap()]));

    let full = dir.path().join("full.ttvm");
    let out = ok(&run(&["branch", k, "--at", &end, "-o", full.to_str().unwrap(), "--disk", &img]));
    assert_eq!(disk_lines(&out), parent_lines[3..], "sector 60 came from the image");
    ok(&run(&["replay", "--verify", "-q", full.to_str().unwrap()]));
    assert_eq!(std::fs::read(&img).unwrap(), image, "a branch never modifies the image");

    // An image the parent was not recorded from is refused before anything runs.
    let other = dir.path().join("other.img");
    let mut changed = image.clone();
    changed[100] ^= 0xff;
    std::fs::write(&other, &changed).unwrap();
    let never = dir.path().join("never.ttvm");
    let o = run(&["branch", k, "--at", &end, "-o", never.to_str().unwrap(), "--disk", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not the image the parent trace was recorded from (block 0"));

    // `--run` goes on freely with the same disk, kept in memory.
    let out = ok(&run(&["branch", p, "--at", &at.to_string(), "--run", "--timeout", "60"]));
    assert_eq!(disk_lines(&out), parent_lines[2..]);
    let o =
        run(&["branch", p, "--at", &at.to_string(), "--run", "--save-state", dir.path().join("s").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
