//! Networked VMs as a user drives them: `ttvm run --vm KERNEL [options] --vm KERNEL …`
//! boots each VM on its own thread with a virtio-net card on one virtual switch. The
//! guests are the `ping` and `pong` sample kernels (their own virtio-net driver).

mod common;

use common::{require_kvm, run, text};

/// Lines of VM `index` (`[index name] line` on stdout), without the prefix.
fn lines_of(stdout: &str, index: usize, name: &str) -> Vec<String> {
    let prefix = format!("[{index} {name}] ");
    stdout.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_string).collect()
}

#[test]
fn ping_and_pong_exchange_every_round_and_both_exit_0() {
    if !require_kvm("ping_and_pong_exchange_every_round_and_both_exit_0") {
        return;
    }
    let rounds = 37;
    let cmdline = format!("rounds={rounds}");
    let o = run(&["run", "--timeout", "60", "--vm", "ping", "--cmdline", &cmdline, "--vm", "pong"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let ping = lines_of(&stdout, 0, "ping");
    let pong = lines_of(&stdout, 1, "pong");
    assert!(ping.contains(&"net: virtio-net at 00:02.0, io 0xc040, irq 10, mac 52:54:00:74:74:01".into()), "{ping:?}");
    assert!(pong.iter().any(|l| l.ends_with("mac 52:54:00:74:74:02")), "MAC by position: {pong:?}");
    assert_eq!(ping.last().map(String::as_str), Some(format!("ping: {rounds} replies").as_str()), "{}", text(&o));
    // pong answers 1..=rounds and then frame 0.
    assert_eq!(pong.last().map(String::as_str), Some(format!("pong: {} frames", rounds + 1).as_str()));
    assert!(stderr.contains("ttvm: VM 0 (ping): guest exited with status 0"), "{stderr}");
    assert!(stderr.contains("ttvm: VM 1 (pong): guest exited with status 0"), "{stderr}");
    let sent = 2 * (rounds + 1);
    assert!(
        stderr.contains(&format!("ttvm: switch: {sent} frames sent, {sent} delivered to ports, 0 dropped")),
        "{stderr}"
    );
}

#[test]
fn frames_reach_the_vm_whose_position_is_in_the_mac() {
    if !require_kvm("frames_reach_the_vm_whose_position_is_in_the_mac") {
        return;
    }
    // ping at position 0 sends to position 2 only; `hello` at 1 exits at once and never
    // sees a frame (a broadcast to it would be dropped and counted).
    let o = run(&[
        "run",
        "--timeout",
        "60",
        "--vm",
        "ping",
        "--cmdline",
        "rounds=5 peer=2",
        "--vm",
        "hello",
        "--vm",
        "pong",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(lines_of(&stdout, 0, "ping").contains(&"ping: 5 replies".to_string()), "{stdout}");
    assert!(lines_of(&stdout, 2, "pong").contains(&"pong: 6 frames".to_string()), "{stdout}");
    assert!(lines_of(&stdout, 1, "hello").contains(&"Hello from ttvm!".to_string()), "{stdout}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("ttvm: switch: 12 frames sent, 12 delivered to ports, 0 dropped"), "{stderr}");
}

#[test]
fn the_first_failing_vm_sets_the_status_and_stops_the_others() {
    if !require_kvm("the_first_failing_vm_sets_the_status_and_stops_the_others") {
        return;
    }
    // `disk` finds no virtio-blk card and exits 1; pong would wait for frames forever.
    let o = run(&["run", "--timeout", "60", "--vm", "pong", "--vm", "disk"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("ttvm: VM 1 (disk): guest exited with status 1"), "{stderr}");
    assert!(stderr.contains("ttvm: VM 0 (pong): stopped; the guest was at RIP"), "{stderr}");
    assert!(stderr.contains("(stopped because VM 1 ended first)"), "{stderr}");
}

#[test]
fn a_vm_group_without_a_kernel_is_refused() {
    let o = run(&["run", "--vm", "ping", "--vm", "--cmdline", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--vm number 2: give the KERNEL right after --vm"));
    let o = run(&["run", "--vm", "no-such-kernel"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-kernel: no such file"), "{}", text(&o));
}
