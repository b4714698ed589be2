//! Linux with its own virtio_blk driver on ttvm's disk: Debian's kernel boots with the
//! free engine to an initramfs whose /init loads Debian's virtio, virtio_ring,
//! virtio_pci(_legacy_dev, _modern_dev) and virtio_blk modules, reads sector 0 of /dev/vda
//! and writes sector 1. The boot takes many minutes of emulated ring 0 on these hosts, so
//! it runs only with `TTVM_LONG_TESTS=1`; by default only the init is compiled.

mod common;
mod linux_support;

use std::ffi::OsStr;

#[test]
fn linux_reads_and_writes_the_virtio_disk() {
    if !common::require_kvm("linux_reads_and_writes_the_virtio_disk") {
        return;
    }
    let dir = common::tempdir();
    if std::env::var("TTVM_LONG_TESTS").as_deref() != Ok("1") {
        linux_support::build_init_from("disk_init.c", &dir.path().join("disk-init"));
        eprintln!("linux_reads_and_writes_the_virtio_disk: init built; the boot runs only with TTVM_LONG_TESTS=1");
        return;
    }
    let k = linux_support::debian_kernel();
    let version = k.bzimage.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    let root = k.bzimage.parent().unwrap().parent().unwrap();
    let modules = root.join("lib/modules").join(&version).join("kernel");
    let initrd = linux_support::build_disk_initramfs(dir.path(), &modules);
    let image: Vec<u8> = (0..128 * 512).map(|i| (i % 253) as u8).collect();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, &image).unwrap();
    let args: [&OsStr; 8] = [
        "run".as_ref(),
        k.bzimage.as_os_str(),
        "--initrd".as_ref(),
        initrd.as_os_str(),
        "--disk".as_ref(),
        img.as_os_str(),
        "--timeout".as_ref(),
        "7200".as_ref(),
    ];
    let started = std::time::Instant::now();
    let w = linux_support::run_until(&args, |_| false);
    let out = w.text();
    eprintln!("linux_reads_and_writes_the_virtio_disk: {:.0} s", started.elapsed().as_secs_f64());
    assert_eq!(w.status, Some(0), "the init reboots the machine: {out}");
    for m in ["virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk"] {
        assert!(out.contains(&format!("TTVM-DISK: insmod /m/{m}.ko ok")), "{m}: {out}");
    }
    let sum: u64 = image[..512].iter().map(|&b| u64::from(b)).sum();
    assert!(out.contains(&format!("TTVM-DISK: sector 0 sum={sum:#018x}")), "{out}");
    assert!(out.contains("TTVM-DISK: wrote sector 1"), "{out}");
    let after = std::fs::read(&img).unwrap();
    let marker: Vec<u8> = (0..512).map(|i| b"TTVM was here. "[i % 15]).collect();
    assert_eq!(&after[512..1024], &marker[..], "Linux's write reached the image");
    assert_eq!(&after[..512], &image[..512]);
}
