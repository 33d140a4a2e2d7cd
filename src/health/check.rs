//! One active health check over the network: `GET {path}` on a new connection, the status line
//! read with `httparse` (or the response of an HTTP/2 pool read by hyper), judged against
//! `expect`.
//!
//! Owns: the check's I/O and its time bounds (the pool's connect timeout for the connection,
//! as requests have; `health.timeout` for the whole check). A check speaks as the pool's
//! requests do: TLS for a `tls` pool, HTTP/2 for an `h2`/`h2c` pool, and a `send_proxy` pool's
//! servers get a LOCAL PROXY header first (HAProxy's `check-send-proxy`). Must not touch: the
//! server's state (the health thread applies the verdict).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{ExpectStatus, ProxyVersion, UpstreamProtocol};
use crate::proxy::state::PoolSettings;
use crate::proxy::upstream::{self, ConnectError};
use crate::proxy::upstream_tls::TlsClient;

use super::expect::{self, Verdict};

/// The largest response head a check reads; a health endpoint has no reason to send more.
const MAX_HEAD: usize = 16 * 1024;

/// Most headers a check's answer may have.
const MAX_HEADERS: usize = 64;

/// What and where to check.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The request, written once.
    pub request: Vec<u8>,
    /// The pool's connect timeout.
    pub connect_timeout: Duration,
    /// Bound on the whole check.
    pub timeout: Duration,
    /// Statuses that pass.
    pub expect: ExpectStatus,
    /// The server's address as configured (`Host`/`:authority`, and the TLS name).
    pub address: String,
    /// How the pool speaks to its servers.
    pub transport: Transport,
}

/// How a pool speaks to its servers, as far as a check must do likewise.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// HTTP/1.1, h2 or h2c.
    pub protocol: UpstreamProtocol,
    /// The pool's TLS client side, if `tls`.
    pub tls: Option<Arc<TlsClient>>,
    /// The PROXY header version, if `send_proxy`.
    pub send_proxy: Option<ProxyVersion>,
}

impl Transport {
    /// The transport of a pool.
    pub fn of(settings: &PoolSettings) -> Transport {
        Transport {
            protocol: settings.protocol,
            tls: settings.tls.clone(),
            send_proxy: settings.send_proxy,
        }
    }

    /// Whether a check made for `self` still speaks as `other` asks (a reload builds a new TLS
    /// client, which may trust other roots).
    pub fn same_as(&self, other: &Transport) -> bool {
        self.protocol == other.protocol
            && self.send_proxy == other.send_proxy
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// The request a check sends: `Host` is the server's address as written, the connection closes
/// after the answer.
pub fn request(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: ringway-health\r\n\
         Accept: */*\r\n\r\n"
    )
    .into_bytes()
}

/// Runs one check.
pub async fn probe(target: &Target) -> Verdict {
    match tokio::time::timeout(target.timeout, exchange(target)).await {
        Ok(Ok(status)) => expect::judge(&target.expect, status),
        Ok(Err(detail)) => Verdict::failed(detail),
        Err(_) => Verdict::failed("timeout"),
    }
}

/// Connects, sends the request and reads the status of the answer's head.
async fn exchange(target: &Target) -> Result<u16, String> {
    let t = &target.transport;
    let header = t.send_proxy.map(crate::proxy::upstream_io::local_proxy_header);
    let dial = upstream::Dial {
        addr: target.addr,
        address: &target.address,
        timeout: target.connect_timeout,
        tls: t.tls.as_deref(),
        proxy_header: header.as_deref(),
    };
    let mut conn = upstream::connect(&dial).await.map_err(|e| match e {
        ConnectError::Timeout => "connect timeout".to_string(),
        ConnectError::Io(e) => io_detail(&e),
        ConnectError::Tls(e) => format!("TLS: {e}"),
    })?;
    if t.protocol != UpstreamProtocol::Http1 {
        return h2_exchange(conn.io, target).await;
    }
    conn.io
        .write_all(&target.request)
        .await
        .map_err(|e| io_detail(&e))?;
    conn.io.flush().await.map_err(|e| io_detail(&e))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = conn.io.read(&mut chunk).await.map_err(|e| io_detail(&e))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "closed without a response".into()
            } else {
                "closed in the middle of the response head".into()
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                return response.code.ok_or_else(|| "bad response: no status".to_string());
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err("bad response: head too large".into()),
            Err(e) => return Err(format!("bad response: {e}")),
        }
    }
}

/// The check over HTTP/2: the same GET, its status read by hyper's client.
async fn h2_exchange(io: upstream::UpstreamIo, target: &Target) -> Result<u16, String> {
    use http_body_util::Empty;
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let path = std::str::from_utf8(&target.request)
        .ok()
        .and_then(|r| r.split(' ').nth(1))
        .unwrap_or("/");
    let uri = crate::proxy::upstream_translate::h2_uri(t_is_tls(target), None, &target.address, path)
        .map_err(|e| format!("bad check request: {e}"))?;
    let req = http::Request::builder()
        .method(http::Method::GET)
        .uri(uri)
        .header(http::header::USER_AGENT, "ringway-health")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("bad check request: {e}"))?;
    let result = send.send_request(req).await;
    driver.abort();
    result
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("bad response: {e}"))
}

fn t_is_tls(target: &Target) -> bool {
    target.transport.tls.is_some()
}

/// Short words for a socket error: "connection refused", "connection reset", …
fn io_detail(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::BrokenPipe => "connection closed while sending".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn target_answering(answer: &'static [u8]) -> (Target, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            // Answered in two pieces, to exercise a partial head.
            let (a, b) = answer.split_at(answer.len() / 2);
            let _ = s.write_all(a).await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = s.write_all(b).await;
            got
        });
        let target = Target {
            addr,
            request: request("/healthz", &addr.to_string()),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            expect: ExpectStatus::default(),
            address: addr.to_string(),
            transport: Transport::default(),
        };
        (target, task)
    }

    #[tokio::test]
    async fn a_200_passes_and_the_request_is_as_documented() {
        let (t, task) = target_answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let v = probe(&t).await;
        assert_eq!(
            v,
            Verdict {
                passed: true,
                detail: "200".into()
            }
        );
        let got = String::from_utf8(task.await.unwrap()).unwrap();
        assert_eq!(
            got,
            format!(
                "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: \
                 ringway-health\r\nAccept: */*\r\n\r\n",
                t.addr
            )
        );
    }

    #[tokio::test]
    async fn a_503_fails_with_what_was_expected() {
        let (t, _task) = target_answering(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(probe(&t).await, Verdict::failed("expected 2xx, got 503"));
    }

    #[tokio::test]
    async fn garbage_is_a_bad_response() {
        let (t, _task) = target_answering(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
        let v = probe(&t).await;
        assert!(!v.passed);
        assert!(v.detail.starts_with("bad response"), "{}", v.detail);
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let t = Target {
            addr,
            request: request("/", "x"),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            expect: ExpectStatus::default(),
            address: addr.to_string(),
            transport: Transport::default(),
        };
        assert_eq!(probe(&t).await, Verdict::failed("connection refused"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(s);
        });
        let t = Target {
            addr,
            request: request("/", "x"),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
            expect: ExpectStatus::default(),
            address: addr.to_string(),
            transport: Transport::default(),
        };
        assert_eq!(probe(&t).await, Verdict::failed("timeout"));
    }

    #[tokio::test]
    async fn a_close_without_answer_fails() {
        let (t, _task) = target_answering(b"").await;
        assert_eq!(probe(&t).await, Verdict::failed("closed without a response"));
    }
}
