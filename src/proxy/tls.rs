//! TLS termination on listeners: certificates, SNI, ALPN, session resumption, and their reload.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The TLS side of one listener, shared by the workers and updated in place by reloads.
#[derive(Debug)]
pub struct ServerTls {}

impl ServerTls {
    /// Completes the handshake of a new connection; `true` with the stream when ALPN chose h2.
    pub async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> std::io::Result<(TlsStream<TcpStream>, bool)> {
        let _ = (stream, peer);
        Err(std::io::Error::other("TLS is not supported yet"))
    }
}
