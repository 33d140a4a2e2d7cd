//! HTTP/2 to servers (`protocol = "h2"` over TLS, `"h2c"` in cleartext): a few multiplexed
//! connections per server and worker, and the request path of such a pool.
//!
//! Owns: the per-worker cache of hyper HTTP/2 senders (one connection carries requests until it
//! closes or reaches the server's limit of concurrent streams; then another is opened, and
//! requests arriving while one opens wait for it instead of opening their own), the request
//! made for an HTTP/2 server (headers translated by `upstream_translate.rs`), its retries (the
//! rules of DESIGN.md 1.7, as for HTTP/1.1), and the streamed response body with its trailers.
//! A `send_proxy` pool's connections announce one client, so they are cached per client too.
//! Must not touch: HTTP/1.1 connections (`upstream.rs`) or the choice of server (balance/).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::request_body::RequestBody;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::Instant;

use super::access_log::AccessRecord;
use super::answers;
use super::body::ResponseBody;
use super::forward::{self, ConnCtx, Failure};
use super::headers;
use super::protocols::LocalExec;
use super::state::{Pool, Server, Tried, pick_server};
use super::upstream::ConnectError;
use super::upstream_conn::{self, InFlight, Proxied};
use super::upstream_translate as translate;

type BoxError = Box<dyn StdError + Send + Sync>;

/// One HTTP/2 connection to a server.
struct H2Conn {
    send: SendRequest<UploadBody>,
    /// Requests on it whose response has not ended.
    streams: Rc<Cell<usize>>,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS, as the connection task last saw it.
    max_streams: Rc<Cell<usize>>,
    /// The sweep count when it last took a request.
    used: u64,
}

impl H2Conn {
    fn has_room(&self) -> bool {
        !self.send.is_closed() && self.send.is_ready() && self.streams.get() < self.max_streams.get()
    }
}

/// The connections of one server.
#[derive(Default)]
struct ServerConns {
    conns: Vec<H2Conn>,
    /// Set while a connection is being opened: requests wait for it.
    opening: Option<watch::Receiver<Option<Result<(), String>>>>,
}

/// A server id, and the client of a `send_proxy` pool: its connections announce that client, so
/// they carry no other client's requests.
type Key = (u64, Option<SocketAddr>);

#[derive(Default)]
struct Cache {
    sweeps: u64,
    servers: HashMap<Key, ServerConns>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Sweeps a connection without requests survives, as for HTTP/1.1 (60 to 90 s).
const IDLE_SWEEPS_KEPT: u64 = 2;

/// Closes this worker's HTTP/2 connections that carried nothing for a while.
pub fn sweep_idle() {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.sweeps += 1;
        let oldest = c.sweeps.saturating_sub(IDLE_SWEEPS_KEPT);
        c.servers.retain(|_, s| {
            s.conns
                .retain(|h| !h.send.is_closed() && (h.streams.get() > 0 || h.used >= oldest));
            !s.conns.is_empty() || s.opening.is_some()
        });
    });
}

/// Counts a request on a connection until its response ends.
pub struct StreamSlot(Rc<Cell<usize>>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// A sender with room for a request, from the cache or newly opened; `true` if it was cached.
async fn sender(
    server: &Server,
    pool: &Pool,
    proxied: Option<&Proxied>,
) -> Result<(SendRequest<UploadBody>, StreamSlot, bool), ConnectError> {
    let key = (server.id, proxied.map(|p| p.client));
    loop {
        let waiting = CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let sweeps = c.sweeps;
            let s = c.servers.entry(key).or_default();
            s.conns.retain(|h| !h.send.is_closed());
            if let Some(h) = s.conns.iter_mut().find(|h| h.has_room()) {
                h.streams.set(h.streams.get() + 1);
                h.used = sweeps;
                return Ok((h.send.clone(), StreamSlot(h.streams.clone())));
            }
            match &s.opening {
                Some(rx) => Err(Some(rx.clone())),
                None => Err(None),
            }
        });
        match waiting {
            Ok((send, slot)) => return Ok((send, slot, true)),
            Err(Some(mut rx)) => match rx.wait_for(Option::is_some).await {
                Ok(r) => {
                    if let Some(Err(e)) = &*r {
                        return Err(ConnectError::Io(std::io::Error::other(e.clone())));
                    }
                }
                // The request opening it went away: the next one to look opens another.
                Err(_) => clear_opening(key),
            },
            Err(None) => {
                let (tx, rx) = watch::channel(None);
                CACHE.with(|c| c.borrow_mut().servers.entry(key).or_default().opening = Some(rx));
                let _clear = ClearOpening(key);
                match Box::pin(open(server, pool, proxied)).await {
                    Ok((send, max_streams)) => {
                        let streams = Rc::new(Cell::new(1));
                        let slot = StreamSlot(streams.clone());
                        CACHE.with(|c| {
                            let mut c = c.borrow_mut();
                            let used = c.sweeps;
                            c.servers.entry(key).or_default().conns.push(H2Conn {
                                send: send.clone(),
                                streams,
                                max_streams,
                                used,
                            });
                        });
                        let _ = tx.send(Some(Ok(())));
                        return Ok((send, slot, false));
                    }
                    Err(e) => {
                        let _ = tx.send(Some(Err(e.to_string())));
                        return Err(e);
                    }
                }
            }
        }
    }
}

fn clear_opening(key: Key) {
    CACHE.with(|c| {
        if let Some(s) = c.borrow_mut().servers.get_mut(&key) {
            s.opening = None;
        }
    });
}

/// Ends the "opening" state of a server however the opening ends (done, failed, cancelled).
struct ClearOpening(Key);

impl Drop for ClearOpening {
    fn drop(&mut self) {
        clear_opening(self.0);
    }
}

/// Opens a connection and does the HTTP/2 handshake; the connection runs as a task of its own.
/// Returns the sender and the server's stream limit as it changes.
async fn open(
    server: &Server,
    pool: &Pool,
    proxied: Option<&Proxied>,
) -> Result<(SendRequest<UploadBody>, Rc<Cell<usize>>), ConnectError> {
    let conn = upstream_conn::open(server, pool, proxied).await?;
    if pool.settings.tls.is_some() && conn.io.alpn() != Some(b"h2") {
        return Err(ConnectError::Tls(
            "the server did not agree to HTTP/2 (ALPN h2)".into(),
        ));
    }
    let mut builder = hyper::client::conn::http2::Builder::new(LocalExec);
    builder.timer(hyper_util::rt::TokioTimer::new());
    let handshake = builder.handshake(TokioIo::new(conn.io));
    let (send, connection) = match tokio::time::timeout(pool.settings.connect_timeout, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            return Err(ConnectError::Io(std::io::Error::other(format!(
                "HTTP/2 handshake: {e}"
            ))));
        }
        Err(_) => return Err(ConnectError::Timeout),
    };
    let name = server.addr_text.clone();
    // Until the server's SETTINGS arrive, hyper assumes 100 streams (RFC 9113 6.5.2 asks
    // servers to allow at least that many).
    let max_streams = Rc::new(Cell::new(connection.current_max_send_streams()));
    let seen = max_streams.clone();
    let mut connection = Box::pin(connection);
    tokio::task::spawn_local(async move {
        let ended = std::future::poll_fn(|cx| {
            let r = connection.as_mut().poll(cx);
            seen.set(connection.current_max_send_streams());
            r
        })
        .await;
        if let Err(e) = ended {
            tracing::debug!("HTTP/2 connection to {name} ended: {e}");
        }
    });
    Ok((send, max_streams))
}

/// The client's request body on its way to an HTTP/2 server, counted against `max_body_bytes`.
pub struct UploadBody {
    body: Option<RequestBody>,
    remaining: u64,
    /// Set when the body went over the limit, for the 413.
    too_large: Rc<Cell<bool>>,
    /// Set once any of the body has been taken: the request can no longer be sent again.
    started: Rc<Cell<bool>>,
}

impl Drop for UploadBody {
    fn drop(&mut self) {
        // Dropped unfinished (answered early, or the stream failed): the client's remaining
        // bytes are read and discarded for a while, as for HTTP/1.1 pools (see `upload::linger`).
        if let Some(RequestBody::H2(body)) = self.body.take()
            && !body.is_end_stream()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(super::upload::linger(body));
        }
    }
}

impl Body for UploadBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        match std::task::ready!(Pin::new(body).poll_frame(cx)) {
            None => {
                this.body = None;
                Poll::Ready(None)
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            Some(Ok(frame)) => {
                this.started.set(true);
                if let Some(d) = frame.data_ref() {
                    let n = d.len() as u64;
                    if n > this.remaining {
                        this.too_large.set(true);
                        return Poll::Ready(Some(Err("request body larger than max_body_bytes".into())));
                    }
                    this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or(SizeHint::with_exact(0), Body::size_hint)
    }
}

/// A server's HTTP/2 response body, with its trailers, on its way to the client.
pub struct H2Body {
    body: Incoming,
    _slot: StreamSlot,
}

impl H2Body {
    /// The next frame: data or trailers; an error when the server reset the stream.
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.body)
            .poll_frame(cx)
            .map_err(std::io::Error::other)
    }

    /// The body has ended.
    pub fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    /// What the server said of the body's length.
    pub fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request made ready for an HTTP/2 server.
pub struct Prepared {
    method: Method,
    /// The target in origin form, the route's prefix removed if asked.
    target: String,
    /// The authority the client named; `None`: the server's address is used.
    authority: Option<HeaderValue>,
    headers: http::HeaderMap,
    body: Option<RequestBody>,
    limit: u64,
    key_hash: Option<u64>,
    idempotent: bool,
    proxied: Option<Proxied>,
}

/// Rewrites a request for an HTTP/2 server; `None` if its declared body is over
/// `max_body_bytes`.
pub fn prepare(
    req: Request<RequestBody>,
    facts: &headers::RequestFacts,
    ctx: &ConnCtx,
    client: std::net::IpAddr,
    pool: &Pool,
    strip: Option<&str>,
    rid: &HeaderValue,
) -> Option<Prepared> {
    let limit = ctx.listener.limits.max_body_bytes;
    if facts.content_length.is_some_and(|n| n > limit) {
        return None;
    }
    let key_hash = pool
        .settings
        .hash_key
        .as_ref()
        .and_then(|(key, f)| key.key_hash(req.uri(), req.headers(), client, *f));
    let (mut parts, body) = req.into_parts();
    let authority = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    let te_trailers = translate::te_trailers(&parts.headers);
    // No protocol switch over HTTP/2 here: Upgrade goes with the other hop-by-hop fields.
    headers::remove_hop_by_hop(&mut parts.headers, false);
    let forwarding = headers::Forwarding::new(
        &parts.headers,
        &ctx.client_ip,
        ctx.listener.proto,
        authority.as_ref(),
        rid,
    );
    translate::for_h2(&mut parts.headers, te_trailers, forwarding.fields());
    let target = forward::upstream_target(&parts.uri, strip).into_owned();
    let has_body = !body.is_end_stream();
    Some(Prepared {
        idempotent: forward::is_idempotent(&parts.method),
        method: parts.method,
        target,
        authority,
        headers: parts.headers,
        body: has_body.then_some(body),
        limit,
        key_hash,
        proxied: pool.settings.send_proxy.map(|_| Proxied {
            client: ctx.peer,
            local: ctx.local,
        }),
    })
}

/// Sends a prepared request to an HTTP/2 pool's servers, with retries per DESIGN.md 1.7.
pub async fn forward(
    mut req: Prepared,
    pool: &Pool,
    answered_by: &mut Option<Arc<Server>>,
    log: Option<&mut AccessRecord>,
) -> Response<ResponseBody> {
    let settings = &pool.settings;
    let members = pool.members.load();
    let mut tried = Tried::default();
    let mut failure = None;
    let attempts = settings.retries as usize + 1;
    let too_large = Rc::new(Cell::new(false));
    let started = Rc::new(Cell::new(false));
    let had_body = req.body.is_some();
    // The body can go to a server once; a request without one can go again if idempotent.
    let mut sendable = true;
    while sendable && tried.len() < attempts {
        let Some(server) = pick_server(&members, settings, req.key_hash, &tried) else {
            break;
        };
        tried.insert(server.id);
        let guard = InFlight::new(server.clone());
        // A cached connection the server is closing fails before the request leaves; the request
        // then goes once more, on a connection to the same server opened for it.
        let mut again = true;
        let outcome = loop {
            let (mut send, slot, cached) = match sender(&server, pool, req.proxied.as_ref()).await {
                Ok(s) => s,
                Err(e) => {
                    crate::health::upstream_failed(pool, &server, &e);
                    failure = Some(Failure::of_connect(&e));
                    break None;
                }
            };
            let request = match build(&mut req, settings.tls.is_some(), &server, &too_large, &started) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("request not valid for HTTP/2: {e}");
                    return answers::bad_request();
                }
            };
            let sent_at = Instant::now();
            let result =
                tokio::time::timeout(settings.response_timeout, send.try_send_request(request)).await;
            match result {
                Ok(Ok(resp)) => break Some((resp, slot, sent_at)),
                Err(_) => {
                    server.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    crate::health::upstream_failed(pool, &server, &"response timed out");
                    *answered_by = Some(server.clone());
                    return answers::gateway_timeout();
                }
                Ok(Err(mut e)) => {
                    if too_large.get() {
                        return answers::too_large();
                    }
                    if let Some(back) = e.take_message() {
                        // Never left: the body is intact and may go anywhere.
                        req.body = back.into_body().body.take();
                        if cached && again {
                            again = false;
                            continue;
                        }
                    } else {
                        sendable = req.idempotent && !had_body && !started.get();
                    }
                    let e = e.into_error();
                    crate::health::upstream_failed(pool, &server, &e);
                    failure = Some(Failure::Reset);
                    break None;
                }
            }
        };
        let Some((resp, slot, sent_at)) = outcome else {
            server.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        crate::health::upstream_answered(pool, &server, resp.status().as_u16());
        if let Some(log) = log {
            log.upstream_time = Some(sent_at.elapsed());
        }
        *answered_by = Some(server);
        return response(resp, slot, guard);
    }
    match failure {
        None => answers::unavailable(),
        Some(Failure::ConnectTimeout) => answers::gateway_timeout(),
        Some(Failure::Connect | Failure::Reset) => answers::bad_gateway(),
    }
}

/// The request for one attempt: the headers are kept for a possible next attempt.
fn build(
    req: &mut Prepared,
    tls: bool,
    server: &Server,
    too_large: &Rc<Cell<bool>>,
    started: &Rc<Cell<bool>>,
) -> Result<Request<UploadBody>, http::Error> {
    let uri = translate::h2_uri(tls, req.authority.as_ref(), &server.address, &req.target)?;
    let mut r = Request::new(UploadBody {
        body: req.body.take(),
        remaining: req.limit,
        too_large: too_large.clone(),
        started: started.clone(),
    });
    *r.method_mut() = req.method.clone();
    *r.uri_mut() = uri;
    *r.version_mut() = http::Version::HTTP_2;
    *r.headers_mut() = req.headers.clone();
    Ok(r)
}

fn response(resp: Response<Incoming>, slot: StreamSlot, guard: InFlight) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    // `Trailer` announces the trailer fields; hyper sends trailers to an HTTP/1.1 client (that
    // asked with `TE: trailers`) only for the fields announced, so it stays.
    let announced: Vec<HeaderValue> = parts.headers.get_all(header::TRAILER).iter().cloned().collect();
    headers::remove_hop_by_hop(&mut parts.headers, false);
    for v in announced {
        parts.headers.append(header::TRAILER, v);
    }
    let body = match guard.into_exchange() {
        Some(exchange) => ResponseBody::h2(Box::new(H2Body { body, _slot: slot }), exchange),
        None => ResponseBody::empty(),
    };
    let mut r = Response::new(body);
    *r.status_mut() = parts.status;
    *r.headers_mut() = parts.headers;
    r
}
