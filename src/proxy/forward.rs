//! The request path: route a request, answer it at the edge or forward it to a pool's server.
//!
//! Owns: the order of decisions for one request (framing checks, route, action), the
//! forwarding loop with retries on a different server (DESIGN.md 1.7), and the mapping of
//! failures to 502/503/504. Requests to HTTP/2 pools take their own path (`upstream_h2.rs`);
//! one attempt's connection and response are in `upstream_conn.rs`.
//! Must not touch: connection accept and lifetime (server.rs), the choice of server
//! (balance/), idle connection bookkeeping (upstream.rs).

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use tokio::time::Instant;

use super::access_log::AccessRecord;
use super::answers::{
    bad_gateway, bad_path, bad_request, gateway_timeout, local_response, not_found, too_large, unavailable,
};
use super::body::{ResponseBody, Tally};
use super::h1::{self, RequestFraming};
use super::headers::{self, X_REQUEST_ID};
use super::request_body::RequestBody;
use super::server::{ConnState, ConnToken, ListenerCtx};
use super::state::{Pool, RouteTarget, Server, Snapshot, Tried, pick_server};
use super::stats::{RouteStats, Stamp};
use super::upstream::{self, ConnectError, SendError, Upload};
use super::upstream_conn::ClientUpgrade;
use super::upstream_conn::{InFlight, Proxied, connection, upstream_response};
use crate::config::UpstreamProtocol;
use crate::route;

/// What one connection's requests share.
pub struct ConnCtx {
    /// The live configuration: each request takes the snapshot current when it arrives.
    pub shared: Arc<super::server::Shared>,
    /// The listener that accepted it.
    pub listener: Rc<ListenerCtx>,
    /// The client's address: the PROXY header's source on a listener that reads one, else the
    /// peer of the socket.
    pub peer: SocketAddr,
    /// The address the client connected to (the PROXY header's destination, when sent on).
    pub local: SocketAddr,
    /// Liveness state for the idle and header timeouts.
    pub state: Arc<ConnState>,
    /// The client's address as an `X-Forwarded-For` value.
    pub client_ip: HeaderValue,
}

/// Facts about the upstream exchange, for the access log and the live figures.
///
/// Kept small: it lives in every forwarded request's boxed future, which is held under 1 KiB
/// (mimalloc serves larger blocks through a slower path, about 170 instructions more per
/// request). The route index and the upstream time are therefore not kept here.
#[derive(Default)]
struct UpstreamInfo {
    server: Option<Arc<Server>>,
}

/// The host a request is for: the URI's authority (HTTP/2, absolute form) or `Host`.
fn request_host<B>(req: &Request<B>) -> &str {
    if let Some(a) = req.uri().authority() {
        return route::host_without_port(a.as_str());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or("", route::host_without_port)
}

/// The header-ready source of [`request_host`], for the access log (the port is removed when
/// the line is written, off the request's way).
fn request_host_value<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    }
}

/// The answer to one request, as hyper awaits it.
pub type Answer = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>>>>;

/// What every answer gets at the end: the request id, the access log record, what the live
/// figures count, the connection's count of requests in flight.
struct Finish {
    rid: HeaderValue,
    log: Option<Box<AccessRecord>>,
    token: ConnToken,
    /// The matched route's figures (those of unrouted requests before a route matched).
    stats: Arc<RouteStats>,
    /// The client speaks HTTP/2: fields that change in every response stay out of HPACK's table.
    h2_client: bool,
    /// When the request head was received: the one clock read at the start of a request,
    /// shared by the figures and the access log.
    start: Stamp,
}

impl Finish {
    fn apply(
        mut self,
        mut resp: Response<ResponseBody>,
        info: UpstreamInfo,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let status = resp.status().as_u16();
        if let Some(log) = self.log.as_mut() {
            log.status = status;
            log.upstream = info.server.as_ref().map(|s| s.addr_text.clone());
        }
        if self.h2_client {
            headers::mark_unrepeated(resp.headers_mut());
        }
        resp.headers_mut().insert(X_REQUEST_ID.clone(), self.rid);
        let tally = Tally {
            route: self.stats,
            server: info.server,
            start: self.start,
            status,
        };
        resp.body_mut().finish_with(self.log, tally, self.token);
        Ok(resp)
    }
}

/// Serves one request of a connection.
///
/// Everything that needs no waiting (routing, header rewriting, the request head for the
/// server) is done here, before the future is made: what the future must keep is then small,
/// and it is built (and copied to the heap) for every request.
pub fn handle(mut req: Request<RequestBody>, ctx: &ConnCtx) -> Answer {
    let token = ctx.state.begin();
    // Taken per request, not per connection: after a reload the next request of a keep-alive
    // connection already uses the new routes, while this one finishes on the ones it started with.
    let snapshot = ctx.shared.snapshot.load();
    let access_log: Option<Arc<_>> = ctx.shared.access_log.load().as_ref().clone();
    let rid = headers::request_id(req.headers());
    // Behind trusted HTTP proxies, the client they name; the connection's peer otherwise.
    let client = if ctx.listener.trusted_proxies.is_empty() {
        ctx.peer.ip()
    } else {
        super::client_addr::real_client(ctx.peer.ip(), req.headers(), &ctx.listener.trusted_proxies)
    };
    let start = Stamp::now();
    let mut log = access_log.map(|log| {
        Box::new(AccessRecord {
            log,
            start: Instant::from_std(start.instant()),
            wall: SystemTime::now(),
            client,
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: request_host_value(&req),
            version: req.version(),
            referer: req.headers().get(header::REFERER).cloned(),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            request_id: rid.clone(),
            route: None,
            status: 0,
            upstream: None,
            upstream_time: None,
            total: None,
        })
    });
    let mut info = UpstreamInfo::default();
    let mut route = None;
    let mut normal_uri = None;
    let decision = decide(&req, ctx, client, &snapshot, &mut route, &mut normal_uri);
    // From here on the request names its normal path: the server is sent it, static files are
    // mapped from it; the access log keeps the target as received.
    if let Some(uri) = normal_uri {
        *req.uri_mut() = uri;
    }
    if let (Some(log), Some(i)) = (log.as_mut(), route) {
        log.route = snapshot.routes.get(i).map(|r| r.name.clone());
    }
    let stats = match route.and_then(|i| snapshot.routes.get(i)) {
        Some(r) => r.stats.clone(),
        None => snapshot.unrouted.clone(),
    };
    let mut end = Finish {
        rid,
        log,
        token,
        stats,
        h2_client: req.version() == Version::HTTP_2,
        start,
    };
    match decision {
        Decision::Answer(resp) => Box::pin(std::future::ready(end.apply(resp, info))),
        Decision::Static { site, prefix } => {
            let (site, prefix) = (site.clone(), prefix.to_owned());
            Box::pin(async move {
                let resp = super::static_files::serve(&req, &site, &prefix).await;
                end.apply(resp, info)
            })
        }
        Decision::Forward { facts, pool, strip } if pool.settings.protocol != UpstreamProtocol::Http1 => {
            // A path of its own, so that the HTTP/1.1 path's future does not carry its state.
            match super::upstream_h2::prepare(req, &facts, ctx, client, pool, strip, &end.rid) {
                None => Box::pin(std::future::ready(end.apply(too_large(), info))),
                Some(request) => {
                    let pool = pool.clone();
                    Box::pin(async move {
                        let resp = Box::pin(super::upstream_h2::forward(
                            request,
                            &pool,
                            &mut info.server,
                            end.log.as_deref_mut(),
                        ))
                        .await;
                        end.apply(resp, info)
                    })
                }
            }
        }
        Decision::Forward { facts, pool, strip } => {
            match prepare(req, facts, ctx, client, pool, strip, &end.rid) {
                None => Box::pin(std::future::ready(end.apply(too_large(), info))),
                Some(request) => {
                    let pool = pool.clone();
                    Box::pin(async move {
                        let resp = forward(request, &pool, &mut info, end.log.as_deref_mut()).await;
                        end.apply(resp, info)
                    })
                }
            }
        }
    }
}

/// What to do with a request.
enum Decision<'a> {
    /// Answer at once: an error, a redirect.
    Answer(Response<ResponseBody>),
    /// Serve a file of a static route.
    Static {
        site: &'a Arc<super::static_files::Site>,
        prefix: &'a str,
    },
    /// Forward to a pool's server.
    Forward {
        facts: headers::RequestFacts,
        pool: &'a Arc<Pool>,
        strip: Option<&'a str>,
    },
}

/// `normal_uri` is set to the request's URI with its normal path when that differs from the
/// path received (`route::normalize`).
fn decide<'a>(
    req: &Request<RequestBody>,
    ctx: &ConnCtx,
    client: std::net::IpAddr,
    snapshot: &'a Snapshot,
    matched: &mut Option<usize>,
    normal_uri: &mut Option<Uri>,
) -> Decision<'a> {
    // Ringway's HTTP/1.1 connection refused bad framing already (`h1_server::head`); this
    // check is for what the h2 crate lets through (`h2_server`).
    let facts = headers::RequestFacts::of(req.headers());
    if let Some(why) = facts.framing_error(req.version()) {
        tracing::debug!("400 from {}: {why}", ctx.peer);
        return Decision::Answer(bad_request());
    }
    // Userinfo in an http(s) target is an error (RFC 9110 4.2.4); forwarding it as Host would
    // also leak the credentials to the server.
    if req.uri().authority().is_some_and(|a| a.as_str().contains('@')) {
        tracing::debug!("400 from {}: userinfo in the request target", ctx.peer);
        return Decision::Answer(bad_request());
    }
    // Ringway's HTTP/1.1 connection refuses CONNECT itself (`h1_server::head`).
    if req.method() == Method::CONNECT {
        return Decision::Answer(local_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 Method Not Allowed\n",
        ));
    }
    if let Some(r) = ctx.listener.redirect_https {
        return Decision::Answer(redirect_to_https(req, r.port, r.status));
    }
    // Routes match the path the server will understand, so that no spelling of a path
    // (`/pub/../admin`, `/%61dmin`, `//admin`) passes a route guarding its prefix.
    let path = match route::normalize(req.uri().path()) {
        Ok(path) => path,
        Err(why) => {
            tracing::debug!("400 from {}: request path: {why}", ctx.peer);
            return Decision::Answer(bad_path());
        }
    };
    let Some(index) = snapshot.table.find(request_host(req), &path) else {
        return Decision::Answer(not_found());
    };
    let Some(route) = snapshot.routes.get(index) else {
        return Decision::Answer(not_found());
    };
    *matched = Some(index);
    if route.reject_encoded_slash && route::normalize::has_encoded_slash(&path) {
        tracing::debug!("400 from {}: encoded slash on route `{}`", ctx.peer, route.name);
        return Decision::Answer(bad_path());
    }
    if let Cow::Owned(path) = path {
        match route::normalize::with_path(req.uri(), &path) {
            Some(uri) => *normal_uri = Some(uri),
            None => return Decision::Answer(bad_path()),
        }
    }
    // Only a route with `[route.maintenance]` pays for it (and reads the clock only when it
    // could be on); `allow`ed clients go on to the route's action.
    if let Some(m) = &route.maintenance
        && let Some(answer) = m.answer(client, &ctx.shared.clock)
    {
        return Decision::Answer(answer);
    }
    match &route.target {
        RouteTarget::Redirect { location, status } => {
            let mut r = Response::new(ResponseBody::empty());
            *r.status_mut() = *status;
            r.headers_mut().insert(header::LOCATION, location.clone());
            Decision::Answer(r)
        }
        RouteTarget::Static { site } => Decision::Static {
            site,
            prefix: &route.prefix,
        },
        RouteTarget::Forward { pool, strip } => Decision::Forward {
            facts,
            pool,
            strip: strip.as_deref(),
        },
    }
}

/// Answers every request of a `redirect_https` listener. The path goes as received: it is not
/// routed here, and the HTTPS listener normalises it when the client comes back.
fn redirect_to_https<B>(req: &Request<B>, port: u16, status: u16) -> Response<ResponseBody> {
    let host = request_host(req);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    let mut r = Response::new(ResponseBody::empty());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::PERMANENT_REDIRECT);
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => bad_request(),
    }
}

pub(super) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The upstream request target in origin form, with the route's prefix removed if asked.
pub(super) fn upstream_target<'u>(uri: &'u Uri, strip: Option<&str>) -> Cow<'u, str> {
    let Some(prefix) = strip else {
        return Cow::Borrowed(uri.path_and_query().map_or("/", |p| p.as_str()));
    };
    let path = route::strip_prefix(uri.path(), prefix);
    match uri.query() {
        Some(q) => Cow::Owned(format!("{path}?{q}")),
        None => path,
    }
}

/// Why no server answered (shared by the HTTP/1.1 and HTTP/2 paths).
pub(super) enum Failure {
    Connect,
    ConnectTimeout,
    Reset,
}

impl Failure {
    /// What a failed connection attempt counts as: 504 if it timed out, 502 otherwise.
    pub(super) fn of_connect(e: &ConnectError) -> Failure {
        if matches!(e, ConnectError::Timeout) {
            Failure::ConnectTimeout
        } else {
            Failure::Connect
        }
    }
}

/// A request made ready for the server: its head written, its body waiting to be sent.
struct Prepared {
    /// The request head as it goes to the server.
    head: Bytes,
    /// What few requests need, boxed so that the others' futures stay small.
    extra: Option<Box<Extra>>,
    /// The client's body, if it has one.
    upload: Option<Upload>,
    /// The pool's hash key, for hashing pools.
    key_hash: Option<u64>,
    /// A request that may be sent again once it may have reached a server.
    idempotent: bool,
    /// `HEAD`: the response has no body whatever its headers say.
    head_request: bool,
    /// The client side of a WebSocket upgrade.
    client_upgrade: Option<Box<ClientUpgrade>>,
}

/// The rarer parts of a prepared request.
#[derive(Default)]
struct Extra {
    /// An HTTP/1.0 request without `Host` gets the server's address as its host, so its head is
    /// written again for each server it goes to.
    hostless: Option<Hostless>,
    /// The client's addresses, for a `send_proxy` pool.
    proxied: Option<Proxied>,
}

/// What it takes to write a request head again with another `Host`.
struct Hostless {
    method: Method,
    target: String,
    headers: http::HeaderMap,
    forwarding: headers::Forwarding,
    framing: RequestFraming,
}

/// Rewrites a request for the server: hop-by-hop headers out, forwarding headers in, the request
/// id, the target with the route's prefix removed; then writes its head. `None` if its declared
/// body is over `max_body_bytes`.
fn prepare(
    req: Request<RequestBody>,
    facts: headers::RequestFacts,
    ctx: &ConnCtx,
    client: std::net::IpAddr,
    pool: &Pool,
    strip: Option<&str>,
    rid: &HeaderValue,
) -> Option<Prepared> {
    let limits = &ctx.listener.limits;
    if facts.content_length.is_some_and(|n| n > limits.max_body_bytes) {
        return None;
    }
    let key_hash = pool
        .settings
        .hash_key
        .as_ref()
        .and_then(|(key, f)| key.key_hash(req.uri(), req.headers(), client, *f));
    let (mut parts, body) = req.into_parts();
    // Boxed: only upgrades pay for it, and the request's future stays within 1 KiB.
    let client_upgrade = if facts.websocket {
        parts
            .extensions
            .remove::<super::h1_server::OnUpgrade>()
            .map(|on| {
                Box::new(ClientUpgrade {
                    on,
                    idle_timeout: limits.idle_timeout,
                })
            })
    } else {
        None
    };
    // An absolute-form target (or HTTP/2's :authority) names the host: RFC 9112 3.2.2 has a
    // proxy generate Host from it rather than forward the received one.
    if let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    headers::remove_hop_by_hop(&mut parts.headers, facts.websocket);
    if parts.version == Version::HTTP_2 {
        super::upstream_translate::join_cookies(&mut parts.headers);
    }
    let forwarding = headers::Forwarding::new(
        &parts.headers,
        &ctx.client_ip,
        ctx.listener.proto,
        parts.headers.get(header::HOST),
        rid,
    );
    let target = upstream_target(&parts.uri, strip);
    let has_body = !body.is_end_stream();
    let framing = RequestFraming::of(&parts.method, &parts.headers, has_body);
    let head = h1::encode_request_head(
        &parts.method,
        &target,
        &parts.headers,
        forwarding.fields(),
        framing,
    );
    // An HTTP/1.0 request without Host: HTTP/1.1 upstream needs one; like nginx's
    // `$proxy_host`, it names the server.
    let hostless = (!parts.headers.contains_key(header::HOST)).then(|| Hostless {
        method: parts.method.clone(),
        target: target.clone().into_owned(),
        headers: std::mem::take(&mut parts.headers),
        forwarding,
        framing,
    });
    let proxied = pool.settings.send_proxy.map(|_| Proxied {
        client: ctx.peer,
        local: ctx.local,
    });
    let extra = (hostless.is_some() || proxied.is_some()).then(|| Box::new(Extra { hostless, proxied }));
    Some(Prepared {
        head,
        extra,
        upload: has_body
            .then(|| Upload::new(body, limits.max_body_bytes, framing == RequestFraming::Chunked)),
        key_hash,
        idempotent: is_idempotent(&parts.method),
        head_request: parts.method == Method::HEAD,
        client_upgrade,
    })
}

/// Sends a prepared request to the pool's servers, with retries per DESIGN.md 1.7.
async fn forward(
    mut req: Prepared,
    pool: &Pool,
    info: &mut UpstreamInfo,
    log: Option<&mut AccessRecord>,
) -> Response<ResponseBody> {
    let settings = &pool.settings;
    // Whether the request may still be sent: true until it may have reached a server, and
    // then still true if it can safely be sent again (idempotent, and no body bytes taken).
    let mut sendable = true;
    let replayable = |req: &Prepared| req.idempotent && req.upload.as_ref().is_none_or(|u| !u.started());

    let members = pool.members.load();
    let mut tried = Tried::default();
    let mut failure = None;
    let attempts = settings.retries as usize + 1;
    while sendable && tried.len() < attempts {
        let Some(server) = pick_server(&members, settings, req.key_hash, &tried) else {
            break;
        };
        tried.insert(server.id);
        let guard = InFlight::new(server.clone());
        if let Some(h) = req.extra.as_mut().and_then(|e| e.hostless.as_mut())
            && let Ok(v) = HeaderValue::from_str(&server.addr_text)
        {
            h.headers.insert(header::HOST, v);
            req.head =
                h1::encode_request_head(&h.method, &h.target, &h.headers, h.forwarding.fields(), h.framing);
        }
        // A pooled connection the server closed meanwhile fails before any response; one fresh
        // connection to the same server is then tried before moving on.
        let mut fresh = false;
        let outcome = loop {
            let proxied = req.extra.as_ref().and_then(|e| e.proxied.as_ref());
            let (mut conn, pooled) = match connection(&server, pool, fresh, proxied).await {
                Ok(s) => s,
                Err(e) => {
                    crate::health::upstream_failed(pool, &server, &e);
                    failure = Some(Failure::of_connect(&e));
                    break None;
                }
            };
            let started = Instant::now();
            conn.timer.as_mut().reset(started + settings.response_timeout);
            match upstream::send(&mut conn, &req.head, &mut req.upload, req.head_request).await {
                Ok(response) => break Some((response, conn, started)),
                Err(SendError::Timeout) => {
                    server.failures.fetch_add(1, Ordering::Relaxed);
                    crate::health::upstream_failed(pool, &server, &SendError::Timeout);
                    info.server = Some(server.clone());
                    return gateway_timeout();
                }
                Err(SendError::BodyTooLarge) => return too_large(),
                Err(SendError::Client(e)) => {
                    tracing::debug!("client body: {e}");
                    return bad_request();
                }
                // Written to a reused connection the server was closing: the classic keep-alive
                // race. The request goes again on a fresh connection if that is safe.
                Err(SendError::Unsent(_)) if !fresh => fresh = true,
                Err(SendError::NoResponse(_)) if pooled && !fresh && replayable(&req) => fresh = true,
                Err(e) => {
                    crate::health::upstream_failed(pool, &server, &e);
                    failure = Some(Failure::Reset);
                    if !matches!(e, SendError::Unsent(_)) {
                        sendable = replayable(&req);
                    }
                    break None;
                }
            }
        };
        let Some((response, conn, sent_at)) = outcome else {
            server.failures.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        crate::health::upstream_answered(pool, &server, response.status.as_u16());
        if let Some(log) = log {
            log.upstream_time = Some(sent_at.elapsed());
        }
        info.server = Some(server);
        let private = req.extra.as_ref().and_then(|e| e.proxied.map(|p| p.client));
        return upstream_response(response, guard, conn, private, req.upload, req.client_upgrade);
    }
    match failure {
        None => unavailable(),
        Some(Failure::ConnectTimeout) => gateway_timeout(),
        Some(Failure::Connect | Failure::Reset) => bad_gateway(),
    }
}
