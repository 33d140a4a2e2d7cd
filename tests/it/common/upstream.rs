//! Test pieces for the upstream side: a private CA (rcgen), servers that speak TLS, HTTP/2 or
//! read a PROXY header first, and hyper clients that see trailers.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Installs the process's rustls provider (reqwest and the test servers need one).
pub fn crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A directory removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary one.
    pub fn new(tag: &str) -> TempDir {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("ringway-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// Writes `text` to `name` in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, for a server.
pub struct Leaf {
    /// The chain (the leaf only).
    pub chain: Vec<CertificateDer<'static>>,
    /// The key.
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    /// A new CA.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("ca key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("ca cert"),
        }
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// How a [`TestServer`] takes its connections.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// TLS with this certificate, offering these ALPN protocols.
    pub tls: Option<(Arc<Leaf>, Vec<Vec<u8>>)>,
    /// Read a PROXY header (v1 or v2) before anything else.
    pub proxy_protocol: bool,
    /// Only HTTP/2 (prior knowledge or ALPN h2); otherwise HTTP/1.1 and HTTP/2 both.
    pub h2_only: bool,
}

/// What a [`TestServer`] has seen.
#[derive(Default)]
pub struct ServerLog {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// TLS handshakes completed.
    pub handshakes: AtomicUsize,
    /// TLS sessions that were resumed.
    pub resumed: AtomicUsize,
    /// The SNI names received, one per handshake (`None`: no SNI).
    pub sni: Mutex<Vec<Option<String>>>,
    /// The PROXY headers received: (source, destination), `None` for LOCAL/UNKNOWN.
    pub proxy: Mutex<Vec<Option<(SocketAddr, SocketAddr)>>>,
    /// Requests answered.
    pub requests: AtomicUsize,
    /// Notified by a test: an `x-test-reset` answer then breaks off.
    pub reset: Arc<tokio::sync::Notify>,
}

/// A hyper server on 127.0.0.1 (TLS, PROXY header, HTTP/1.1 and/or HTTP/2 as asked) whose
/// answer describes the request, as [`super::Backend`]'s does, plus its authority and trailers.
///
/// Request headers steer it: `x-test-echo` streams the request body (and trailers) back;
/// `x-test-trailers: v` ends the answer with the trailer `x-checksum: v`; `x-test-reset` sends a
/// first piece of body and breaks off (resets the HTTP/2 stream) once `log.reset` is notified;
/// `Upgrade: websocket` is answered with 101 and an echo of the upgraded connection.
pub struct TestServer {
    /// Bound address.
    pub addr: SocketAddr,
    /// What it saw.
    pub log: Arc<ServerLog>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server named `name`.
    pub async fn start(name: &str, options: ServerOptions) -> TestServer {
        crypto();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(ServerLog::default());
        let acceptor = options.tls.as_ref().map(|(leaf, alpn)| {
            let mut config = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
                .expect("server config");
            config.alpn_protocols = alpn.clone();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let name: Arc<str> = name.into();
        let task = tokio::spawn({
            let log = log.clone();
            async move {
                let mut conns = JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            log.connections.fetch_add(1, Ordering::SeqCst);
                            conns.spawn(serve(stream, options.clone(), acceptor.clone(), log.clone(), name.clone()));
                        }
                        Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    }
                }
            }
        });
        TestServer { addr, log, task }
    }

    /// The address as a config string.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.log.connections.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut stream: TcpStream,
    options: ServerOptions,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    log: Arc<ServerLog>,
    name: Arc<str>,
) {
    if options.proxy_protocol {
        match read_proxy_header(&mut stream).await {
            Some(addrs) => log.proxy.lock().unwrap().push(addrs),
            None => return,
        }
    }
    match acceptor {
        Some(acceptor) => {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            {
                let (_, conn) = tls.get_ref();
                log.handshakes.fetch_add(1, Ordering::SeqCst);
                if matches!(conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed)) {
                    log.resumed.fetch_add(1, Ordering::SeqCst);
                }
                log.sni
                    .lock()
                    .unwrap()
                    .push(conn.server_name().map(str::to_owned));
            }
            http(tls, options.h2_only, log, name).await;
        }
        None => http(stream, options.h2_only, log, name).await,
    }
}

async fn http<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    h2_only: bool,
    log: Arc<ServerLog>,
    name: Arc<str>,
) {
    let svc = service_fn(move |req| answer(req, log.clone(), name.clone()));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if h2_only {
        builder = builder.http2_only();
    }
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await;
}

/// Reads a PROXY header (v1 or v2) with `ppp`; `Some(None)` for LOCAL / UNKNOWN.
async fn read_proxy_header(stream: &mut TcpStream) -> Option<Option<(SocketAddr, SocketAddr)>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so that nothing after the header is taken from the stream.
    loop {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
        if buf.starts_with(b"PROXY") {
            if buf.ends_with(b"\r\n") {
                let h = ppp::v1::Header::try_from(std::str::from_utf8(&buf).ok()?).ok()?;
                return Some(match h.addresses {
                    ppp::v1::Addresses::Tcp4(a) => Some((
                        SocketAddr::from((a.source_address, a.source_port)),
                        SocketAddr::from((a.destination_address, a.destination_port)),
                    )),
                    ppp::v1::Addresses::Tcp6(a) => Some((
                        SocketAddr::from((a.source_address, a.source_port)),
                        SocketAddr::from((a.destination_address, a.destination_port)),
                    )),
                    ppp::v1::Addresses::Unknown => None,
                });
            }
        } else if buf.len() >= 16 {
            let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            if buf.len() == len {
                let h = ppp::v2::Header::try_from(&buf[..]).ok()?;
                return Some(match (h.command, h.addresses) {
                    (ppp::v2::Command::Local, _) => None,
                    (_, ppp::v2::Addresses::IPv4(a)) => Some((
                        SocketAddr::from((a.source_address, a.source_port)),
                        SocketAddr::from((a.destination_address, a.destination_port)),
                    )),
                    (_, ppp::v2::Addresses::IPv6(a)) => Some((
                        SocketAddr::from((a.source_address, a.source_port)),
                        SocketAddr::from((a.destination_address, a.destination_port)),
                    )),
                    _ => None,
                });
            }
        }
        if buf.len() > 600 {
            return None;
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestBody = BoxBody<Bytes, BoxError>;

async fn answer(
    req: Request<Incoming>,
    log: Arc<ServerLog>,
    name: Arc<str>,
) -> Result<Response<TestBody>, Infallible> {
    log.requests.fetch_add(1, Ordering::SeqCst);
    let mut req = req;
    let mut resp = if req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
    {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = Response::new(Empty::new().map_err(BoxError::from).boxed());
        *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("upgrade", "websocket".parse().expect("static"));
        r.headers_mut()
            .insert("connection", "upgrade".parse().expect("static"));
        r
    } else if req.headers().contains_key("x-test-echo") {
        Response::new(req.into_body().map_err(BoxError::from).boxed())
    } else if req.headers().contains_key("x-test-reset") {
        Response::new(
            Frames {
                frames: VecDeque::from([Frame::data(Bytes::from_static(b"first piece"))]),
                fail_at_end: true,
                gate: Some(Box::pin({
                    let reset = log.reset.clone();
                    async move { reset.notified().await }
                })),
            }
            .boxed(),
        )
    } else {
        let trailer = req.headers().get("x-test-trailers").cloned();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let (parts, body) = req.into_parts();
        let (body_len, trailers) = match body.collect().await {
            Ok(c) => {
                let t = c.trailers().map(pairs).unwrap_or_default();
                (c.to_bytes().len(), t)
            }
            Err(_) => (usize::MAX, Vec::new()),
        };
        let json = serde_json::json!({
            "backend": &*name,
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "authority": parts.uri.authority().map(|a| a.to_string()),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body_len": body_len,
            "trailers": trailers,
        });
        let has_trailer = trailer.is_some();
        let mut frames = VecDeque::from([Frame::data(Bytes::from(json.to_string()))]);
        if let Some(v) = trailer {
            let mut t = HeaderMap::new();
            t.insert("x-checksum", v);
            frames.push_back(Frame::trailers(t));
        }
        let mut resp = Response::new(
            Frames {
                frames,
                fail_at_end: false,
                gate: None,
            }
            .boxed(),
        );
        if has_trailer {
            resp.headers_mut()
                .insert("trailer", "x-checksum".parse().expect("static header"));
        }
        resp
    };
    resp.headers_mut()
        .insert("x-backend", name.parse().expect("backend name"));
    Ok(resp)
}

fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A body of fixed frames; `fail_at_end` ends it with an error (an HTTP/2 stream reset).
struct Frames {
    frames: VecDeque<Frame<Bytes>>,
    fail_at_end: bool,
    /// Awaited before failing.
    gate: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>>,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.frames.pop_front() {
            Some(f) => Poll::Ready(Some(Ok(f))),
            // hyper resets the HTTP/2 stream (or closes an HTTP/1.1 connection) on a body error.
            None if this.fail_at_end => {
                if let Some(gate) = this.gate.as_mut() {
                    std::task::ready!(gate.as_mut().poll(cx));
                    this.gate = None;
                }
                this.fail_at_end = false;
                Poll::Ready(Some(Err("the test server breaks off its answer".into())))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && !self.fail_at_end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// What the server described, with the response's own headers and trailers.
pub struct Described {
    /// Status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response trailers, if any.
    pub trailers: Option<HeaderMap>,
    /// The body as text.
    pub body: String,
}

impl Described {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Every value of request header `name` as the server saw it.
    pub fn seen_all(&self, name: &str) -> Vec<String> {
        self.json()["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter(|p| p[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .map(|p| p[1].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Reads a response whole, trailers included.
pub async fn describe(resp: Response<Incoming>) -> Described {
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("response body");
    let trailers = collected.trailers().cloned();
    Described {
        status,
        headers: parts.headers,
        trailers,
        body: String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
    }
}

/// A request body for the hyper clients.
pub type ClientBody = BoxBody<Bytes, Infallible>;

/// A bodiless request body.
pub fn no_body() -> ClientBody {
    Empty::new().boxed()
}

/// A body of `data`.
pub fn full(data: impl Into<Bytes>) -> ClientBody {
    Full::new(data.into()).boxed()
}

/// An HTTP/2 (prior knowledge) client connection to `addr`.
pub async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<ClientBody> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// An HTTP/1.1 client connection to `addr`.
pub async fn h1_client(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<ClientBody> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    send
}

/// An HTTP/1.1 client connection over `tcp`, already connected.
pub async fn h1_client_on(tcp: TcpStream) -> hyper::client::conn::http1::SendRequest<ClientBody> {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    send
}
