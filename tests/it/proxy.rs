//! Proxying over real sockets: routing, retries, 502/503/504, headers, streaming, keep-alive,
//! request ids, graceful stop and HTTP/2 from clients.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::*;
use bytes::Bytes;
use ringway::cli::{pool, route, server};
use ringway::config::{Balance, HostPattern, RouteAction};
use ringway::proxy::state::AdminState;

fn pool_route(
    name: &str,
    host: Option<HostPattern>,
    path: &str,
    pool: &str,
    strip: bool,
) -> ringway::config::RouteConfig {
    let mut r = route(name, path, pool);
    r.host = host;
    r.action = RouteAction::Pool {
        pool: pool.to_owned(),
        strip_prefix: strip,
    };
    r
}

#[tokio::test]
async fn routes_by_host_then_longest_prefix() {
    bounded(async {
        let mut backends = Vec::new();
        for name in ["exact-api", "exact-v2", "wild", "any", "any-api"] {
            backends.push(Backend::start(name).await);
        }
        let mut c = base_config();
        for b in &backends {
            c.pools
                .push(pool(&b.name, Balance::RoundRobin, vec![server(&b.address())]));
        }
        let exact = || Some(HostPattern::Exact("api.example.com".into()));
        c.routes
            .push(pool_route("exact-api", exact(), "/api/", "exact-api", true));
        c.routes
            .push(pool_route("exact-v2", exact(), "/api/v2/", "exact-v2", false));
        c.routes.push(pool_route(
            "wild",
            Some(HostPattern::Wildcard(".example.com".into())),
            "/",
            "wild",
            false,
        ));
        c.routes.push(pool_route("any", None, "/pub/", "any", false));
        c.routes
            .push(pool_route("any-api", None, "/api/", "any-api", false));
        let mut old = route("old", "/old/", "any");
        old.action = RouteAction::Redirect {
            to: "https://new.example.org/".into(),
            status: 301,
        };
        c.routes.push(old);
        let proxy = Proxy::start(c);
        let client = client();

        // (Host, path, who answers, the target the backend sees)
        let cases = [
            // Exact host, prefix stripped, query kept.
            (
                "api.example.com",
                "/api/users?x=1&y=2",
                "exact-api",
                "/users?x=1&y=2",
            ),
            ("api.example.com", "/api/", "exact-api", "/"),
            // Longest prefix of the exact host wins.
            ("api.example.com", "/api/v2/items", "exact-v2", "/api/v2/items"),
            // Host matching ignores case and port.
            ("API.Example.COM:8080", "/api/v2/x", "exact-v2", "/api/v2/x"),
            // Exact host without a matching prefix falls through to the wildcard.
            ("api.example.com", "/pub/file", "wild", "/pub/file"),
            // Wildcard beats host-less routes, even with a longer prefix there.
            ("www.example.com", "/api/x", "wild", "/api/x"),
            ("a.b.example.com", "/pub/x", "wild", "/pub/x"),
            // The bare domain is not matched by `*.example.com`.
            ("example.com", "/api/x", "any-api", "/api/x"),
            ("other.org", "/api/x?q", "any-api", "/api/x?q"),
            ("other.org", "/pub/a", "any", "/pub/a"),
        ];
        for (host, path, who, target) in cases {
            let r = get_host(&client, &proxy.url(path), host).await;
            assert_eq!(r.status, 200, "Host: {host}, {path}: {}", r.text());
            assert_eq!(r.backend(), who, "Host: {host}, {path}");
            let seen = r.seen();
            assert_eq!(
                seen.uri, target,
                "Host: {host}, {path}: target seen by the backend"
            );
            assert_eq!(seen.header("host"), Some(host), "the original Host is forwarded");
        }

        let r = get_host(&client, &proxy.url("/old/page?x=1"), "other.org").await;
        assert_eq!(r.status, 301, "redirect route: {}", r.text());
        assert_eq!(r.header("location"), Some("https://new.example.org/"));

        for (host, path) in [
            ("other.org", "/nothing"),
            ("other.org", "/"),
            ("api.example.com.evil", "/x"),
        ] {
            let r = get_host(&client, &proxy.url(path), host).await;
            assert_eq!(r.status, 404, "Host: {host}, {path} matches no route");
        }
        for b in &backends {
            assert!(b.requests() > 0, "backend {} was never reached", b.name);
        }
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn retry_lands_on_another_server_when_one_is_down() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let servers = vec![dead_addr(), a.address(), b.address()];
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &servers));
        let client = client();
        for i in 0..30 {
            let r = send(client.get(proxy.url(&format!("/r/{i}")))).await;
            assert_eq!(
                r.status,
                200,
                "GET {i} with a server down and retries = 2: {}",
                r.text()
            );
            assert!(["a", "b"].contains(&r.backend()));
        }
        // A POST whose connection was never established is retried too, body and all.
        for i in 0..6 {
            let payload = format!("payload {i}");
            let r = send(
                client
                    .post(proxy.url("/post"))
                    .header(ECHO_HEADER, "1")
                    .body(payload.clone()),
            )
            .await;
            assert_eq!(r.status, 200, "POST {i}: {}", r.text());
            assert_eq!(r.text(), payload);
        }
        assert_eq!(
            a.requests() + b.requests(),
            36,
            "every request reached exactly one live server once"
        );
        assert!(a.requests() > 0 && b.requests() > 0);
        proxy.stop().await;

        // Without retries, the requests that land on the dead server fail.
        let mut c = one_pool(Balance::RoundRobin, &servers);
        c.pools[0].retries = 0;
        let proxy = Proxy::start(c);
        let (before_a, before_b) = (a.requests(), b.requests());
        let mut bad_gateway = 0;
        for i in 0..30 {
            let r = send(client.get(proxy.url(&format!("/n/{i}")))).await;
            match r.status {
                200 => {}
                502 => bad_gateway += 1,
                s => panic!("unexpected status {s}: {}", r.text()),
            }
        }
        assert!(
            bad_gateway > 0,
            "retries = 0 and one server of three down, yet no 502"
        );
        assert!(bad_gateway < 30);
        assert_eq!(
            a.requests() - before_a + b.requests() - before_b + bad_gateway,
            30
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn all_servers_refusing_gives_502() {
    bounded(async {
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &[dead_addr(), dead_addr()]));
        let r = send(client().get(proxy.url("/x"))).await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(r.body.len() < 100, "short body: {}", r.text());
        assert!(
            !r.text().contains("127.0.0.1"),
            "no internal details leak: {}",
            r.text()
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn server_closing_without_answer_gives_502() {
    bounded(async {
        let closer = Backend::closing("closer").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&closer])));
        let r = send(client().get(proxy.url("/x"))).await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(closer.connections() >= 1, "the server was connected to");
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn all_servers_drained_gives_503_with_retry_after() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&a, &b])));
        let client = client();
        proxy.server(POOL, 0).set_admin_state(AdminState::Drain);
        proxy.server(POOL, 1).set_admin_state(AdminState::Drain);
        for _ in 0..3 {
            let r = send(client.get(proxy.url("/x"))).await;
            assert_eq!(r.status, 503, "{}", r.text());
            let retry_after = r.header("retry-after").expect("503 carries Retry-After");
            assert!(
                retry_after.parse::<u64>().is_ok_and(|s| s > 0),
                "Retry-After: {retry_after}"
            );
        }
        assert_eq!(a.requests() + b.requests(), 0, "drained servers take no request");
        // Back to ready: traffic flows again, to that server only.
        proxy.server(POOL, 1).set_admin_state(AdminState::Ready);
        for _ in 0..3 {
            let r = send(client.get(proxy.url("/x"))).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.backend(), "b");
        }
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn slow_response_gives_504() {
    bounded(async {
        let slow = Backend::start("slow").await;
        let mut c = one_pool(Balance::RoundRobin, &addrs(&[&slow]));
        c.pools[0].response_timeout = Duration::from_millis(200);
        let proxy = Proxy::start(c);
        let client = client();
        let start = Instant::now();
        let r = send(client.get(proxy.url("/slow")).header(DELAY_HEADER, "2000")).await;
        let took = start.elapsed();
        assert_eq!(r.status, 504, "{}", r.text());
        assert!(
            took >= Duration::from_millis(190),
            "504 after {took:?}, before the timeout"
        );
        assert!(
            took < Duration::from_millis(1500),
            "504 after {took:?}, long after the 200 ms timeout"
        );
        // A fast answer on the same pool is fine.
        let r = send(client.get(proxy.url("/fast"))).await;
        assert_eq!(r.status, 200);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn hop_by_hop_removed_and_forwarding_headers_set() {
    bounded(async {
        let backend = Backend::start("h").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let client = client();
        let r = send(
            client
                .get(proxy.url("/h?q=1"))
                .header("host", "site.example")
                .header("connection", "close, x-secret")
                .header("x-secret", "do not forward")
                .header("keep-alive", "timeout=5")
                .header("te", "trailers")
                .header("proxy-authorization", "Basic Zm9vOmJhcg==")
                .header("x-forwarded-for", "10.0.0.1")
                .header("x-custom", "kept"),
        )
        .await;
        let seen = r.seen();
        for h in [
            "connection",
            "keep-alive",
            "te",
            "proxy-authorization",
            "x-secret",
            "transfer-encoding",
            "upgrade",
        ] {
            assert_eq!(
                seen.all(h),
                Vec::<&str>::new(),
                "hop-by-hop header {h} reached the backend"
            );
        }
        assert_eq!(seen.header("x-forwarded-for"), Some("10.0.0.1, 127.0.0.1"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
        assert_eq!(seen.header("x-forwarded-host"), Some("site.example"));
        assert_eq!(seen.header("host"), Some("site.example"));
        assert_eq!(seen.header("x-custom"), Some("kept"));
        assert_eq!(seen.version, "HTTP/1.1");
        assert_eq!(seen.uri, "/h?q=1");

        // Without an incoming X-Forwarded-For, the client's address alone.
        let seen = send(client.get(proxy.url("/h"))).await.seen();
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(
            seen.header("x-forwarded-host"),
            Some(proxy.addr.to_string().as_str())
        );

        // Hop-by-hop headers of the backend's response do not reach the client.
        let r = send(client.get(proxy.url("/h")).header(HOP_HEADER, "1")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-kept"), Some("1"), "end-to-end response header kept");
        assert_eq!(
            r.header("x-backend-secret"),
            None,
            "header named in the response's Connection"
        );
        assert_eq!(r.header("keep-alive"), None);
        assert_eq!(r.header("proxy-authenticate"), None);
        let connection = r.header("connection").unwrap_or("");
        assert!(
            !connection.contains("x-backend-secret"),
            "Connection: {connection}"
        );
        proxy.stop().await;
    })
    .await
}

/// Streams 10 MiB through the proxy and back; the second half is sent only once echoed bytes
/// have come back, so a proxy holding either body whole deadlocks (and the test times out).
async fn stream_10mib_both_ways(content_length: bool, http2: bool) {
    const TOTAL: usize = 10 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let backend = Backend::start("echo").await;
    let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let (echoed_tx, echoed_rx) = tokio::sync::oneshot::channel::<()>();
    let producer = tokio::spawn(async move {
        let mut sum = Fnv::default();
        let mut offset = 0;
        let mut echoed = Some(echoed_rx);
        while offset < TOTAL {
            if offset >= TOTAL / 2
                && let Some(rx) = echoed.take()
            {
                rx.await.expect("the client saw echoed bytes");
            }
            let chunk = pattern(offset, CHUNK);
            sum.update(&chunk);
            offset += CHUNK;
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                break;
            }
        }
        (sum, offset)
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let client = if http2 {
        // Both bodies cross HTTP/2 flow control (1 MiB windows) on the client's side.
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .expect("h2 client")
    } else {
        client()
    };
    let mut req = client
        .post(proxy.url("/echo"))
        .header(ECHO_HEADER, "1")
        .body(reqwest::Body::wrap_stream(stream));
    if content_length {
        req = req.header("content-length", TOTAL.to_string());
    }
    let mut resp = req
        .send()
        .await
        .expect("response head before the request body ended");
    assert_eq!(resp.status(), 200);
    let expected_cl = if content_length {
        TOTAL.to_string()
    } else {
        "-".to_owned()
    };
    let expected_te = if content_length { "-" } else { "chunked" };
    assert_eq!(
        resp.headers()["x-seen-content-length"],
        expected_cl.as_str(),
        "framing to the backend"
    );
    assert_eq!(
        resp.headers()["x-seen-transfer-encoding"],
        expected_te,
        "framing to the backend"
    );
    let mut got = Fnv::default();
    let mut received = 0usize;
    let mut echoed_tx = Some(echoed_tx);
    while let Some(chunk) = resp.chunk().await.expect("response body") {
        got.update(&chunk);
        received += chunk.len();
        if let Some(tx) = echoed_tx.take() {
            let _ = tx.send(());
        }
    }
    let (sent, sent_len) = producer.await.expect("producer");
    assert_eq!(sent_len, TOTAL);
    assert_eq!(received, TOTAL, "bytes echoed back");
    assert_eq!(got, sent, "checksum of the echoed body");
    proxy.stop().await;
}

#[tokio::test]
async fn streams_10mib_both_ways_chunked() {
    bounded(stream_10mib_both_ways(false, false)).await
}

#[tokio::test]
async fn streams_10mib_both_ways_content_length() {
    bounded(stream_10mib_both_ways(true, false)).await
}

#[tokio::test]
async fn streams_10mib_both_ways_over_http2() {
    bounded(stream_10mib_both_ways(false, true)).await
}

#[tokio::test]
async fn streams_10mib_both_ways_over_http2_with_content_length() {
    bounded(stream_10mib_both_ways(true, true)).await
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    bounded(async {
        let backend = Backend::start("k").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let client = client();
        for i in 0..50 {
            let r = send(client.get(proxy.url(&format!("/k/{i}")))).await;
            assert_eq!(r.status, 200);
        }
        assert_eq!(backend.requests(), 50);
        assert_eq!(
            backend.connections(),
            1,
            "50 sequential requests over one upstream connection"
        );
        let open = proxy
            .engine()
            .shared
            .open_connections
            .load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(open, 1, "one client connection, kept alive");
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn request_ids_are_generated_or_kept() {
    bounded(async {
        let backend = Backend::start("rid").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let client = client();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let r = send(client.get(proxy.url("/id"))).await;
            let rid = r
                .header("x-request-id")
                .expect("a request id returned")
                .to_owned();
            assert_eq!(rid.len(), 32, "{rid}");
            assert!(
                rid.bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                "{rid}"
            );
            assert_eq!(
                r.seen().header("x-request-id"),
                Some(rid.as_str()),
                "backend saw the same id"
            );
            ids.push(rid);
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "ids are unique");

        let r = send(
            client
                .get(proxy.url("/id"))
                .header("x-request-id", "client-id-42"),
        )
        .await;
        assert_eq!(r.header("x-request-id"), Some("client-id-42"));
        assert_eq!(r.seen().header("x-request-id"), Some("client-id-42"));

        // Answers from Ringway itself carry an id too.
        proxy.server(POOL, 0).set_admin_state(AdminState::Drain);
        let r = send(client.get(proxy.url("/id")).header("x-request-id", "drained-1")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-request-id"), Some("drained-1"));
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn graceful_stop_finishes_the_request_in_flight() {
    bounded(async {
        let backend = Backend::start("slow").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let client = client();
        // Another client holds an idle keep-alive connection: it must not delay the stop.
        let idle_client = common::client();
        assert_eq!(send(idle_client.get(proxy.url("/first"))).await.status, 200);
        let in_flight = tokio::spawn(send(client.get(proxy.url("/slow")).header(DELAY_HEADER, "500")));
        backend.wait_requests(2).await;
        proxy.shutdown();
        let r = in_flight.await.expect("request task");
        assert_eq!(r.status, 200, "the request in flight completes: {}", r.text());
        assert_eq!(r.backend(), "slow");
        assert!(r.seen().uri == "/slow");
        let refused = tokio::net::TcpStream::connect(proxy.addr).await;
        assert!(refused.is_err(), "a new connection after shutdown is refused");
        let took = proxy.wait().await;
        assert!(
            took < Duration::from_secs(5),
            "wait() took {took:?}: not released by the finished request"
        );
        drop(idle_client);
    })
    .await
}

#[tokio::test]
async fn graceful_stop_finishes_the_http2_streams_in_flight() {
    bounded(async {
        let backend = Backend::start("slow").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let h2 = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .expect("h2 client");
        // Two streams of one connection wait for the server when the stop comes.
        let streams: Vec<_> = (0..2)
            .map(|i| {
                let req = h2
                    .get(proxy.url(&format!("/slow/{i}")))
                    .header(DELAY_HEADER, "500");
                tokio::spawn(send(req))
            })
            .collect();
        backend.wait_requests(2).await;
        proxy.shutdown();
        for s in streams {
            let r = s.await.expect("stream task");
            assert_eq!(r.status, 200, "a stream in flight completes: {}", r.text());
            assert_eq!(r.backend(), "slow");
        }
        let took = proxy.wait().await;
        assert!(
            took < Duration::from_secs(5),
            "wait() took {took:?}: the HTTP/2 connection was not released by GOAWAY"
        );
    })
    .await
}

#[tokio::test]
async fn graceful_stop_is_not_held_by_a_connection_that_never_spoke() {
    bounded(async {
        let backend = Backend::start("quiet").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        // Browsers and HTTP clients open spare connections and may send nothing on them.
        let silent = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(send(client().get(proxy.url("/one"))).await.status, 200);
        proxy.shutdown();
        let took = proxy.wait().await;
        assert!(
            took < Duration::from_secs(2),
            "a silent connection held the stop for {took:?} (header timeout 10 s)"
        );
        drop(silent);
    })
    .await
}

#[tokio::test]
async fn http2_prior_knowledge_is_forwarded_as_http1() {
    bounded(async {
        let backend = Backend::start("h2").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let h2 = reqwest::Client::builder()
            .no_proxy()
            .http2_prior_knowledge()
            .build()
            .expect("h2 client");
        let resp = h2.get(proxy.url("/h2?x=1")).send().await.expect("h2 request");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        let r = Reply::read(resp).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("x-request-id").is_some());
        let seen = r.seen();
        assert_eq!(seen.version, "HTTP/1.1");
        assert_eq!(seen.uri, "/h2?x=1", "origin-form target upstream");
        let authority = proxy.addr.to_string();
        assert_eq!(
            seen.header("host"),
            Some(authority.as_str()),
            "Host from the :authority"
        );
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));

        // Several streams at once on the one connection.
        let futures: Vec<_> = (0..10)
            .map(|i| h2.get(proxy.url(&format!("/s/{i}"))).send())
            .collect();
        for (i, resp) in futures_util::future::join_all(futures)
            .await
            .into_iter()
            .enumerate()
        {
            let r = Reply::read(resp.expect("h2 stream")).await;
            assert_eq!(r.seen().uri, format!("/s/{i}"));
        }
        proxy.stop().await;
    })
    .await
}

/// Sends `first`, waits long enough for the proxy to have peeked at it alone, then `rest`.
async fn send_in_two(proxy: &Proxy, first: &[u8], rest: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(first).await.expect("write");
    // Nothing to wait on: the proxy's peek is not observable from outside. If it sees both
    // parts at once the test still passes, through the common path.
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(rest).await.expect("write");
    s
}

#[tokio::test]
async fn protocol_is_told_even_from_a_split_first_line() {
    bounded(async {
        use tokio::io::AsyncReadExt;
        let backend = Backend::start("split").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        // "P" could begin the HTTP/2 preface or "POST".
        let mut s = send_in_two(
            &proxy,
            b"P",
            b"OST /split HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        )
        .await;
        let (status, _, body) = read_response(&mut s).await;
        assert_eq!(status, 200);
        assert_eq!(Seen::parse(&body).uri, "/split");
        drop(s);
        // "PR" then the rest of the preface and an empty SETTINGS frame: the server's first
        // frame must be its SETTINGS (type 4).
        let mut s = send_in_two(
            &proxy,
            b"PR",
            b"I * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        )
        .await;
        let mut frame = [0u8; 9];
        s.read_exact(&mut frame).await.expect("first HTTP/2 frame");
        assert_eq!(frame[3], 4, "SETTINGS frame, got {frame:?}");
        drop(s);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn several_x_forwarded_for_lines_are_all_kept() {
    bounded(async {
        let backend = Backend::start("xff").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let r = send(
            client()
                .get(proxy.url("/xff"))
                .header("x-forwarded-for", "10.0.0.1")
                .header("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
        )
        .await;
        let seen = r.seen();
        assert_eq!(
            seen.all("x-forwarded-for"),
            ["10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"],
            "every X-Forwarded-For line, in order, then the client"
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn absolute_form_target_routes_and_sets_host() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let mut c = base_config();
        for be in [&a, &b] {
            c.pools
                .push(pool(&be.name, Balance::RoundRobin, vec![server(&be.address())]));
        }
        c.routes.push(pool_route(
            "a",
            Some(HostPattern::Exact("a.example".into())),
            "/",
            "a",
            false,
        ));
        c.routes.push(pool_route(
            "b",
            Some(HostPattern::Exact("b.example".into())),
            "/",
            "b",
            false,
        ));
        let proxy = Proxy::start(c);
        // RFC 9112 3.2.2: the target's authority wins over Host, and a proxy forwards a Host
        // generated from it.
        let out = raw_exchange(
            proxy.addr,
            b"GET http://a.example/x?y=1 HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(out.status, Some(200), "{}", out.text);
        let body = &out.text[out.text.find("\r\n\r\n").expect("head end") + 4..];
        let seen = Seen::parse(body.as_bytes());
        assert_eq!(seen.backend, "a", "routed by the target's authority");
        assert_eq!(seen.uri, "/x?y=1", "origin-form target upstream");
        assert_eq!(
            seen.header("host"),
            Some("a.example"),
            "Host regenerated from the target"
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn unusable_client_request_ids_are_replaced() {
    bounded(async {
        let backend = Backend::start("rid").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let client = client();
        let long = "x".repeat(300);
        for bad in ["has space", long.as_str(), ""] {
            let r = send(client.get(proxy.url("/id")).header("x-request-id", bad)).await;
            let rid = r.header("x-request-id").expect("an id").to_owned();
            assert_eq!(rid.len(), 32, "{bad:?} replaced by a generated id, got {rid:?}");
            assert_eq!(r.seen().header("x-request-id"), Some(rid.as_str()));
        }
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn sent_non_idempotent_request_is_not_retried() {
    bounded(async {
        let dropper = Backend::reading_then_closing("dropper").await;
        let good = Backend::start("good").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&dropper, &good])));
        let client = client();
        let (mut posts_ok, mut posts_502) = (0, 0);
        for i in 0..6 {
            let r = send(client.post(proxy.url(&format!("/p/{i}"))).body("data")).await;
            match r.status {
                200 => posts_ok += 1,
                502 => posts_502 += 1,
                s => panic!("POST answered {s}: {}", r.text()),
            }
        }
        assert!(posts_502 > 0, "no POST went to the server that drops requests");
        assert_eq!(
            good.requests(),
            posts_ok,
            "a POST sent to a server that failed was replayed on another server"
        );
        assert_eq!(dropper.requests(), posts_502, "each failed POST was sent once");

        // An idempotent request is replayed on the other server.
        for i in 0..6 {
            let r = send(client.get(proxy.url(&format!("/g/{i}")))).await;
            assert_eq!(r.status, 200, "GET {i}: {}", r.text());
            assert_eq!(r.backend(), "good");
        }
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn stale_pooled_connection_is_not_an_error() {
    bounded(async {
        let backend = Backend::start("restarting").await;
        let mut c = one_pool(Balance::RoundRobin, &addrs(&[&backend]));
        c.pools[0].retries = 0;
        let proxy = Proxy::start(c);
        let client = client();
        for i in 0..5 {
            let r = send(client.get(proxy.url(&format!("/s/{i}")))).await;
            assert_eq!(
                r.status, 200,
                "request {i} after the server closed its idle connection"
            );
            backend.drop_connections();
        }
        assert_eq!(backend.connections(), 5);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn max_conns_caps_requests_in_flight_per_server() {
    bounded(async {
        let backend = Backend::start("capped").await;
        let mut c = one_pool(Balance::RoundRobin, &addrs(&[&backend]));
        c.pools[0].max_conns = 1;
        let proxy = Proxy::start(c);
        let client = client();
        backend.hold();
        let first = tokio::spawn(send(client.get(proxy.url("/first"))));
        backend.wait_requests(1).await;
        let r = send(client.get(proxy.url("/second"))).await;
        assert_eq!(r.status, 503, "the only server is at max_conns: {}", r.text());
        assert!(r.header("retry-after").is_some());
        backend.release();
        assert_eq!(first.await.expect("first").status, 200);
        assert_eq!(send(client.get(proxy.url("/third"))).await.status, 200);
        assert_eq!(backend.requests(), 2);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn expect_100_continue_is_honoured() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let backend = Backend::start("cont").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
        stream
            .write_all(
                b"POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\
                  x-test-echo: 1\r\nConnection: close\r\n\r\n",
            )
            .await
            .expect("write head");
        // A client waits (curl: 1 s) for 100 Continue before sending the body.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk))
                .await
                .expect("an interim or final response within 2 s")
                .expect("read");
            assert!(n > 0, "closed before answering");
            buf.extend_from_slice(&chunk[..n]);
        }
        let interim = String::from_utf8_lossy(&buf).into_owned();
        assert!(
            interim.starts_with("HTTP/1.1 100"),
            "expected 100 Continue, got {interim:?}"
        );
        let out = raw_exchange_on(stream, b"hello", Duration::from_secs(5)).await;
        assert_eq!(out.status, Some(200), "{}", out.text);
        assert!(
            out.text.contains("hello"),
            "the body reached the server: {}",
            out.text
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn head_request_gets_the_head_only() {
    bounded(async {
        let backend = Backend::start("head").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let client = client();
        for _ in 0..3 {
            let r = send(client.head(proxy.url("/h"))).await;
            assert_eq!(r.status, 200);
            assert!(r.body.is_empty());
            assert!(
                r.header("content-length").is_some_and(|l| l != "0"),
                "the GET's length is kept"
            );
            assert_eq!(r.header("x-backend"), Some("head"));
        }
        // The connection is still in sync after HEAD responses.
        assert_eq!(send(client.get(proxy.url("/h"))).await.seen().method, "GET");
        assert_eq!(backend.connections(), 1);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let backend = Backend::start("ws").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
        let head = websocket_open(&mut stream, "a").await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("upgrade: websocket"), "{head}");
        assert!(head.contains("x-backend: ws"), "{head}");
        for msg in [&b"ping-1"[..], b"a longer second message", &[0u8, 1, 2, 255, 254]] {
            stream.write_all(msg).await.expect("write on the tunnel");
            let mut back = vec![0u8; msg.len()];
            stream
                .read_exact(&mut back)
                .await
                .expect("echo through the tunnel");
            assert_eq!(back, msg);
        }
        drop(stream);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_websocket_tunnel_is_closed_after_idle_timeout_of_quiet() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let backend = Backend::start("ws").await;
        let mut c = one_pool(Balance::RoundRobin, &addrs(&[&backend]));
        c.listeners[0].limits.idle_timeout = Duration::from_millis(800);
        let proxy = Proxy::start(c);
        let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
        let head = websocket_open(&mut stream, "a").await;
        assert!(head.starts_with("http/1.1 101"), "{head}");
        // Traffic keeps the tunnel open past the idle timeout.
        for i in 0..5u8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stream.write_all(&[i; 4]).await.expect("write on the tunnel");
            let mut back = [0u8; 4];
            stream
                .read_exact(&mut back)
                .await
                .expect("echo through the tunnel");
            assert_eq!(back, [i; 4]);
        }
        // Then quiet: the tunnel is closed after the idle timeout.
        let quiet = std::time::Instant::now();
        let mut rest = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut rest))
            .await
            .expect("the quiet tunnel was never closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "bytes on a quiet tunnel");
        assert!(
            quiet.elapsed() >= Duration::from_millis(700),
            "closed too early: {:?}",
            quiet.elapsed()
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_refused_websocket_upgrade_is_passed_back_unchanged() {
    use tokio::io::AsyncReadExt;
    bounded(async {
        let server = common::edge::ScriptServer::start(|_, _| {
            common::edge::Answer::keep(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 11\r\nX-Why: origin\r\n\r\nnot allowed",
            )
        })
        .await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, std::slice::from_ref(&server.addr)));
        let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
        let head = websocket_open(&mut stream, "a").await;
        assert!(head.starts_with("http/1.1 403 forbidden"), "{head}");
        assert!(head.contains("x-why: origin"), "{head}");
        assert!(head.contains("content-length: 11"), "{head}");
        let mut body = [0u8; 11];
        stream.read_exact(&mut body).await.expect("the refusal's body");
        assert_eq!(&body, b"not allowed");
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn graceful_stop_gives_up_after_shutdown_grace() {
    bounded(async {
        let backend = Backend::start("stuck").await;
        let mut c = one_pool(Balance::RoundRobin, &addrs(&[&backend]));
        c.shutdown_grace = Duration::from_millis(300);
        let proxy = Proxy::start(c);
        backend.hold();
        let stuck = tokio::spawn(client().get(proxy.url("/stuck")).send());
        backend.wait_requests(1).await;
        proxy.shutdown();
        let took = proxy.wait().await;
        assert!(
            took >= Duration::from_millis(250),
            "stopped after {took:?}, before the grace ended"
        );
        assert!(
            took < Duration::from_secs(2),
            "stopped only after {took:?} (grace 300 ms)"
        );
        let r = stuck.await.expect("request task");
        assert!(
            r.is_err(),
            "the request cut off at the end of the grace does not look successful"
        );
        backend.release();
    })
    .await
}

#[tokio::test]
async fn http10_request_without_host_gets_a_host_upstream() {
    bounded(async {
        let backend = Backend::start("old").await;
        let proxy = Proxy::start(one_pool(Balance::RoundRobin, &addrs(&[&backend])));
        let out = raw_exchange(proxy.addr, b"GET /old HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
        assert_eq!(out.status, Some(200), "{}", out.text);
        let body = &out.text[out.text.find("\r\n\r\n").expect("head end") + 4..];
        let seen = Seen::parse(body.as_bytes());
        assert_eq!(seen.version, "HTTP/1.1");
        // RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host (empty if nothing better).
        assert_eq!(
            seen.all("host").len(),
            1,
            "an HTTP/1.1 request upstream without Host: {:?}",
            seen.headers
        );
        proxy.stop().await;
    })
    .await
}
