//! Builds the sample kernels with `$RUSTC` for the host target, using the
//! host sysroot's precompiled `core` (there is no x86_64-unknown-none target
//! and no rust-src): first the support rlib, then one static ELF per kernel.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Kernel directories, each with a `main.rs`.
const KERNELS: &[&str] = &[
    "hello",
    "timer",
    "threads",
    "entropy",
    "bench",
    "memcorrupt",
    "uaf",
    "stepprobe",
    "ring3",
    "flagprobe",
    "disk",
    "dirty",
    "ping",
    "pong",
];

/// Flags shared by the support rlib and the kernels.
const COMMON_FLAGS: &[&str] = &[
    "--edition=2021",
    "-Cpanic=abort",              // no unwinder in a kernel
    "-Crelocation-model=static",  // linked at a fixed physical address
    "-Ccode-model=small",         // everything lives below 2 GiB
    "-Cno-redzone=yes",           // interrupts push onto the current stack
    "-Cforce-frame-pointers=yes", // easy backtraces for gdb
    "-Copt-level=1",
    "-Cdebuginfo=2", // source lines and locals in gdb
    "-Cdebug-assertions=off",
    "-Coverflow-checks=off",
    "-Ccodegen-units=1",              // deterministic output, one object per crate
    "-Cmetadata=ttvm-sample-kernels", // stable symbol hashes
];

/// No SSE in our own code: on hosts where KVM runs guest ring 0 through its
/// instruction emulator (ttvm's machines), only SSE moves can be emulated and
/// LLVM's `pxor`/`movd`/... would stop the VM. rustc warns that sse2 is part
/// of the x86_64 ABI; we pass no floats across crates, so the ABI is moot.
/// If a future rustc rejects it, the build falls back to SSE codegen (with a
/// cargo warning): the kernels then still work under QEMU and normal KVM.
const NO_SSE: &str = "-Ctarget-feature=-sse,-sse2";
/// rustc's warning about NO_SSE, filtered from the forwarded warnings.
const NO_SSE_WARNING: &str = "target feature `sse2` must be enabled";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=linker.ld");
    // The flagprobe kernel shares its instruction table with ttvm's host-side probe.
    println!("cargo:rerun-if-changed=../vmm/src/x86/flag_probe_classes.rs");
    rerun_for_dir(&manifest, "support");
    // ping and pong share their virtio-net driver.
    rerun_for_dir(&manifest, "net");
    for k in KERNELS {
        rerun_for_dir(&manifest, k);
    }

    // Sources are given relative to the manifest dir (rustc runs there) so
    // panic messages say `threads/main.rs:42`; DWARF's comp_dir (the manifest
    // dir) lets gdb find them.
    let support = out.join("libttvm_kernel_support.rlib");
    let support_cmd = |extra: &[&str]| {
        let mut cmd = Command::new(&rustc);
        cmd.current_dir(&manifest)
            .args(["--crate-name", "ttvm_kernel_support", "--crate-type", "rlib"])
            .args(COMMON_FLAGS)
            .args(extra)
            .arg("support/lib.rs")
            .arg("-o")
            .arg(&support);
        cmd.output()
    };
    let mut flags: Vec<&str> = vec![NO_SSE];
    let first = support_cmd(&flags).unwrap_or_else(|e| panic!("cannot run rustc: {e}"));
    let rejected = String::from_utf8_lossy(&first.stderr).lines().any(|l| l.starts_with("error") && l.contains("sse2"));
    if !first.status.success() && rejected {
        println!("cargo:warning=rustc rejects {NO_SSE}; sample kernels use SSE and will not run where KVM emulates guest ring 0");
        flags.clear();
        check("ttvm_kernel_support", support_cmd(&flags));
    } else {
        check("ttvm_kernel_support", Ok(first));
    }

    let linker_script = manifest.join("linker.ld");
    let children: Vec<_> = KERNELS
        .iter()
        .map(|k| {
            let mut cmd = Command::new(&rustc);
            cmd.current_dir(&manifest)
                .args(["--crate-name", k, "--crate-type", "bin"])
                .args(COMMON_FLAGS)
                .args(&flags)
                .arg("-Crelro-level=off")
                .arg("-Clink-arg=-nostartfiles")
                .arg("-Clink-arg=-nostdlib")
                .arg("-Clink-arg=-static")
                .arg(format!("-Clink-arg=-Wl,-T,{}", linker_script.display()))
                .arg("-Clink-arg=-Wl,--build-id=none")
                // Pull the boot object in even if nothing else referenced it.
                .arg("-Clink-arg=-Wl,-u,pvh_start32")
                .arg("--extern")
                .arg(format!("ttvm_kernel_support={}", support.display()))
                .arg("-L")
                .arg(&out)
                .arg(format!("{k}/main.rs"))
                .arg("-o")
                .arg(out.join(format!("{k}.elf")));
            // Kernels build in parallel; each rustc's output is collected.
            let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
            (k, child)
        })
        .collect();
    for (k, child) in children {
        check(k, child.and_then(|c| c.wait_with_output()));
    }
}

/// Fails the build with rustc's own message; forwards warnings.
fn check(what: &str, r: std::io::Result<Output>) {
    let o = r.unwrap_or_else(|e| panic!("cannot run rustc for {what}: {e}"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        eprintln!("{stderr}");
        panic!("building sample kernel `{what}` failed ({})", o.status);
    }
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning") && !l.contains(NO_SSE_WARNING) && !l.contains("warning emitted"))
        .collect();
    for line in &warnings {
        println!("cargo:warning={what}: {line}");
    }
    if !warnings.is_empty() {
        // The full text (with spans) goes to the build script's stderr, shown by `cargo build -vv`.
        eprintln!("{stderr}");
    }
}

fn rerun_for_dir(manifest: &Path, dir: &str) {
    println!("cargo:rerun-if-changed={dir}");
    let mut entries: Vec<_> = std::fs::read_dir(manifest.join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        println!("cargo:rerun-if-changed={}", p.strip_prefix(manifest).unwrap().display());
    }
}
