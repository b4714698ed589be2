//! Support for the Linux tests: fetching Debian's kernel into a cache, building the tiny
//! initramfs (a static init compiled from `init.c`, packed by a cpio "newc" writer).
#![allow(dead_code)]

pub mod cpio;
pub mod gdb_scripts;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Serialises kernel fetching between the tests of one binary.
static FETCH: Mutex<()> = Mutex::new(());

/// Where Debian's kernel package is unpacked: `$TTVM_LINUX_CACHE`, or `target/linux-cache`
/// in the workspace.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("TTVM_LINUX_CACHE") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("linux-cache"),
    }
}

/// A Debian kernel unpacked in the cache.
#[derive(Debug, Clone)]
pub struct DebianKernel {
    /// `/boot/vmlinuz-*`: the bzImage.
    pub bzimage: PathBuf,
    /// The package name (`linux-image-6.1.0-NN-amd64`).
    pub package: String,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The versioned package `linux-image-amd64` depends on, asking apt (after an
/// `apt-get update` if apt knows no such package yet).
fn package_name() -> Result<String, String> {
    let find = || -> Result<Option<String>, String> {
        let deps = run(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
        Ok(deps
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
            .map(str::to_string))
    };
    if let Ok(Some(p)) = find() {
        return Ok(p);
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    find()?.ok_or_else(|| "apt-cache depends linux-image-amd64 names no linux-image-*-amd64 package".into())
}

/// Debian's current 6.1 kernel, downloaded with `apt-get download` and unpacked with
/// `dpkg -x` into [`cache_dir`] the first time. Panics with a clear message when apt cannot
/// fetch it.
pub fn debian_kernel() -> DebianKernel {
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    match fetch() {
        Ok(k) => k,
        Err(e) => panic!(
            "the Linux tests need Debian's kernel package (linux-image-amd64), fetched with \
             apt-get download into {} (or $TTVM_LINUX_CACHE), and apt could not fetch it:\n{e}",
            cache_dir().display()
        ),
    }
}

fn find_vmlinuz(root: &Path) -> Option<PathBuf> {
    let boot = root.join("boot");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .collect();
    found.sort();
    found.pop()
}

/// The .deb `apt-get download` left in `dir`.
fn downloaded_deb(dir: &Path) -> Result<PathBuf, String> {
    std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| "apt-get download left no .deb".to_string())
}

/// Records the first `steps` steps of `k`'s boot into `dir/linux.ttvm` (the step limit
/// ends the recording with status 74).
pub fn record_boot(k: &DebianKernel, dir: &Path, steps: u64) -> PathBuf {
    let trace = dir.join("linux.ttvm");
    let o = Command::new(env!("CARGO_BIN_EXE_ttvm"))
        .arg("record")
        .arg(&k.bzimage)
        .args(["--max-steps", &steps.to_string(), "-q", "-o"])
        .arg(&trace)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("spawn ttvm");
    assert_eq!(
        o.status.code(),
        Some(74),
        "recording {steps} steps of Linux:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    trace
}

fn fetch() -> Result<DebianKernel, String> {
    let cache = cache_dir();
    // A previously unpacked kernel is used as is, so the tests run offline once fetched.
    if let Ok(entries) = std::fs::read_dir(&cache) {
        let mut roots: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        roots.sort();
        for root in roots.iter().rev() {
            let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let (true, Some(bzimage)) = (name.starts_with("linux-image-"), find_vmlinuz(root)) {
                return Ok(DebianKernel { bzimage, package: name });
            }
        }
    }
    let package = package_name()?;
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let download = cache.join(format!("download-{}", std::process::id()));
    std::fs::create_dir_all(&download).map_err(|e| format!("{}: {e}", download.display()))?;
    run(Command::new("apt-get").args(["download", "-q", &package]).current_dir(&download))?;
    let deb = downloaded_deb(&download)?;
    let unpack = download.join("root");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpack))?;
    // Publish atomically: concurrent test binaries either see a whole tree or none.
    let root = cache.join(&package);
    if std::fs::rename(&unpack, &root).is_err() && !root.exists() {
        return Err(format!("cannot move the unpacked kernel to {}", root.display()));
    }
    let _ = std::fs::remove_dir_all(&download);
    let bzimage = find_vmlinuz(&root).ok_or_else(|| format!("{package} has no /boot/vmlinuz-*"))?;
    Ok(DebianKernel { bzimage, package })
}

/// Compiles `init.c` into a static, libc-free x86-64 executable at `out`.
pub fn build_init(out: &Path) {
    build_init_from("init.c", out);
}

/// Compiles `tests/linux_support/SOURCE` into a static, libc-free x86-64 executable.
pub fn build_init_from(source: &str, out: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/linux_support").join(source);
    let result = Command::new("cc")
        .args(["-static", "-nostdlib", "-O2", "-fno-pie", "-no-pie", "-fno-stack-protector"])
        .args(["-fno-asynchronous-unwind-tables", "-Wl,--build-id=none", "-o"])
        .arg(out)
        .arg(&src)
        .output();
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("cc failed to build the test init:\n{}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("the Linux initramfs test needs a C compiler (cc): {e}"),
    }
}

/// An initramfs (uncompressed newc cpio, which Linux accepts) holding `/dev/console` and
/// `/init` built from `init.c`.
pub fn build_initramfs(dir: &Path) -> PathBuf {
    let init = dir.join("init");
    build_init(&init);
    let init_bytes = std::fs::read(&init).expect("read the built init");
    let mut w = cpio::Writer::new();
    w.directory("dev", 0o755);
    w.char_device("dev/console", 0o600, 5, 1);
    w.file("init", 0o755, &init_bytes);
    let path = dir.join("initramfs.cpio");
    std::fs::write(&path, w.finish()).expect("write the initramfs");
    path
}

/// An initramfs whose /init (`crash_init.c`) crashes the kernel from user space: it
/// announces itself (`TTVM-CRASH: init is running ...`), runs a short loop and writes 'c'
/// to /proc/sysrq-trigger.
pub fn build_crash_initramfs(dir: &Path) -> PathBuf {
    let init = dir.join("crash-init");
    build_init_from("crash_init.c", &init);
    let mut w = cpio::Writer::new();
    w.directory("dev", 0o755);
    w.char_device("dev/console", 0o600, 5, 1);
    w.file("init", 0o755, &std::fs::read(&init).expect("read the built init"));
    let path = dir.join("crash-initramfs.cpio");
    std::fs::write(&path, w.finish()).expect("write the initramfs");
    path
}

/// An initramfs whose /init (`disk_init.c`) loads Debian's virtio modules (from the
/// kernel package in `modules_dir`, `lib/modules/VERSION/kernel`) and reads and writes
/// /dev/vda.
pub fn build_disk_initramfs(dir: &Path, modules_dir: &Path) -> PathBuf {
    let init = dir.join("disk-init");
    build_init_from("disk_init.c", &init);
    let mut w = cpio::Writer::new();
    w.directory("dev", 0o755);
    w.char_device("dev/console", 0o600, 5, 1);
    w.directory("m", 0o755);
    for (name, rel) in [
        ("virtio.ko", "drivers/virtio/virtio.ko"),
        ("virtio_ring.ko", "drivers/virtio/virtio_ring.ko"),
        ("virtio_pci_legacy_dev.ko", "drivers/virtio/virtio_pci_legacy_dev.ko"),
        ("virtio_pci_modern_dev.ko", "drivers/virtio/virtio_pci_modern_dev.ko"),
        ("virtio_pci.ko", "drivers/virtio/virtio_pci.ko"),
        ("virtio_blk.ko", "drivers/block/virtio_blk.ko"),
    ] {
        let data = std::fs::read(modules_dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        w.file(&format!("m/{name}"), 0o644, &data);
    }
    w.file("init", 0o755, &std::fs::read(&init).expect("read the built init"));
    let path = dir.join("disk-initramfs.cpio");
    std::fs::write(&path, w.finish()).expect("write the initramfs");
    path
}

/// Debian's modules the ext4 workload loads, in dependency order (paths under
/// `lib/modules/VERSION/kernel`).
pub const EXT4_MODULES: [&str; 11] = [
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
    "lib/crc16.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "crypto/crc32c_generic.ko",
    "fs/ext4/ext4.ko",
];

/// An initramfs whose /init (`ext4_init.c`) loads [`EXT4_MODULES`] from `modules_dir`,
/// mounts /dev/vda as ext4, copies its files and reboots.
pub fn build_ext4_initramfs(dir: &Path, modules_dir: &Path) -> PathBuf {
    let init = dir.join("ext4-init");
    build_init_from("ext4_init.c", &init);
    let mut w = cpio::Writer::new();
    w.directory("dev", 0o755);
    w.char_device("dev/console", 0o600, 5, 1);
    w.directory("m", 0o755);
    for rel in EXT4_MODULES {
        let data = std::fs::read(modules_dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let name = Path::new(rel).file_name().unwrap().to_string_lossy().into_owned();
        w.file(&format!("m/{name}"), 0o644, &data);
    }
    w.file("init", 0o755, &std::fs::read(&init).expect("read the built init"));
    let path = dir.join("ext4-initramfs.cpio");
    std::fs::write(&path, w.finish()).expect("write the initramfs");
    path
}

/// The contents of the ext4 workload's data file `n` (256 KiB, a fixed pseudo-random
/// sequence: disk blocks that compress as badly as real data).
pub fn ext4_data_file(n: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (n + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (0..256 * 1024 / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

/// A 16 MiB ext4 image made by `mkfs.ext4 -d` holding `data/f0`..`data/f3`
/// ([`ext4_data_file`]); inode tables and journal initialised now, so the kernel starts no
/// lazy-init thread.
pub fn build_ext4_image(dir: &Path) -> PathBuf {
    let root = dir.join("ext4-root");
    std::fs::create_dir_all(root.join("data")).expect("create the image's tree");
    for n in 0..4 {
        std::fs::write(root.join("data").join(format!("f{n}")), ext4_data_file(n)).expect("write a data file");
    }
    let image = dir.join("ext4.img");
    let result = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d"])
        .arg(&root)
        .arg(&image)
        .arg("16M")
        .output();
    match result {
        Ok(o) if o.status.success() => image,
        Ok(o) => panic!("mkfs.ext4 failed:\n{}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("the ext4 workload needs mkfs.ext4 (e2fsprogs): {e}"),
    }
}

/// An initramfs whose /init (`net_init.c`) loads Debian's virtio_net (from `modules_dir`),
/// takes 10.0.0.N from its MAC and exchanges UDP datagrams with the other VM.
pub fn build_net_initramfs(dir: &Path, modules_dir: &Path) -> PathBuf {
    let init = dir.join("net-init");
    build_init_from("net_init.c", &init);
    let mut w = cpio::Writer::new();
    w.directory("dev", 0o755);
    w.char_device("dev/console", 0o600, 5, 1);
    w.directory("m", 0o755);
    for rel in [
        "drivers/virtio/virtio.ko",
        "drivers/virtio/virtio_ring.ko",
        "drivers/virtio/virtio_pci_legacy_dev.ko",
        "drivers/virtio/virtio_pci_modern_dev.ko",
        "drivers/virtio/virtio_pci.ko",
        "net/core/failover.ko",
        "drivers/net/net_failover.ko",
        "drivers/net/virtio_net.ko",
    ] {
        let data = std::fs::read(modules_dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let name = Path::new(rel).file_name().unwrap().to_string_lossy().into_owned();
        w.file(&format!("m/{name}"), 0o644, &data);
    }
    w.file("init", 0o755, &std::fs::read(&init).expect("read the built init"));
    let path = dir.join("net-initramfs.cpio");
    std::fs::write(&path, w.finish()).expect("write the initramfs");
    path
}

/// `lib/modules/VERSION/kernel` of `k`'s package.
pub fn modules_dir(k: &DebianKernel) -> PathBuf {
    let version = k.bzimage.file_name().unwrap().to_string_lossy().trim_start_matches("vmlinuz-").to_string();
    k.bzimage.parent().unwrap().parent().unwrap().join("lib/modules").join(version).join("kernel")
}

/// The Linux ELF inside a bzImage, unpacked with ttvm's own loader code.
pub fn vmlinux_of(bzimage: &Path) -> Vec<u8> {
    let bytes = std::fs::read(bzimage).expect("read the bzImage");
    let bz = ttvm_vmm::boot::bzimage::BzImage::parse(&bytes).expect("parse the bzImage");
    bz.decompress().expect("decompress the bzImage")
}

/// What a run watched by [`run_until`] produced.
#[derive(Debug)]
pub struct Watched {
    /// Guest serial output (ttvm's stdout).
    pub stdout: String,
    /// ttvm's own messages.
    pub stderr: String,
    /// Exit status, or `None` when the run was stopped because `done` matched.
    pub status: Option<i32>,
}

impl Watched {
    /// Everything, for assertion messages.
    pub fn text(&self) -> String {
        format!("status: {:?}\n--- stdout\n{}\n--- stderr\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Runs `ttvm ARGS` and stops it (SIGKILL of this child) as soon as `done(stdout)` holds;
/// otherwise waits for it to exit (callers bound it with `--timeout` or `--max-steps`).
pub fn run_until(args: &[&std::ffi::OsStr], done: impl Fn(&str) -> bool) -> Watched {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ttvm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ttvm");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let err_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut stdout = Vec::new();
    let mut buf = [0u8; 4096];
    let mut stopped = false;
    loop {
        match out_pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => stdout.extend_from_slice(&buf[..n]),
        }
        if done(&String::from_utf8_lossy(&stdout)) {
            let _ = child.kill();
            stopped = true;
            break;
        }
    }
    let status = child.wait().expect("wait for ttvm");
    let stderr = err_thread.join().unwrap_or_default();
    Watched {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
        status: if stopped { None } else { status.code() },
    }
}

/// The debug files of a Debian kernel: the real System.map and the vmlinux with DWARF, from
/// its `linux-image-*-dbg` package.
#[derive(Debug, Clone)]
pub struct DebugFiles {
    /// `System.map-*` (Debian's `/boot/System.map-*` is a placeholder pointing here).
    pub system_map: PathBuf,
    /// `vmlinux-*` with symbols and DWARF, for gdb.
    pub vmlinux: PathBuf,
}

/// `k`'s `-dbg` package (~860 MB), downloaded with `apt-get download` the first time and
/// reduced to its System.map and vmlinux in [`cache_dir`] (the .deb is deleted). Panics
/// with a clear message when apt cannot fetch it.
pub fn debian_debug_files(k: &DebianKernel) -> DebugFiles {
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    match fetch_debug(k) {
        Ok(f) => f,
        Err(e) => panic!(
            "this Linux test needs the debug symbols of {} (package {}-dbg), fetched with apt-get \
             download into {} (or $TTVM_LINUX_CACHE), and apt could not fetch them:\n{e}",
            k.package,
            k.package,
            cache_dir().display()
        ),
    }
}

fn find_debug_files(dir: &Path) -> Option<DebugFiles> {
    let pick = |prefix: &str| {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
    };
    Some(DebugFiles { system_map: pick("System.map-")?, vmlinux: pick("vmlinux-")? })
}

fn fetch_debug(k: &DebianKernel) -> Result<DebugFiles, String> {
    let cache = cache_dir();
    let root = cache.join(format!("{}-dbg", k.package));
    if let Some(f) = find_debug_files(&root) {
        return Ok(f);
    }
    let download = cache.join(format!("download-dbg-{}", std::process::id()));
    std::fs::create_dir_all(&download).map_err(|e| format!("{}: {e}", download.display()))?;
    let package = format!("{}-dbg", k.package);
    let fetched = run(Command::new("apt-get").args(["download", "-q", &package]).current_dir(&download));
    if fetched.is_err() {
        // apt may not know the package yet on a fresh machine.
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get").args(["download", "-q", &package]).current_dir(&download))?;
    }
    let deb = downloaded_deb(&download)?;
    // Only /usr/lib/debug/boot (System.map, vmlinux): the modules' debug files are GBs.
    let unpack = download.join("files");
    std::fs::create_dir_all(&unpack).map_err(|e| format!("{}: {e}", unpack.display()))?;
    let script = format!(
        "dpkg-deb --fsys-tarfile {deb:?} | tar -x -C {unpack:?} --wildcards './usr/lib/debug/boot/*'",
        deb = deb.display().to_string(),
        unpack = unpack.display().to_string()
    );
    run(Command::new("sh").args(["-c", &script]))?;
    let boot = unpack.join("usr/lib/debug/boot");
    find_debug_files(&boot)
        .ok_or_else(|| format!("{package} has no System.map-* and vmlinux-* in /usr/lib/debug/boot"))?;
    if std::fs::rename(&boot, &root).is_err() && find_debug_files(&root).is_none() {
        return Err(format!("cannot move the debug files to {}", root.display()));
    }
    let _ = std::fs::remove_dir_all(&download);
    find_debug_files(&root).ok_or_else(|| format!("no debug files in {}", root.display()))
}
