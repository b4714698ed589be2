//! Issue 22's Linux pair: two Debian kernels on one ttvm switch, each with its own
//! virtio_net driver (Debian's modules), exchange UDP datagrams from the test initramfs
//! (`net_init.c`): 10.0.0.1 sends "ping 1..3" (again each second until answered),
//! 10.0.0.2 answers each, both reboot. Two free Linux boots at once take many minutes
//! here, so only with `TTVM_LONG_TESTS=1`; the init is always built.

mod common;
mod linux_support;

use std::ffi::OsStr;

#[test]
fn two_linux_vms_exchange_udp_datagrams() {
    if !common::require_kvm("two_linux_vms_exchange_udp_datagrams") {
        return;
    }
    let dir = common::tempdir();
    if std::env::var("TTVM_LONG_TESTS").as_deref() != Ok("1") {
        linux_support::build_init_from("net_init.c", &dir.path().join("net-init"));
        eprintln!("two_linux_vms_exchange_udp_datagrams: init built; the boots run only with TTVM_LONG_TESTS=1");
        return;
    }
    let k = linux_support::debian_kernel();
    let initrd = linux_support::build_net_initramfs(dir.path(), &linux_support::modules_dir(&k));
    let vm: [&OsStr; 4] = ["--vm".as_ref(), k.bzimage.as_os_str(), "--initrd".as_ref(), initrd.as_os_str()];
    let mut args: Vec<&OsStr> = vec!["run".as_ref(), "--timeout".as_ref(), "5400".as_ref()];
    args.extend(vm);
    args.extend(vm);
    let started = std::time::Instant::now();
    let w = linux_support::run_until(&args, |_| false);
    eprintln!("two_linux_vms_exchange_udp_datagrams: {:.0} s", started.elapsed().as_secs_f64());
    let out = w.text();
    assert_eq!(w.status, Some(0), "both reboot:\n{out}");
    for line in [
        "[0 ",
        "TTVM-NET: 10.0.0.1 up",
        "TTVM-NET: 10.0.0.2 up",
        "TTVM-NET: answered ping 3",
        "TTVM-NET: pong 3 from 10.0.0.2",
        "TTVM-NET: 3 replies",
        "TTVM-NET: stopped",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    for k in 1..=3 {
        assert!(out.contains(&format!("TTVM-NET: pong {k} from 10.0.0.2")), "reply {k}:\n{out}");
    }
    assert!(!out.contains("FAILED"), "{out}");
}
