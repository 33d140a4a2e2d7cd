//! Bad input from clients over raw sockets: each is refused at the edge and nothing of it
//! reaches a server.

use std::time::Duration;

use crate::common::*;
use ringway::config::{Balance, Limits};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A proxy with these limits in front of one backend.
async fn setup(limits: impl FnOnce(&mut Limits)) -> (Backend, Proxy) {
    let backend = Backend::start("b").await;
    let mut c = one_pool(Balance::RoundRobin, &addrs(&[&backend]));
    limits(&mut c.listeners[0].limits);
    (backend, Proxy::start(c))
}

const LIMIT: Duration = Duration::from_secs(5);

/// Sends each request on its own connection and expects `status`, then checks nothing reached
/// the backend.
async fn expect_refused(limits: impl FnOnce(&mut Limits), status: u16, requests: &[&[u8]]) {
    let (backend, proxy) = setup(limits).await;
    for req in requests {
        let out = raw_exchange(proxy.addr, req, LIMIT).await;
        assert_eq!(
            out.status,
            Some(status),
            "request {:?} answered {:?}",
            String::from_utf8_lossy(req),
            out.text
        );
        assert!(out.closed, "connection closed after the refusal");
        assert_eq!(
            backend.requests(),
            0,
            "{:?} reached the backend",
            String::from_utf8_lossy(req)
        );
    }
    assert_eq!(
        backend.connections(),
        0,
        "no connection to the backend was opened"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn valid_raw_request_reaches_the_backend() {
    // The control case: the same setup forwards a well-formed request.
    bounded(async {
        let (backend, proxy) = setup(|_| {}).await;
        let out = raw_exchange(
            proxy.addr,
            b"GET /ok HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
            LIMIT,
        )
        .await;
        assert_eq!(out.status, Some(200), "{}", out.text);
        assert_eq!(backend.requests(), 1);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn malformed_request_line_or_header_is_400() {
    bounded(expect_refused(
        |_| {},
        400,
        &[
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad\x01: v\r\n\r\n",
        ],
    ))
    .await
}

#[tokio::test]
async fn head_over_max_header_bytes_is_431() {
    let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..20 {
        req.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "x".repeat(1000)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    bounded(expect_refused(|l| l.max_header_bytes = 8192, 431, &[&req])).await
}

#[tokio::test]
async fn content_length_over_max_body_bytes_is_413() {
    bounded(expect_refused(
        |l| l.max_body_bytes = 1024,
        413,
        &[b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n"],
    ))
    .await
}

#[tokio::test]
async fn missing_host_on_http11_is_400() {
    bounded(expect_refused(|_| {}, 400, &[b"GET / HTTP/1.1\r\n\r\n"])).await
}

#[tokio::test]
async fn two_host_headers_are_400() {
    bounded(expect_refused(
        |_| {},
        400,
        &[
            b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n",
        ],
    ))
    .await
}

#[tokio::test]
async fn conflicting_content_lengths_are_400() {
    bounded(expect_refused(
        |_| {},
        400,
        &[b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"],
    ))
    .await
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_400() {
    bounded(expect_refused(
        |_| {},
        400,
        &[
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ],
    ))
    .await
}

#[tokio::test]
async fn slow_request_head_is_408_or_closed() {
    bounded(async {
        let (backend, proxy) = setup(|l| l.header_timeout = Duration::from_millis(300)).await;
        // Half a request line, then nothing.
        let out = raw_exchange(proxy.addr, b"GET /slo", Duration::from_secs(3)).await;
        assert!(
            out.closed,
            "connection still open {:?} after a half request line",
            out.elapsed
        );
        assert!(matches!(out.status, None | Some(408)), "answered {:?}", out.text);
        assert!(
            out.elapsed >= Duration::from_millis(250),
            "closed after {:?}, before the timeout",
            out.elapsed
        );
        assert!(
            out.elapsed < Duration::from_millis(1500),
            "closed only after {:?}",
            out.elapsed
        );
        assert_eq!(backend.requests(), 0);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn head_trickled_byte_by_byte_still_times_out() {
    bounded(async {
        let (backend, proxy) = setup(|l| l.header_timeout = Duration::from_millis(300)).await;
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        let head = b"GET /trickle HTTP/1.1\r\nHost: a\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let start = std::time::Instant::now();
        // One byte every 50 ms: each read is progress, but the whole head is late.
        let mut cut = false;
        for byte in head.iter().cycle().take(60) {
            if stream.write_all(&[*byte]).await.is_err() {
                cut = true;
                break;
            }
            let mut probe = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(50), stream.peek(&mut probe)).await {
                Ok(Ok(_)) | Ok(Err(_)) => {
                    cut = true;
                    break;
                }
                Err(_) => {}
            }
        }
        let took = start.elapsed();
        assert!(cut, "a head trickled over {took:?} was not cut off (header_timeout 300 ms)");
        assert!(took < Duration::from_millis(1500), "cut off only after {took:?}");
        assert_eq!(backend.requests(), 0);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    bounded(async {
        let (backend, proxy) = setup(|l| l.idle_timeout = Duration::from_millis(300)).await;
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        for _ in 0..2 {
            stream
                .write_all(b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .expect("write");
            let (status, _, _) = read_response(&mut stream).await;
            assert_eq!(status, 200);
        }
        let out = raw_exchange_on(stream, b"", Duration::from_secs(3)).await;
        assert!(out.closed, "idle connection still open after {:?}", out.elapsed);
        assert!(out.text.is_empty(), "nothing more is sent: {:?}", out.text);
        assert!(
            out.elapsed >= Duration::from_millis(250),
            "closed after {:?}, before the idle timeout",
            out.elapsed
        );
        assert!(
            out.elapsed < Duration::from_millis(1500),
            "closed only after {:?}",
            out.elapsed
        );
        assert_eq!(backend.requests(), 2);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn overlong_request_target_is_414_or_431() {
    let mut req = b"GET /".to_vec();
    req.extend_from_slice("a".repeat(20_000).as_bytes());
    req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    bounded(async {
        let (backend, proxy) = setup(|l| l.max_header_bytes = 8192).await;
        let out = raw_exchange(proxy.addr, &req, LIMIT).await;
        assert!(matches!(out.status, Some(414 | 431)), "answered {:?}", out.text);
        assert_eq!(backend.requests(), 0);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn chunked_body_over_max_body_bytes_is_413_and_never_complete_upstream() {
    bounded(async {
        let (backend, proxy) = setup(|l| l.max_body_bytes = 1024).await;
        let mut req = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..10 {
            req.extend_from_slice(format!("3e8\r\n{}\r\n", "z".repeat(1000)).as_bytes());
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let out = raw_exchange(proxy.addr, &req, LIMIT).await;
        assert_eq!(out.status, Some(413), "answered {:?}", out.text);
        assert_eq!(
            backend.complete_bodies(),
            0,
            "the server never saw the whole body"
        );
        // Within the limit, the same framing goes through.
        let small =
            b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                      5\r\nhello\r\n0\r\n\r\n";
        let out = raw_exchange(proxy.addr, small, LIMIT).await;
        assert_eq!(out.status, Some(200), "{}", out.text);
        assert_eq!(backend.complete_bodies(), 1);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn slow_body_and_slow_response_are_not_cut_by_head_or_idle_timeouts() {
    bounded(async {
        let (backend, proxy) = setup(|l| {
            l.header_timeout = Duration::from_millis(300);
            l.idle_timeout = Duration::from_millis(300);
        })
        .await;
        let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
        // The head arrives at once; the body trickles in over about 1 s.
        stream
            .write_all(b"POST /slow-up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
            .await
            .expect("write head");
        for b in b"0123456789" {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stream
                .write_all(&[*b])
                .await
                .expect("body byte (connection cut?)");
        }
        let (status, _, body) = read_response(&mut stream).await;
        assert_eq!(status, 200);
        assert_eq!(Seen::parse(&body).body_len, 10);
        // A response slower than both timeouts.
        stream
            .write_all(b"GET /slow-down HTTP/1.1\r\nHost: a\r\nx-test-delay-ms: 800\r\n\r\n")
            .await
            .expect("write");
        let (status, _, _) = read_response(&mut stream).await;
        assert_eq!(status, 200);
        assert_eq!(backend.requests(), 2);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn absolute_form_target_with_userinfo_is_400() {
    // RFC 9110 4.2.4: userinfo in an http URI is to be treated as an error (it hides the real
    // authority); it must not reach a server, in Host or anywhere else.
    bounded(expect_refused(
        |_| {},
        400,
        &[b"GET http://user:secret@a.example/x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"],
    ))
    .await
}
