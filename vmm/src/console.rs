//! The host side of the guest's serial port: where output goes and where input comes from.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// Where guest serial output is written.
#[derive(Debug)]
pub enum ConsoleOutput {
    /// The process's stdout, flushed after every burst.
    Stdout,
    /// A file.
    File(File),
    /// Discarded (the bytes are still logged by the recorder).
    Discard,
    /// Kept in memory (tests).
    Buffer(Vec<u8>),
}

impl ConsoleOutput {
    /// Creates (truncating) `path` as the output.
    pub fn file(path: &Path) -> std::io::Result<Self> {
        Ok(Self::File(File::create(path)?))
    }

    /// Writes guest output. Host write errors (a closed pipe) must not stop the guest, so
    /// they are ignored: the trace keeps the bytes regardless.
    pub fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match self {
            Self::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(bytes);
                let _ = out.flush();
            }
            Self::File(f) => {
                let _ = f.write_all(bytes);
            }
            Self::Discard => {}
            Self::Buffer(b) => b.extend_from_slice(bytes),
        }
    }
}

/// Guest serial input read without blocking from a file, a pipe or a terminal.
#[derive(Debug)]
pub struct ConsoleInput {
    source: Option<File>,
    pending: VecDeque<u8>,
    eof: bool,
}

impl ConsoleInput {
    /// No input at all.
    pub fn none() -> Self {
        Self { source: None, pending: VecDeque::new(), eof: true }
    }

    /// Input from a file: all of it is read now, so when it reaches the guest depends only
    /// on the guest (deterministic under the virtual clock).
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        let mut data = Vec::new();
        File::open(path)?.read_to_end(&mut data)?;
        Ok(Self::from_bytes(&data))
    }

    /// Input from a byte buffer (tests, replays of recorded input).
    pub fn from_bytes(data: &[u8]) -> Self {
        Self { source: None, pending: data.iter().copied().collect(), eof: true }
    }

    /// Input from the process's stdin when it is a terminal, a pipe or a file; none when
    /// stdin is /dev/null-like or closed.
    pub fn stdin() -> Self {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: dup of fd 0 yields a new fd owned by the File below (or -1, handled).
        let dup = unsafe { libc::dup(fd) };
        if dup < 0 {
            return Self::none();
        }
        // SAFETY: `dup` is a fresh, valid fd that nothing else owns.
        let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(dup) };
        Self { source: Some(file), pending: VecDeque::new(), eof: false }
    }

    /// Reads whatever is available right now without blocking.
    pub fn poll(&mut self) {
        let Some(f) = &mut self.source else { return };
        if self.eof {
            return;
        }
        loop {
            let mut pfd = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, zero timeout.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n <= 0 || pfd.revents & (libc::POLLIN | libc::POLLHUP) == 0 {
                return;
            }
            let mut buf = [0u8; 256];
            match f.read(&mut buf) {
                Ok(0) | Err(_) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.pending.extend(&buf[..n]),
            }
            if self.pending.len() > 4096 {
                return;
            }
        }
    }

    /// Bytes waiting to be offered to the guest.
    pub fn pending(&self) -> &VecDeque<u8> {
        &self.pending
    }

    /// Removes `n` bytes the guest accepted.
    pub fn consume(&mut self, n: usize) {
        self.pending.drain(..n.min(self.pending.len()));
    }

    /// Whether no more input will ever arrive.
    pub fn exhausted(&self) -> bool {
        self.eof && self.pending.is_empty()
    }

    /// Whether input may arrive later from a live source (terminal or pipe).
    pub fn is_live(&self) -> bool {
        self.source.is_some() && !self.eof
    }
}
