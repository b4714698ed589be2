//! The write side of the connection, as gdbstub sees it.

use std::net::TcpStream;

use gdbstub::conn::Connection;

use crate::framing::frame;

/// Buffers gdbstub's output and sends it on `flush`. Can be muted, which the event loop
/// uses to replay gdb's session set-up packets into a fresh protocol state machine without
/// sending the answers twice.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    /// While set, output is dropped.
    pub muted: bool,
}

impl Conn {
    /// Wraps a stream (a clone of the session's socket).
    pub fn new(stream: TcpStream) -> Self {
        Self { stream, out: Vec::new(), muted: false }
    }

    /// Sends `body` as a packet, outside gdbstub (error replies for packets it never saw).
    pub fn send_packet(&mut self, body: &[u8]) -> std::io::Result<()> {
        self.send_raw(&frame(body))
    }

    /// Sends raw bytes (an ACK or NACK).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.extend_from_slice(bytes);
        self.flush_out()
    }

    /// Sends gdb a console message (`O` packet). Only valid while gdb waits for a stop
    /// reply, where gdb prints it.
    pub fn console(&mut self, text: &str) -> std::io::Result<()> {
        let mut body = b"O".to_vec();
        for b in text.bytes() {
            body.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        self.send_packet(&body)
    }

    fn flush_out(&mut self) -> std::io::Result<()> {
        if self.muted {
            self.out.clear();
            return Ok(());
        }
        let r = std::io::Write::write_all(&mut self.stream, &self.out);
        self.out.clear();
        r
    }
}

impl Connection for Conn {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> std::io::Result<()> {
        self.out.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_out()
    }

    fn on_session_start(&mut self) -> std::io::Result<()> {
        // Replies are small and latency-bound (one per reverse-stepi).
        self.stream.set_nodelay(true)
    }
}
