//! Issue 20's Linux workload: Debian's kernel with its own virtio_blk and ext4 modules
//! reads and writes files on ttvm's disk, recorded under the exact engine. The free engine
//! boots to the initramfs's /init (`ext4_init.c`), which loads the modules and mounts
//! /dev/vda; `--record-from-output` records from its `TTVM-EXT4: mounted` line through
//! the copies of four 256 KiB files, their fsyncs, the unmount and the reboot. The trace
//! verifies, `ttvm disk --at` rebuilds the image as the guest left it (the copies are
//! there, checked with debugfs), and the same recording made again from the trace's
//! first checkpoint with `TTVM_DISK_INLINE=1` (format 4's encoding) gives the checkpoint
//! bytes without disk-aware checkpoints (docs/PERFORMANCE.md). Minutes of free boot, so
//! only with `TTVM_LONG_TESTS=1`; the init, initramfs and image are always built.

mod common;
mod linux_support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// `debugfs -R "cat PATH" IMAGE`: a file's contents from an ext4 image.
fn file_in_image(image: &Path, path: &str) -> Vec<u8> {
    let o = Command::new("debugfs").arg("-R").arg(format!("cat {path}")).arg(image).output().expect("run debugfs");
    assert!(o.status.success(), "debugfs: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// A trace's `ttvm info --json`.
fn info(trace: &Path) -> serde_json::Value {
    let o = common::run(&["info", trace.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    serde_json::from_slice(&o.stdout).expect("info --json")
}

#[test]
fn linux_ext4_workload_is_recorded_with_its_disk_history() {
    if !common::require_kvm("linux_ext4_workload_is_recorded_with_its_disk_history") {
        return;
    }
    let dir = common::tempdir();
    let image = linux_support::build_ext4_image(dir.path());
    if std::env::var("TTVM_LONG_TESTS").as_deref() != Ok("1") {
        linux_support::build_init_from("ext4_init.c", &dir.path().join("ext4-init"));
        eprintln!("linux_ext4_workload: init and image built; the boot runs only with TTVM_LONG_TESTS=1");
        return;
    }
    let k = linux_support::debian_kernel();
    let version = k.bzimage.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    let modules = k.bzimage.parent().unwrap().parent().unwrap().join("lib/modules").join(&version).join("kernel");
    let initrd = linux_support::build_ext4_initramfs(dir.path(), &modules);
    let trace = dir.path().join("ext4.ttvm");
    let args: [&OsStr; 12] = [
        "run".as_ref(),
        k.bzimage.as_os_str(),
        "--initrd".as_ref(),
        initrd.as_os_str(),
        "--disk".as_ref(),
        image.as_os_str(),
        "--record-from-output".as_ref(),
        "TTVM-EXT4: mounted".as_ref(),
        "-o".as_ref(),
        trace.as_os_str(),
        "--timeout".as_ref(),
        "5400".as_ref(),
    ];
    let started = std::time::Instant::now();
    let w = linux_support::run_until(&args, |_| false);
    eprintln!("booted and recorded in {:.0} s", started.elapsed().as_secs_f64());
    let out = w.text();
    assert_eq!(w.status, Some(0), "init unmounts and reboots:\n{out}");
    for n in 0..4u64 {
        let data = linux_support::ext4_data_file(n);
        let first = u64::from_le_bytes(data[..8].try_into().unwrap());
        let line = format!("TTVM-EXT4: /mnt/data/f{n} first={first:#018x} bytes={:#018x}", data.len());
        assert!(out.contains(&line), "{line}\n{out}");
    }
    assert!(out.contains("TTVM-EXT4: copy0 first=0x7474766d00000000"), "{out}");
    assert!(out.contains("TTVM-EXT4: unmounted"), "{out}");

    let o = common::run(&[
        "check",
        trace.to_str().unwrap(),
        "--expect-exit",
        "0",
        "--expect-output",
        "TTVM-EXT4: unmounted",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));

    // The disk as the guest left it: the trace's writes over the image it started from.
    let recorded = info(&trace);
    let steps = recorded["steps"].as_u64().expect("steps");
    let after = dir.path().join("after.img");
    let o = common::run(&[
        "disk",
        trace.to_str().unwrap(),
        "--at",
        &steps.to_string(),
        "--base",
        image.to_str().unwrap(),
        "-o",
        after.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    for n in 0..4u64 {
        let mut want = linux_support::ext4_data_file(n);
        want[..8].copy_from_slice(&(0x7474_766d_0000_0000u64 | n).to_le_bytes());
        assert!(file_in_image(&after, &format!("/out/copy{n}")) == want, "copy{n} in the rebuilt image");
    }

    // The same recording with disk data inline (no disk-aware checkpoints): same guest run.
    let inline = dir.path().join("ext4-inline.ttvm");
    let o = common::ttvm()
        .env("TTVM_DISK_INLINE", "1")
        .args(["branch", trace.to_str().unwrap(), "--at", "0", "--disk", image.to_str().unwrap(), "-q", "-o"])
        .arg(&inline)
        .output()
        .expect("spawn ttvm");
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let inlined = info(&inline);
    assert_eq!(inlined["steps"], recorded["steps"], "the same run");
    for (name, t) in [("shared", &recorded), ("inline", &inlined)] {
        eprintln!("{name}: file {} chunks {} page store {}", t["file_bytes"], t["chunk_bytes"], t["page_store"]);
    }
    // Pages equal to a disk block are stored once (as the block) in the shared trace.
    assert!(recorded["page_store"]["shared"].as_u64().unwrap_or(0) > 0, "{}", recorded["page_store"]);
}
