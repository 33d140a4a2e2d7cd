//! Helpers of the edge tests (PROXY protocol, trusted proxies, upstream reuse): PROXY headers
//! made with the `ppp` crate, a raw one-request client, and a scripted server that answers with
//! exact bytes and records on which connection each request came.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A PROXY v1 header for a TCP connection from `src` to `dst`.
pub fn proxy_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let addresses: ppp::v1::Addresses = (src, dst).into();
    // Its text form is the whole header line.
    addresses.to_string().into_bytes()
}

/// A PROXY v2 header (PROXY command, TCP) from `src` to `dst`, with one TLV the receiver must
/// skip.
pub fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(0x21, ppp::v2::Protocol::Stream, (src, dst))
        .write_tlv(ppp::v2::Type::Authority, b"app.example")
        .expect("TLV")
        .build()
        .expect("v2 header")
}

/// A PROXY v2 LOCAL header (the balancer's own health check).
pub fn proxy_v2_local() -> Vec<u8> {
    ppp::v2::Builder::new(0x20, 0x00)
        .build()
        .expect("v2 LOCAL header")
}

/// One response as a raw client read it.
#[derive(Debug, Default)]
pub struct RawResponse {
    /// Status code; `None` if the connection closed without a response.
    pub status: Option<u16>,
    /// The head, as text.
    pub head: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's value in the head.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Writes `bytes` in ONE write on a new connection to `addr` and reads what comes back until
/// the server closes (the request should say `Connection: close`).
pub async fn one_write(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    read_until_close(&mut s).await
}

/// Reads until the peer closes (at most 10 s) and parses one response.
pub async fn read_until_close(s: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    parse_response(&buf)
}

/// Parses one HTTP/1.1 response from `buf`.
pub fn parse_response(buf: &[u8]) -> RawResponse {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return RawResponse::default();
    };
    let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
    let mut r = RawResponse {
        status: super::parse_status(&head),
        head,
        body: Vec::new(),
    };
    let rest = &buf[end + 4..];
    r.body = if r.header("transfer-encoding").is_some() {
        dechunk(rest)
    } else if let Some(n) = r.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    r
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
    out
}

/// One request a scripted server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The connection it came on (0 = the first accepted).
    pub conn: usize,
    /// Its head, as text.
    pub head: String,
    /// Its body, as received (still chunked if it was).
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// What the scripted server does after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Reads the next request on the same connection.
    KeepOpen,
    /// Closes the connection.
    Close,
    /// Reads and throws away whatever comes, until the peer closes: the request was answered
    /// before its body, which is never taken as a request.
    Drain,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The exact bytes written.
    pub bytes: Vec<u8>,
    /// Written as soon as the head arrives, before the body is read.
    pub early: bool,
    /// What follows.
    pub then: Then,
}

impl Answer {
    /// `bytes`, then the connection is kept for the next request.
    pub fn keep(bytes: &[u8]) -> Answer {
        Answer {
            bytes: bytes.to_vec(),
            early: false,
            then: Then::KeepOpen,
        }
    }
}

type Script = dyn Fn(usize, &Received) -> Answer + Send + Sync;

/// A raw HTTP/1.1 server answering each request with the bytes its script gives, counting
/// connections and recording requests.
pub struct ScriptServer {
    /// Its address, as a config string.
    pub addr: String,
    connections: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptServer {
    /// Starts a server; `script(n, request)` answers the `n`-th request (from 0, all
    /// connections together).
    pub async fn start(script: impl Fn(usize, &Received) -> Answer + Send + Sync + 'static) -> ScriptServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let closed = Arc::new(AtomicUsize::new(0));
        let (count, ends, log) = (connections.clone(), closed.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = count.fetch_add(1, Ordering::SeqCst);
                let (log, script, ends) = (log.clone(), script.clone(), ends.clone());
                tokio::spawn(async move {
                    serve(stream, conn, log, script).await;
                    ends.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        ScriptServer {
            addr,
            connections,
            closed,
            received,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections that ended (closed by either side) so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Requests received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream, conn: usize, log: Arc<Mutex<Vec<Received>>>, script: Arc<Script>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut req = Received {
            conn,
            head,
            body: Vec::new(),
        };
        let (n, answer) = {
            let mut all = log.lock().expect("log");
            let n = all.len();
            all.push(req.clone());
            (n, script(n, &req))
        };
        if answer.early {
            let _ = s.write_all(&answer.bytes).await;
        }
        // The body, by Content-Length or up to the last chunk.
        let length = req.header("content-length").and_then(|v| v.parse::<usize>().ok());
        let chunked = req.header("transfer-encoding").is_some();
        loop {
            let complete = match length {
                Some(n) => buf.len() >= n,
                None if chunked => buf.windows(5).any(|w| w == b"0\r\n\r\n"),
                None => true,
            };
            if complete || answer.then == Then::Drain {
                break;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
        let take = match length {
            Some(n) => n.min(buf.len()),
            None if chunked => buf
                .windows(5)
                .position(|w| w == b"0\r\n\r\n")
                .map_or(buf.len(), |i| i + 5),
            None => 0,
        };
        req.body = buf.drain(..take).collect();
        if let Some(r) = log.lock().expect("log").get_mut(n) {
            r.body = req.body.clone();
        }
        if !answer.early && s.write_all(&answer.bytes).await.is_err() {
            return;
        }
        match answer.then {
            Then::KeepOpen => {}
            Then::Close => return,
            Then::Drain => {
                while let Ok(k) = s.read(&mut chunk).await {
                    if k == 0 {
                        return;
                    }
                }
                return;
            }
        }
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Makes one named after `tag`, the process and the time.
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("ringway-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The JSON access log line of the request with id `rid`, waiting for it to be written.
pub async fn log_line(path: &std::path::Path, rid: &str) -> serde_json::Value {
    let line = super::poll_until(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().find(|l| l.contains(rid)).map(str::to_owned)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no access log line for {rid}: {}",
            std::fs::read_to_string(path).unwrap_or_default()
        )
    });
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// [`super::client`], with the TLS crypto provider reqwest needs installed first (reqwest is
/// built without one of its own).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    super::client()
}
