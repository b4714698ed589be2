//! Recording the start of Debian's Linux boot with the exact engine and replaying it with
//! `--verify`: every port access, RDTSC/RDRAND value, checkpoint and the final state digest
//! must match. The first 3 million steps run Linux's PVH entry, `startup_64`, the BSS clear
//! and into `start_kernel`'s early setup (docs/LINUX.md has the step counts).

mod common;
mod linux_support;

const STEPS: &str = "3000000";

#[test]
fn linux_boot_records_and_replays_bit_for_bit() {
    if !common::require_kvm("linux_boot_records_and_replays_bit_for_bit") {
        return;
    }
    let k = linux_support::debian_kernel();
    let dir = common::tempdir();
    let trace = dir.path().join("linux.ttvm");
    let kernel = k.bzimage.to_str().expect("utf-8 path");
    let o = common::run(&["record", kernel, "--max-steps", STEPS, "-o", trace.to_str().unwrap(), "-q"]);
    let text = common::text(&o);
    assert_eq!(o.status.code(), Some(74), "step limit is exit status 74:\n{text}");
    assert!(text.contains(&format!("recorded {STEPS} steps")), "{text}");
    assert!(text.contains("step limit reached"), "{text}");

    let o = common::run(&["info", trace.to_str().unwrap()]);
    let info = common::text(&o);
    assert_eq!(o.status.code(), Some(0), "{info}");
    assert!(info.contains("console=ttyS0"), "the default Linux command line is in the header:\n{info}");
    assert!(
        info.contains("checkpoints: 121"),
        "the boot image, a checkpoint every 25000 steps before the limit and one at the last step:\n{info}"
    );

    let o = common::run(&["replay", "--verify", "-q", trace.to_str().unwrap()]);
    let text = common::text(&o);
    assert_eq!(o.status.code(), Some(0), "replay --verify failed:\n{text}");
    assert!(text.contains(&format!("verified {STEPS} steps")), "{text}");
}
