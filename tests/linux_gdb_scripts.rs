//! Issue 19 item 4: the gdb scripts kernel developers already use, Linux's own
//! `vmlinux-gdb.py` (`linux_support::gdb_scripts`: scripts/gdb from Debian's
//! linux-source-6.1, constants.py generated from the kernel's headers), against a replay of
//! Debian's kernel with its -dbg vmlinux: `lx-dmesg` at two points of history shows the log
//! as it was at each, `lx-version`, `$lx_current()` (which needs `monitor info version`),
//! `lx-cpus`, `lx-ps`, `lx-lsmod` and `lx-symbols` run. With `TTVM_LONG_TESTS=1` (minutes
//! of free boot), a recording of init loading two of Debian's modules: `lx-symbols`
//! follows the loads through the replay and `lx-lsmod` lists them at the end only.

mod common;
#[path = "gdb/harness.rs"]
mod harness;
mod linux_support;

use std::ffi::OsStr;

use harness::mark;

const STEPS: u64 = 3_000_000;

#[test]
fn linux_gdb_scripts_read_the_kernel_at_any_point_of_history() {
    if !common::require_kvm("linux_gdb_scripts_read_the_kernel_at_any_point_of_history") {
        return;
    }
    let k = linux_support::debian_kernel();
    let dbg = linux_support::debian_debug_files(&k);
    let scripts = linux_support::gdb_scripts::linux_gdb_scripts(&k);
    let dir = common::tempdir();
    let trace = linux_support::record_boot(&k, dir.path(), STEPS);
    // lx-symbols reloads the kernel's symbols from the objfile named "vmlinux".
    let vmlinux = dir.path().join("vmlinux");
    std::os::unix::fs::symlink(&dbg.vmlinux, &vmlinux).expect("symlink vmlinux");
    std::env::set_var("TTVM_LX_BUILD_DIR", dir.path());
    std::env::set_var("TTVM_LX_EARLY", "45000");
    std::env::set_var("TTVM_LX_LATE", STEPS.to_string());
    let server = harness::serve(&trace, &[]);
    let source = format!("source {}", scripts.join("vmlinux-gdb.py").display());
    let out = harness::gdb_with(&server, &[&source], "linux_lx.py", Some(&vmlinux));
    let dmesg = mark(&out, "dmesg");
    let (early, late) = (harness::hex(&dmesg[0]), harness::hex(&dmesg[1]));
    assert!(early > 0 && late > early, "the log grows between the two points: {dmesg:?}\n{out}");
    assert_eq!(dmesg[2], "prefix", "the earlier log is the start of the later one\n{out}");
    assert!(out.contains("EARLY-LAST [    0.000000] Linux version 6.1"), "the banner, logged first\n{out}");
    assert_eq!(mark(&out, "version"), ["linux"], "{out}");
    assert_eq!(mark(&out, "server"), ["ttvm"], "monitor info version names ttvm\n{out}");
    assert_eq!(mark(&out, "current"), ["comm=swapper"], "$lx_current() is init_task this early\n{out}");
    assert_eq!(mark(&out, "cpus"), ["ok"], "{out}");
    assert_eq!(mark(&out, "ps")[1], "swapper", "init_task is listed\n{out}");
    assert_eq!(mark(&out, "lsmod"), ["ok"], "{out}");
    assert_eq!(mark(&out, "symbols"), ["ok"], "{out}");
}

/// An initramfs whose /init (`disk_init.c`) announces itself, loads virtio.ko and
/// virtio_ring.ko (the other modules it names are absent) and, without a disk, reboots.
fn two_module_initramfs(dir: &std::path::Path, modules: &std::path::Path) -> std::path::PathBuf {
    let init = dir.join("disk-init");
    linux_support::build_init_from("disk_init.c", &init);
    let mut w = linux_support::cpio::Writer::new();
    w.directory("dev", 0o755);
    w.char_device("dev/console", 0o600, 5, 1);
    w.directory("m", 0o755);
    for (name, rel) in [("virtio.ko", "drivers/virtio/virtio.ko"), ("virtio_ring.ko", "drivers/virtio/virtio_ring.ko")]
    {
        let data = std::fs::read(modules.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        w.file(&format!("m/{name}"), 0o644, &data);
    }
    w.file("init", 0o755, &std::fs::read(&init).expect("read the built init"));
    let path = dir.join("modules.cpio");
    std::fs::write(&path, w.finish()).expect("write the initramfs");
    path
}

#[test]
fn linux_gdb_scripts_follow_module_loads_through_a_replay() {
    if !common::require_kvm("linux_gdb_scripts_follow_module_loads_through_a_replay") {
        return;
    }
    if std::env::var("TTVM_LONG_TESTS").as_deref() != Ok("1") {
        eprintln!(
            "linux_gdb_scripts_follow_module_loads_through_a_replay: booting Linux to init takes \
             minutes and runs only with TTVM_LONG_TESTS=1"
        );
        return;
    }
    let k = linux_support::debian_kernel();
    let dbg = linux_support::debian_debug_files(&k);
    let scripts = linux_support::gdb_scripts::linux_gdb_scripts(&k);
    let version = k.package.trim_start_matches("linux-image-");
    let root = k.bzimage.parent().and_then(|b| b.parent()).expect("the package root");
    let modules = root.join("lib/modules").join(version);
    let dir = common::tempdir();
    let initrd = two_module_initramfs(dir.path(), &modules.join("kernel"));
    let trace = dir.path().join("modules.ttvm");
    let args: [&OsStr; 10] = [
        "run".as_ref(),
        k.bzimage.as_os_str(),
        "--initrd".as_ref(),
        initrd.as_os_str(),
        "--record-from-output".as_ref(),
        "TTVM-DISK: init running".as_ref(),
        "-o".as_ref(),
        trace.as_os_str(),
        "--timeout".as_ref(),
        "3600".as_ref(),
    ];
    let started = std::time::Instant::now();
    let w = linux_support::run_until(&args, |_| false);
    eprintln!("booted and recorded in {:.0} s", started.elapsed().as_secs_f64());
    assert_eq!(w.status, Some(0), "init reboots after its modules:\n{}", w.text());
    assert!(w.stdout.contains("insmod /m/virtio_ring.ko ok"), "{}", w.text());

    let vmlinux = dir.path().join("vmlinux");
    std::os::unix::fs::symlink(&dbg.vmlinux, &vmlinux).expect("symlink vmlinux");
    std::env::set_var("TTVM_LX_BUILD_DIR", dir.path());
    std::env::set_var("TTVM_LX_MODULES", &modules);
    let server = harness::serve(&trace, &[]);
    let source = format!("source {}", scripts.join("vmlinux-gdb.py").display());
    let started = std::time::Instant::now();
    let out = harness::gdb_with(&server, &[&source], "linux_lx_modules.py", Some(&vmlinux));
    eprintln!("gdb session (replay to the end) in {:.0} s", started.elapsed().as_secs_f64());
    assert_eq!(mark(&out, "start-modules"), ["0"], "no module is loaded when init starts\n{out}");
    assert_eq!(mark(&out, "symbols"), ["ok"], "{out}");
    assert_eq!(
        mark(&out, "loaded-on-the-way"),
        ["virtio.ko,virtio_ring.ko", "ok"],
        "lx-symbols' breakpoint loads each module as the replay passes its load\n{out}"
    );
    assert_eq!(mark(&out, "end"), ["yes"], "{out}");
    assert_eq!(mark(&out, "end-modules"), ["virtio,virtio_ring"], "{out}");
    assert_eq!(mark(&out, "module-symbol"), ["virtio.ko"], "{out}");
}
