//! Ctrl-C while the timeline runs.
//!
//! gdb interrupts a running target by sending the byte 0x03. The timeline cannot look at
//! the socket (it is not Send and knows nothing of gdb); it polls an `AtomicBool` every
//! 1024 steps. For the duration of a long operation a [`Watcher`] thread waits in
//! `poll(2)` for the socket to become readable, peeks at what arrived, and raises that
//! flag if it holds a 0x03 or the connection closed. The event loop then reads the bytes
//! itself and reports the stop. The thread is stopped through a socket pair as soon as
//! the operation ends.
//!
//! Other bytes do not interrupt: gdb sends a NACK ('-') whenever a reply takes longer than
//! its remote timeout (2 s), which long `monitor` commands do. While such bytes wait
//! unread the watcher re-checks every few milliseconds instead of spinning.

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running watcher. Dropping it stops it.
#[derive(Debug)]
pub struct Watcher {
    stop: UnixStream,
    thread: Option<JoinHandle<()>>,
    flag: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
}

impl Watcher {
    /// Starts watching `sock`; when gdb sends a Ctrl-C (or hangs up), `flag` is raised.
    pub fn start(sock: &TcpStream, flag: Arc<AtomicBool>) -> std::io::Result<Self> {
        let sock = sock.try_clone()?;
        let (stop, stop_rx) = UnixStream::pair()?;
        let fired = Arc::new(AtomicBool::new(false));
        let (f, fd) = (flag.clone(), fired.clone());
        let thread = std::thread::Builder::new()
            .name("ttvm-gdb-ctrl-c".into())
            .spawn(move || watch(&sock, &stop_rx, &f, &fd))?;
        Ok(Self { stop, thread: Some(thread), flag, fired })
    }

    /// Stops the thread. Returns whether it raised the flag. The flag is lowered so a
    /// Ctrl-C that arrived just as the operation finished on its own does not interrupt the
    /// next one (the byte itself stays in the socket for the event loop).
    pub fn finish(mut self) -> bool {
        self.shutdown();
        self.fired.load(Ordering::SeqCst)
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            // If the write fails the thread has already exited (it fired).
            let _ = self.stop.write_all(&[1]);
            let _ = t.join();
            self.flag.store(false, Ordering::SeqCst);
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How long to wait before looking again at bytes that are not a Ctrl-C.
const RECHECK_MS: i32 = 10;

/// Waits until `fds` are ready or `timeout_ms` passes (-1: forever). Returns false on error.
fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> bool {
    loop {
        // SAFETY: `fds` is a live, correctly sized slice of pollfd structs whose fds belong to
        // sockets borrowed for the duration of the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if r >= 0 {
            return true;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// Whether what is waiting on `sock` should stop the operation: a Ctrl-C, a hang-up or an
/// error.
fn should_interrupt(sock: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    match sock.peek(&mut buf) {
        Ok(0) => true,
        Ok(n) => buf[..n].contains(&0x03),
        Err(e) => e.kind() != std::io::ErrorKind::Interrupted,
    }
}

fn watch(sock: &TcpStream, stop: &UnixStream, flag: &AtomicBool, fired: &AtomicBool) {
    // Set while bytes that are not a Ctrl-C sit unread in the socket (they keep it readable,
    // so only the stop socket is polled then, with a timeout, before peeking again).
    let mut other_bytes_waiting = false;
    loop {
        let mut fds = [
            libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: stop.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let ok = if other_bytes_waiting { poll(&mut fds[1..], RECHECK_MS) } else { poll(&mut fds, -1) };
        if !ok || fds[1].revents != 0 {
            return;
        }
        if other_bytes_waiting || fds[0].revents != 0 {
            if should_interrupt(sock) {
                fired.store(true, Ordering::SeqCst);
                flag.store(true, Ordering::SeqCst);
                return;
            }
            other_bytes_waiting = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn raises_the_flag_on_ctrl_c_or_hang_up_only() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let flag = Arc::new(AtomicBool::new(false));

        let quiet = Watcher::start(&server, flag.clone()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!quiet.finish());
        assert!(!flag.load(Ordering::SeqCst));

        let w = Watcher::start(&server, flag.clone()).unwrap();
        // gdb's NACK after its remote timeout is not an interrupt...
        client.write_all(b"-").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!flag.load(Ordering::SeqCst), "a NACK must not interrupt");
        // ...a Ctrl-C behind it is.
        client.write_all(&[3]).unwrap();
        let t0 = std::time::Instant::now();
        while !flag.load(Ordering::SeqCst) {
            assert!(t0.elapsed().as_secs() < 5, "flag never raised");
            std::thread::yield_now();
        }
        assert!(w.finish());
        assert!(!flag.load(Ordering::SeqCst), "lowered after finish");

        // A hang-up interrupts too (gdb went away).
        let mut drain = [0u8; 8];
        let mut s2 = server.try_clone().unwrap();
        let _ = std::io::Read::read(&mut s2, &mut drain);
        let w = Watcher::start(&server, flag.clone()).unwrap();
        drop(client);
        let t0 = std::time::Instant::now();
        while !flag.load(Ordering::SeqCst) {
            assert!(t0.elapsed().as_secs() < 5, "hang-up not noticed");
            std::thread::yield_now();
        }
        assert!(w.finish());
    }
}
