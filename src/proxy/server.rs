//! The engine and client connections.
//!
//! Owns: starting Ringway (every listener bound through `listeners.rs`, one `SO_REUSEPORT` socket
//! per worker so workers share no accept queue and no lock; the worker threads, each a
//! single-threaded tokio runtime that owns its connections and its upstream idle pool, run by
//! `worker.rs`), the views of the live listeners for the admin side, and the life of a client
//! connection (HTTP/1.1 or cleartext HTTP/2 by prior knowledge, header and idle timeouts,
//! graceful shutdown). Reloads are in `reload.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::either::Either;

use super::access_log::AccessLog;
use super::conn_state::TrackedStream;
pub use super::conn_state::{ConnState, ConnToken};
use super::forward::ConnCtx;
use super::listeners::{self, Batch, Change, LiveListener};
pub(super) use super::protocols::Protocols;
use super::state::Snapshot;
use crate::config::{Config, Limits, ListenerConfig, RedirectHttps, Workers};

/// What the request path needs to know about the listener that accepted a connection.
#[derive(Debug)]
pub struct ListenerCtx {
    /// Listener name.
    pub name: String,
    /// Limits and timeouts.
    pub limits: Limits,
    /// Answer everything with a redirect to https.
    pub redirect_https: Option<RedirectHttps>,
    /// `X-Forwarded-Proto` value.
    pub proto: &'static str,
    /// Client connections open now on this listener (all workers).
    pub open: Arc<AtomicUsize>,
    /// TLS termination, for a TLS listener (shared by the workers, swapped by reloads).
    pub tls: Option<Arc<super::tls::ServerTls>>,
    /// Read a PROXY protocol header first (from these peers only, when not empty).
    pub proxy_protocol: Option<Vec<ipnet::IpNet>>,
    /// The rate limit of refused PROXY connections, shared by the listener's workers.
    pub proxy_refusals: Option<Arc<super::proxy_protocol::RefusalLog>>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` names the real client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// A listener as the admin side shows it.
#[derive(Debug, Clone)]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// Bound address.
    pub bind: SocketAddr,
    /// Client connections open now.
    pub open: usize,
}

/// State shared by all workers.
#[derive(Debug)]
pub struct Shared {
    /// The current configuration snapshot.
    pub snapshot: ArcSwap<Snapshot>,
    /// The access log of the current configuration.
    pub access_log: ArcSwap<Option<Arc<AccessLog>>>,
    /// Client connections open now, all listeners.
    pub open_connections: AtomicUsize,
    /// Set once shutdown began.
    pub shutting_down: AtomicBool,
    /// Serialises changes of the live state (reloads, admin calls, health-driven rebuilds of a
    /// pool's members) so that two never interleave; the request path never takes it.
    pub changes: std::sync::Mutex<()>,
    /// How DNS discovery of each discovering pool is going (for the admin side).
    pub discovery: crate::discovery::Reports,
    /// Set to `true` once to stop.
    pub(super) shutdown: watch::Sender<bool>,
    /// The wall clock of maintenance windows: the system's; tests may set it.
    pub clock: super::clock::Clock,
}

/// Why Ringway could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration cannot be turned into a runtime (e.g. an address does not resolve).
    Config(Vec<String>),
    /// A listener could not be bound, or a thread not started.
    Io(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(errors) => write!(f, "{}", errors.join("\n")),
            StartError::Io(e) => f.write_str(e),
        }
    }
}

/// A running Ringway: its workers and the listeners they accept on.
#[derive(Debug)]
pub struct Engine {
    /// State shared with the workers.
    pub shared: Arc<Shared>,
    /// The listeners as they run now (swapped whole by a reload; read by the admin side).
    pub(super) live: ArcSwap<Vec<LiveListener>>,
    /// Each worker's queue of listener changes, in worker order.
    pub(super) workers: Vec<mpsc::UnboundedSender<Batch>>,
    /// The next listener binding id.
    pub(super) next_id: AtomicU64,
    /// What the engine started with that only a restart changes.
    pub(super) restart_only: super::reload::RestartOnly,
    /// The file reloads read, if the configuration came from one.
    pub config_path: Option<std::path::PathBuf>,
    /// Reloads done and refused since start (`ringway_reloads_total{result}`).
    pub reloads: [AtomicU64; 2],
    /// This instance's part of the fleet, in cluster mode.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// How many worker threads `workers` means on this machine.
pub fn worker_count(w: Workers) -> usize {
    match w {
        Workers::Fixed(n) => n.max(1),
        Workers::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

pub(super) fn listener_ctx(
    l: &ListenerConfig,
    open: Arc<AtomicUsize>,
    tls: Option<Arc<super::tls::ServerTls>>,
) -> ListenerCtx {
    ListenerCtx {
        name: l.name.clone(),
        limits: l.limits,
        redirect_https: l.redirect_https,
        proto: if l.tls.is_some() { "https" } else { "http" },
        open,
        tls,
        proxy_protocol: l.proxy_protocol.then(|| l.proxy_protocol_from.clone()),
        proxy_refusals: l
            .proxy_protocol
            .then(|| super::proxy_protocol::RefusalLog::of(&l.name)),
        trusted_proxies: l.trusted_proxies.clone(),
    }
}

impl Engine {
    /// Binds every listener and starts `threads` workers (or the config's `workers`).
    pub fn start(
        config: Config,
        threads: Option<usize>,
        config_path: Option<std::path::PathBuf>,
    ) -> Result<Engine, StartError> {
        let threads = threads.unwrap_or_else(|| worker_count(config.workers)).max(1);
        let access_log =
            AccessLog::open(&config.log).map_err(|e| StartError::Io(format!("access log: {e}")))?;
        let listener_configs = config.listeners.clone();
        let restart_only = super::reload::RestartOnly::of(&config);
        let snapshot = Snapshot::build(config, None).map_err(StartError::Config)?;
        // Every worker gets its own socket per listener; port 0 is resolved by the first bind.
        let mut batches: Vec<Vec<Change>> = (0..threads).map(|_| Vec::new()).collect();
        let mut live = Vec::with_capacity(listener_configs.len());
        for (id, l) in (1u64..).zip(&listener_configs) {
            let tls = super::tls::ServerTls::for_listener(l).map_err(|e| StartError::Config(vec![e]))?;
            let bound = listeners::bind(&l.name, l.bind, threads, &[]).map_err(StartError::Io)?;
            let open = Arc::new(AtomicUsize::new(0));
            for (batch, socket) in batches.iter_mut().zip(bound.sockets) {
                batch.push(Change::Add {
                    id,
                    config: l.clone(),
                    open: open.clone(),
                    tls: tls.clone(),
                    socket,
                });
            }
            live.push(LiveListener {
                id,
                config: l.clone(),
                addr: bound.addr,
                open,
                tls,
            });
        }
        let (tx, _rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            access_log: ArcSwap::from_pointee(access_log),
            open_connections: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            changes: std::sync::Mutex::new(()),
            discovery: crate::discovery::Reports::default(),
            shutdown: tx,
            clock: super::clock::Clock::system(),
        });
        crate::health::start(shared.clone())
            .map_err(|e| StartError::Io(format!("cannot start health checks: {e}")))?;
        crate::discovery::start(shared.clone())
            .map_err(|e| StartError::Io(format!("cannot start DNS discovery: {e}")))?;
        let mut handles = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for (i, changes) in batches.into_iter().enumerate() {
            let (commands, rx) = mpsc::unbounded_channel();
            // Queued before the thread starts: the worker begins with these accept loops.
            let _ = commands.send(Batch { changes, done: None });
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("ringway-worker-{i}"))
                .spawn(move || super::worker::run(shared, rx))
                .map_err(|e| StartError::Io(format!("cannot start worker thread: {e}")))?;
            handles.push(handle);
            workers.push(commands);
        }
        Ok(Engine {
            shared,
            next_id: AtomicU64::new(live.len() as u64 + 1),
            live: ArcSwap::from_pointee(live),
            workers,
            restart_only,
            config_path,
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            cluster: std::sync::OnceLock::new(),
            threads: std::sync::Mutex::new(handles),
        })
    }

    /// Every listener's name and bound address (the real port when the config said 0).
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.live
            .load()
            .iter()
            .map(|l| (l.config.name.clone(), l.addr))
            .collect()
    }

    /// Every listener with its address and open connections.
    pub fn listener_status(&self) -> Vec<ListenerStatus> {
        self.live
            .load()
            .iter()
            .map(|l| ListenerStatus {
                name: l.config.name.clone(),
                bind: l.addr,
                open: l.open.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The bound address of the listener named `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.live
            .load()
            .iter()
            .find(|l| l.config.name == name)
            .map(|l| l.addr)
    }

    /// Stops accepting, lets in-flight requests finish up to `shutdown_grace`, then the
    /// workers exit; [`Engine::wait`] returns when they have.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        self.shared.shutdown.send_replace(true);
    }

    /// Waits for every worker to finish.
    pub fn wait(&self) {
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The start of the HTTP/2 connection preface (RFC 9113 3.4); no HTTP/1 request starts so.
pub(super) const H2_PREFACE_START: &[u8; 4] = b"PRI ";

/// How a cleartext connection speaks, told from its first bytes.
pub(super) enum FirstBytes {
    Http1,
    Http2,
    /// Fewer bytes than it takes to tell, all matching the HTTP/2 preface so far.
    Undecided,
    /// Closed or failed before sending anything.
    Gone,
}

async fn first_bytes(stream: &TcpStream) -> FirstBytes {
    let mut first = [0u8; 4];
    match stream.peek(&mut first).await {
        Ok(0) | Err(_) => FirstBytes::Gone,
        Ok(4) if &first == H2_PREFACE_START => FirstBytes::Http2,
        Ok(n) if H2_PREFACE_START.starts_with(&first[..n]) => FirstBytes::Undecided,
        Ok(_) => FirstBytes::Http1,
    }
}

/// A served connection as the connection loop drives it, whatever its protocol.
trait ServedConnection {
    /// Finishes the requests in flight and accepts no more.
    fn shut_down(self: Pin<&mut Self>);
}

impl<I: AsyncRead + AsyncWrite + Unpin> ServedConnection for super::h2_server::H2Connection<I> {
    fn shut_down(self: Pin<&mut Self>) {
        self.get_mut().shut_down();
    }
}

impl ServedConnection for super::h1_server::H1Connection {
    fn shut_down(self: Pin<&mut Self>) {
        super::h1_server::H1Connection::shut_down(&self);
    }
}

/// How a connection speaks once its prelude (PROXY header, TLS handshake) is done.
enum Speaks {
    /// Told from the first bytes of a cleartext connection.
    Cleartext(FirstBytes),
    /// Chosen by ALPN on a TLS connection: HTTP/2 if `true`.
    Tls(bool),
}

pub(super) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Rc<ListenerCtx>,
    shared: Arc<Shared>,
    protocols: Rc<Protocols>,
    _open: super::worker::OpenConnection,
) {
    let limits = listener.limits;
    let mut shutdown = shared.shutdown.subscribe();
    // The PROXY header, the TLS handshake and the first bytes all count against the header
    // timeout. A client that opened a connection and sent nothing (browsers and reqwest keep a
    // spare one) must not hold a graceful stop for the whole header timeout either.
    let deadline = Instant::now() + limits.header_timeout;
    let client = if let Some(from) = &listener.proxy_protocol {
        let read = super::proxy_protocol::read_header(&stream, peer, from);
        match tokio::select! {
            r = tokio::time::timeout_at(deadline, read) => r,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        } {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(e)) => {
                if let Some(log) = &listener.proxy_refusals {
                    super::proxy_protocol::log_refused(peer, &listener.name, log, &e);
                }
                return;
            }
            Err(_) => return,
        }
    } else {
        None
    };
    let (client, local) = match client {
        Some(a) => (a.source, a.destination),
        // LOCAL (a health check of the balancer in front) or no PROXY header: the socket's own.
        None => (peer, stream.local_addr().unwrap_or(peer)),
    };
    let conn = Accepted {
        peer: client,
        local,
        listener,
        shared,
        protocols,
    };
    match conn.listener.tls.clone() {
        None => {
            // The protocol is told from the first bytes by peeking, not reading: hyper-util's
            // detection reads them into a buffer of its own and hands them back through a
            // wrapper, which costs every later read a check and makes hyper grow its read
            // buffer to 16 KiB for good.
            let first = tokio::select! {
                first = tokio::time::timeout_at(deadline, first_bytes(&stream)) => match first {
                    Ok(f) => f,
                    Err(_) => return,
                },
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            };
            if let FirstBytes::Undecided = first {
                // A client that sent part of "PRI " and paused: its bytes are read here and put
                // back in front of the stream for whichever side serves it.
                Box::pin(async move {
                    let read = tokio::select! {
                        r = tokio::time::timeout_at(deadline, super::prefixed::read_until_decided(stream)) => r,
                        _ = shutdown.wait_for(|stopping| *stopping) => return,
                    };
                    if let Ok(Some((stream, speaks))) = read {
                        conn.serve(stream, Speaks::Cleartext(speaks), shutdown).await;
                    }
                })
                .await;
                return;
            }
            conn.serve(stream, Speaks::Cleartext(first), shutdown).await;
        }
        // Boxed: the TLS state and handshake would otherwise enlarge every cleartext
        // connection's task.
        Some(tls) => {
            Box::pin(async move {
                let accepted = tokio::select! {
                    a = tokio::time::timeout_at(deadline, tls.accept(stream, peer)) => a,
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                };
                match accepted {
                    Ok(Ok((stream, h2))) => conn.serve(stream, Speaks::Tls(h2), shutdown).await,
                    Ok(Err(e)) => tracing::debug!("TLS handshake from {peer}: {e}"),
                    Err(_) => tracing::debug!("TLS handshake from {peer}: header timeout"),
                }
            })
            .await
        }
    }
}

/// A client connection past its prelude, ready to be served.
struct Accepted {
    /// The client's address: the PROXY header's source if the listener reads one, else the peer.
    peer: SocketAddr,
    /// The address the client connected to.
    local: SocketAddr,
    listener: Rc<ListenerCtx>,
    shared: Arc<Shared>,
    protocols: Rc<Protocols>,
}

impl Accepted {
    /// The future that serves the connection. Not an async fn: one keeps room for its
    /// arguments for its whole life, and a TLS stream is large; here the stream moves straight
    /// into the connection that serves it.
    fn serve<I>(self, stream: I, speaks: Speaks, shutdown: watch::Receiver<bool>) -> impl Future<Output = ()>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Accepted {
            peer,
            local,
            listener,
            shared,
            protocols,
        } = self;
        let limits = listener.limits;
        let h2 = matches!(speaks, Speaks::Cleartext(FirstBytes::Http2) | Speaks::Tls(true));
        let state = Arc::new(ConnState::new(h2));
        let ctx = Rc::new(ConnCtx {
            shared,
            listener,
            peer,
            local,
            state: state.clone(),
            client_ip: super::headers::ip_header_value(peer.ip()),
        });
        let stream = TrackedStream {
            inner: stream,
            state: state.clone(),
        };
        match speaks {
            Speaks::Cleartext(FirstBytes::Http1) | Speaks::Tls(false) => {
                let conn = super::h1_server::H1Connection::new(stream, ctx);
                Either::Left(drive(move || conn, peer, state, limits, shutdown))
            }
            Speaks::Cleartext(FirstBytes::Gone | FirstBytes::Undecided) => {
                let closed: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async {});
                Either::Right(closed)
            }
            // Boxed: the far more common HTTP/1 connections should not carry room for these.
            Speaks::Cleartext(FirstBytes::Http2) | Speaks::Tls(true) => {
                // The connection is made inside `drive`, so the task's state holds it once.
                let make = move || super::h2_server::H2Connection::new(stream, &protocols.http2, ctx);
                let served: Pin<Box<dyn Future<Output = ()>>> =
                    Box::pin(drive(make, peer, state, limits, shutdown));
                Either::Right(served)
            }
        }
    }
}

/// Logs how a connection ended in error, once: at info when the client broke the HTTP/2
/// protocol or its limits (a flood, a reset storm: Ringway answered with GOAWAY), at debug for
/// the everyday endings (a reset, a malformed HTTP/1.1 request already answered with a 4xx).
fn log_connection_error(peer: SocketAddr, e: &(dyn std::error::Error + 'static)) {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(h2) = c.downcast_ref::<h2::Error>()
            && !h2.is_io()
            && !h2.is_remote()
            && let Some(reason) = h2.reason()
        {
            tracing::info!("HTTP/2 connection from {peer} closed with GOAWAY {reason:?}: {e}");
            return;
        }
        cause = c.source();
    }
    tracing::debug!("connection from {peer}: {e}");
}

/// Runs a connection until it ends, a timeout closes it, or a graceful stop has drained it.
async fn drive<C, E>(
    make: impl FnOnce() -> C,
    peer: SocketAddr,
    state: Arc<ConnState>,
    limits: Limits,
    mut rx: watch::Receiver<bool>,
) where
    C: ServedConnection + Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = make();
    tokio::pin!(conn);
    let mut draining = *rx.borrow_and_update();
    if draining {
        conn.as_mut().shut_down();
    }
    // Created once and kept pinned: a fresh `changed()` per wake-up would register and
    // unregister a waiter under the channel's lock on every request.
    let shutdown = rx.changed();
    tokio::pin!(shutdown);
    // One lazy timer per connection: it fires at least every header_timeout and re-arms to the
    // real deadline, so requests themselves never touch the timer wheel. An HTTP/2 connection's
    // timer also advances the tick of its streams' send timeout.
    let tick = super::send_timeout::tick_length(limits.send_timeout);
    // A full socket starts `send_timeout` without waking this timer, so the timer also comes
    // round at least once per `send_timeout`: a client that stopped reading is cut between one
    // and two of them (at most `header_timeout` late with the defaults).
    let mut check_every = limits
        .header_timeout
        .min(limits.idle_timeout)
        .min(limits.send_timeout);
    if state.streams.is_some() {
        check_every = check_every.min(tick);
    }
    let next_check = |state: &ConnState| {
        let now = Instant::now();
        let soon = now + check_every;
        state.deadline(&limits).map_or(soon, |d| d.min(soon))
    };
    let sleep = tokio::time::sleep_until(next_check(&state));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    log_connection_error(peer, e.into().as_ref());
                }
                return;
            }
            _ = &mut shutdown, if !draining => {
                draining = true;
                conn.as_mut().shut_down();
            }
            _ = &mut sleep => {
                let now = Instant::now();
                if state.send_timed_out(&limits, now) {
                    tracing::info!("connection from {peer}: closed, the client read nothing for send_timeout");
                    return;
                }
                if state.deadline(&limits).is_some_and(|d| d <= now) {
                    tracing::debug!("connection from {peer}: header or idle timeout");
                    return;
                }
                if let Some(streams) = state.streams.as_deref() {
                    let ticks = now.saturating_duration_since(state.opened()).as_nanos() / tick.as_nanos().max(1);
                    if streams.advance(u32::try_from(ticks).unwrap_or(u32::MAX)) {
                        tracing::info!("connection from {peer}: closed, a response's HTTP/2 window stayed closed for send_timeout");
                        return;
                    }
                }
                sleep.as_mut().reset(next_check(&state));
            }
        }
    }
}
