//! Ringway's own HTTP/1.1 server side of client connections (plain and TLS alike): reads request
//! heads with `httparse` into buffers that exist only while a request is read or its response
//! written, so that an idle keep-alive connection parks in a few hundred bytes.
//!
//! Owns: the life of one HTTP/1.x client connection after its prelude (framing, pipelining,
//! `Expect: 100-continue`, keep-alive, lingering close, handing upgrades to the tunnel).
//! Must not touch: routing and forwarding (forward.rs), timeouts' bookkeeping (conn_state.rs,
//! and `drive` in server.rs, which runs this connection).

pub mod head;
mod io;
pub mod write;

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::{Method, Request, StatusCode, Version};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use self::head::{HeadEnd, Refusal, RequestBodyFraming, RequestHead};
use self::io::{Io, Wire};
use self::write::{FramingInput, ResponseFraming};
use super::body::ResponseBody;
use super::conn_state::TrackedStream;
use super::forward::{self, ConnCtx};
use super::request_body::RequestBody;
use super::upload;

/// A client stream a tunnel can take over.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// The client's connection after Ringway wrote its `101 Switching Protocols`.
pub struct Upgraded {
    /// The stream.
    pub io: Box<dyn ClientIo>,
    /// What the client sent after its request head, already read: the server gets it first.
    pub read: Bytes,
}

/// Resolves to the client's connection once the `101` has been written (the request extension
/// of a request that asked to upgrade; request extensions must be `Clone + Sync`, hence the
/// shared slot, taken once).
#[derive(Clone)]
pub struct OnUpgrade(std::sync::Arc<std::sync::Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl OnUpgrade {
    /// The client's connection; `None` if the connection ended before the `101` was written.
    pub async fn wait(self) -> Option<Upgraded> {
        let rx = self.0.lock().ok()?.take()?;
        rx.await.ok()
    }
}

/// One HTTP/1.x client connection, as `server::drive` runs it: a graceful stop lets the request
/// in flight finish, then closes instead of waiting for another.
pub(super) struct H1Connection {
    inner: Pin<Box<dyn Future<Output = std::io::Result<()>>>>,
    draining: Rc<Cell<bool>>,
}

impl H1Connection {
    /// Serves `stream` until it closes.
    pub(super) fn new<S>(stream: TrackedStream<S>, ctx: Rc<ConnCtx>) -> H1Connection
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let draining = Rc::new(Cell::new(false));
        // Made here, not in `serve`: an async fn keeps room for its arguments for its whole
        // life, and a TLS stream is large.
        let conn = Rc::new(RefCell::new(Io::new(stream)));
        let inner = Box::pin(serve(conn, ctx, draining.clone()));
        H1Connection { inner, draining }
    }

    /// Finishes the request in flight and accepts no more.
    pub(super) fn shut_down(&self) {
        self.draining.set(true);
    }
}

impl Future for H1Connection {
    type Output = std::io::Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// How reading a request head ended.
enum HeadRead {
    Head(Bytes),
    /// The client closed (or a graceful stop came) between requests.
    Closed,
    Refused(Refusal),
}

async fn serve<S>(conn: Rc<RefCell<Io<S>>>, ctx: Rc<ConnCtx>, draining: Rc<Cell<bool>>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = ctx.listener.limits.max_header_bytes;
    loop {
        // Waiting for the next request holds only this loop's few words: the state of an
        // exchange (head, request, response writing) lives in a box made when bytes arrive.
        if conn.borrow().buf.is_empty() {
            let n = poll_fn(|cx| conn.borrow_mut().poll_read_head(cx, max, HEAD_BUFFER, &draining)).await?;
            if n == 0 {
                return Ok(());
            }
        }
        if !Box::pin(exchange(&conn, &ctx, &draining)).await? {
            return Ok(());
        }
    }
}

/// Reads one request, has it answered and writes the response; whether the connection may
/// carry another.
async fn exchange<S>(conn: &Rc<RefCell<Io<S>>>, ctx: &ConnCtx, draining: &Cell<bool>) -> std::io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head = match read_head(conn, ctx.listener.limits.max_header_bytes, draining).await? {
        HeadRead::Head(h) => h,
        HeadRead::Closed => return Ok(false),
        HeadRead::Refused(r) => return refuse(conn, ctx, r).await.map(|()| false),
    };
    let head = match head::parse_request_head(head) {
        Ok(h) => h,
        Err(r) => return refuse(conn, ctx, r).await.map(|()| false),
    };
    let exchange = Exchange::of(&head);
    let generation = conn.borrow_mut().begin_request(&head);
    let (req, upgraded) = request(head, conn, generation);
    let resp = match forward::handle(req, ctx).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let keep_alive = exchange.keep_alive && !draining.get();
    let written = write_response(conn, resp, &exchange, keep_alive).await?;
    if written.switched {
        let mut io = conn.borrow_mut();
        if let Some(tx) = upgraded
            && let Some(up) = io.take_upgraded()
        {
            let _ = tx.send(up);
        }
        return Ok(false);
    }
    let mut wire = conn.borrow().wire();
    if let Wire::BodyUnread = wire
        && written.keep_alive
    {
        // Answered before the client finished its body, on a connection that stays open: the
        // rest is read by its framing and thrown away (for a while), and a client that finishes
        // its body keeps its connection.
        wire = drain_body(conn).await;
    }
    conn.borrow_mut().end_request();
    match wire {
        Wire::Clean if written.keep_alive => Ok(true),
        Wire::Clean => shutdown(conn).await.map(|()| false),
        // Closing on unread bytes makes the kernel reset the connection, which can destroy the
        // answer before the client reads it: close the sending side, then read and discard for
        // a while (nginx's lingering close). The client sees the end of the answer at once.
        Wire::Broken => linger(conn).await.map(|()| false),
        Wire::BodyUnread if !written.keep_alive => linger(conn).await.map(|()| false),
        Wire::AwaitsContinue | Wire::BodyUnread => Ok(false),
    }
}

/// Reads and discards the rest of a request body by its framing, for a while
/// (`upload::for_a_while`).
async fn drain_body<S>(conn: &RefCell<Io<S>>) -> Wire
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let piece = |cx: &mut Context<'_>| conn.borrow_mut().poll_body_data(cx);
    match upload::for_a_while(piece, |p| matches!(p, Some(Ok(_)))).await {
        Some(None) => Wire::Clean,
        Some(Some(Err(_))) => Wire::Broken,
        Some(Some(Ok(_))) | None => Wire::BodyUnread,
    }
}

/// What the response to a request depends on, taken from its head before the head moves into
/// the request.
struct Exchange {
    version: Version,
    head_request: bool,
    keep_alive: bool,
    /// `TE: trailers`: the client takes trailer fields in a chunked response.
    trailers: bool,
}

impl Exchange {
    fn of(head: &RequestHead) -> Exchange {
        let trailers = head.headers.get_all(http::header::TE).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers")))
        });
        Exchange {
            version: head.version,
            head_request: head.method == Method::HEAD,
            keep_alive: head.keep_alive,
            trailers,
        }
    }
}

/// The request for the request path, with its body read from `conn` and, for an upgrade, the
/// sender of the client's connection.
fn request<S>(
    head: RequestHead,
    conn: &Rc<RefCell<Io<S>>>,
    generation: Option<u32>,
) -> (Request<RequestBody>, Option<oneshot::Sender<Upgraded>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let body = match (head.body, generation) {
        (RequestBodyFraming::None, _) | (_, None) => RequestBody::Empty,
        (_, Some(g)) => RequestBody::H1(io::client_body(conn, g)),
    };
    let mut req = Request::new(body);
    *req.method_mut() = head.method;
    *req.uri_mut() = head.uri;
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers;
    let upgraded = head.upgrade.then(|| {
        let (tx, rx) = oneshot::channel();
        req.extensions_mut()
            .insert(OnUpgrade(std::sync::Arc::new(std::sync::Mutex::new(Some(rx)))));
        tx
    });
    (req, upgraded)
}

/// The size a head buffer starts at (nginx's `client_header_buffer_size`).
const HEAD_BUFFER: usize = 1024;

/// Reads until a whole request head is in the buffer. Between requests nothing is allocated:
/// the first bytes are read onto the stack and only then copied into a buffer.
async fn read_head<S>(conn: &RefCell<Io<S>>, max: usize, draining: &Cell<bool>) -> std::io::Result<HeadRead>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut scanned = 0;
    loop {
        {
            let mut io = conn.borrow_mut();
            if !io.buf.is_empty() {
                match head::find_head_end(&io.buf, scanned, max) {
                    HeadEnd::Complete(n) => return Ok(HeadRead::Head(io.buf.split_to(n).freeze())),
                    HeadEnd::TooLarge(r) => return Ok(HeadRead::Refused(r)),
                    HeadEnd::Partial => scanned = io.buf.len(),
                }
            }
        }
        let n = poll_fn(|cx| conn.borrow_mut().poll_read_head(cx, max, HEAD_BUFFER, draining)).await?;
        if n == 0 {
            // A head cut short by the client's close gets no answer, as with nginx.
            return Ok(HeadRead::Closed);
        }
    }
}

/// Answers a refused head and closes.
async fn refuse<S>(conn: &RefCell<Io<S>>, ctx: &ConnCtx, r: Refusal) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tracing::debug!("{} from {}: {}", r.status.as_u16(), ctx.peer, r.reason);
    let out = write::refusal_response(r.status);
    write_all(conn, &out).await?;
    shutdown(conn).await
}

/// How writing a response ended.
struct Written {
    /// The connection may carry another request.
    keep_alive: bool,
    /// A `101` was written: the connection now belongs to the tunnel.
    switched: bool,
}

/// Above this, a piece of body is written from where it is rather than copied behind the head.
const COPY_LIMIT: usize = 4096;
/// Bytes gathered before they are written even though more are ready.
const WRITE_BATCH: usize = 16 * 1024;

async fn write_response<S>(
    conn: &RefCell<Io<S>>,
    resp: http::Response<ResponseBody>,
    ex: &Exchange,
    keep_alive: bool,
) -> std::io::Result<Written>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (parts, mut body) = resp.into_parts();
    let content_length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let hint = body.size_hint();
    let framing = write::response_framing(FramingInput {
        status: parts.status,
        head_request: ex.head_request,
        version: ex.version,
        content_length,
        exact_length: hint.exact(),
    });
    let switched = parts.status == StatusCode::SWITCHING_PROTOCOLS;
    let keep_alive =
        keep_alive && !write::asks_close(&parts.headers) && framing != ResponseFraming::UntilClose;
    let mut out = BytesMut::with_capacity(512);
    write::encode_response_head(
        &mut out,
        parts.status,
        &parts.headers,
        framing,
        ex.version,
        keep_alive,
    );
    drop(parts);
    if framing == ResponseFraming::NoBody {
        drop(body);
        write_all(conn, &out).await?;
        flush(conn).await?;
        return Ok(Written { keep_alive, switched });
    }
    let chunked = framing == ResponseFraming::Chunked;
    let mut left = match framing {
        ResponseFraming::Length(n) => Some(n),
        _ => None,
    };
    // A file of one chunk or less goes with its head in one write instead (fewer calls).
    if left.is_some_and(|n| n > SENDFILE_FROM)
        && body.file_stream().is_some()
        && conn.borrow().plain_tcp().is_some()
    {
        conn.borrow().cork(true);
        let sent = async {
            write_all(conn, &out).await?;
            send_file(conn, &mut body).await
        }
        .await;
        conn.borrow().cork(false);
        out.clear();
        if let Some(n) = &mut left {
            *n = n.saturating_sub(sent?);
        }
    }
    let mut trailers_sent = false;
    loop {
        // Whatever is ready is gathered behind the head; the socket is written when the body
        // must be waited for, or enough has gathered.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(f) => f,
            Poll::Pending => {
                if !out.is_empty() {
                    write_all(conn, &out).await?;
                    out.clear();
                }
                flush(conn).await?;
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        match frame {
            None => break,
            Some(Err(e)) => {
                // The server's body broke: the client must not take the cut response for a
                // whole one, so no last chunk, and the connection closes.
                if !out.is_empty() {
                    let _ = write_all(conn, &out).await;
                }
                return Err(e);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if data.is_empty() {
                        continue;
                    }
                    let data = match &mut left {
                        Some(n) => {
                            let take = usize::try_from(*n).unwrap_or(usize::MAX).min(data.len());
                            *n -= take as u64;
                            data.slice(..take)
                        }
                        None => data,
                    };
                    if chunked {
                        write::put_chunk_size(&mut out, data.len());
                    }
                    if data.len() <= COPY_LIMIT {
                        out.put_slice(&data);
                        if chunked {
                            out.put_slice(b"\r\n");
                        }
                    } else {
                        write_all(conn, &out).await?;
                        out.clear();
                        write_all(conn, &data).await?;
                        if chunked {
                            out.put_slice(b"\r\n");
                        }
                    }
                    if out.len() >= WRITE_BATCH {
                        write_all(conn, &out).await?;
                        out.clear();
                    }
                }
                Err(frame) => {
                    if let Ok(fields) = frame.into_trailers()
                        && chunked
                        && !trailers_sent
                    {
                        out.put_slice(b"0\r\n");
                        if ex.trailers {
                            for (name, value) in &fields {
                                out.put_slice(name.as_str().as_bytes());
                                out.put_slice(b": ");
                                out.put_slice(value.as_bytes());
                                out.put_slice(b"\r\n");
                            }
                        }
                        out.put_slice(b"\r\n");
                        trailers_sent = true;
                    }
                }
            },
        }
    }
    // The body is complete: counted and logged before the last bytes go out, as hyper did.
    drop(body);
    if chunked && !trailers_sent {
        out.put_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        write_all(conn, &out).await?;
    }
    flush(conn).await?;
    // A body shorter than its announced length leaves the client waiting: close instead.
    let keep_alive = keep_alive && left.is_none_or(|n| n == 0);
    Ok(Written { keep_alive, switched })
}

async fn write_all<S>(conn: &RefCell<Io<S>>, data: &[u8]) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut at = 0;
    poll_fn(|cx| conn.borrow_mut().poll_write_all(cx, data, &mut at)).await
}

/// Static files larger than this go with `sendfile` to a plain TCP client.
const SENDFILE_FROM: u64 = 64 * 1024;

/// Sends what it can of a static file's body with `sendfile`: the bytes sent. The rest, if
/// any (a piece not in the page cache), then goes through the body's frames.
async fn send_file<S>(conn: &RefCell<Io<S>>, body: &mut ResponseBody) -> std::io::Result<u64>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut sent = 0;
    loop {
        let n = poll_fn(|cx| match body.file_stream() {
            Some(file) => conn.borrow_mut().poll_send_file(cx, file),
            None => Poll::Ready(Ok(0)),
        })
        .await?;
        if n == 0 {
            return Ok(sent);
        }
        body.count_sent(n as u64);
        sent += n as u64;
    }
}

async fn flush<S>(conn: &RefCell<Io<S>>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    poll_fn(|cx| conn.borrow_mut().poll_flush(cx)).await
}

async fn shutdown<S>(conn: &RefCell<Io<S>>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    poll_fn(|cx| conn.borrow_mut().poll_shutdown(cx)).await
}

/// Closes the sending side, then reads and discards what the client still sends, for a while
/// (`upload::for_a_while`).
async fn linger<S>(conn: &RefCell<Io<S>>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shutdown(conn).await?;
    let piece = |cx: &mut Context<'_>| conn.borrow_mut().poll_discard(cx);
    upload::for_a_while(piece, |r| matches!(r, Ok(n) if *n > 0)).await;
    Ok(())
}
