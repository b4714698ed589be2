//! Booting Debian's Linux kernel with the free engine: the bzImage (unpacked in the host and
//! entered through its PVH note) and the same kernel's ELF with the PVH note removed
//! (entered through the 64-bit Linux boot protocol) both reach the console banner.
//!
//! The kernel is fetched with apt-get into the cache (see `linux_support::cache_dir`). On
//! these hosts ring 0 is emulated, so the banner takes tens of seconds: the runs stop as
//! soon as it is printed and are bounded by `--timeout`.

mod common;
mod linux_support;

use std::ffi::OsStr;

const TIMEOUT_SECS: &str = "600";

/// Whether a complete line (output arrives in pieces; the console ends lines with CRLF)
/// contains `pat`.
fn full_line(out: &str, pat: &str) -> bool {
    out.split_inclusive('\n').any(|l| l.contains(pat) && l.ends_with('\n'))
}

/// Both lines complete.
fn banner_and_cmdline(out: &str) -> bool {
    full_line(out, "Linux version ") && full_line(out, "Command line: ")
}

#[test]
fn linux_bzimage_prints_banner_and_command_line() {
    if !common::require_kvm("linux_bzimage_prints_banner_and_command_line") {
        return;
    }
    let k = linux_support::debian_kernel();
    let args: [&OsStr; 4] = ["run".as_ref(), k.bzimage.as_os_str(), "--timeout".as_ref(), TIMEOUT_SECS.as_ref()];
    // The E820 map follows the command line; the run stops once it is printed.
    const E820_HIGH: &str = "BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable";
    let w = linux_support::run_until(&args, |o| banner_and_cmdline(o) && full_line(o, E820_HIGH));
    assert!(banner_and_cmdline(&w.stdout), "no banner and command line:\n{}", w.text());
    assert!(w.stdout.contains("Linux version 6."), "{}", w.text());
    // The default command line reached the kernel.
    let cmdline = w.stdout.lines().find(|l| l.contains("Command line: ")).unwrap_or_default();
    assert!(cmdline.contains("console=ttyS0,115200"), "{cmdline}");
    assert!(cmdline.contains("acpi=off"), "{cmdline}");
    assert!(w.stdout.contains(E820_HIGH), "the E820 map ttvm wrote reached Linux:\n{}", w.text());
}

/// Turns the PVH entry note (Xen note type 18) into an unknown type, so the ELF has no PVH
/// entry and must be booted through the 64-bit Linux boot protocol.
fn strip_pvh_note(elf: &mut [u8]) -> bool {
    let pat: Vec<u8> = [4u32.to_le_bytes(), 8u32.to_le_bytes(), 18u32.to_le_bytes()].concat();
    let Some(pos) = elf.windows(pat.len() + 4).position(|w| w[..12] == pat[..] && &w[12..16] == b"Xen\0") else {
        return false;
    };
    elf[pos + 8..pos + 12].copy_from_slice(&0x7fffu32.to_le_bytes());
    true
}

#[test]
fn linux_vmlinux_without_pvh_boots_through_the_64bit_protocol() {
    if !common::require_kvm("linux_vmlinux_without_pvh_boots_through_the_64bit_protocol") {
        return;
    }
    let k = linux_support::debian_kernel();
    let mut elf = linux_support::vmlinux_of(&k.bzimage);
    assert!(strip_pvh_note(&mut elf), "Debian's vmlinux has no PVH note to strip");
    let dir = common::tempdir();
    let path = dir.path().join("vmlinux-nopvh");
    std::fs::write(&path, &elf).expect("write vmlinux");
    let args: [&OsStr; 6] = [
        "run".as_ref(),
        path.as_os_str(),
        "--timeout".as_ref(),
        TIMEOUT_SECS.as_ref(),
        "--cmdline".as_ref(),
        "console=ttyS0 earlyprintk=serial,ttyS0 acpi=off booted-by=ttvm-64bit".as_ref(),
    ];
    let w = linux_support::run_until(&args, banner_and_cmdline);
    assert!(banner_and_cmdline(&w.stdout), "no banner:\n{}", w.text());
    assert!(w.stdout.contains("booted-by=ttvm-64bit"), "{}", w.text());
}

#[test]
fn damaged_bzimage_is_bad_input() {
    if !common::require_kvm("damaged_bzimage_is_bad_input") {
        return;
    }
    let k = linux_support::debian_kernel();
    let bytes = std::fs::read(&k.bzimage).expect("read bzImage");
    let dir = common::tempdir();
    // Truncated in the middle of the compressed payload.
    let cut = dir.path().join("cut-vmlinuz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = common::run(&["run", cut.to_str().unwrap(), "--timeout", "5"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("payload"), "{}", common::text(&o));
    // Corrupted compressed data.
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 4096] {
        *b ^= 0x5a;
    }
    let p = dir.path().join("bad-vmlinuz");
    std::fs::write(&p, &bad).unwrap();
    let o = common::run(&["run", p.to_str().unwrap(), "--timeout", "5"]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("decompressing the xz payload failed"), "{}", common::text(&o));
}
