//! Clients that misbehave on purpose: one that stops reading a response (HTTP/1.1 socket full,
//! HTTP/2 window kept at zero) is cut after `send_timeout` and its upstream connection is
//! released; HTTP/2 floods (rapid reset, SETTINGS, PING, too many streams) are answered
//! cleanly while other clients keep being served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use ringway::config::Balance;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw HTTP/1.1 server that answers every request with a body of `size` bytes, and counts
/// the connections that are open and the ones that ended.
struct BigBackend {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl BigBackend {
    async fn start(size: usize) -> BigBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (o, c) = (open.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (o, c) = (o.clone(), c.clone());
                o.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                        if head.windows(4).any(|w| w == b"\r\n\r\n") {
                            let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
                            if s.write_all(resp.as_bytes()).await.is_err() {
                                break;
                            }
                            let chunk = vec![b'x'; 64 * 1024];
                            let mut left = size;
                            while left > 0 {
                                let n = left.min(chunk.len());
                                if s.write_all(&chunk[..n]).await.is_err() {
                                    break;
                                }
                                left -= n;
                            }
                            head.clear();
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        BigBackend { addr, open, closed }
    }
}

fn proxy_to(addr: SocketAddr, send_timeout: Duration) -> Proxy {
    let mut c = one_pool(Balance::RoundRobin, &[addr.to_string()]);
    c.listeners[0].limits.send_timeout = send_timeout;
    Proxy::start(c)
}

#[tokio::test]
async fn an_http1_client_that_stops_reading_is_cut_after_send_timeout() {
    bounded(async {
        let backend = BigBackend::start(64 << 20).await;
        let proxy = proxy_to(backend.addr, Duration::from_secs(1));
        let mut client = TcpStream::connect(proxy.addr).await.expect("connect");
        let started = Instant::now();
        client
            .write_all(b"GET /big HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .expect("write");
        // The client reads nothing: the proxy's socket fills, then the upstream's.
        let released = poll_until(Duration::from_secs(10), || {
            (backend.closed.load(Ordering::SeqCst) == 1).then_some(())
        })
        .await;
        assert!(released.is_some(), "the upstream connection was never released");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900), "cut too early: {waited:?}");
        assert!(waited < Duration::from_secs(8), "cut too late: {waited:?}");
        // The client finds its connection ended once it reads what was sent.
        let mut sink = vec![0u8; 1 << 20];
        let mut total = 0usize;
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match client.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the client connection stayed open");
        assert!(total < 64 << 20, "the whole body arrived: {total}");
        proxy.stop().await;
    })
    .await;
}

// --- HTTP/2 frames, written by hand to misbehave in ways no client library allows ---

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `GET /` for `localhost`, as an HPACK block of static-table entries and one literal.
fn get_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x84, 0x86, 0x01, 9];
    b.extend_from_slice(b"localhost");
    b
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &p)
}

/// Reads frames until the connection ends or `limit` passes; returns the frame types seen (with
/// the error code of a GOAWAY) and whether the connection ended.
async fn read_frames(s: &mut TcpStream, limit: Duration) -> (Vec<(u8, u32)>, bool) {
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            let code = if (kind == GOAWAY && len >= 8) || (kind == RST_STREAM && len >= 4) {
                let at = if kind == GOAWAY { 13 } else { 9 };
                u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
            } else {
                0
            };
            seen.push((kind, code));
            buf.drain(..9 + len);
        }
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return (seen, false),
            Ok(Ok(0) | Err(_)) => return (seen, true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn an_http2_stream_whose_window_stays_closed_is_cut_after_send_timeout() {
    bounded(async {
        let backend = BigBackend::start(4 << 20).await;
        let proxy = proxy_to(backend.addr, Duration::from_secs(1));
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        let started = Instant::now();
        let mut out = PREFACE.to_vec();
        // A window of zero: the response headers can go, no byte of its body.
        out.extend(settings(&[(4, 0)]));
        out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &get_block()));
        s.write_all(&out).await.expect("write");
        // The client reads everything sent (its socket never fills) but opens no window.
        let (seen, ended) = read_frames(&mut s, Duration::from_secs(8)).await;
        assert!(ended, "the connection stayed open: {seen:?}");
        assert!(
            seen.iter().any(|f| f.0 == HEADERS),
            "no response headers: {seen:?}"
        );
        assert!(
            !seen.iter().any(|f| f.0 == DATA),
            "data beyond the window: {seen:?}"
        );
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900), "cut too early: {waited:?}");
        let released = poll_until(Duration::from_secs(5), || {
            (backend.closed.load(Ordering::SeqCst) == backend.open.load(Ordering::SeqCst)).then_some(())
        })
        .await;
        assert!(released.is_some(), "the upstream connection was never released");
        proxy.stop().await;
    })
    .await;
}

/// Times one request from a well-behaved client.
async fn timed_get(url: &str) -> Duration {
    let started = Instant::now();
    let reply = send(client().get(url)).await;
    assert_eq!(reply.status, 200);
    started.elapsed()
}

#[tokio::test]
async fn rapid_reset_is_stopped_and_others_keep_their_latency() {
    bounded(async {
        let backend = Backend::start("b").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &[backend.address()]));
        let url = proxy.url("/");
        let calm = timed_get(&url).await;
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        let mut out = PREFACE.to_vec();
        out.extend(settings(&[]));
        // CVE-2023-44487: open a stream and reset it at once, thousands of times.
        let streams = 5000u32;
        for i in 0..streams {
            let id = 2 * i + 1;
            out.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &get_block()));
            out.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        }
        let writer = tokio::spawn(async move {
            let _ = s.write_all(&out).await;
            s
        });
        let during = timed_get(&url).await;
        let mut s = writer.await.expect("writer");
        let (seen, ended) = read_frames(&mut s, Duration::from_secs(10)).await;
        assert!(ended, "the flooding connection stayed open");
        // ENHANCE_YOUR_CALM (11) or PROTOCOL_ERROR (1): either ends the flood.
        assert!(
            seen.iter().any(|&(k, code)| k == GOAWAY && code != 0),
            "no GOAWAY with an error: {seen:?}"
        );
        let reached = backend.requests();

        assert!(
            reached < 500,
            "{reached} of {streams} reset streams reached the server"
        );
        assert!(
            during < calm + Duration::from_millis(500),
            "latency during the flood {during:?} (calm {calm:?})"
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn settings_and_ping_floods_are_bounded() {
    bounded(async {
        let backend = Backend::start("b").await;
        let mut c = one_pool(Balance::RoundRobin, &[backend.address()]);
        c.listeners[0].limits.send_timeout = Duration::from_secs(1);
        let proxy = Proxy::start(c);
        let url = proxy.url("/");
        for kind in [SETTINGS, PING] {
            let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
            s.write_all(PREFACE).await.expect("preface");
            let one = if kind == PING {
                frame(PING, 0, 0, &[7u8; 8])
            } else {
                settings(&[(3, 100)])
            };
            let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 10_000).collect();
            // The flooder never reads: each frame asks for an acknowledgement it will not take.
            let flood = tokio::spawn(async move {
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(8) {
                    if s.write_all(&burst).await.is_err() {
                        return true;
                    }
                }
                false
            });
            let during = timed_get(&url).await;
            assert!(
                during < Duration::from_millis(500),
                "latency during the flood: {during:?}"
            );
            let cut = flood.await.expect("flood task");
            assert!(
                cut,
                "the flooding connection (frame type {kind}) was never closed"
            );
        }
        let after = timed_get(&url).await;
        assert!(
            after < Duration::from_millis(500),
            "latency after the floods: {after:?}"
        );
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused() {
    bounded(async {
        let backend = Backend::start("b").await;
        backend.hold();
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &[backend.address()]));
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        let mut out = PREFACE.to_vec();
        out.extend(settings(&[]));
        out.extend(frame(SETTINGS, 1, 0, &[]));
        for i in 0..300u32 {
            out.extend(frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, &get_block()));
        }
        s.write_all(&out).await.expect("write");
        let (seen, _) = read_frames(&mut s, Duration::from_secs(2)).await;
        // REFUSED_STREAM (7) for each stream over the 256 allowed, or a GOAWAY.
        let refused = seen
            .iter()
            .filter(|&&(k, code)| k == RST_STREAM && code == 7)
            .count();
        let goaway = seen.iter().any(|&(k, _)| k == GOAWAY);
        assert!(refused >= 44 || goaway, "no refusal: {seen:?}");
        backend.release();
        assert!(timed_get(&proxy.url("/")).await < Duration::from_secs(2));
        proxy.stop().await;
    })
    .await;
}

/// An HTTP/2 client connection made with the h2 crate's client, driven in the background.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    client.ready().await.expect("ready")
}

#[tokio::test]
async fn an_http2_connect_is_refused_and_the_connection_keeps_serving() {
    bounded(async {
        let backend = BigBackend::start(3).await;
        let proxy = proxy_to(backend.addr, Duration::from_secs(60));
        let mut client = h2_client(proxy.addr).await;
        let connect = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri("localhost:443")
            .body(())
            .expect("request");
        let (resp, _) = client.send_request(connect, true).expect("send");
        let resp = resp.await.expect("response");
        assert_eq!(resp.status(), http::StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            backend.open.load(Ordering::SeqCst),
            0,
            "CONNECT reached the server"
        );
        let mut client = client.ready().await.expect("ready");
        let get = http::Request::get("http://localhost/").body(()).expect("request");
        let (resp, _) = client.send_request(get, true).expect("send");
        let resp = resp.await.expect("response");
        assert_eq!(resp.status(), http::StatusCode::OK);
        assert!(resp.headers().contains_key(http::header::DATE));
        let mut body = resp.into_body();
        let data = body.data().await.expect("data").expect("data");
        assert_eq!(&data[..], b"xxx");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_http2_stream_the_client_resets_releases_its_upstream_connection() {
    bounded(async {
        // A server that reads requests and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (open, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (o, c) = (open.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                o.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        let proxy = proxy_to(addr, Duration::from_secs(60));
        let mut client = h2_client(proxy.addr).await;
        let get = http::Request::get("http://localhost/").body(()).expect("request");
        let (resp, _) = client.send_request(get, true).expect("send");
        let reached = poll_until(Duration::from_secs(5), || {
            (open.load(Ordering::SeqCst) == 1).then_some(())
        })
        .await;
        assert!(reached.is_some(), "the request never reached the server");
        // Dropping the response future resets the stream (RST_STREAM CANCEL).
        drop(resp);
        let released = poll_until(Duration::from_secs(5), || {
            (closed.load(Ordering::SeqCst) == 1).then_some(())
        })
        .await;
        assert!(
            released.is_some(),
            "the upstream connection of a reset stream was kept"
        );
        // The connection itself serves on.
        let mut client = client.ready().await.expect("ready");
        let get = http::Request::get("http://localhost/").body(()).expect("request");
        assert!(client.send_request(get, true).is_ok());
        proxy.stop().await;
    })
    .await;
}
