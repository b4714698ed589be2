//! A replay that diverges says exactly what differs: every register by name (RFLAGS by
//! bit), the first differing RAM bytes with their guest-physical address, and for the end
//! of the history whether registers or RAM differ. Each case edits a real recorded trace
//! the way a different host would have left it, and runs `ttvm replay --verify`.

mod common;

use std::path::{Path, PathBuf};

use common::{require_kvm, rewrite_trace, run, text};
use ttvm_replay::checkpoint::{register_digest, CheckpointRecord};
use ttvm_replay::trace::{ChunkKind, EndRecord};

/// Records `memcorrupt work=5000` (73 351 steps, checkpoints at 0, 25 000, 50 000 and the
/// last step) into `dir`.
fn record(dir: &Path) -> PathBuf {
    let t = dir.join("memcorrupt.ttvm");
    let o = run(&["record", "memcorrupt", "--cmdline", "work=5000", "-q", "-o", t.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    t
}

/// Rewrites checkpoint `k` of `src` with `edit`, keeping its register digest consistent
/// with the edited registers (as a trace from another host would be).
fn edit_checkpoint(src: &Path, dst: &Path, k: u32, mut edit: impl FnMut(&mut CheckpointRecord)) {
    let mut done = false;
    rewrite_trace(src, dst, |kind, raw| {
        if kind != ChunkKind::Checkpoint {
            return;
        }
        let mut cp: CheckpointRecord = bincode::deserialize(raw).unwrap();
        if cp.index == k {
            edit(&mut cp);
            cp.register_digest = register_digest(&cp.vcpu);
            *raw = bincode::serialize(&cp).unwrap();
            done = true;
        }
    });
    assert!(done, "no checkpoint {k}");
}

/// `replay --verify` of `trace`: exit 75 and the report's `actual:` line.
fn diverges(trace: &Path) -> String {
    let o = run(&["replay", "--verify", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    err.lines()
        .find(|l| l.trim_start().starts_with("actual:"))
        .unwrap_or_else(|| panic!("no actual line: {err}"))
        .to_string()
}

#[test]
fn registers_are_named_and_rflags_by_bit() {
    if !require_kvm("registers_are_named_and_rflags_by_bit") {
        return;
    }
    let dir = common::tempdir();
    let good = record(dir.path());

    // What the Zen 4 host reported as "RIP, RSP, RAX equal": another CPU's IMUL leaving
    // other undefined flags. Only RFLAGS differs, in ZF and PF.
    let flags = dir.path().join("flags.ttvm");
    edit_checkpoint(&good, &flags, 1, |cp| cp.vcpu.regs.rflags ^= (1 << 6) | (1 << 2));
    let actual = diverges(&flags);
    assert!(actual.contains("state at checkpoint 1 does not match"), "{actual}");
    assert!(actual.contains("registers differ: RFLAGS"), "{actual}");
    assert!(actual.contains("(differ in PF ZF)"), "{actual}");
    assert!(!actual.contains("RAX") && !actual.contains("RIP"), "only what differs is named: {actual}");

    // Two general registers and an SSE register: all named, with both values.
    let regs = dir.path().join("regs.ttvm");
    edit_checkpoint(&good, &regs, 1, |cp| {
        cp.vcpu.regs.rax ^= 0x10;
        cp.vcpu.regs.r12 = 0x1234;
        cp.vcpu.xsave[40] ^= 1; // XMM0 starts at byte 160 of the FXSAVE area
    });
    let actual = diverges(&regs);
    assert!(
        actual.contains("RAX 0x") && actual.contains("R12 0x") && actual.contains("vs recorded 0x1234"),
        "{actual}"
    );
    assert!(actual.contains("XMM0 0x"), "{actual}");
    assert!(!actual.contains("RFLAGS"), "{actual}");
}

#[test]
fn ram_differences_show_the_address_and_both_byte_strings() {
    if !require_kvm("ram_differences_show_the_address_and_both_byte_strings") {
        return;
    }
    let dir = common::tempdir();
    let good = record(dir.path());
    // Point checkpoint 1's first dirty page at another page's contents.
    let ram = dir.path().join("ram.ttvm");
    let mut first_pfn = 0;
    edit_checkpoint(&good, &ram, 1, |cp| {
        first_pfn = cp.dirty_pages().unwrap().iter().next().unwrap();
        let blobs = cp.blobs.clone();
        let other = blobs.iter().copied().find(|&b| b != blobs[0]).expect("two different pages");
        cp.blobs[0] = other;
    });
    let actual = diverges(&ram);
    // The address is inside that page: "guest-physical 0x<pfn><3 hex digits>".
    let page = format!("guest-physical {:#x}", first_pfn);
    assert!(actual.contains("RAM pages differ, the first at ") && actual.contains(&page), "{actual}");
    // "a b c ... vs recorded d e f ...": 16 bytes each side, in hex.
    let (ours, theirs) = actual.split_once(" vs recorded ").expect("both byte strings");
    let bytes = |s: &str| s.split_whitespace().filter(|w| w.len() == 2 && u8::from_str_radix(w, 16).is_ok()).count();
    assert!(bytes(ours.rsplit(": ").next().unwrap()) >= 1 && bytes(theirs) >= 1, "{actual}");
    assert!(!actual.contains("registers differ"), "{actual}");
}

#[test]
fn the_end_of_history_names_what_differs() {
    if !require_kvm("the_end_of_history_names_what_differs") {
        return;
    }
    let dir = common::tempdir();
    let good = record(dir.path());
    let info = common::text(&run(&["info", "--json", good.to_str().unwrap()]));
    assert!(info.contains("\"icount\": 73351"), "format 3 keeps a checkpoint at the last step:\n{info}");

    // The final state: a register differs at the last step.
    let last = dir.path().join("last.ttvm");
    edit_checkpoint(&good, &last, 3, |cp| cp.vcpu.regs.rbx ^= 1);
    let actual = diverges(&last);
    assert!(actual.contains("state at checkpoint 3") && actual.contains("RBX"), "{actual}");

    // A final digest that disagrees with an otherwise matching final state: the trace
    // contradicts itself, and the report says so rather than blaming the replay.
    let digest = dir.path().join("digest.ttvm");
    rewrite_trace(&good, &digest, |kind, raw| {
        if kind == ChunkKind::End {
            let mut end: EndRecord = bincode::deserialize(raw).unwrap();
            end.final_digest ^= 1;
            *raw = bincode::serialize(&end).unwrap();
        }
    });
    let actual = diverges(&digest);
    assert!(actual.contains("final state digest") && actual.contains("damaged trace"), "{actual}");

    // The unedited trace verifies.
    let o = run(&["replay", "--verify", "-q", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_checkpoint_clock_in_another_mode_than_the_header_is_damage() {
    if !require_kvm("a_checkpoint_clock_in_another_mode_than_the_header_is_damage") {
        return;
    }
    let dir = common::tempdir();
    let good = record(dir.path());
    let edited = dir.path().join("realtime-clock.ttvm");
    // A realtime clock state that is valid on its own (no idle time, origin below last).
    edit_checkpoint(&good, &edited, 1, |cp| {
        cp.clock.mode = ttvm_replay::clock::ClockMode::Realtime;
        cp.clock.idle_ns = 0;
        cp.clock.origin_ns = 0;
    });
    let o = run(&["replay", "--verify", edited.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(76), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("checkpoint 1's clock is in Realtime mode but the header says Icount"), "{err}");
}
