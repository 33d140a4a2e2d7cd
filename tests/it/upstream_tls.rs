//! TLS to servers (`tls` on a pool): re-encryption to a server with a private CA, refusal of a
//! certificate that does not verify (unknown CA, wrong name), `verify = false`, SNI from
//! `server_name`, pooled TLS connections reused, and active health checks over TLS. Certificates
//! are made at test time with rcgen; the servers are hyper behind tokio-rustls.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::upstream::*;
use crate::common::*;
use ringway::config::{Balance, Config, ExpectStatus, HealthConfig, UpstreamTls};
use ringway::proxy::state::Health;

/// A TLS server whose certificate, signed by `ca`, names `names`.
async fn tls_server(ca: &TestCa, names: &[&str]) -> TestServer {
    TestServer::start(
        "tls",
        ServerOptions {
            tls: Some((Arc::new(ca.issue(names)), vec![b"http/1.1".to_vec()])),
            ..ServerOptions::default()
        },
    )
    .await
}

fn tls_pool(server: &TestServer, tls: UpstreamTls) -> Config {
    let mut c = one_pool(Balance::RoundRobin, &[server.address()]);
    c.pools[0].tls = Some(tls);
    c.pools[0].retries = 0;
    c
}

fn trusting(ca_file: &std::path::Path) -> UpstreamTls {
    UpstreamTls {
        ca: Some(ca_file.to_path_buf()),
        server_name: None,
        verify: true,
    }
}

#[tokio::test]
async fn requests_are_reencrypted_to_a_server_of_a_private_ca() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("up-tls");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let server = tls_server(&ca, &["127.0.0.1"]).await;
        let proxy = Proxy::start(tls_pool(&server, trusting(&ca_file)));
        let reply = get_host(&client(), &proxy.url("/hello?x=1"), "app.example").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let seen = Described {
            status: reply.status,
            headers: Default::default(),
            trailers: None,
            body: reply.text(),
        };
        let json = seen.json();
        assert_eq!(json["uri"], "/hello?x=1");
        assert_eq!(json["version"], "HTTP/1.1");
        assert_eq!(seen.seen_all("host"), vec!["app.example"]);
        assert_eq!(seen.seen_all("x-forwarded-proto"), vec!["http"]);
        assert_eq!(server.log.handshakes.load(Ordering::SeqCst), 1);
        // The server is named by its IP address: no SNI is sent for an IP (RFC 6066 3).
        assert_eq!(*server.log.sni.lock().unwrap(), vec![None]);
    })
    .await;
}

#[tokio::test]
async fn sequential_requests_reuse_one_tls_connection() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("up-tls-reuse");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let server = tls_server(&ca, &["127.0.0.1"]).await;
        let proxy = Proxy::start(tls_pool(&server, trusting(&ca_file)));
        let c = client();
        for i in 0..10 {
            let reply = send(c.get(proxy.url(&format!("/n/{i}")))).await;
            assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        }
        assert_eq!(server.log.requests.load(Ordering::SeqCst), 10);
        assert_eq!(
            server.connections(),
            1,
            "one upstream TLS connection for ten requests"
        );
        assert_eq!(server.log.handshakes.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn a_certificate_of_an_unknown_ca_is_refused_with_502() {
    bounded(async {
        let trusted = TestCa::new("trusted CA");
        let other = TestCa::new("someone else's CA");
        let dir = TempDir::new("up-tls-unknown");
        let ca_file = dir.write("ca.pem", &trusted.pem());
        let server = tls_server(&other, &["127.0.0.1"]).await;
        let proxy = Proxy::start(tls_pool(&server, trusting(&ca_file)));
        let reply = send(client().get(proxy.url("/"))).await;
        assert_eq!(reply.status, 502);
        assert_eq!(
            server.log.requests.load(Ordering::SeqCst),
            0,
            "nothing reached the server"
        );
        assert_eq!(proxy.server(POOL, 0).failures.load(Ordering::Relaxed), 1);
    })
    .await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_with_502() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("up-tls-name");
        let ca_file = dir.write("ca.pem", &ca.pem());
        // Valid, from the trusted CA, but for another name than the one verified.
        let server = tls_server(&ca, &["other.internal"]).await;
        let proxy = Proxy::start(tls_pool(&server, trusting(&ca_file)));
        let reply = send(client().get(proxy.url("/"))).await;
        assert_eq!(reply.status, 502);
        // With `server_name` naming what the certificate says, the same server is accepted.
        let mut tls = trusting(&ca_file);
        tls.server_name = Some("other.internal".into());
        let named = Proxy::start(tls_pool(&server, tls));
        let reply = send(client().get(named.url("/"))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            server
                .log
                .sni
                .lock()
                .unwrap()
                .last()
                .cloned()
                .flatten()
                .as_deref(),
            Some("other.internal"),
            "server_name is sent as SNI"
        );
    })
    .await;
}

#[tokio::test]
async fn verify_false_accepts_any_certificate() {
    bounded(async {
        let unknown = TestCa::new("unknown CA");
        let server = tls_server(&unknown, &["not-this-host.example"]).await;
        let proxy = Proxy::start(tls_pool(
            &server,
            UpstreamTls {
                ca: None,
                server_name: None,
                verify: false,
            },
        ));
        let reply = send(client().get(proxy.url("/"))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    })
    .await;
}

#[tokio::test]
async fn health_checks_of_a_tls_pool_speak_tls() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("up-tls-health");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let good = tls_server(&ca, &["127.0.0.1"]).await;
        let bad = tls_server(&TestCa::new("other CA"), &["127.0.0.1"]).await;
        let mut config = one_pool(Balance::RoundRobin, &[good.address(), bad.address()]);
        config.pools[0].tls = Some(trusting(&ca_file));
        config.pools[0].health = Some(HealthConfig {
            path: "/healthz".into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 1,
            expect: ExpectStatus::default(),
        });
        let proxy = Proxy::start(config);
        let (g, b) = (proxy.server(POOL, 0), proxy.server(POOL, 1));
        poll_until(Duration::from_secs(5), || {
            (g.health() == Health::Up && b.health() == Health::Down).then_some(())
        })
        .await
        .expect("the good server up, the one with an unknown CA down");
        assert!(
            good.log.requests.load(Ordering::SeqCst) >= 1,
            "checks reached the server over TLS"
        );
        let detail = b
            .last_check
            .lock()
            .unwrap()
            .as_ref()
            .map(|c| c.detail.clone())
            .unwrap_or_default();
        assert!(detail.starts_with("TLS"), "the check says why: {detail}");
    })
    .await;
}

#[tokio::test]
async fn a_relative_ca_path_is_read_next_to_the_config_file() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("up-tls-relative");
        dir.write("ca.pem", &ca.pem());
        let server = tls_server(&ca, &["127.0.0.1"]).await;
        let text = format!(
            "[[listener]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n\n[[route]]\nname = \"all\"\npool = \"p\"\n\n\
             [pool.p]\nservers = [\"{}\"]\ntls = {{ ca = \"ca.pem\" }}\n",
            server.address()
        );
        let path = dir.write("ringway.toml", &text);
        let mut config = ringway::config::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
        config.log.access = ringway::config::AccessLogTarget::Off;
        config.workers = ringway::config::Workers::Fixed(1);
        let proxy = Proxy::start(config);
        let reply = send(client().get(proxy.url("/"))).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    })
    .await;
}

type Counter = Arc<std::sync::atomic::AtomicUsize>;

/// A TLS server that answers one request per connection with keep-alive, then closes the
/// connection cleanly (close_notify) while Ringway holds it idle; `closed` counts those closes.
/// Returns its address, the count of closes, of connections and of resumed TLS sessions.
async fn closing_after_one_answer(
    ca: &TestCa,
) -> (String, tokio::sync::watch::Receiver<usize>, Counter, Counter) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    crypto();
    let leaf = ca.issue(&["127.0.0.1"]);
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(leaf.chain, leaf.key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (closed_tx, closed) = tokio::sync::watch::channel(0usize);
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = connections.clone();
    let resumed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let resumed_count = resumed.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let closed_tx = closed_tx.clone();
            let resumed = resumed_count.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if matches!(
                    tls.get_ref().1.handshake_kind(),
                    Some(rustls::HandshakeKind::Resumed)
                ) {
                    resumed.fetch_add(1, Ordering::SeqCst);
                }
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = tls.flush().await;
                let _ = tls.shutdown().await;
                drop(tls);
                closed_tx.send_modify(|n| *n += 1);
            });
        }
    });
    (addr, closed, connections, resumed)
}

#[tokio::test]
async fn an_idle_tls_connection_the_server_closed_is_not_reused() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("up-tls-stale");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let (addr, mut closed, connections, resumed) = closing_after_one_answer(&ca).await;
        let mut config = one_pool(Balance::RoundRobin, &[addr]);
        config.pools[0].tls = Some(trusting(&ca_file));
        config.pools[0].retries = 0;
        let proxy = Proxy::start(config);
        let c = client();
        let reply = send(c.get(proxy.url("/first"))).await;
        assert_eq!(reply.status, 200);
        closed.wait_for(|n| *n >= 1).await.expect("server closed");
        // A POST is never sent again once it may have reached a server: had the closed
        // connection been taken from the pool, this would be a 502.
        let reply = send(c.post(proxy.url("/second")).body("data")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert_eq!(
            resumed.load(Ordering::SeqCst),
            1,
            "the second connection resumed the session"
        );
    })
    .await;
}

#[tokio::test]
async fn a_websocket_upgrade_tunnels_over_a_tls_pool() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("up-tls-ws");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let server = TestServer::start(
            "ws",
            ServerOptions {
                tls: Some((Arc::new(ca.issue(&["127.0.0.1"])), vec![b"http/1.1".to_vec()])),
                ..ServerOptions::default()
            },
        )
        .await;
        let proxy = Proxy::start(tls_pool(&server, trusting(&ca_file)));
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.expect("connect");
        tcp.write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tcp.read(&mut byte).await.expect("read"), 1, "head cut short");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        tcp.write_all(b"ping over tls").await.expect("write");
        let mut echoed = [0u8; 13];
        tcp.read_exact(&mut echoed).await.expect("echo");
        assert_eq!(&echoed, b"ping over tls");
    })
    .await;
}

#[tokio::test]
async fn large_bodies_cross_a_tls_pool_both_ways() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("up-tls-large");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let server = tls_server(&ca, &["127.0.0.1"]).await;
        let proxy = Proxy::start(tls_pool(&server, trusting(&ca_file)));
        let data = pattern(0, 8 << 20);
        // Read whole by the server before it answers: the request must get through TLS whole.
        let reply = send(client().post(proxy.url("/upload")).body(data.clone())).await;
        assert_eq!(reply.status, 200);
        let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
        assert_eq!(json["body_len"], 8 << 20);
        // Echoed while it is sent: both directions at once through one TLS connection.
        let reply = send(
            client()
                .post(proxy.url("/echo"))
                .header("x-test-echo", "1")
                .body(data.clone()),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.len(), data.len());
        assert!(reply.body == data, "the echo differs from what was sent");
    })
    .await;
}
