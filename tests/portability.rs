//! A trace only replays on a host that gives the guest the same CPU and the same
//! single-step semantics; otherwise it is refused, saying which and why.

mod common;

use std::path::Path;

use common::{require_kvm, run, text};
use ttvm_replay::trace::{ChunkKind, TraceFile, TraceHeader, TraceWriter};

/// Copies a trace, changing its header.
fn rewrite_header(src: &Path, dst: &Path, edit: impl FnOnce(&mut TraceHeader)) {
    let t = TraceFile::open(src).unwrap();
    let mut header = t.header.clone();
    edit(&mut header);
    let mut w = TraceWriter::create(dst, &header).unwrap();
    for c in &t.chunks {
        let raw = t.payload(c).unwrap().into_owned();
        if c.kind == ChunkKind::End {
            w.finish(&bincode::deserialize(&raw).unwrap()).unwrap();
        } else {
            w.write_chunk(c.kind, &raw, true).unwrap();
        }
    }
}

#[test]
fn traces_from_another_cpu_or_stepping_semantics_are_refused() {
    if !require_kvm("traces_from_another_cpu_or_stepping_semantics_are_refused") {
        return;
    }
    let dir = common::tempdir();
    let good = dir.path().join("hello.ttvm");
    let o = run(&["record", "hello", "-q", "-o", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Recorded on "another vendor's" CPU.
    let other_cpu = dir.path().join("other-cpu.ttvm");
    let host_is_amd = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo").contains("AuthenticAMD");
    rewrite_header(&good, &other_cpu, |h| {
        let leaf0 = h.cpuid.leaves.iter_mut().find(|l| l.function == 0).unwrap();
        // "GenuineIntel" if the host is AMD, "AuthenticAMD" otherwise (the recorded leaf holds
        // the neutral vendor, which says nothing about the host).
        if host_is_amd {
            (leaf0.ebx, leaf0.edx, leaf0.ecx) = (0x756e_6547, 0x4965_6e69, 0x6c65_746e);
        } else {
            (leaf0.ebx, leaf0.edx, leaf0.ecx) = (0x6874_7541, 0x6974_6e65, 0x444d_4163);
        }
    });
    for cmd in ["replay", "check"] {
        let mut args = vec![cmd, other_cpu.to_str().unwrap()];
        if cmd == "replay" {
            args.push("--verify");
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(78), "{cmd}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("CPUID model differs") && err.contains("leaf 0x0.0"), "{cmd}: {}", text(&o));
    }

    // Recorded by a KVM that steps differently.
    let other_steps = dir.path().join("other-steps.ttvm");
    rewrite_header(&good, &other_steps, |h| h.stepping = "kvm-singlestep: iretq not merged".into());
    let o = run(&["replay", "--verify", other_steps.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("single-step semantics differ") && err.contains("iretq not merged"), "{}", text(&o));

    // The unmodified trace still replays: the refusals are about the headers alone.
    let o = run(&["replay", "--verify", "-q", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// The flags instructions leave undefined are the CPU's own under `ttvm run` and cleared
/// under `ttvm record` (format 3), so a recording does not depend on the CPU generation;
/// and sample kernels see the vendor-neutral CPU.
#[test]
fn recordings_canonicalise_undefined_flags_and_hide_the_vendor() {
    if !require_kvm("recordings_canonicalise_undefined_flags_and_hide_the_vendor") {
        return;
    }
    let dir = common::tempdir();
    let trace = dir.path().join("flagprobe.ttvm");
    let o = run(&["record", "flagprobe", "--cmdline", "rounds=2", "-o", trace.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for class in ["imul", "mul", "div", "bsf", "bsr", "bt", "shl", "sar", "rol", "shld", "and"] {
        assert!(out.contains(&format!("flags: {class} undefined=none")), "{class}: {}", text(&o));
    }
    assert!(out.contains("flags: canonical"), "{}", text(&o));
    let o = run(&["replay", "--verify", "-q", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let o = run(&["info", "--json", trace.to_str().unwrap()]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(info["cpu_vendor"], "ttvm-neutral");
    // Canonical flags since format 3; new recordings are of the current format.
    assert_eq!(info["format_version"], ttvm_replay::trace::FORMAT_VERSION);
    let host = info["recorded_on"].as_str().expect("the recording host is named");
    assert!(host.contains(" family ") && host.contains(" model "), "{host}");
    assert!(info["undefined_flags"].as_str().unwrap_or("").starts_with("flags/2 imul="), "{info}");

    // The free engine runs the same code natively: every class is reported, and the
    // verdict is the host's (this host may or may not leave bits set).
    let o = run(&["run", "flagprobe"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("flags: imul undefined=") && out.contains("flags: and undefined="), "{}", text(&o));
    match o.status.code() {
        Some(0) => assert!(out.contains("flags: canonical"), "{}", text(&o)),
        Some(1) => assert!(out.contains("flags: host-specific "), "{}", text(&o)),
        other => panic!("flagprobe under ttvm run exited {other:?}: {}", text(&o)),
    }
}
