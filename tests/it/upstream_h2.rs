//! HTTP/2 to servers (`protocol = "h2c"` and `"h2"` over TLS): multiplexing over few
//! connections, translation between HTTP/1.1 and HTTP/2 both ways (`:authority` and Host,
//! cookies, `TE`), trailers, streamed bodies, resets and failures mapped to 502.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::common::upstream::*;
use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{HeaderMap, Request};
use ringway::config::{Balance, Config, UpstreamProtocol, UpstreamTls};

async fn h2c_server() -> TestServer {
    TestServer::start(
        "h2c",
        ServerOptions {
            h2_only: true,
            ..ServerOptions::default()
        },
    )
    .await
}

fn h2c_pool(servers: &[String]) -> Config {
    let mut c = one_pool(Balance::RoundRobin, servers);
    c.pools[0].protocol = UpstreamProtocol::H2c;
    c
}

/// Sends `n` requests at once through `proxy` over HTTP/1.1; all must succeed over HTTP/2.
async fn concurrent_requests(proxy: &Proxy, n: usize) {
    let c = client();
    let mut all = tokio::task::JoinSet::new();
    for i in 0..n {
        let req = c.get(proxy.url(&format!("/c/{i}")));
        all.spawn(async move { send(req).await });
    }
    while let Some(r) = all.join_next().await {
        let reply = r.expect("request task");
        assert_eq!(reply.status, 200, "{}", reply.text());
        let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
        assert_eq!(json["version"], "HTTP/2.0");
    }
}

#[tokio::test]
async fn an_h2c_pool_multiplexes_concurrent_requests_over_few_connections() {
    bounded(async {
        let server = h2c_server().await;
        let proxy = Proxy::start(h2c_pool(&[server.address()]));
        concurrent_requests(&proxy, 20).await;
        assert_eq!(server.log.requests.load(Ordering::SeqCst), 20);
        assert!(
            server.connections() <= 2,
            "{} upstream connections for 20 requests",
            server.connections()
        );
        // And later requests keep using them.
        concurrent_requests(&proxy, 20).await;
        assert!(
            server.connections() <= 2,
            "{} upstream connections",
            server.connections()
        );
    })
    .await;
}

#[tokio::test]
async fn an_h2_pool_speaks_http2_over_tls_with_alpn() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("up-h2");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let server = TestServer::start(
            "h2",
            ServerOptions {
                tls: Some((Arc::new(ca.issue(&["127.0.0.1"])), vec![b"h2".to_vec()])),
                h2_only: true,
                ..ServerOptions::default()
            },
        )
        .await;
        let mut config = one_pool(Balance::RoundRobin, &[server.address()]);
        config.pools[0].protocol = UpstreamProtocol::H2;
        config.pools[0].tls = Some(UpstreamTls {
            ca: Some(ca_file),
            server_name: None,
            verify: true,
        });
        let proxy = Proxy::start(config);
        concurrent_requests(&proxy, 20).await;
        assert!(
            server.connections() <= 2,
            "{} upstream connections",
            server.connections()
        );
        assert!(server.log.handshakes.load(Ordering::SeqCst) <= 2);
    })
    .await;
}

#[tokio::test]
async fn an_h2_pool_refuses_a_server_that_does_not_agree_to_h2() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("up-h2-alpn");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let server = TestServer::start(
            "h1 only",
            ServerOptions {
                tls: Some((Arc::new(ca.issue(&["127.0.0.1"])), vec![b"http/1.1".to_vec()])),
                ..ServerOptions::default()
            },
        )
        .await;
        let mut config = one_pool(Balance::RoundRobin, &[server.address()]);
        config.pools[0].protocol = UpstreamProtocol::H2;
        config.pools[0].retries = 0;
        config.pools[0].tls = Some(UpstreamTls {
            ca: Some(ca_file),
            server_name: None,
            verify: true,
        });
        let proxy = Proxy::start(config);
        let reply = send(client().get(proxy.url("/"))).await;
        assert_eq!(reply.status, 502);
        assert_eq!(server.log.requests.load(Ordering::SeqCst), 0);
    })
    .await;
}

#[tokio::test]
async fn an_http1_request_is_translated_for_an_h2_server() {
    bounded(async {
        let server = h2c_server().await;
        let proxy = Proxy::start(h2c_pool(&[server.address()]));
        let mut c = h1_client(proxy.addr).await;
        let req = Request::builder()
            .uri("/path?q=1")
            .header("host", "app.example:8080")
            .header("cookie", "a=1; b=2")
            .header("te", "trailers, gzip")
            .header("connection", "te, x-private")
            .header("x-private", "hop")
            .header("keep-alive", "timeout=5")
            .body(no_body())
            .unwrap();
        let d = describe(c.send_request(req).await.expect("response")).await;
        assert_eq!(d.status, 200, "{}", d.body);
        let json = d.json();
        assert_eq!(json["version"], "HTTP/2.0");
        assert_eq!(
            json["authority"], "app.example:8080",
            ":authority comes from Host"
        );
        assert_eq!(json["uri"], "http://app.example:8080/path?q=1");
        assert!(d.seen_all("host").is_empty(), "no Host beside :authority");
        assert_eq!(
            d.seen_all("te"),
            vec!["trailers"],
            "only TE: trailers goes to HTTP/2"
        );
        assert_eq!(d.seen_all("cookie"), vec!["a=1; b=2"]);
        for hop in ["connection", "x-private", "keep-alive"] {
            assert!(d.seen_all(hop).is_empty(), "{hop} must not reach the server");
        }
        assert_eq!(d.seen_all("x-forwarded-for"), vec!["127.0.0.1"]);
        assert_eq!(d.seen_all("x-forwarded-host"), vec!["app.example:8080"]);
        assert_eq!(d.seen_all("x-request-id").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_http2_request_is_translated_for_an_http1_server() {
    bounded(async {
        let server = TestServer::start("h1", ServerOptions::default()).await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &[server.address()]));
        let mut c = h2_client(proxy.addr).await;
        let req = Request::builder()
            .uri("http://app.example/h2?x=y")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("cookie", "c=3")
            .header("te", "trailers")
            .body(no_body())
            .unwrap();
        let d = describe(c.send_request(req).await.expect("response")).await;
        assert_eq!(d.status, 200, "{}", d.body);
        let json = d.json();
        assert_eq!(json["version"], "HTTP/1.1");
        assert_eq!(json["uri"], "/h2?x=y");
        assert_eq!(
            d.seen_all("host"),
            vec!["app.example"],
            "Host comes from :authority"
        );
        assert_eq!(
            d.seen_all("cookie"),
            vec!["a=1; b=2; c=3"],
            "cookie fields joined for HTTP/1.1 (RFC 9113 8.2.3)"
        );
        assert!(d.seen_all("te").is_empty(), "TE is hop-by-hop towards HTTP/1.1");
    })
    .await;
}

#[tokio::test]
async fn trailers_pass_both_ways_between_an_h2_client_and_an_h2_server() {
    bounded(async {
        let server = h2c_server().await;
        let proxy = Proxy::start(h2c_pool(&[server.address()]));
        let mut c = h2_client(proxy.addr).await;
        let mut trailers = HeaderMap::new();
        trailers.insert("x-request-sum", "42".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"hello "))),
            Ok(Frame::data(Bytes::from_static(b"world"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = StreamBody::new(tokio_stream::iter(frames)).boxed();
        let req = Request::builder()
            .method("POST")
            .uri("http://app.example/t")
            .header("te", "trailers")
            .header("x-test-trailers", "abc")
            .body(body)
            .unwrap();
        let d = describe(c.send_request(req).await.expect("response")).await;
        assert_eq!(d.status, 200, "{}", d.body);
        let json = d.json();
        assert_eq!(json["body_len"], 11);
        assert_eq!(json["trailers"], serde_json::json!([["x-request-sum", "42"]]));
        let t = d.trailers.expect("response trailers");
        assert_eq!(t["x-checksum"], "abc");
    })
    .await;
}

#[tokio::test]
async fn a_request_body_streams_to_an_h2_server_and_back() {
    bounded(async {
        let server = h2c_server().await;
        let proxy = Proxy::start(h2c_pool(&[server.address()]));
        let mut c = h1_client(proxy.addr).await;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed();
        let req = Request::builder()
            .method("POST")
            .uri("/echo")
            .header("host", "app.example")
            .header("x-test-echo", "1")
            .body(body)
            .unwrap();
        tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
            .await
            .unwrap();
        let resp = c.send_request(req).await.expect("response head");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        // The first piece comes back while the request body is still open: nothing is buffered.
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().unwrap(), "first");
        tx.send(Ok(Frame::data(Bytes::from_static(b"second"))))
            .await
            .unwrap();
        let second = body.frame().await.expect("a frame").expect("data");
        assert_eq!(second.into_data().unwrap(), "second");
        drop(tx);
        let rest = body.collect().await.expect("end").to_bytes();
        assert!(rest.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_stream_reset_by_the_server_resets_the_clients_stream() {
    bounded(async {
        let server = h2c_server().await;
        let proxy = Proxy::start(h2c_pool(&[server.address()]));
        let mut c = h2_client(proxy.addr).await;
        let req = Request::builder()
            .uri("http://app.example/reset")
            .header("x-test-reset", "1")
            .body(no_body())
            .unwrap();
        let resp = c.send_request(req).await.expect("response head");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().unwrap(), "first piece");
        server.log.reset.notify_one();
        let result = body.collect().await;
        assert!(
            result.is_err(),
            "the client sees the body broken off, not a clean end"
        );
        // The connection to Ringway is still usable.
        let req = Request::builder()
            .uri("http://app.example/ok")
            .body(no_body())
            .unwrap();
        let d = describe(c.send_request(req).await.expect("response")).await;
        assert_eq!(d.status, 200);
    })
    .await;
}

#[tokio::test]
async fn a_dead_server_is_retried_and_a_failing_one_is_a_502() {
    bounded(async {
        let server = h2c_server().await;
        let mut config = h2c_pool(&[dead_addr(), server.address()]);
        config.pools[0].retries = 1;
        let proxy = Proxy::start(config);
        for _ in 0..4 {
            let reply = send(client().get(proxy.url("/"))).await;
            assert_eq!(reply.status, 200, "the refused server is retried on the other");
        }
        // A server that closes every connection before HTTP/2 starts: 502.
        let closing = Backend::closing("closing").await;
        let mut config = h2c_pool(&[closing.address()]);
        config.pools[0].retries = 0;
        let proxy = Proxy::start(config);
        let reply = send(client().get(proxy.url("/"))).await;
        assert_eq!(reply.status, 502);
    })
    .await;
}

#[tokio::test]
async fn an_http1_client_asking_for_trailers_gets_those_of_an_h2_server() {
    bounded(async {
        let server = h2c_server().await;
        let proxy = Proxy::start(h2c_pool(&[server.address()]));
        let mut c = h1_client(proxy.addr).await;
        let req = Request::builder()
            .uri("/t")
            .header("host", "app.example")
            .header("te", "trailers")
            .header("x-test-trailers", "sum-17")
            .body(no_body())
            .unwrap();
        let d = describe(c.send_request(req).await.expect("response")).await;
        assert_eq!(d.status, 200, "{}", d.body);
        assert_eq!(d.headers["trailer"], "x-checksum");
        assert_eq!(
            d.trailers.expect("trailers in the chunked response")["x-checksum"],
            "sum-17"
        );
    })
    .await;
}

#[tokio::test]
async fn a_body_over_max_body_bytes_to_an_h2_server_is_a_413() {
    bounded(async {
        let server = h2c_server().await;
        let mut config = h2c_pool(&[server.address()]);
        config.listeners[0].limits.max_body_bytes = 1000;
        let proxy = Proxy::start(config);
        // Declared too large: refused before any server is asked.
        let reply = send(client().post(proxy.url("/big")).body(vec![b'x'; 2000])).await;
        assert_eq!(reply.status, 413);
        assert_eq!(server.log.requests.load(Ordering::SeqCst), 0);
        // Streamed without a length, growing too large on the way.
        let mut c = h2_client(proxy.addr).await;
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..4)
            .map(|_| Ok(Frame::data(Bytes::from(vec![b'y'; 400]))))
            .collect();
        let req = Request::builder()
            .method("POST")
            .uri("http://app.example/stream")
            .body(StreamBody::new(tokio_stream::iter(frames)).boxed())
            .unwrap();
        let d = describe(c.send_request(req).await.expect("response")).await;
        assert_eq!(d.status, 413);
    })
    .await;
}

#[tokio::test]
async fn health_checks_of_an_h2c_pool_speak_http2() {
    bounded(async {
        let server = h2c_server().await;
        let mut config = h2c_pool(&[server.address()]);
        config.pools[0].health = Some(ringway::config::HealthConfig {
            path: "/healthz".into(),
            interval: std::time::Duration::from_millis(100),
            timeout: std::time::Duration::from_millis(500),
            rise: 1,
            fall: 1,
            expect: ringway::config::ExpectStatus::default(),
        });
        let proxy = Proxy::start(config);
        let s = proxy.server(POOL, 0);
        poll_until(std::time::Duration::from_secs(5), || {
            (s.health() == ringway::proxy::state::Health::Up).then_some(())
        })
        .await
        .expect("an HTTP/2-only server passes checks sent over HTTP/2");
        let detail = s.last_check.lock().unwrap().as_ref().map(|c| c.detail.clone());
        assert_eq!(detail.as_deref(), Some("200"));
    })
    .await;
}

#[tokio::test]
async fn trailers_of_a_chunked_http1_response_reach_an_h2_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            for _ in 0..2 {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.expect("read");
                    assert!(n > 0, "ringway closed the connection");
                    head.extend_from_slice(&buf[..n]);
                }
                s.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n\
                      5\r\nhello\r\n0\r\nx-checksum: abc\r\ncontent-length: 99\r\n\r\n",
                )
                .await
                .expect("write");
            }
        });
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &[addr]));
        let mut c = h2_client(proxy.addr).await;
        for _ in 0..2 {
            let req = Request::builder()
                .uri("http://app.example/t")
                .body(no_body())
                .unwrap();
            let d = describe(c.send_request(req).await.expect("response")).await;
            assert_eq!(d.status, 200);
            assert_eq!(d.body, "hello");
            let t = d.trailers.expect("trailers");
            assert_eq!(t["x-checksum"], "abc");
            assert!(t.get("content-length").is_none());
        }
        // Both on one upstream connection: reading the trailers left it reusable.
        server.await.expect("server");
    })
    .await;
}
