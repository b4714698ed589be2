//! ttvm's gdb remote stub: serves a [`Timeline`] to a real `gdb` over TCP, with reverse
//! execution.
//!
//! ```no_run
//! # fn demo(timeline: &mut ttvm_replay::timeline::Timeline) -> Result<(), ttvm_gdb::GdbError> {
//! let listener = ttvm_gdb::bind(ttvm_gdb::parse_listen_addr("1234")?)?;
//! let end = ttvm_gdb::serve(timeline, listener)?;
//! # let _ = end; Ok(()) }
//! ```
//!
//! What gdb gets:
//! - registers ([`regs`], described by [`target_xml`]): GPRs, RIP, RFLAGS, segment
//!   selectors, x87, SSE, and the system registers fs_base, gs_base, k_gs_base, CR0, CR2,
//!   CR3, CR4, CR8, EFER;
//! - memory by guest-virtual address through the current page tables; an unmapped address
//!   is an error reply, never a crash;
//! - stepi / continue and their reverse forms, software and hardware breakpoints and
//!   write/read/access watchpoints of any length (all checked by the step engine), and
//!   `replaylog` stops at both ends of history;
//! - `monitor` commands ([`monitor`]): when, goto, checkpoints, events, info, last-write,
//!   serial;
//! - Ctrl-C stops long runs in either direction ([`interrupt`]);
//! - register and memory writes are refused: they would fork the recorded timeline, until
//!   `monitor branch FILE` arms a branch ([`monitor_branch`]).
//!
//! The target uses only the timeline's public API and re-reads its length every time, so
//! a live timeline whose history grows works the same way.

pub mod addr;
mod branch_regs;
pub mod breakpoints;
pub mod conn;
pub mod error;
pub mod event_loop;
mod family;
pub mod fpu;
pub mod framing;
pub mod interrupt;
pub mod monitor;
pub mod monitor_branch;
mod monitor_exec;
mod monitor_frames;
pub mod network_peers;
pub mod regs;
pub mod resume;
pub mod reverse;
pub mod target;
pub mod target_xml;

use std::net::{SocketAddr, TcpListener, TcpStream};

pub use addr::{bind, parse_listen_addr, DEFAULT_HOST};
pub use error::GdbError;
pub use event_loop::ServeEnd;
use ttvm_replay::timeline::Timeline;

/// Serves `timeline` to gdb on `listener`, one connection at a time, until gdb detaches or
/// kills the target. A connection that closes without either (a port probe, gdb's
/// `disconnect`, a crashed gdb) does not end the server: it says so and waits for the next
/// one, as gdbserver's `--multi` and rr's replay server let gdb reconnect. The timeline
/// keeps the position each gdb left it at.
pub fn serve(timeline: &mut Timeline, listener: TcpListener) -> Result<ServeEnd, GdbError> {
    serve_with_symbols(timeline, listener, None)
}

/// Like [`serve`], naming functions in monitor output from `symbols` (a System.map or
/// ELF symbol table) instead of the kernel image's own symbols.
pub fn serve_with_symbols(
    timeline: &mut Timeline,
    listener: TcpListener,
    symbols: Option<ttvm_vmm::symbols::SymbolTable>,
) -> Result<ServeEnd, GdbError> {
    serve_clients(timeline, listener, symbols, |_| {})
}

/// Like [`serve_with_symbols`], calling `on_connect` with each client's address before it
/// is served (the CLI notes there whether the trace file changed since it was loaded).
pub fn serve_clients(
    timeline: &mut Timeline,
    listener: TcpListener,
    symbols: Option<ttvm_vmm::symbols::SymbolTable>,
    on_connect: impl FnMut(SocketAddr),
) -> Result<ServeEnd, GdbError> {
    serve_network_clients(timeline, listener, symbols, None, on_connect)
}

/// Like [`serve_clients`], for one VM of a network recording whose other VMs are served on
/// their own ports: `monitor goto` here moves them to the consistent cut, and their moves
/// move this one ([`network_peers`]).
pub fn serve_network_clients(
    timeline: &mut Timeline,
    listener: TcpListener,
    symbols: Option<ttvm_vmm::symbols::SymbolTable>,
    peers: Option<network_peers::NetworkPeers>,
    mut on_connect: impl FnMut(SocketAddr),
) -> Result<ServeEnd, GdbError> {
    loop {
        let (stream, peer) = listener.accept()?;
        eprintln!("ttvm: gdb connected from {peer}");
        on_connect(peer);
        match serve_connection_in(timeline, stream, symbols.clone(), peers.clone())? {
            ServeEnd::ConnectionClosed => {
                let at = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                eprintln!(
                    "ttvm: the connection from {peer} closed at icount {}; waiting for the next one on {at} \
                     (Ctrl-C ends the server)",
                    timeline.icount()
                );
            }
            end => return Ok(end),
        }
    }
}

/// Serves `timeline` on an already accepted connection.
pub fn serve_connection(
    timeline: &mut Timeline,
    stream: TcpStream,
    symbols: Option<ttvm_vmm::symbols::SymbolTable>,
) -> Result<ServeEnd, GdbError> {
    serve_connection_in(timeline, stream, symbols, None)
}

fn serve_connection_in(
    timeline: &mut Timeline,
    stream: TcpStream,
    symbols: Option<ttvm_vmm::symbols::SymbolTable>,
    peers: Option<network_peers::NetworkPeers>,
) -> Result<ServeEnd, GdbError> {
    let mut target = target::TtvmTarget::new(timeline, stream.try_clone()?);
    if symbols.is_some() {
        target.symbols = symbols;
    }
    target.peers = peers;
    // A move another VM asked for while no gdb was connected here.
    target.apply_network_move();
    let end = event_loop::run_session(&mut target, &stream);
    // Breakpoints and watchpoints belong to the gdb session; a later user of the timeline
    // (another session, the UI) must not inherit them.
    for addr in std::mem::take(&mut target.bps).into_keys() {
        target.tl.remove_breakpoint(addr);
    }
    for w in target.tl.watchpoints().to_vec() {
        target.tl.remove_watchpoint(w);
    }
    target.leave_family();
    end
}
