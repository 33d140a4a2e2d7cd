//! `send_proxy = "v1" | "v2"` on a pool: every connection to a server starts with a PROXY header
//! naming the client and the address it connected to (before TLS, if any); such connections are
//! private to their client; health checks send a LOCAL / UNKNOWN header. The servers read the
//! header with the `ppp` crate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::upstream::*;
use crate::common::*;
use hyper::Request;
use ringway::config::{Balance, Config, ExpectStatus, HealthConfig, ProxyVersion, UpstreamTls};
use ringway::proxy::state::Health;
use tokio::net::TcpStream;

async fn proxied_server(tls: Option<&TestCa>) -> TestServer {
    TestServer::start(
        "pp",
        ServerOptions {
            proxy_protocol: true,
            tls: tls.map(|ca| (Arc::new(ca.issue(&["127.0.0.1"])), vec![b"http/1.1".to_vec()])),
            ..ServerOptions::default()
        },
    )
    .await
}

fn pool_sending(server: &TestServer, version: ProxyVersion) -> Config {
    let mut c = one_pool(Balance::RoundRobin, &[server.address()]);
    c.pools[0].send_proxy = Some(version);
    c
}

/// Two requests on one client connection; returns the client's address.
async fn two_requests(proxy: &Proxy) -> std::net::SocketAddr {
    let tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let me = tcp.local_addr().expect("local address");
    let mut c = h1_client_on(tcp).await;
    for path in ["/one", "/two"] {
        let req = Request::builder()
            .uri(path)
            .header("host", "app.example")
            .body(no_body())
            .unwrap();
        let d = describe(c.send_request(req).await.expect("response")).await;
        assert_eq!(d.status, 200, "{}", d.body);
    }
    me
}

async fn header_names_the_client(version: ProxyVersion) {
    let server = proxied_server(None).await;
    let proxy = Proxy::start(pool_sending(&server, version));
    let me = two_requests(&proxy).await;
    assert_eq!(
        *server.log.proxy.lock().unwrap(),
        vec![Some((me, proxy.addr))],
        "one connection, announced as from the client to the listener"
    );
    assert_eq!(server.log.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn send_proxy_v1_names_the_client_and_the_listener() {
    bounded(header_names_the_client(ProxyVersion::V1)).await;
}

#[tokio::test]
async fn send_proxy_v2_names_the_client_and_the_listener() {
    bounded(header_names_the_client(ProxyVersion::V2)).await;
}

#[tokio::test]
async fn connections_carrying_a_client_are_not_reused_for_another() {
    bounded(async {
        let server = proxied_server(None).await;
        let proxy = Proxy::start(pool_sending(&server, ProxyVersion::V2));
        let first = two_requests(&proxy).await;
        let second = two_requests(&proxy).await;
        let third = two_requests(&proxy).await;
        assert_eq!(
            *server.log.proxy.lock().unwrap(),
            vec![
                Some((first, proxy.addr)),
                Some((second, proxy.addr)),
                Some((third, proxy.addr))
            ],
            "one connection per client, each announcing its own client"
        );
        assert_eq!(server.connections(), 3);
        assert_eq!(server.log.requests.load(Ordering::SeqCst), 6);
    })
    .await;
}

#[tokio::test]
async fn the_proxy_header_goes_before_tls() {
    bounded(async {
        let ca = TestCa::new("Ringway test CA");
        let dir = TempDir::new("pp-tls");
        let ca_file = dir.write("ca.pem", &ca.pem());
        let server = proxied_server(Some(&ca)).await;
        let mut config = pool_sending(&server, ProxyVersion::V1);
        config.pools[0].tls = Some(UpstreamTls {
            ca: Some(ca_file),
            server_name: None,
            verify: true,
        });
        let proxy = Proxy::start(config);
        let me = two_requests(&proxy).await;
        assert_eq!(*server.log.proxy.lock().unwrap(), vec![Some((me, proxy.addr))]);
        assert_eq!(server.log.handshakes.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn health_checks_send_a_local_header() {
    bounded(async {
        for version in [ProxyVersion::V1, ProxyVersion::V2] {
            let server = proxied_server(None).await;
            let mut config = pool_sending(&server, version);
            config.pools[0].health = Some(HealthConfig {
                path: "/healthz".into(),
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(500),
                rise: 1,
                fall: 1,
                expect: ExpectStatus::default(),
            });
            let proxy = Proxy::start(config);
            let s = proxy.server(POOL, 0);
            poll_until(Duration::from_secs(5), || {
                (s.health() == Health::Up).then_some(())
            })
            .await
            .expect("the server passes its checks");
            let seen = server.log.proxy.lock().unwrap().clone();
            assert!(!seen.is_empty());
            assert!(
                seen.iter().all(Option::is_none),
                "checks carry no client address: {seen:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn an_h2c_pool_keeps_one_connection_per_client() {
    bounded(async {
        let server = TestServer::start(
            "pp-h2c",
            ServerOptions {
                proxy_protocol: true,
                h2_only: true,
                ..ServerOptions::default()
            },
        )
        .await;
        let mut config = pool_sending(&server, ProxyVersion::V2);
        config.pools[0].protocol = ringway::config::UpstreamProtocol::H2c;
        let proxy = Proxy::start(config);
        let first = two_requests(&proxy).await;
        let second = two_requests(&proxy).await;
        assert_eq!(
            *server.log.proxy.lock().unwrap(),
            vec![Some((first, proxy.addr)), Some((second, proxy.addr))],
            "HTTP/2 connections announcing a client carry only that client's requests"
        );
        assert_eq!(server.log.requests.load(Ordering::SeqCst), 4);
    })
    .await;
}
