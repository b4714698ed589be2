//! The host side of the guest's serial port: where output goes and where input comes from.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Another output, with every complete line shown to a matcher first (`ttvm run
    /// --record-from-output`).
    Watched(Box<WatchedOutput>),
}

/// Decides whether a line of output is the one looked for.
type LineMatcher = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// Output that also looks for a line: once a complete line satisfies the matcher, `flag`
/// is raised (the free engine's stop flag, so the run stops right after the write that
/// ended the line) and [`WatchedOutput::matched`] says so.
pub struct WatchedOutput {
    inner: ConsoleOutput,
    matcher: LineMatcher,
    flag: &'static AtomicBool,
    line: Vec<u8>,
    matched: bool,
}

impl std::fmt::Debug for WatchedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedOutput").field("inner", &self.inner).field("matched", &self.matched).finish()
    }
}

impl WatchedOutput {
    /// Writes to `inner`, raising `flag` after the first line `matcher` accepts (the line
    /// without its end, `\r` and `\n` removed).
    pub fn new(
        inner: ConsoleOutput,
        matcher: impl FnMut(&[u8]) -> bool + Send + 'static,
        flag: &'static AtomicBool,
    ) -> Self {
        Self { inner, matcher: Box::new(matcher), flag, line: Vec::new(), matched: false }
    }

    /// Whether a line matched.
    pub fn matched(&self) -> bool {
        self.matched
    }

    /// The output it wrote to.
    pub fn into_inner(self) -> ConsoleOutput {
        self.inner
    }

    fn write(&mut self, bytes: &[u8]) {
        self.inner.write(bytes);
        if self.matched {
            return;
        }
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                if (self.matcher)(line.strip_suffix(b"\r").unwrap_or(&line)) {
                    self.matched = true;
                    self.flag.store(true, Ordering::SeqCst);
                    return;
                }
            } else if self.line.len() < MAX_WATCHED_LINE {
                self.line.push(b);
            }
        }
    }
}

/// Longest line prefix a [`WatchedOutput`] keeps (a guest printing without newlines must
/// not grow it without bound).
const MAX_WATCHED_LINE: usize = 4096;

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
            Self::Watched(w) => w.write(bytes),
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

#[cfg(test)]
mod watched_tests {
    use super::*;

    #[test]
    fn a_watched_output_raises_its_flag_after_the_first_matching_line() {
        static FLAG: AtomicBool = AtomicBool::new(false);
        let mut out = ConsoleOutput::Watched(Box::new(WatchedOutput::new(
            ConsoleOutput::Buffer(Vec::new()),
            |line: &[u8]| line == b"ready",
            &FLAG,
        )));
        out.write(b"not ready\r\nrea");
        assert!(!FLAG.load(Ordering::SeqCst));
        out.write(b"dy\r\nmore\n");
        assert!(FLAG.load(Ordering::SeqCst));
        let ConsoleOutput::Watched(w) = out else { unreachable!() };
        assert!(w.matched());
        assert!(matches!(&w.inner, ConsoleOutput::Buffer(b) if b == b"not ready\r\nready\r\nmore\n"));
    }
}
