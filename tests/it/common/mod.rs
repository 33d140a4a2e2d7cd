//! Shared pieces of the integration tests: real upstream servers (hyper 1.x on 127.0.0.1), a
//! running Ringway engine, HTTP clients and raw-socket helpers.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod etcd;
pub mod fleet;
pub mod logs;
pub mod tls;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ringway::config::{AccessLogTarget, Balance, Config, Workers};
use ringway::proxy::Engine;
use ringway::proxy::state::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Upper bound of every test's run time.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a test body bounded by [`TEST_TIMEOUT`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    // reqwest is built with `rustls-no-provider`: its clients need a process default provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match tokio::time::timeout(TEST_TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {TEST_TIMEOUT:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream servers
// ---------------------------------------------------------------------------------------------

/// Request header: the backend waits this many milliseconds before answering.
pub const DELAY_HEADER: &str = "x-test-delay-ms";
/// Request header: the backend streams the request body back as its response body.
pub const ECHO_HEADER: &str = "x-test-echo";
/// Request header: the backend adds hop-by-hop headers to its response.
pub const HOP_HEADER: &str = "x-test-hop-response";

type BoxedBody = BoxBody<Bytes, hyper::Error>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Http,
    /// Accept the connection and close it at once.
    Close,
    /// Read a request head, then close without answering.
    ReadThenClose,
}

struct BackendShared {
    name: String,
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// Request bodies read to their end.
    bodies: AtomicUsize,
    arrivals: watch::Sender<usize>,
    /// `true` while responses may go out; `false` holds them.
    gate: watch::Receiver<bool>,
    /// Changes when every open connection must be closed.
    kill: watch::Receiver<u64>,
}

/// A real HTTP/1.1 server on 127.0.0.1 that says who it is and what it received.
///
/// Every response carries `X-Backend: <name>`; its JSON body lists the request's method, target,
/// version and headers (see [`Seen`]). Request headers change its behaviour: [`DELAY_HEADER`],
/// [`ECHO_HEADER`], [`HOP_HEADER`]. [`Backend::hold`] keeps responses back until
/// [`Backend::release`].
pub struct Backend {
    /// Name, returned in `X-Backend`.
    pub name: String,
    /// Bound address.
    pub addr: SocketAddr,
    shared: Arc<BackendShared>,
    arrivals: watch::Receiver<usize>,
    gate: watch::Sender<bool>,
    kill: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// A server that answers every request.
    pub async fn start(name: &str) -> Backend {
        Backend::spawn(name, Mode::Http).await
    }

    /// A server that accepts each connection and closes it without answering.
    pub async fn closing(name: &str) -> Backend {
        Backend::spawn(name, Mode::Close).await
    }

    /// A server that reads each request head, then closes the connection without answering.
    pub async fn reading_then_closing(name: &str) -> Backend {
        Backend::spawn(name, Mode::ReadThenClose).await
    }

    /// A server that answers every request, listening on `bind` (another loopback address such
    /// as 127.0.0.2, for tests of DNS records that give addresses without ports).
    pub async fn start_at(name: &str, bind: SocketAddr) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(bind).await?;
        Ok(Backend::serve(name, Mode::Http, listener))
    }

    async fn spawn(name: &str, mode: Mode) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
        Backend::serve(name, mode, listener)
    }

    fn serve(name: &str, mode: Mode, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().expect("backend address");
        let (arrivals_tx, arrivals) = watch::channel(0usize);
        let (gate, gate_rx) = watch::channel(true);
        let (kill, kill_rx) = watch::channel(0u64);
        let shared = Arc::new(BackendShared {
            name: name.to_owned(),
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            bodies: AtomicUsize::new(0),
            arrivals: arrivals_tx,
            gate: gate_rx,
            kill: kill_rx,
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone(), mode));
        Backend {
            name: name.to_owned(),
            addr,
            shared,
            arrivals,
            gate,
            kill,
            task,
        }
    }

    /// The address as a config string.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Requests received so far (counted when their head arrives).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests whose body was read to its end (the JSON answer reads it before answering).
    pub fn complete_bodies(&self) -> usize {
        self.shared.bodies.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_requests(&self, n: usize) {
        let mut rx = self.arrivals.clone();
        rx.wait_for(|c| *c >= n).await.expect("backend stopped");
    }

    /// A receiver that changes at each request arrival.
    pub fn arrivals(&self) -> watch::Receiver<usize> {
        self.arrivals.clone()
    }

    /// Holds responses back (requests are still received and counted).
    pub fn hold(&self) {
        self.gate.send_replace(false);
    }

    /// Lets held and future responses go.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    /// Closes every open connection (the listener stays), as a server restart would.
    pub fn drop_connections(&self) {
        self.kill.send_modify(|g| *g += 1);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // The accept task owns the connection tasks: aborting it ends them all.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<BackendShared>, mode: Mode) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                match mode {
                    Mode::Close => drop(stream),
                    Mode::ReadThenClose => {
                        conns.spawn(read_head_then_close(stream, shared.clone()));
                    }
                    Mode::Http => {
                        let shared = shared.clone();
                        let mut kill = shared.kill.clone();
                        kill.mark_unchanged();
                        conns.spawn(async move {
                            let svc = service_fn({
                                let shared = shared.clone();
                                move |req| handle(req, shared.clone())
                            });
                            let conn = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades();
                            tokio::select! {
                                _ = conn => {}
                                _ = kill.changed() => {}
                            }
                        });
                    }
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn read_head_then_close(mut stream: TcpStream, shared: Arc<BackendShared>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    shared.requests.fetch_add(1, Ordering::SeqCst);
    shared.arrivals.send_modify(|n| *n += 1);
    // Dropped without a byte of answer.
}

fn header_str<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn handle(
    mut req: Request<Incoming>,
    s: Arc<BackendShared>,
) -> Result<Response<BoxedBody>, Infallible> {
    s.requests.fetch_add(1, Ordering::SeqCst);
    s.arrivals.send_modify(|n| *n += 1);
    let mut gate = s.gate.clone();
    let _ = gate.wait_for(|open| *open).await;
    if let Some(ms) = header_str(&req, DELAY_HEADER).and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if req.headers().contains_key(ECHO_HEADER) {
        return Ok(echo(req, &s.name).await);
    }
    if header_str(&req, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Ok(upgrade_echo(&mut req, &s.name));
    }
    let hop = req.headers().contains_key(HOP_HEADER);
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
    // Like most applications, read the whole request body before answering.
    let body_len = match body.collect().await {
        Ok(b) => {
            s.bodies.fetch_add(1, Ordering::SeqCst);
            b.to_bytes().len()
        }
        Err(_) => {
            let mut resp = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
            *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
            return Ok(resp);
        }
    };
    let json = serde_json::json!({
        "backend": s.name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body_len,
    });
    let mut resp = Response::new(
        Full::new(Bytes::from(json.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    let h = resp.headers_mut();
    h.insert(
        "x-backend",
        s.name.parse().expect("backend name is a header value"),
    );
    h.insert("content-type", "application/json".parse().expect("static header"));
    if hop {
        h.insert("connection", "x-backend-secret".parse().expect("static header"));
        h.insert("x-backend-secret", "1".parse().expect("static header"));
        h.insert("keep-alive", "timeout=5".parse().expect("static header"));
        h.insert("proxy-authenticate", "Basic".parse().expect("static header"));
        h.insert("x-kept", "1".parse().expect("static header"));
    }
    Ok(resp)
}

/// Answers a WebSocket upgrade with 101, then echoes whatever comes on the upgraded connection.
fn upgrade_echo(req: &mut Request<Incoming>, name: &str) -> Response<BoxedBody> {
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 4096];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert("upgrade", "websocket".parse().expect("static header"));
    h.insert("connection", "upgrade".parse().expect("static header"));
    h.insert("x-backend", name.parse().expect("backend name is a header value"));
    resp
}

/// Streams the request body back: the response starts once the first chunk has arrived.
async fn echo(req: Request<Incoming>, name: &str) -> Response<BoxedBody> {
    let (parts, mut body) = req.into_parts();
    let first = match body.frame().await {
        Some(Ok(f)) => Some(f),
        _ => None,
    };
    let mut resp = Response::new(Prepend { first, rest: body }.boxed());
    let h = resp.headers_mut();
    h.insert("x-backend", name.parse().expect("backend name is a header value"));
    for (seen, header) in [
        ("x-seen-content-length", "content-length"),
        ("x-seen-transfer-encoding", "transfer-encoding"),
    ] {
        let v = parts
            .headers
            .get(header)
            .cloned()
            .unwrap_or_else(|| "-".parse().expect("static header"));
        h.insert(seen, v);
    }
    resp
}

/// A body that yields one frame already read, then the rest of an incoming body.
struct Prepend {
    first: Option<Frame<Bytes>>,
    rest: Incoming,
}

impl Body for Prepend {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(f) = this.first.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// What a backend received, from its JSON answer.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The backend's name.
    pub backend: String,
    /// Request method.
    pub method: String,
    /// Request target as received.
    pub uri: String,
    /// `HTTP/1.1` etc.
    pub version: String,
    /// Headers in the order received (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Length of the request body received.
    pub body_len: u64,
}

impl Seen {
    /// Parses a backend's JSON answer.
    pub fn parse(body: &[u8]) -> Seen {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "backend answer is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        });
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("no `{k}` in {v}"))
                .to_owned()
        };
        let headers = v["headers"]
            .as_array()
            .expect("headers array")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().expect("header name").to_owned(),
                    p[1].as_str().expect("header value").to_owned(),
                )
            })
            .collect();
        Seen {
            backend: s("backend"),
            method: s("method"),
            uri: s("uri"),
            version: s("version"),
            headers,
            body_len: v["body_len"].as_u64().expect("body_len"),
        }
    }

    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The only value of header `name`; panics if it appears more than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "header {name} seen {} times: {all:?}", all.len());
        all.first().copied()
    }
}

/// A server address on which nothing listens (bound, then closed).
pub fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("address");
    drop(l);
    a.to_string()
}

// ---------------------------------------------------------------------------------------------
// Ringway
// ---------------------------------------------------------------------------------------------

/// Name of the listener the helpers create.
pub const LISTENER: &str = "main";
/// Name of the pool [`one_pool`] creates.
pub const POOL: &str = "p";

/// One listener on 127.0.0.1:0, access log off, one worker, a short shutdown grace.
pub fn base_config() -> Config {
    let mut c = ringway::cli::empty_config();
    c.log.access = AccessLogTarget::Off;
    c.workers = Workers::Fixed(1);
    c.shutdown_grace = Duration::from_secs(10);
    c.listeners.push(ringway::cli::listener(
        LISTENER,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    ));
    c
}

/// [`base_config`] with one route `/` to pool [`POOL`] of `servers` (addresses).
pub fn one_pool(balance: Balance, servers: &[String]) -> Config {
    let mut c = base_config();
    c.routes.push(ringway::cli::route("all", "/", POOL));
    c.pools.push(ringway::cli::pool(
        POOL,
        balance,
        servers.iter().map(|s| ringway::cli::server(s)).collect(),
    ));
    c
}

/// The addresses of `backends`.
pub fn addrs(backends: &[&Backend]) -> Vec<String> {
    backends.iter().map(|b| b.address()).collect()
}

/// A running Ringway with one worker thread; shut down when dropped.
pub struct Proxy {
    engine: Option<Arc<Engine>>,
    /// Address of listener [`LISTENER`].
    pub addr: SocketAddr,
}

impl Proxy {
    /// Starts `config` on one worker thread.
    pub fn start(config: Config) -> Proxy {
        Proxy::start_from(config, None)
    }

    /// Starts `config`, read from `path` (reloads read it again), on one worker thread.
    pub fn start_from(config: Config, path: Option<std::path::PathBuf>) -> Proxy {
        let engine = Engine::start(config, Some(1), path).unwrap_or_else(|e| panic!("engine start: {e}"));
        let addr = engine.listener_addr(LISTENER).expect("listener `main`");
        Proxy {
            engine: Some(Arc::new(engine)),
            addr,
        }
    }

    /// The engine, shared (for parts that keep it, such as cluster mode's applier).
    pub fn engine_arc(&self) -> Arc<Engine> {
        self.engine.clone().expect("engine running")
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("engine running")
    }

    /// Starts the admin interface of this engine (its config should listen on port 0);
    /// returns `http://host:port`.
    pub fn start_admin(&self) -> String {
        let engine = self.engine.clone().expect("engine running");
        let addr = ringway::admin::start(engine).expect("admin interface");
        format!("http://{addr}")
    }

    /// `http://<listener>/<path>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Server `i` of pool `pool`, with its live state.
    pub fn server(&self, pool: &str, i: usize) -> Arc<Server> {
        let snapshot = self.engine().shared.snapshot.load();
        let members = snapshot.pools[pool].members.load();
        members.servers[i].clone()
    }

    /// Asks for a graceful stop (returns at once).
    pub fn shutdown(&self) {
        self.engine().shutdown();
    }

    /// Waits (off the async runtime) for the workers to finish; returns how long it took.
    pub async fn wait(&self) -> Duration {
        let engine = self.engine.clone().expect("engine running");
        let start = Instant::now();
        tokio::task::spawn_blocking(move || engine.wait())
            .await
            .expect("wait task");
        start.elapsed()
    }

    /// Graceful stop and wait.
    pub async fn stop(mut self) {
        self.shutdown();
        self.wait().await;
        self.engine = None;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(e) = &self.engine {
            e.shutdown();
        }
    }
}

/// Sends SIGTERM to a `ringway` child and asserts that it stops gracefully (exit 0) within 10 s.
pub async fn terminate_gracefully(child: &mut tokio::process::Child) {
    let pid = child.id().expect("child pid").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(killed.success(), "kill -TERM {pid}");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("ringway exits after SIGTERM")
        .expect("wait for ringway");
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// An HTTP/1.1 client that uses no proxy from the environment and follows no redirect.
pub fn client() -> reqwest::Client {
    // reqwest is built without a provider of its own; another test may have installed it.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A response read whole: status, headers, body.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// Reads `resp` whole.
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("response body");
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The value of header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is text"))
    }

    /// The `X-Backend` header: who answered.
    pub fn backend(&self) -> &str {
        self.header("x-backend")
            .unwrap_or_else(|| panic!("no X-Backend in a {} answer: {}", self.status, self.text()))
    }

    /// What the backend saw.
    pub fn seen(&self) -> Seen {
        assert_eq!(
            self.status,
            200,
            "expected a backend answer, got {}: {}",
            self.status,
            self.text()
        );
        Seen::parse(&self.body)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    Reply::read(req.send().await.expect("request sent")).await
}

/// GET `url` with `Host: host`.
pub async fn get_host(client: &reqwest::Client, url: &str, host: &str) -> Reply {
    send(client.get(url).header("host", host)).await
}

// ---------------------------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------------------------

/// What came back on a raw connection until it closed.
#[derive(Debug)]
pub struct RawOutcome {
    /// Status of the first response, if one came.
    pub status: Option<u16>,
    /// Everything received, as text.
    pub text: String,
    /// Whether the peer closed (EOF or reset) within the time allowed.
    pub closed: bool,
    /// Time from the end of our write until the close (or until the time ran out).
    pub elapsed: Duration,
}

/// Writes `request` on a new connection and reads until the server closes (or `limit`).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> RawOutcome {
    let stream = TcpStream::connect(addr).await.expect("connect");
    raw_exchange_on(stream, request, limit).await
}

/// Like [`raw_exchange`] on an open connection.
pub async fn raw_exchange_on(stream: TcpStream, request: &[u8], limit: Duration) -> RawOutcome {
    let (mut rd, mut wr) = stream.into_split();
    let request = request.to_vec();
    // Written beside the read, so that a server answering early cannot block our write.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&request).await;
        wr
    });
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    let elapsed = start.elapsed();
    writer.abort();
    let text = String::from_utf8_lossy(&buf).into_owned();
    RawOutcome {
        status: parse_status(&text),
        text,
        closed,
        elapsed,
    }
}

/// The status code of an HTTP/1.x status line at the start of `text`.
pub fn parse_status(text: &str) -> Option<u16> {
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Reads one response with a `Content-Length` body from `stream`; returns (status, head, body).
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.expect("read response");
        assert!(
            n > 0,
            "connection closed before a whole response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = parse_status(&head).expect("status line");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("a content-length response");
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    (status, head, body)
}

/// Polls `check` every 10 ms until it returns `Some`, for at most `limit`.
pub async fn poll_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// FNV-1a, 64 bits: a checksum of streamed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// `len` bytes of a deterministic, non-repeating-looking pattern starting at `offset`.
pub fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| {
            let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (x >> 56) as u8
        })
        .collect()
}

/// The `host:port` after `marker` in a log line, e.g. "listener `main` on http://127.0.0.1:1234".
pub fn address_after(line: &str, marker: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == ':'))
        .unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// The `ringway` binary as a child process: info logs on stderr without colour, no stdin, no
/// admin token from the environment, killed if the test drops it.
pub fn ringway_command() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_ringway"));
    c.env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env_remove("RINGWAY_ADMIN_TOKEN")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    c
}
pub mod edge;

/// Sends a WebSocket upgrade request for `host` on `stream` and reads the response head
/// (lower-cased); panics if the connection closes first.
pub async fn websocket_open<S>(stream: &mut S, host: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = format!(
        "GET /chat HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .expect("write the upgrade request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read head");
        assert!(
            n > 0,
            "closed during the response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_lowercase()
}
