//! `ttvm replay DIR --gdb [ADDR:]PORT`: a network recording served to gdb, one port per VM
//! (PORT for VM 0, PORT+1 for VM 1, …; with port 0 each VM gets a port of its own from the
//! system). Each VM's trace is served on its own thread exactly as `ttvm replay TRACE
//! --gdb` serves it; `monitor goto` on one VM moves the others to the consistent cut
//! (`ttvm_gdb::network_peers`), and `monitor frames` lists the frames around the point.
//! The server ends when every VM's gdb has detached or killed its session.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use ttvm_gdb::network_peers::NetworkPeers;

use super::dir::{load_manifest, trace_paths};
use crate::commands::gdb_server::{bind_gdb, kernel_for_gdb, FileIdentity, Served};
use crate::commands::replay::open_recording;
use crate::exit_code::{self, Exit};

/// The address of VM `vm`'s port: `base`'s port plus `vm`, or the system's choice for 0.
fn vm_addr(base: SocketAddr, vm: usize) -> Result<SocketAddr, Exit> {
    if base.port() == 0 {
        return Ok(base);
    }
    let port = u16::try_from(base.port() as usize + vm).map_err(|_| {
        Exit::new(exit_code::BAD_INPUT, format!("--gdb {base}: VM {vm} would need port {}", base.port() as usize + vm))
    })?;
    Ok(SocketAddr::new(base.ip(), port))
}

/// Serves every VM of the network recording `dir`; exits 0 when all their sessions ended.
pub fn serve_network(dir: &Path, addr: &str, write_kernel: Option<&Path>, step_all: bool) -> Result<i32, Exit> {
    if write_kernel.is_some() {
        return Err(Exit::new(
            exit_code::BAD_INPUT,
            format!(
                "{}: --write-kernel takes one trace; for a VM's kernel run `ttvm replay DIR/VM.ttvm --gdb PORT \
                 --write-kernel FILE` on its own",
                dir.display()
            ),
        ));
    }
    let base = ttvm_gdb::parse_listen_addr(addr).map_err(|e| Exit::of("", &e))?;
    let m = load_manifest(dir)?;
    let paths = trace_paths(dir, &m)?;
    let names: Vec<String> = m.vms.iter().map(|v| v.name.clone()).collect();
    // Every port is bound before any VM is set up: a busy one is reported at once.
    let listeners =
        (0..paths.len()).map(|vm| vm_addr(base, vm).and_then(bind_gdb)).collect::<Result<Vec<TcpListener>, Exit>>()?;
    let peers = NetworkPeers::for_network(m);
    let threads: Vec<_> = paths
        .into_iter()
        .zip(listeners)
        .zip(peers)
        .enumerate()
        .map(|(vm, ((path, listener), peers))| {
            let label = format!("VM {vm} ({}): ", names[vm]);
            std::thread::Builder::new()
                .name(format!("gdb-vm{vm}"))
                .spawn(move || serve_vm(&path, listener, peers, label, step_all))
                .map_err(|e| Exit::new(exit_code::HOST_ERROR, format!("cannot start a thread for VM {vm}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut status = 0;
    for (vm, t) in threads.into_iter().enumerate() {
        let result =
            t.join().map_err(|_| Exit::new(exit_code::HOST_ERROR, format!("the gdb server of VM {vm} panicked")))?;
        if let Err(e) = result {
            eprintln!("ttvm: VM {vm} ({}): {}", names[vm], e.message);
            if status == 0 {
                status = e.code;
            }
        }
    }
    Ok(status)
}

/// One VM's server (on its own thread: a timeline is not shared between threads).
fn serve_vm(
    path: &PathBuf,
    listener: TcpListener,
    peers: NetworkPeers,
    label: String,
    step_all: bool,
) -> Result<i32, Exit> {
    let loaded = FileIdentity::of(path);
    let rec = open_recording(path)?;
    let kernel = kernel_for_gdb(&rec, None)?;
    Served { trace: path, loaded, rec, kernel, label, step_all }.serve(listener, None, Some(peers))
}
