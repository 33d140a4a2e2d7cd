//! TLS termination on listeners: certificates, SNI, ALPN, session resumption, and their reload.
//!
//! Owns: one listener's rustls server configuration (TLS 1.2 and 1.3 only, ALPN `h2` then
//! `http/1.1`, session IDs and tickets on), the certificate chosen for each ClientHello, the
//! handshake of a new connection, the plain-text answer to plain HTTP sent to a TLS port, and
//! swapping certificates in on a reload. Must not touch: what happens after the handshake
//! (`server.rs` serves the stream) or how files are judged (`config::tls_check`).
//!
//! One [`ServerTls`] exists per listener and is shared by every worker: the session cache and
//! the ticket keys are shared too, so a client resumes on whichever worker its next connection
//! lands. A reload builds a new `rustls::ServerConfig` (re-reading every file) and swaps it in:
//! connections already open keep the configuration they were accepted with.

pub mod sni;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;
use crate::config::tls_check::load_pair;
use sni::SniTable;

/// Sessions remembered for resumption by session ID, per listener (nginx's
/// `ssl_session_cache shared:SSL:10m` holds about 40 000; rustls' entries are small).
const SESSION_CACHE_ENTRIES: usize = 20_000;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a client speaking plain HTTP to a TLS port gets, as nginx answers it.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 57\r\n\
Connection: close\r\n\
\r\n\
This port speaks HTTPS: use an https:// URL to reach it.\n";

/// The TLS side of one listener, shared by the workers and updated in place by reloads.
pub struct ServerTls {
    /// The configuration new handshakes use.
    config: ArcSwap<ServerConfig>,
    /// Session-ID cache, kept across reloads.
    sessions: Arc<dyn StoresServerSessions>,
    /// Ticket keys (rotated by rustls), kept across reloads.
    ticketer: Arc<dyn ProducesTickets>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// Picks a listener's certificate by the ClientHello's server name.
#[derive(Debug)]
struct Resolver {
    table: SniTable,
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = match hello.server_name() {
            None => 0,
            Some(name) => self.table.lookup(name).unwrap_or_else(|| {
                tracing::debug!("TLS: no certificate names `{name}`: the default one is served");
                0
            }),
        };
        self.keys.get(index).cloned()
    }
}

impl ServerTls {
    /// Reads the certificates of `tls` and builds the listener's TLS side.
    pub fn new(tls: &TlsConfig) -> Result<ServerTls, String> {
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| format!("cannot make session ticket keys: {e}"))?;
        let sessions: Arc<dyn StoresServerSessions> =
            rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        let config = build(tls, sessions.clone(), ticketer.clone())?;
        Ok(ServerTls {
            config: ArcSwap::new(config),
            sessions,
            ticketer,
        })
    }

    /// The TLS side of listener `l`, if it terminates TLS; errors name the listener.
    pub fn for_listener(l: &crate::config::ListenerConfig) -> Result<Option<Arc<ServerTls>>, String> {
        l.tls
            .as_ref()
            .map(|t| ServerTls::new(t).map(Arc::new))
            .transpose()
            .map_err(|e| format!("listener `{}`: {e}", l.name))
    }

    /// Re-reads the certificates of `tls` into a configuration for [`ServerTls::install`],
    /// keeping this listener's session cache and ticket keys; nothing changes until then.
    pub fn prepare(&self, tls: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
        build(tls, self.sessions.clone(), self.ticketer.clone())
    }

    /// New handshakes use `config` from now on; open connections keep theirs.
    pub fn install(&self, config: Arc<ServerConfig>) {
        self.config.store(config);
    }

    /// Completes the handshake of a new connection; `true` with the stream when ALPN chose h2.
    ///
    /// A connection that does not start with a TLS handshake record gets a plain-text 400 (the
    /// client most likely sent `http://` to this port) and an error; so does a failed
    /// handshake (garbage, a truncated hello, TLS 1.1 or older: rustls answers with an alert).
    pub async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> std::io::Result<(TlsStream<TcpStream>, bool)> {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the TLS handshake",
            ));
        }
        if first[0] != TLS_HANDSHAKE {
            // Rare: boxed so that the buffer it drains with does not enlarge every handshake.
            Box::pin(answer_plain_http(stream)).await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{peer} sent plain HTTP (or not TLS) to a TLS port: answered 400"),
            ));
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        let tls = acceptor.accept(stream).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((tls, h2))
    }
}

/// A rustls configuration serving the certificates of `tls` with the given resumption state.
fn build(
    tls: &TlsConfig,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
) -> Result<Arc<ServerConfig>, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut keys = Vec::with_capacity(tls.certs.len());
    let mut names = Vec::with_capacity(tls.certs.len());
    for pair in &tls.certs {
        let loaded = load_pair(pair, now).map_err(|e| e.message)?;
        keys.push(loaded.certified);
        names.push(loaded.names);
    }
    if keys.is_empty() {
        return Err("TLS needs at least one certificate".to_string());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver {
            table: SniTable::new(&names),
            keys,
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = sessions;
    config.ticketer = ticketer;
    Ok(Arc::new(config))
}

/// Answers plain HTTP on a TLS port with a 400 and closes, reading what the client sent so
/// that the close does not reset the connection before the client has read the answer.
async fn answer_plain_http(mut stream: TcpStream) {
    /// At most this much of the client's request is read and thrown away.
    const DRAIN_LIMIT: usize = 64 * 1024;
    if stream.write_all(PLAIN_HTTP_ANSWER).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut buf = [0u8; 2048];
    let mut drained = 0;
    // The caller's header timeout bounds the whole; this bounds a client that never closes.
    let drain = async {
        while drained < DRAIN_LIMIT {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_http_answer_is_well_framed() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        assert_eq!(body.len(), length);
    }
}
