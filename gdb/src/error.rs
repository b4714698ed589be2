//! Errors of the gdb server.

use std::net::SocketAddr;

/// Why serving gdb failed. Problems caused by what gdb sends (malformed packets, bad
/// addresses, refused writes) are not here: they are answered with protocol errors and the
/// session goes on.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    /// The `[ADDR:]PORT` text could not be understood.
    #[error("{text:?} is not a listen address: {reason} (expected [ADDR:]PORT, e.g. 1234 or 127.0.0.1:1234)")]
    BadAddress {
        /// What was given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process listens on the port.
    #[error("port {port} on {ip} is already in use (is another ttvm or gdbserver running? pick another port)")]
    PortInUse {
        /// The address.
        ip: std::net::IpAddr,
        /// The port.
        port: u16,
    },
    /// Binding failed for another reason.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Accepting or using the connection failed.
    #[error("gdb connection: {0}")]
    Io(#[from] std::io::Error),
    /// The protocol library failed in a way the session cannot recover from.
    #[error("gdb protocol: {0}")]
    Protocol(String),
}

impl ttvm_vmm::error_kind::Classify for GdbError {
    fn kind(&self) -> ttvm_vmm::error_kind::ErrorKind {
        match self {
            Self::BadAddress { .. } | Self::PortInUse { .. } => ttvm_vmm::error_kind::ErrorKind::BadInput,
            Self::Bind { .. } | Self::Io(_) | Self::Protocol(_) => ttvm_vmm::error_kind::ErrorKind::Host,
        }
    }
}
