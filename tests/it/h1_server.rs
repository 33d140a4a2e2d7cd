//! Ringway's own HTTP/1.1 client side over raw sockets: pipelining, keep-alive rules, heads
//! that arrive a byte at a time, the framing of responses, and the framing it refuses.

use std::time::Duration;

use crate::common;
use crate::common::*;
use ringway::config::Balance;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(5);

async fn setup() -> (Backend, Proxy) {
    let backend = Backend::start("b").await;
    let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
    (backend, proxy)
}

/// The status lines and the request URIs the backend saw, in the order they came back.
fn responses(text: &str) -> (Vec<u16>, Vec<String>) {
    let statuses = text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| parse_status(&text[i..]))
        .collect();
    let uris = text
        .match_indices("\"uri\":\"")
        .map(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_owned()
        })
        .collect();
    (statuses, uris)
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    bounded(async {
        let (backend, proxy) = setup().await;
        let out = raw_exchange(
            proxy.addr,
            b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
              POST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
              GET /four HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            LIMIT,
        )
        .await;
        assert!(out.closed, "closed after the request that asked: {}", out.text);
        let (statuses, uris) = responses(&out.text);
        assert_eq!(statuses, vec![200, 200, 200, 200], "{}", out.text);
        assert_eq!(uris, vec!["/one", "/two", "/three", "/four"], "{}", out.text);
        assert!(
            out.text.contains("\"body_len\":5") && out.text.contains("\"body_len\":3"),
            "{}",
            out.text
        );
        assert_eq!(backend.requests(), 4);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_head_sent_one_byte_at_a_time_is_parsed_as_if_whole() {
    bounded(async {
        let (_backend, proxy) = setup().await;
        let request: &[u8] = b"POST /trickle?q=1 HTTP/1.1\r\nHost: a.example\r\nX-Custom: v1\r\n\
                               Content-Length: 3\r\nConnection: close\r\n\r\nabc";
        let whole = raw_exchange(proxy.addr, request, LIMIT).await;
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        for b in request {
            stream
                .write_all(std::slice::from_ref(b))
                .await
                .expect("write a byte");
            tokio::task::yield_now().await;
        }
        let trickled = raw_exchange_on(stream, b"", LIMIT).await;
        assert_eq!(whole.status, Some(200), "{}", whole.text);
        assert_eq!(trickled.status, Some(200), "{}", trickled.text);
        let body = |t: &str| {
            let seen = Seen::parse(t.split("\r\n\r\n").nth(1).unwrap_or("").as_bytes());
            (
                seen.uri.clone(),
                seen.header("x-custom").map(str::to_owned),
                seen.body_len,
            )
        };
        assert_eq!(body(&whole.text), body(&trickled.text));
        assert_eq!(body(&whole.text).0, "/trickle?q=1");
        proxy.stop().await;
    })
    .await
}

/// Sends `request` on `stream` and reads one response with a length.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> (u16, String, Vec<u8>) {
    stream.write_all(request).await.expect("write");
    tokio::time::timeout(LIMIT, read_response(stream))
        .await
        .expect("a response in time")
}

/// Whether the server closes `stream` within a short time.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn http10_keep_alive_is_honoured_only_when_asked() {
    bounded(async {
        let (_backend, proxy) = setup().await;
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        for _ in 0..2 {
            let (status, head, _) = exchange(
                &mut stream,
                b"GET /k HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
            )
            .await;
            assert_eq!(status, 200);
            assert!(
                head.to_ascii_lowercase().contains("connection: keep-alive"),
                "{head}"
            );
        }
        let (status, head, _) = exchange(&mut stream, b"GET /k HTTP/1.0\r\nHost: a\r\n\r\n").await;
        assert_eq!(status, 200);
        assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
        assert!(
            closes(&mut stream).await,
            "an HTTP/1.0 request without keep-alive closes"
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn connection_close_is_honoured_and_keep_alive_is_the_http11_default() {
    bounded(async {
        let (_backend, proxy) = setup().await;
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        let (status, head, _) = exchange(&mut stream, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(status, 200);
        assert!(!head.to_ascii_lowercase().contains("connection: close"), "{head}");
        let (status, head, _) = exchange(
            &mut stream,
            b"GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200);
        assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
        assert!(closes(&mut stream).await);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_streamed_response_is_chunked_for_http11_and_close_delimited_for_http10() {
    bounded(async {
        let (_backend, proxy) = setup().await;
        // The echo backend streams the body back without a length.
        let out = raw_exchange(
            proxy.addr,
            b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nx-test-echo: 1\r\nConnection: close\r\n\r\nhello",
            LIMIT,
        )
        .await;
        let lower = out.text.to_ascii_lowercase();
        assert!(lower.contains("transfer-encoding: chunked"), "{}", out.text);
        assert!(out.text.ends_with("5\r\nhello\r\n0\r\n\r\n"), "{:?}", out.text);
        let out = raw_exchange(
            proxy.addr,
            b"POST /e HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\nx-test-echo: 1\r\nConnection: keep-alive\r\n\r\nhello",
            LIMIT,
        )
        .await;
        let lower = out.text.to_ascii_lowercase();
        assert!(out.closed, "a body without length ends with the connection");
        assert!(!lower.contains("\ntransfer-encoding:"), "{}", out.text);
        assert!(lower.contains("connection: close"), "{}", out.text);
        assert!(out.text.ends_with("\r\n\r\nhello"), "{:?}", out.text);
        proxy.stop().await;
    })
    .await
}

/// Sends `request` alone and expects `status` with the connection closed and nothing at the
/// backend.
async fn refused(request: &[u8], status: u16) {
    let (backend, proxy) = setup().await;
    let out = raw_exchange(proxy.addr, request, LIMIT).await;
    assert_eq!(
        out.status,
        Some(status),
        "{:?}: {}",
        String::from_utf8_lossy(request),
        out.text
    );
    assert!(out.closed, "closed after the refusal");
    assert_eq!(
        backend.requests(),
        0,
        "{:?} reached the backend",
        String::from_utf8_lossy(request)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn ambiguous_framing_and_obsolete_syntax_are_refused_before_any_server() {
    bounded(async {
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", 400).await;
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n", 400).await;
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\0\r\n\r\n", 400).await;
        refused(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        )
        .await;
        refused(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            400,
        )
        .await;
        refused(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
            400,
        )
        .await;
        refused(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        )
        .await;
        refused(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: the-moon\r\n\r\n", 417).await;
        refused(
            b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
            405,
        )
        .await;
        refused(b"GET nowhere HTTP/1.1\r\nHost: a\r\n\r\n", 400).await;
    })
    .await
}

#[tokio::test]
async fn broken_chunked_bodies_are_cut_with_400_and_never_complete_upstream() {
    bounded(async {
        let (backend, proxy) = setup().await;
        let digits = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{}\r\n",
            "1".repeat(100)
        );
        let mut extension = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;".to_vec();
        extension.extend(std::iter::repeat_n(b'x', 64 * 1024));
        for request in [digits.as_bytes(), &extension[..]] {
            let out = raw_exchange(proxy.addr, request, LIMIT).await;
            assert_eq!(out.status, Some(400), "{}", out.text);
            assert!(out.closed);
        }
        assert_eq!(
            backend.complete_bodies(),
            0,
            "no broken body reached a server whole"
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_body_answered_early_is_drained_so_the_answer_arrives() {
    bounded(async {
        let backend = Backend::start("b").await;
        let mut config = one_pool(Balance::RoundRobin, &addrs(&[&backend]));
        config.listeners[0].limits.max_body_bytes = 1000;
        let proxy = Proxy::start(config);
        // Over the limit, sent whole at once: the 413 must not be destroyed by a reset.
        let mut request = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n".to_vec();
        request.extend(std::iter::repeat_n(b'z', 200_000));
        let out = raw_exchange(proxy.addr, &request, LIMIT).await;
        assert_eq!(out.status, Some(413), "{}", out.text);
        assert!(out.closed);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn trailers_reach_http11_clients_that_ask_for_them() {
    bounded(async {
        let server = common::edge::ScriptServer::start(|_, _| {
            common::edge::Answer::keep(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n\
                  5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n",
            )
        })
        .await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, std::slice::from_ref(&server.addr)));
        let asked = raw_exchange(
            proxy.addr,
            b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n",
            LIMIT,
        )
        .await;
        assert!(
            asked.text.ends_with("5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n"),
            "{:?}",
            asked.text
        );
        let not_asked = raw_exchange(
            proxy.addr,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            LIMIT,
        )
        .await;
        assert!(
            not_asked.text.ends_with("5\r\nhello\r\n0\r\n\r\n"),
            "{:?}",
            not_asked.text
        );
        proxy.stop().await;
    })
    .await
}
