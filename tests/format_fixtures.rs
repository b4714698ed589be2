//! Every trace format this ttvm ever wrote stays readable and replayable: the frozen
//! fixtures in tests/traces/formats/ (see its README) verify on the hosts they can replay
//! on, and are refused up front, with the reason and status 78, on the others. Nothing is
//! skipped: each fixture has exactly one expected outcome on this host.

mod common;

use std::path::PathBuf;

use common::{require_kvm, run, text};

/// (file, format version, CPUID vendor the guest saw).
const FIXTURES: &[(&str, u32, &str)] = &[
    ("v1-intel-hello.ttvm", 1, "GenuineIntel"),
    ("v1-amd-hello.ttvm", 1, "AuthenticAMD"),
    ("v2-intel-hello.ttvm", 2, "GenuineIntel"),
    ("v2-amd-hello.ttvm", 2, "AuthenticAMD"),
    ("v3-neutral-hello.ttvm", 3, "ttvm-neutral"),
    ("v4-neutral-hello.ttvm", 4, "ttvm-neutral"),
    ("v5-neutral-hello.ttvm", 5, "ttvm-neutral"),
    ("v6-neutral-hello.ttvm", 6, "ttvm-neutral"),
    // Recorded on an AMD EPYC: its checkpoints hold that CPU's MXCSR_MASK (0x0002ffff),
    // which replay shows the guest on every host (`ttvm_vmm::shown_fpu`).
    ("v7-neutral-hello.ttvm", 7, "ttvm-neutral"),
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/traces/formats").join(name)
}

fn host_vendor() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("vendor_id"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .expect("vendor_id in /proc/cpuinfo")
}

#[test]
fn every_format_is_read() {
    // No KVM needed: the header, chunks, events and checkpoints of every version decode.
    for &(name, version, vendor) in FIXTURES {
        let o = run(&["info", "--json", fixture(name).to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["format_version"], version, "{name}");
        assert_eq!(v["cpu_vendor"], vendor, "{name}");
        assert_eq!(v["steps"], 18606, "{name}");
        assert_eq!(v["exit_code"], 0, "{name}");
        assert_eq!(v["serial_output"], "ttvm-sample hello\r\nHello from ttvm!\r\ncmdline: fixture\r\n", "{name}");
        // Formats 3 on name their recording host.
        assert_eq!(v["recorded_on"].is_string(), version >= 3, "{name}: {}", v["recorded_on"]);
    }
}

#[test]
fn every_format_replays_where_it_can_and_is_refused_elsewhere() {
    if !require_kvm("every_format_replays_where_it_can_and_is_refused_elsewhere") {
        return;
    }
    let host = host_vendor();
    let mut verified = 0;
    for &(name, _, vendor) in FIXTURES {
        let path = fixture(name);
        let path = path.to_str().unwrap();
        let o = run(&["replay", "--verify", "-q", path]);
        if vendor == host || vendor == "ttvm-neutral" {
            assert_eq!(o.status.code(), Some(0), "{name} must verify on a {host} host: {}", text(&o));
            let o = run(&["check", path, "--expect-exit", "0", "--expect-output", "cmdline: fixture"]);
            assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
            verified += 1;
        } else {
            assert_eq!(o.status.code(), Some(78), "{name} must be refused on a {host} host: {}", text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("the CPUID model differs") && err.contains(vendor), "{name}: {}", text(&o));
        }
    }
    // Formats 1 and 2 of this host's vendor, whichever it is, and the neutral formats 3 to 7.
    assert_eq!(verified, 7, "fixtures verified on this {host} host");
}

/// The frozen `--save-state` snapshot of format 2 (tests/fixtures/timer-v2.snap, the
/// `timer ticks=100000` kernel stopped by `--timeout` after 980 ticks) still checks without
/// KVM and resumes where it stopped.
#[test]
fn the_snapshot_fixture_still_resumes() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timer-v2.snap");
    let bytes = std::fs::read(&path).expect("fixture");
    let state = ttvm_vmm::snapshot::check(&path, &bytes[..]).expect("format-2 snapshot reads");
    assert_eq!((state.mem_size, state.clock_slowdown), (128 << 20, 1));
    if !require_kvm("the_snapshot_fixture_still_resumes") {
        return;
    }
    let o = run(&["resume", path.to_str().unwrap(), "--timeout", "1"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(73), "stopped by --timeout: {}", text(&o));
    // The ticks go on from where the snapshot was taken, with no reboot.
    assert!(!out.contains("ttvm-sample timer"), "{}", text(&o));
    assert!(out.contains("tick 990"), "{}", text(&o));
}

/// The frozen format-4 disk trace (`disk` kernel, `read=0:4 write=2:3 read=0:8 read=60:4`
/// over a 64-sector image, see the README): its disk blocks and writes are inline in the
/// events, as format 4 wrote them; it still reads, verifies and gives back the disk.
#[test]
fn the_format_4_disk_fixture_reads_replays_and_gives_the_disk_back() {
    let path = fixture("v4-neutral-disk.ttvm");
    let path = path.to_str().unwrap();
    let o = run(&["info", "--json", path]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["format_version"], 4);
    assert_eq!(v["steps"], 140619);
    assert_eq!(v["page_store"]["disk_pages"], 0, "format 4 keeps disk data in the events");

    // The disk at the end, without the image: the blocks it read (0 and 7) and the write.
    let dir = common::tempdir();
    let out = dir.path().join("end.img");
    let o = run(&["disk", path, "--at", "140619", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let disk = std::fs::read(&out).unwrap();
    assert_eq!(disk.len(), 64 * 512);
    for (i, &b) in disk.iter().enumerate() {
        let s = i / 512;
        let want = match s {
            2..=4 => ((s * 7 + i % 512) % 251) as u8,
            0..=7 | 56..=63 => ((i * 13 + s) % 256) as u8,
            _ => 0,
        };
        assert_eq!(b, want, "byte {i}");
    }

    if !require_kvm("the_format_4_disk_fixture_reads_replays_and_gives_the_disk_back") {
        return;
    }
    let o = run(&["replay", "--verify", "-q", path]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["check", path, "--expect-exit", "0", "--expect-output", "disk: read 60:4"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
