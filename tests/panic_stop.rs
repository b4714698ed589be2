//! A kernel panic ends a run or a recording (`src/commands/panic_watch.rs`): Linux's last
//! panic line on the console stops it with status 79 instead of leaving it in `panic()`'s
//! endless loop. Driven here with the `entropy` kernel, which echoes its serial input, so
//! the line comes from the guest's console exactly as Linux's would; tests/linux_crash.rs
//! does it with a real Linux panic.

mod common;

const INPUT: &str = "hello\n---[ end Kernel panic - not syncing: test panic ]---\nafter\n";

#[test]
fn a_kernel_panic_line_ends_runs_and_recordings_with_status_79() {
    if !common::require_kvm("a_kernel_panic_line_ends_runs_and_recordings_with_status_79") {
        return;
    }
    let dir = common::tempdir();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, INPUT).unwrap();
    let input = input.to_str().unwrap();

    let o = common::run(&["run", "entropy", "--cmdline", "lines=3", "--serial-in", input]);
    let text = common::text(&o);
    assert_eq!(o.status.code(), Some(79), "{text}");
    assert!(text.contains("the guest kernel panicked: test panic"), "{text}");
    assert!(!text.contains("echo: after"), "the run ends at the panic line:\n{text}");

    let trace = dir.path().join("p.ttvm");
    let trace = trace.to_str().unwrap();
    let o = common::run(&["record", "entropy", "--cmdline", "lines=3", "--serial-in", input, "-o", trace]);
    let text = common::text(&o);
    assert_eq!(o.status.code(), Some(79), "{text}");
    assert!(text.contains("(the guest kernel panicked: test panic)"), "{text}");
    assert!(!text.contains("echo: after"), "{text}");

    let o = common::run(&["info", trace]);
    assert!(common::text(&o).contains("end:         the guest kernel panicked: test panic"), "{}", common::text(&o));
    let o = common::run(&["check", trace, "--expect-output", "end Kernel panic - not syncing: test panic"]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let o = common::run(&["check", trace, "--expect-exit", "0"]);
    assert_eq!(o.status.code(), Some(77), "a panic is not a clean exit:\n{}", common::text(&o));

    // Input without the line: the guest echoes all three lines and exits as usual.
    std::fs::write(dir.path().join("calm.txt"), "a\nKernel panic - not syncing: only the start\nc\n").unwrap();
    let calm = dir.path().join("calm.txt");
    let o = common::run(&["run", "entropy", "--cmdline", "lines=3", "--serial-in", calm.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    assert!(common::text(&o).contains("echo: c"), "{}", common::text(&o));
}

/// In a network, a VM whose kernel panics ends with status 79 and stops the others, which
/// are reported as stopped because of it (the `hello` kernel prints its command line).
#[test]
fn a_panicking_vm_ends_the_network_with_status_79() {
    if !common::require_kvm("a_panicking_vm_ends_the_network_with_status_79") {
        return;
    }
    let o = common::run(&[
        "run",
        "--vm",
        "hello",
        "--cmdline=x ---[ end Kernel panic - not syncing: net test ]---",
        "--vm",
        "pong",
    ]);
    let text = common::text(&o);
    assert_eq!(o.status.code(), Some(79), "{text}");
    assert!(text.contains("VM 0 (hello): the guest kernel panicked: net test"), "{text}");
    assert!(text.contains("stopped because VM 0 ended first"), "{text}");
}
