//! The PROXY protocol (v1 and v2) on client connections: the header an outer load balancer
//! sends first, naming the client it accepted.
//!
//! Owns: reading and checking the header on a listener with `proxy_protocol = true`, and the
//! trust list `proxy_protocol_from`. Must not touch: TLS or HTTP; the caller goes on with the
//! stream positioned just after the header.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The addresses a PROXY header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client, as the balancer in front saw it.
    pub source: SocketAddr,
    /// The address the client connected to.
    pub destination: SocketAddr,
}

/// Why a connection's PROXY header was refused.
#[derive(Debug)]
pub enum HeaderError {
    /// Not implemented yet (foundation placeholder).
    Unsupported,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Unsupported => f.write_str("PROXY protocol is not supported yet"),
        }
    }
}

/// Reads the PROXY header at the start of `stream`, leaving the stream just after it.
/// `Ok(None)` for a LOCAL command (the balancer's own health check): the socket's addresses
/// apply.
pub async fn read_header(
    stream: &TcpStream,
    peer: SocketAddr,
    from: &[ipnet::IpNet],
) -> Result<Option<Addresses>, HeaderError> {
    let _ = (stream, peer, from);
    Err(HeaderError::Unsupported)
}

/// Logs a refused connection.
pub fn log_refused(peer: SocketAddr, listener: &str, e: &HeaderError) {
    tracing::warn!("listener `{listener}`: connection from {peer} closed: {e}");
}
