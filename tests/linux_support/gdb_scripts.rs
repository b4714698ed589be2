//! Linux's own gdb scripts (`vmlinux-gdb.py`: lx-dmesg, lx-ps, lx-lsmod, lx-symbols...),
//! prepared the way a kernel build prepares them. Debian's -dbg packages do not ship them,
//! so they come from `linux-source-6.1` (scripts/gdb), and `scripts/gdb/linux/constants.py`
//! is generated from its `constants.py.in` with the C preprocessor, the kernel's headers and
//! configuration (`linux-headers-VERSION-{common,amd64}`), as `scripts/gdb/linux/Makefile`
//! does. Cached in [`super::cache_dir`] and reused offline.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{cache_dir, downloaded_deb, run, DebianKernel, FETCH};

/// A directory holding `vmlinux-gdb.py` and `scripts/gdb/linux/` (with `constants.py`):
/// `source DIR/vmlinux-gdb.py` in gdb. Panics with a clear message when apt cannot fetch
/// the packages.
pub fn linux_gdb_scripts(k: &DebianKernel) -> PathBuf {
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    match prepare(k) {
        Ok(dir) => dir,
        Err(e) => panic!(
            "Linux's gdb scripts need linux-source-6.1 and the kernel's headers, fetched with apt-get \
             download into {} (or $TTVM_LINUX_CACHE), and that failed:\n{e}",
            cache_dir().display()
        ),
    }
}

/// The headers version to preprocess with: the kernel's own when apt has it, else the
/// newest 6.1 ABI apt knows (`constants.py` holds configuration switches and a few macro
/// values, the same across one Debian 6.1 series).
fn headers_version(k: &DebianKernel, download: &Path) -> Result<String, String> {
    let own = k.package.trim_start_matches("linux-image-").to_string();
    let abi = own.trim_end_matches("-amd64").to_string();
    let get = |abi: &str| {
        run(Command::new("apt-get")
            .args(["download", "-q", &format!("linux-headers-{abi}-common"), &format!("linux-headers-{abi}-amd64")])
            .current_dir(download))
    };
    if get(&abi).is_ok() {
        return Ok(abi);
    }
    let deps = run(Command::new("apt-cache").args(["depends", "linux-headers-amd64"]))?;
    let newest = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: linux-headers-"))
        .find_map(|p| p.strip_suffix("-amd64"))
        .ok_or("apt-cache depends linux-headers-amd64 names no linux-headers-*-amd64")?
        .to_string();
    get(&newest)?;
    Ok(newest)
}

fn prepare(k: &DebianKernel) -> Result<PathBuf, String> {
    let root = cache_dir().join("linux-gdb-scripts");
    if root.join("scripts/gdb/linux/constants.py").is_file() {
        return Ok(root);
    }
    let download = cache_dir().join(format!("download-gdb-scripts-{}", std::process::id()));
    std::fs::create_dir_all(&download).map_err(|e| format!("{}: {e}", download.display()))?;
    let sh = |script: String| run(Command::new("sh").args(["-c", &script]).current_dir(&download));
    // The source: only scripts/gdb of the tarball inside the package.
    run(Command::new("apt-get").args(["download", "-q", "linux-source-6.1"]).current_dir(&download))?;
    let deb = downloaded_deb(&download)?;
    sh(format!(
        "dpkg-deb --fsys-tarfile {:?} | tar -x --wildcards './usr/src/linux-source-6.1.tar.xz' && \
         tar -xJf usr/src/linux-source-6.1.tar.xz --wildcards 'linux-source-6.1/scripts/gdb/*' && rm {:?}",
        deb.display().to_string(),
        deb.display().to_string()
    ))?;
    let abi = headers_version(k, &download)?;
    sh("for d in linux-headers-*.deb; do dpkg -x \"$d\" headers; done".into())?;
    let common = download.join(format!("headers/usr/src/linux-headers-{abi}-common"));
    let arch = download.join(format!("headers/usr/src/linux-headers-{abi}-amd64"));
    let gdb_src = download.join("linux-source-6.1/scripts/gdb");
    // scripts/gdb/linux/Makefile: $(CPP) -E -x c -P $(c_flags) constants.py.in, then drop
    // everything up to the end-of-headers marker.
    let c = |p: &str| common.join(p).display().to_string();
    let a = |p: &str| arch.join(p).display().to_string();
    let out = Command::new("cpp")
        .args(["-E", "-x", "c", "-P", "-nostdinc", "-D__KERNEL__"])
        .args([format!("-I{}", c("arch/x86/include")), format!("-I{}", a("arch/x86/include/generated"))])
        .args([format!("-I{}", c("include")), format!("-I{}", a("include"))])
        .args([format!("-I{}", c("arch/x86/include/uapi")), format!("-I{}", a("arch/x86/include/generated/uapi"))])
        .args([format!("-I{}", c("include/uapi")), format!("-I{}", a("include/generated/uapi"))])
        .args(["-include", &c("include/linux/compiler-version.h"), "-include", &c("include/linux/kconfig.h")])
        .args(["-include", &c("include/linux/compiler_types.h")])
        .arg(gdb_src.join("linux/constants.py.in"))
        .output()
        .map_err(|e| format!("the C preprocessor (cpp): {e}"))?;
    if !out.status.success() {
        return Err(format!("cpp constants.py.in failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let constants = text
        .split_once("<!-- end-c-headers -->")
        .map(|(_, rest)| rest.trim_start_matches('\n'))
        .ok_or("cpp's output has no end-of-headers marker")?;
    std::fs::write(gdb_src.join("linux/constants.py"), constants).map_err(|e| e.to_string())?;
    // vmlinux-gdb.py finds the modules in scripts/gdb next to itself (a kernel build tree).
    let staged = download.join("staged");
    std::fs::create_dir_all(staged.join("scripts")).map_err(|e| e.to_string())?;
    std::fs::rename(&gdb_src, staged.join("scripts/gdb")).map_err(|e| e.to_string())?;
    std::fs::rename(staged.join("scripts/gdb/vmlinux-gdb.py"), staged.join("vmlinux-gdb.py"))
        .map_err(|e| e.to_string())?;
    std::fs::write(staged.join("HEADERS"), format!("constants.py preprocessed with linux-headers-{abi}\n"))
        .map_err(|e| e.to_string())?;
    if std::fs::rename(&staged, &root).is_err() && !root.join("scripts/gdb/linux/constants.py").is_file() {
        return Err(format!("cannot move the scripts to {}", root.display()));
    }
    let _ = std::fs::remove_dir_all(&download);
    Ok(root)
}
