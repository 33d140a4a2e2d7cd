//! One attempt's connection and what becomes of its response: a pooled or new HTTP/1.1
//! connection to the chosen server (opened with the pool's PROXY header and TLS), the server's
//! in-flight count, the response handed to the client (streamed body or WebSocket tunnel).
//!
//! Owns: the glue between `forward.rs` (which server, retries) and `upstream.rs` (the
//! exchange's I/O). Must not touch: routing, retries or the choice of server.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Response, StatusCode};

use super::answers::bad_gateway;
use super::body::{Exchange, ResponseBody};
use super::h1;
use super::state::{Pool, Server};
use super::upstream::{self, Conn, ConnectError, Upload, UpstreamBody};

/// Counts a request in flight on a server until dropped or turned into an [`Exchange`].
pub(super) struct InFlight(Option<Arc<Server>>);

impl InFlight {
    /// Counts a request on `server` (in flight, and in its total).
    pub(super) fn new(server: Arc<Server>) -> InFlight {
        server.request_started();
        InFlight(Some(server))
    }

    /// Hands the in-flight count to the response body.
    pub(super) fn into_exchange(mut self) -> Option<Exchange> {
        // The exchange takes over the in-flight count (and decrements it when dropped).
        self.0.take().map(|server| Exchange { server })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.request_ended();
        }
    }
}

/// A connection to `server`: an idle one if the worker has one (`true`), else a new one.
///
/// `proxied`: the pool sends a PROXY header, so the connection is private to that client.
pub(super) async fn connection(
    server: &Server,
    pool: &Pool,
    fresh: bool,
    proxied: Option<&Proxied>,
) -> Result<(Conn, bool), ConnectError> {
    if !fresh && let Some(c) = upstream::checkout(server.id, proxied.map(|p| p.client)) {
        return Ok((c, true));
    }
    // Boxed: opening a connection is rare once pools are warm, and its future would otherwise
    // enlarge every request's future.
    Box::pin(open(server, pool, proxied)).await.map(|s| (s, false))
}

/// Opens a connection to `server` as its pool says: PROXY header, TLS.
pub(super) async fn open(
    server: &Server,
    pool: &Pool,
    proxied: Option<&Proxied>,
) -> Result<Conn, ConnectError> {
    let settings = &pool.settings;
    let header = match (settings.send_proxy, proxied) {
        (Some(v), Some(p)) => Some(super::upstream_io::proxy_header(v, p.client, p.local)),
        _ => None,
    };
    let dial = upstream::Dial {
        addr: server.addr,
        address: &server.address,
        timeout: settings.connect_timeout,
        tls: settings.tls.as_deref(),
        proxy_header: header.as_deref(),
    };
    upstream::connect(&dial).await
}

/// The addresses a `send_proxy` pool announces for a request's client connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Proxied {
    /// The client (`ConnCtx::peer`).
    pub client: SocketAddr,
    /// The address it connected to (`ConnCtx::local`).
    pub local: SocketAddr,
}

/// The client's response from an HTTP/1.1 server's head: its body streamed from `conn`, or a
/// tunnel after `101 Switching Protocols`.
pub(super) fn upstream_response(
    head: h1::ResponseHead,
    guard: InFlight,
    conn: Conn,
    private: Option<SocketAddr>,
    upload: Option<Upload>,
    client_upgrade: Option<Box<ClientUpgrade>>,
) -> Response<ResponseBody> {
    let upgraded = head.status == StatusCode::SWITCHING_PROTOCOLS;
    let body = if upgraded {
        let Some(client) = client_upgrade else {
            tracing::debug!("server switched protocols unasked");
            return bad_gateway();
        };
        tokio::task::spawn_local(tunnel(*client, conn));
        ResponseBody::empty()
    } else {
        match guard.into_exchange() {
            Some(exchange) => ResponseBody::upstream(
                Box::new(UpstreamBody::new(
                    conn,
                    private,
                    head.framing,
                    head.keep_alive,
                    upload,
                )),
                exchange,
            ),
            None => ResponseBody::empty(),
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    resp
}

/// The client side of an upgrade (WebSocket), waiting for the server's 101.
pub(super) struct ClientUpgrade {
    /// Resolves to the client's connection once the 101 has been written to it.
    pub(super) on: super::h1_server::OnUpgrade,
    /// The listener's `idle_timeout`: a tunnel quiet in both directions for this long is closed
    /// (nginx's `proxy_read_timeout`, HAProxy's `timeout tunnel`).
    pub(super) idle_timeout: std::time::Duration,
}

/// A tunnel's stream that notes when bytes last went through it.
struct Active<S> {
    inner: S,
    last: std::rc::Rc<std::cell::Cell<tokio::time::Instant>>,
}

impl<S> Active<S> {
    fn moved<T>(&self, res: &std::task::Poll<std::io::Result<T>>, n: impl FnOnce(&T) -> bool) {
        if let std::task::Poll::Ready(Ok(v)) = res
            && n(v)
        {
            self.last.set(tokio::time::Instant::now());
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Active<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        let grew = buf.filled().len() > before;
        this.moved(&res, |_| grew);
        res
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Active<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let res = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        this.moved(&res, |n| *n > 0);
        res
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Joins the client and the server once the client side has switched protocols, until either
/// closes or nothing crosses for the listener's `idle_timeout`.
async fn tunnel(client: ClientUpgrade, mut conn: Conn) {
    use tokio::io::AsyncWriteExt;
    let idle = client.idle_timeout;
    let Some(upgraded) = client.on.wait().await else {
        tracing::debug!("upgrade failed: the client's connection ended before the 101");
        return;
    };
    let mut client = upgraded.io;
    // Bytes the client sent right after its request head were read with the head.
    if !upgraded.read.is_empty() && conn.io.write_all(&upgraded.read).await.is_err() {
        return;
    }
    // Bytes the server sent right after its 101 were read with the head.
    if !conn.buf.is_empty() && client.write_all(&conn.buf).await.is_err() {
        return;
    }
    let last = std::rc::Rc::new(std::cell::Cell::new(tokio::time::Instant::now()));
    let mut client = Active {
        inner: client,
        last: last.clone(),
    };
    let mut server = Active {
        inner: &mut conn.io,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            _ = &mut copy => return,
            _ = tokio::time::sleep_until(last.get() + idle) => {
                if last.get() + idle <= tokio::time::Instant::now() {
                    tracing::debug!("tunnel closed: idle for {idle:?}");
                    return;
                }
            }
        }
    }
}
