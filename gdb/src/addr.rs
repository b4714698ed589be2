//! Where to listen: parsing `[ADDR:]PORT` and binding with a clear error for a busy port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};

use crate::error::GdbError;

/// The host used when only a port is given: gdb usually runs on the same machine, and
/// serving a debug stub to the network by default would be a surprise.
pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn bad(text: &str, reason: impl Into<String>) -> GdbError {
    GdbError::BadAddress { text: text.to_string(), reason: reason.into() }
}

fn parse_port(text: &str, port: &str) -> Result<u16, GdbError> {
    if port.is_empty() {
        return Err(bad(text, "the port is missing"));
    }
    port.parse::<u16>().map_err(|_| bad(text, format!("{port:?} is not a port number (0-65535)")))
}

/// Parses `PORT`, `:PORT`, `ADDR:PORT`, `[IPV6]:PORT` or `HOSTNAME:PORT`. A bare port
/// listens on 127.0.0.1. Port 0 asks the OS for a free port.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, GdbError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(bad(text, "it is empty"));
    }
    if t.starts_with('[') {
        return t.parse::<SocketAddr>().map_err(|_| bad(text, "not a valid [IPv6]:PORT address"));
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Ok(SocketAddr::new(DEFAULT_HOST, parse_port(text, t)?));
    };
    let port = parse_port(text, port)?;
    if host.is_empty() {
        return Ok(SocketAddr::new(DEFAULT_HOST, port));
    }
    if host.contains(':') {
        return Err(bad(text, "an IPv6 address must be written in brackets: [::1]:PORT"));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    // A host name ("localhost"): prefer IPv4, which is what `target remote host:port` tries
    // first on most systems.
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().map_err(|e| bad(text, e.to_string()))?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| bad(text, format!("{host:?} does not resolve to an address")))
}

/// Binds a listening socket, turning EADDRINUSE into [`GdbError::PortInUse`].
pub fn bind(addr: SocketAddr) -> Result<TcpListener, GdbError> {
    TcpListener::bind(addr).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            GdbError::PortInUse { ip: addr.ip(), port: addr.port() }
        } else {
            GdbError::Bind { addr, source }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_port_listens_on_localhost() {
        assert_eq!(parse_listen_addr("1234").unwrap(), "127.0.0.1:1234".parse().unwrap());
        assert_eq!(parse_listen_addr(":1234").unwrap(), "127.0.0.1:1234".parse().unwrap());
        assert_eq!(parse_listen_addr(" 0 ").unwrap(), "127.0.0.1:0".parse().unwrap());
    }

    #[test]
    fn explicit_addresses() {
        assert_eq!(parse_listen_addr("0.0.0.0:9").unwrap(), "0.0.0.0:9".parse().unwrap());
        assert_eq!(parse_listen_addr("[::1]:77").unwrap(), "[::1]:77".parse().unwrap());
        assert_eq!(parse_listen_addr("localhost:5").unwrap().port(), 5);
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        for t in
            ["", "abc", "1234x", "65536", "host:", "1.2.3.4:-1", "::1:80", "[::1]", "[zz]:1", "nosuchhost.invalid:1"]
        {
            let e = parse_listen_addr(t).expect_err(t);
            assert!(matches!(e, GdbError::BadAddress { .. }), "{t}: {e}");
            assert!(e.to_string().contains("[ADDR:]PORT"), "{e}");
        }
    }

    #[test]
    fn busy_port_is_reported_as_such() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let e = bind(addr).expect_err("second bind");
        assert!(matches!(e, GdbError::PortInUse { port, .. } if port == addr.port()), "{e}");
        assert!(e.to_string().contains("already in use"));
    }
}
