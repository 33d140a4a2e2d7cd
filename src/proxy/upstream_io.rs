//! The byte stream to a server and its opening: TCP, then the PROXY header a `send_proxy` pool
//! sends, then TLS for a `tls` pool, all within the pool's connect timeout.
//!
//! Owns: [`UpstreamIo`] (plain or TLS, one type for the HTTP/1.1 exchange, the WebSocket tunnel
//! and the HTTP/2 connections), the PROXY header bytes, and whether an idle stream is still
//! open. Must not touch: HTTP (the exchange is in `upstream.rs` and `upstream_h2.rs`) or pools.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::upstream_tls::TlsClient;
use crate::config::ProxyVersion;

/// A connection to a server: cleartext or TLS.
///
/// The TLS side is boxed: its state (buffers, keys) is large, and a plain connection should not
/// carry its size.
pub enum UpstreamIo {
    /// Cleartext TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl UpstreamIo {
    /// The idle stream is still open and holds nothing unread, as far as can be told without
    /// waiting (and, for TCP, usually without a system call).
    pub fn is_idle_open(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self {
            UpstreamIo::Plain(io) => match io.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                // Readable while idle: the server closed it or sent bytes nobody asked for,
                // unless the readiness is left over from the last response. One read tells.
                Poll::Ready(Ok(())) => {
                    let mut probe = [0u8; 1];
                    matches!(io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            },
            // A TLS 1.3 server may send session tickets after the handshake: rustls takes them
            // in this read and it stays pending. An alert, a close or stray data ends reuse.
            UpstreamIo::Tls(io) => {
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                matches!(Pin::new(&mut **io).poll_read(&mut cx, &mut buf), Poll::Pending)
            }
        }
    }

    /// Pushes out what TLS holds back: tokio-rustls accepts a write into its buffer even when
    /// the socket is full, so bytes written are only on their way once this is ready. TCP holds
    /// nothing back.
    pub fn poll_flush_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            UpstreamIo::Plain(_) => Poll::Ready(Ok(())),
            UpstreamIo::Tls(io) => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    /// The protocol the server chose by ALPN, if TLS and one was chosen.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            UpstreamIo::Plain(_) => None,
            UpstreamIo::Tls(io) => io.get_ref().1.alpn_protocol(),
        }
    }
}

impl AsyncRead for UpstreamIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(io) => Pin::new(io).poll_read(cx, buf),
            UpstreamIo::Tls(io) => Pin::new(&mut **io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(io) => Pin::new(io).poll_write(cx, buf),
            UpstreamIo::Tls(io) => Pin::new(&mut **io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(io) => Pin::new(&mut **io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(io) => io.is_write_vectored(),
            UpstreamIo::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(io) => Pin::new(io).poll_flush(cx),
            UpstreamIo::Tls(io) => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(io) => Pin::new(io).poll_shutdown(cx),
            UpstreamIo::Tls(io) => Pin::new(&mut **io).poll_shutdown(cx),
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// Refused, reset or unreachable.
    Io(io::Error),
    /// No answer within the connect timeout (TCP and TLS handshake together).
    Timeout,
    /// The TLS handshake failed: the certificate does not verify, no common protocol, …
    Tls(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "connect: {e}"),
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Tls(e) => write!(f, "TLS handshake: {e}"),
        }
    }
}

/// How to reach one server.
pub struct Dial<'a> {
    /// Its socket address.
    pub addr: SocketAddr,
    /// Its address as configured (`host:port`): the TLS name unless the pool sets one.
    pub address: &'a str,
    /// Bound on TCP connect, PROXY header and TLS handshake together.
    pub timeout: Duration,
    /// The pool's TLS client side, if it speaks TLS.
    pub tls: Option<&'a TlsClient>,
    /// A PROXY protocol header to send first.
    pub proxy_header: Option<&'a [u8]>,
}

/// Opens a stream to a server: TCP, the PROXY header, TLS, as `dial` asks.
pub async fn open(dial: &Dial<'_>) -> Result<UpstreamIo, ConnectError> {
    match tokio::time::timeout(dial.timeout, open_unbounded(dial)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout),
    }
}

async fn open_unbounded(dial: &Dial<'_>) -> Result<UpstreamIo, ConnectError> {
    let mut io = TcpStream::connect(dial.addr).await.map_err(ConnectError::Io)?;
    // Small requests and responses must not wait for Nagle.
    let _ = io.set_nodelay(true);
    if let Some(header) = dial.proxy_header {
        io.write_all(header).await.map_err(ConnectError::Io)?;
    }
    let Some(tls) = dial.tls else {
        return Ok(UpstreamIo::Plain(io));
    };
    let name = tls.name_for(dial.address).map_err(ConnectError::Tls)?;
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let stream = connector.connect(name, io).await.map_err(|e| {
        // rustls errors arrive wrapped in io::Error; its text names the reason.
        match e.get_ref() {
            Some(inner) if e.kind() == io::ErrorKind::InvalidData => ConnectError::Tls(inner.to_string()),
            _ => ConnectError::Tls(e.to_string()),
        }
    })?;
    Ok(UpstreamIo::Tls(Box::new(stream)))
}

/// The (source, destination) pair as one address family: PROXY headers carry one family, and a
/// dual-stack listener sees IPv4 clients as IPv4-mapped IPv6 addresses.
pub fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let unmap = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    };
    let (s, d) = (unmap(source), unmap(destination));
    let map = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if s.is_ipv4() == d.is_ipv4() {
        (s, d)
    } else {
        (map(s), map(d))
    }
}

/// The PROXY header announcing a client at `source` that connected to `destination`.
pub fn proxy_header(version: ProxyVersion, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let pair = same_family(source, destination);
    match version {
        ProxyVersion::V1 => ppp::v1::Addresses::from(pair).to_string().into_bytes(),
        ProxyVersion::V2 => v2(ppp::v2::Command::Proxy, ppp::v2::Protocol::Stream, pair.into()),
    }
}

/// The header of a connection Ringway makes for itself (health checks): v1 `PROXY UNKNOWN`, v2
/// `LOCAL`, as HAProxy's `check-send-proxy` sends; the server uses the real peer address.
pub fn local_proxy_header(version: ProxyVersion) -> Vec<u8> {
    match version {
        ProxyVersion::V1 => ppp::v1::Addresses::Unknown.to_string().into_bytes(),
        ProxyVersion::V2 => v2(
            ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        ),
    }
}

fn v2(command: ppp::v2::Command, protocol: ppp::v2::Protocol, addresses: ppp::v2::Addresses) -> Vec<u8> {
    // Building into a Vec cannot fail: the addresses are fixed-size and no TLV is added.
    ppp::v2::Builder::with_addresses(ppp::v2::Version::Two | command, protocol, addresses)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_header_names_client_and_listener() {
        let h = proxy_header(ProxyVersion::V1, sa("192.0.2.7:51000"), sa("10.0.0.1:443"));
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 443\r\n");
        let h = proxy_header(
            ProxyVersion::V1,
            sa("[2001:db8::7]:51000"),
            sa("[2001:db8::1]:443"),
        );
        assert_eq!(h, b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n");
    }

    #[test]
    fn mixed_families_are_made_one() {
        // A mapped client on a dual-stack socket is plain IPv4.
        let (s, d) = same_family(sa("[::ffff:192.0.2.7]:1"), sa("10.0.0.1:2"));
        assert_eq!((s, d), (sa("192.0.2.7:1"), sa("10.0.0.1:2")));
        // A real IPv6 client on an IPv4 destination maps the destination.
        let (s, d) = same_family(sa("[2001:db8::7]:1"), sa("10.0.0.1:2"));
        assert_eq!((s, d), (sa("[2001:db8::7]:1"), sa("[::ffff:10.0.0.1]:2")));
        let h = proxy_header(ProxyVersion::V1, sa("[2001:db8::7]:1"), sa("10.0.0.1:2"));
        assert!(h.starts_with(b"PROXY TCP6 "), "{}", String::from_utf8_lossy(&h));
    }

    #[test]
    fn v2_header_parses_back() {
        let h = proxy_header(ProxyVersion::V2, sa("192.0.2.7:51000"), sa("10.0.0.1:443"));
        let parsed = ppp::v2::Header::try_from(&h[..]).unwrap();
        assert_eq!(parsed.command, ppp::v2::Command::Proxy);
        assert_eq!(
            parsed.addresses,
            ppp::v2::Addresses::from((sa("192.0.2.7:51000"), sa("10.0.0.1:443")))
        );
    }

    #[test]
    fn local_headers_carry_no_address() {
        assert_eq!(local_proxy_header(ProxyVersion::V1), b"PROXY UNKNOWN\r\n");
        let h = local_proxy_header(ProxyVersion::V2);
        let parsed = ppp::v2::Header::try_from(&h[..]).unwrap();
        assert_eq!(parsed.command, ppp::v2::Command::Local);
        assert_eq!(parsed.addresses, ppp::v2::Addresses::Unspecified);
    }
}
