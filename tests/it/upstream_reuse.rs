//! When Ringway puts a server connection back in its idle pool, rule by rule (RFC 9112 sections
//! 6 and 9; the table is in docs/upstream.md), and what a client may remove by naming it in
//! `Connection`. Each server here is scripted: it answers with exact bytes, and records on which
//! connection each request arrived, so every test asserts both the client's answer and whether
//! the next request came on the same connection.

use std::time::Duration;

use crate::common::edge::*;
use crate::common::*;
use ringway::config::Balance;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECOND: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond";

fn proxy_to(server: &ScriptServer) -> Proxy {
    let mut c = one_pool(Balance::RoundRobin, std::slice::from_ref(&server.addr));
    c.pools[0].retries = 0;
    Proxy::start(c)
}

/// A server answering its first request with `first` (then `then`), every later one with
/// [`SECOND`].
async fn server(first: &'static [u8], then: Then) -> ScriptServer {
    ScriptServer::start(move |n, _| {
        if n == 0 {
            Answer {
                bytes: first.to_vec(),
                early: false,
                then,
            }
        } else {
            Answer::keep(SECOND)
        }
    })
    .await
}

/// Sends a `method` request, then a GET; checks the first answer, the second is [`SECOND`].
/// Returns whether the GET came on the first request's connection.
async fn then_get(
    first: &'static [u8],
    then: Then,
    method: reqwest::Method,
    status: u16,
    body: &str,
) -> bool {
    let server = server(first, then).await;
    let proxy = proxy_to(&server);
    let client = http_client();
    let r = send(client.request(method, proxy.url("/1"))).await;
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.text(), body);
    let r = send(client.get(proxy.url("/2"))).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "second"),
        "the second answer is its own"
    );
    let seen = server.received();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let reused = seen[0].conn == seen[1].conn;
    if !reused && then == Then::KeepOpen {
        // The server left it open: Ringway must have closed it, not parked it.
        let closed = poll_until(Duration::from_secs(5), || (server.closed() >= 1).then_some(())).await;
        assert!(
            closed.is_some(),
            "the first connection was neither reused nor closed"
        );
    }
    proxy.stop().await;
    reused
}

async fn get_then_get(first: &'static [u8], then: Then, body: &str) -> bool {
    then_get(first, then, reqwest::Method::GET, 200, body).await
}

#[tokio::test]
async fn a_clean_keep_alive_response_is_reused() {
    bounded(async {
        let first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst";
        assert!(get_then_get(first, Then::KeepOpen, "first").await);
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n";
        assert!(get_then_get(chunked, Then::KeepOpen, "first").await);
    })
    .await
}

#[tokio::test]
async fn http10_chunked_with_keep_alive_is_read_then_closed() {
    bounded(async {
        let first = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\nfirst\r\n0\r\n\r\n";
        assert!(!get_then_get(first, Then::KeepOpen, "first").await, "RFC 9112 6.1");
    })
    .await
}

#[tokio::test]
async fn connection_close_from_the_server_is_honoured() {
    bounded(async {
        let first = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nfirst";
        assert!(!get_then_get(first, Then::KeepOpen, "first").await);
    })
    .await
}

#[tokio::test]
async fn http10_persists_only_with_keep_alive() {
    bounded(async {
        let plain = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nfirst";
        assert!(!get_then_get(plain, Then::KeepOpen, "first").await);
        let kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nfirst";
        assert!(get_then_get(kept, Then::KeepOpen, "first").await);
    })
    .await
}

#[tokio::test]
async fn a_close_delimited_body_ends_its_connection() {
    bounded(async {
        let first = b"HTTP/1.1 200 OK\r\n\r\nfirst";
        assert!(!get_then_get(first, Then::Close, "first").await);
    })
    .await
}

#[tokio::test]
async fn head_and_304_responses_announcing_a_length_are_reused() {
    bounded(async {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert!(then_get(head, Then::KeepOpen, reqwest::Method::HEAD, 200, "").await);
        let not_modified = b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 5\r\n\r\n";
        assert!(get_then_get_status(not_modified, 304).await);
    })
    .await
}

async fn get_then_get_status(first: &'static [u8], status: u16) -> bool {
    then_get(first, Then::KeepOpen, reqwest::Method::GET, status, "").await
}

#[tokio::test]
async fn a_body_sent_anyway_on_head_or_204_is_not_taken_as_the_next_answer() {
    bounded(async {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst";
        assert!(!then_get(head, Then::KeepOpen, reqwest::Method::HEAD, 200, "").await);
        let no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nfirst";
        assert!(!get_then_get_status(no_content, 204).await);
        // Announced but not sent (yet): the announcement alone keeps it out of the pool.
        let announced = b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(!get_then_get_status(announced, 204).await);
    })
    .await
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_read_chunked_then_closed() {
    bounded(async {
        let first = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n";
        assert!(!get_then_get(first, Then::KeepOpen, "first").await);
    })
    .await
}

#[tokio::test]
async fn an_invalid_content_length_is_a_502_and_not_reused() {
    bounded(async {
        let first = b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nfirst";
        assert!(
            !then_get(
                first,
                Then::KeepOpen,
                reqwest::Method::GET,
                502,
                &bad_gateway_text()
            )
            .await
        );
    })
    .await
}

/// The body of Ringway's own 502.
fn bad_gateway_text() -> String {
    "502 Bad Gateway\n".to_owned()
}

#[tokio::test]
async fn interim_responses_are_skipped_and_the_connection_reused() {
    bounded(async {
        let first = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst";
        assert!(get_then_get(first, Then::KeepOpen, "first").await);
    })
    .await
}

#[tokio::test]
async fn an_unasked_protocol_switch_is_a_502_and_not_reused() {
    bounded(async {
        let first = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert!(
            !then_get(
                first,
                Then::KeepOpen,
                reqwest::Method::GET,
                502,
                &bad_gateway_text()
            )
            .await
        );
    })
    .await
}

#[tokio::test]
async fn bytes_after_the_response_are_not_read_as_the_next_answer() {
    bounded(async {
        let first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTALE!";
        assert!(!get_then_get(first, Then::KeepOpen, "first").await);
    })
    .await
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_used() {
    bounded(async {
        let first = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst";
        assert!(!get_then_get(first, Then::Close, "first").await);
    })
    .await
}

#[tokio::test]
async fn an_answer_before_the_whole_request_body_is_not_reused() {
    bounded(async {
        let server = ScriptServer::start(|n, _| {
            if n == 0 {
                Answer {
                    bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly".to_vec(),
                    early: true,
                    then: Then::Drain,
                }
            } else {
                Answer::keep(SECOND)
            }
        })
        .await;
        let proxy = proxy_to(&server);
        // Half of the announced body, then the answer is read and the client goes.
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        s.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabcde")
            .await
            .expect("write");
        let (status, _, body) = read_response(&mut s).await;
        assert_eq!((status, body.as_slice()), (200, b"early".as_slice()));
        drop(s);
        let r = send(http_client().get(proxy.url("/2"))).await;
        assert_eq!(r.text(), "second");
        let seen = server.received();
        assert_eq!(seen.len(), 2, "{seen:#?}");
        assert_ne!(
            seen[0].conn, seen[1].conn,
            "the server still waits for the rest of the body"
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_response_the_client_stopped_reading_is_not_reused() {
    bounded(async {
        const BIG: usize = 8 * 1024 * 1024;
        let server = ScriptServer::start(|n, _| {
            if n == 0 {
                let mut bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
                bytes.resize(bytes.len() + BIG, b'x');
                Answer {
                    bytes,
                    early: false,
                    then: Then::KeepOpen,
                }
            } else {
                Answer::keep(SECOND)
            }
        })
        .await;
        let proxy = proxy_to(&server);
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let mut some = [0u8; 4096];
        let n = s.read(&mut some).await.expect("read");
        assert!(String::from_utf8_lossy(&some[..n]).starts_with("HTTP/1.1 200"));
        drop(s);
        // Ringway closes the server connection rather than park it half read.
        let closed = poll_until(Duration::from_secs(10), || (server.closed() >= 1).then_some(())).await;
        assert!(closed.is_some(), "the half-read server connection was not closed");
        let r = send(http_client().get(proxy.url("/2"))).await;
        assert_eq!(r.text(), "second");
        let seen = server.received();
        assert_ne!(seen[0].conn, seen[1].conn);
        proxy.stop().await;
    })
    .await
}

/// A server answering every request with an empty 200, for the `Connection` header tests.
async fn recorder() -> ScriptServer {
    ScriptServer::start(|_, _| Answer::keep(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await
}

#[tokio::test]
async fn connection_cannot_remove_host_or_forwarding_headers() {
    bounded(async {
        let server = recorder().await;
        let proxy = proxy_to(&server);
        let r = one_write(
            proxy.addr,
            b"GET /h HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-For: 192.0.2.1\r\nX-Request-Id: rid-conn\r\nConnection: Host, X-Forwarded-For, X-Forwarded-Host, X-Request-Id, X-Drop, close\r\nX-Drop: 1\r\nX-Keep: 1\r\n\r\n",
        )
        .await;
        assert_eq!(r.status, Some(200), "{r:?}");
        let seen = &server.received()[0];
        assert_eq!(seen.header("host"), Some("app.example"), "{}", seen.head);
        assert_eq!(seen.header("x-forwarded-host"), Some("app.example"), "{}", seen.head);
        assert_eq!(seen.header("x-forwarded-for"), Some("192.0.2.1, 127.0.0.1"), "{}", seen.head);
        assert_eq!(seen.header("x-request-id"), Some("rid-conn"));
        assert_eq!(seen.header("x-drop"), None, "other named fields are still hop-by-hop");
        assert_eq!(seen.header("x-keep"), Some("1"));
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn connection_cannot_turn_a_counted_body_into_chunks() {
    bounded(async {
        let server = recorder().await;
        let proxy = proxy_to(&server);
        let r = one_write(
            proxy.addr,
            b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: Content-Length, Transfer-Encoding, close\r\n\r\nhello",
        )
        .await;
        assert_eq!(r.status, Some(200), "{r:?}");
        let seen = &server.received()[0];
        assert_eq!(seen.header("content-length"), Some("5"), "{}", seen.head);
        assert_eq!(seen.header("transfer-encoding"), None, "{}", seen.head);
        assert_eq!(seen.body, b"hello");
        proxy.stop().await;
    })
    .await
}
