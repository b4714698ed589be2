//! `--symbols`: a System.map or an ELF symbol table turns guest addresses in ttvm's
//! messages into function names; unusable files are bad input (exit status 2) with a
//! reason, including Debian's placeholder System.map.

mod common;

#[test]
fn symbols_name_the_function_and_bad_maps_are_rejected() {
    if !common::require_kvm("symbols_name_the_function_and_bad_maps_are_rejected") {
        return;
    }
    let dir = common::tempdir();
    let placeholder = dir.path().join("System.map-placeholder");
    std::fs::write(
        &placeholder,
        "ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n",
    )
    .unwrap();
    let o = common::run(&["run", "hello", "--timeout", "10", "--symbols", placeholder.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("linux-image-*-dbg"), "{}", common::text(&o));

    let garbage = dir.path().join("garbage.map");
    std::fs::write(&garbage, "ffffffff81000000 T start\nzzzz T broken\n").unwrap();
    let o = common::run(&["run", "hello", "--timeout", "10", "--symbols", garbage.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2"), "{}", common::text(&o));

    // A sample kernel's own ELF is a valid symbol file; the run is unaffected.
    let elf = common::kernel_path("hello");
    let o = common::run(&["run", "hello", "--timeout", "30", "--symbols", elf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
}
