//! `--symbols`: a System.map names functions for a kernel image that carries no symbols
//! (like a distribution's stripped vmlinux), in gdb's monitor output.

mod common;
#[path = "gdb/harness.rs"]
mod harness;

use harness::mark;

/// A copy of `elf` whose symbol tables are hidden (SHT_SYMTAB sections become SHT_NULL).
fn strip_symbols(elf: &[u8]) -> Vec<u8> {
    let mut out = elf.to_vec();
    let shoff = u64::from_le_bytes(elf[40..48].try_into().unwrap()) as usize;
    let shentsize = u16::from_le_bytes(elf[58..60].try_into().unwrap()) as usize;
    let shnum = u16::from_le_bytes(elf[60..62].try_into().unwrap()) as usize;
    let mut stripped = 0;
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        if out[sh + 4..sh + 8] == 2u32.to_le_bytes() {
            out[sh + 4..sh + 8].copy_from_slice(&0u32.to_le_bytes());
            stripped += 1;
        }
    }
    assert!(stripped > 0, "no symbol table to strip");
    out
}

/// A System.map (`ADDRESS TYPE NAME` lines) of the functions in `elf`.
fn system_map(elf: &[u8]) -> String {
    use object::{Object, ObjectSymbol, SymbolKind};
    let file = object::File::parse(elf).unwrap();
    let mut lines: Vec<(u64, String)> = file
        .symbols()
        .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Unknown) && s.address() != 0)
        .filter_map(|s| s.name().ok().map(|n| (s.address(), format!("{:016x} T {n}", s.address()))))
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, l)| l + "\n").collect()
}

#[test]
fn a_system_map_names_functions_of_a_stripped_kernel() {
    if !common::require_kvm("a_system_map_names_functions_of_a_stripped_kernel") {
        return;
    }
    let dir = common::tempdir();
    let elf = std::fs::read(common::kernel_path("hello")).unwrap();
    let stripped = dir.path().join("hello-stripped.elf");
    std::fs::write(&stripped, strip_symbols(&elf)).unwrap();
    let map = dir.path().join("System.map");
    std::fs::write(&map, system_map(&elf)).unwrap();
    let trace = dir.path().join("hello.ttvm");
    let o = common::run(&["record", stripped.to_str().unwrap(), "-q", "-o", trace.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));

    let without = harness::serve(&trace, &[]);
    let out = harness::gdb_with(&without, &["set architecture i386:x86-64"], "symbols.py", None);
    assert_eq!(mark(&out, "rip-name")[0], "-", "a stripped kernel has no names\n{out}");

    let with = harness::serve(&trace, &["--symbols", map.to_str().unwrap()]);
    let out = harness::gdb_with(&with, &["set architecture i386:x86-64"], "symbols.py", None);
    assert_eq!(mark(&out, "goto")[0], "1", "{out}");
    let name = &mark(&out, "rip-name")[0];
    assert_ne!(name, "-", "the System.map names the function\n{out}");
    assert!(system_map(&elf).contains(&format!(" T {name}\n")), "{name} is a function of the kernel\n{out}");

    // A malformed map is bad input, before anything runs.
    std::fs::write(&map, "not a system map\n").unwrap();
    let o =
        common::run(&["replay", trace.to_str().unwrap(), "--gdb", "127.0.0.1:0", "--symbols", map.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    let o = common::run(&["tui", trace.to_str().unwrap(), "--symbols", map.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
}
