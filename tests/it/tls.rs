//! TLS termination on listeners, over real sockets with certificates made at test time: SNI
//! picking among three certificates (exact, wildcard, default), ALPN giving h2 and http/1.1,
//! TLS 1.1 refused, session resumption (IDs and tickets), certificates renewed by a reload while
//! a connection stays open, a bad new certificate refused, plain HTTP to a TLS port, garbage and
//! truncated handshakes, WebSocket over TLS, and `redirect_https` beside a TLS listener.

use crate::common::tls as tls_common;

use std::net::SocketAddr;
use std::time::Duration;

use crate::common;
use crate::common::*;
use ringway::config::{CertPair, Config, TlsConfig};
use tls_common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// [`one_pool`] to `backend` with listener `main` terminating TLS with `pairs`.
fn tls_config(backend: &Backend, pairs: Vec<CertPair>) -> Config {
    let mut c = one_pool(ringway::config::Balance::RoundRobin, &[backend.address()]);
    c.listeners[0].tls = Some(TlsConfig { certs: pairs });
    c
}

/// Sends `GET path` with `Host: host` over `stream` and reads the response (Content-Length).
async fn h1_get<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
) -> (u16, String, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write request");
    read_response(stream).await
}

/// The DER of the leaf certificate in a PEM chain.
fn leaf_der(leaf: &Leaf) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

fn presented_der(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().expect("peer certificates")[0].to_vec()
}

#[tokio::test]
async fn sni_picks_exact_wildcard_and_default_certificates() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("sni");
        let now = unix_now();
        // Three key types: ECDSA P-256 (default), ECDSA P-384 (exact), Ed25519 (wildcard).
        let pairs = vec![
            write_leaf(&dir, "default", &ca.leaf(&["default.test"])),
            write_leaf(
                &dir,
                "api",
                &ca.leaf_with(
                    &["api.example.com"],
                    &rcgen::PKCS_ECDSA_P384_SHA384,
                    now - 60,
                    now + 86_400 * 30,
                ),
            ),
            write_leaf(
                &dir,
                "wild",
                &ca.leaf_with(
                    &["*.example.com"],
                    &rcgen::PKCS_ED25519,
                    now - 60,
                    now + 86_400 * 30,
                ),
            ),
        ];
        let proxy = Proxy::start(tls_config(&backend, pairs));
        for (sni, expected) in [
            ("api.example.com", "api.example.com"),
            ("shop.example.com", "*.example.com"),
            ("API.Example.com", "api.example.com"),
            ("a.b.example.com", "default.test"),
            ("unknown.test", "default.test"),
        ] {
            let mut s = connect(proxy.addr, sni, looking_client(true))
                .await
                .unwrap_or_else(|e| panic!("handshake for {sni}: {e}"));
            assert_eq!(presented_names(&s), [expected], "SNI {sni}");
            let (status, _, _) = h1_get(&mut s, sni, "/").await;
            assert_eq!(status, 200, "SNI {sni}");
        }
        // No SNI at all: the default certificate, verified against the CA for its name.
        let mut no_sni = client_config(&ca, &[]);
        no_sni.enable_sni = false;
        let s = connect(proxy.addr, "default.test", no_sni)
            .await
            .expect("handshake without SNI");
        assert_eq!(presented_names(&s), ["default.test"]);
        // The exact and wildcard certificates verify for their names against the CA.
        for name in ["api.example.com", "x.example.com"] {
            connect(proxy.addr, name, client_config(&ca, &[]))
                .await
                .unwrap_or_else(|e| panic!("verified handshake for {name}: {e}"));
        }
        proxy.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn alpn_gives_h2_or_http11_and_forwarded_proto_is_https() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("alpn");
        let pair = write_leaf(&dir, "site", &ca.leaf(&["app.test"]));
        let proxy = Proxy::start(tls_config(&backend, vec![pair]));
        let url = format!("https://app.test:{}/hello?x=1", proxy.addr.port());
        for (h2, version) in [
            (true, reqwest::Version::HTTP_2),
            (false, reqwest::Version::HTTP_11),
        ] {
            let client = https_client(&ca, proxy.addr, &["app.test"], h2);
            let resp = client.get(&url).send().await.expect("request over TLS");
            assert_eq!(resp.version(), version);
            let seen = Reply::read(resp).await.seen();
            assert_eq!(seen.uri, "/hello?x=1");
            let proto = seen
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-proto"))
                .map(|(_, v)| v.clone());
            assert_eq!(proto.as_deref(), Some("https"));
        }
        // What the server chose, seen by a plain rustls client.
        for (offer, chosen) in [
            (&[&b"h2"[..], b"http/1.1"][..], Some(&b"h2"[..])),
            (&[&b"http/1.1"[..]][..], Some(&b"http/1.1"[..])),
            (&[][..], None),
        ] {
            let s = connect(proxy.addr, "app.test", client_config(&ca, offer))
                .await
                .expect("handshake");
            assert_eq!(s.get_ref().1.alpn_protocol(), chosen);
        }
        proxy.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

/// ECDHE-RSA-AES128-SHA and AES128-SHA, what TLS 1.0/1.1 clients offer.
const CBC_SUITES: [u8; 4] = [0xc0, 0x13, 0x00, 0x2f];
/// ECDHE-ECDSA-AES128-GCM-SHA256 and ECDHE-RSA-AES128-GCM-SHA256 (suites rustls has).
const GCM_SUITES: [u8; 4] = [0xc0, 0x2b, 0xc0, 0x2f];

/// A ClientHello that offers TLS 1.1 at most (no supported_versions extension) with `suites`.
fn tls11_hello_with(suites: [u8; 4]) -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version: TLS 1.1
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id: none
    body.extend_from_slice(&[0x00, 0x04]);
    body.extend_from_slice(&suites);
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, // groups: x25519, P-256
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // EC point formats: uncompressed
        0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04, // signature algorithms
    ];
    body.extend_from_slice(&u16::try_from(extensions.len()).expect("short").to_be_bytes());
    body.extend_from_slice(extensions);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16::try_from(body.len()).expect("short").to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).expect("short").to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// A TLS 1.1 ClientHello as old clients send it.
fn tls11_client_hello() -> Vec<u8> {
    tls11_hello_with(CBC_SUITES)
}

#[tokio::test]
async fn tls_1_1_is_refused_with_an_alert() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("tls11");
        let pair = write_leaf(&dir, "site", &ca.leaf(&["app.test"]));
        let proxy = Proxy::start(tls_config(&backend, vec![pair]));
        // protocol_version (70), whether the suites offered are ones rustls has or not.
        for (suites, alert) in [(CBC_SUITES, 70u8), (GCM_SUITES, 70)] {
            let out = raw_exchange(proxy.addr, &tls11_hello_with(suites), Duration::from_secs(5)).await;
            assert!(out.closed, "the server closes after refusing");
            let bytes = out.text.as_bytes();
            // An alert record (21), never a handshake record (a ServerHello).
            assert!(!bytes.is_empty(), "an alert is sent before the close");
            assert_eq!(bytes[0], 0x15, "alert record, got {bytes:?}");
            assert_eq!(
                bytes.get(5..7),
                Some(&[2u8, alert][..]),
                "fatal alert, got {bytes:?}"
            );
        }
        // The listener goes on serving.
        let mut s = connect(proxy.addr, "app.test", client_config(&ca, &[]))
            .await
            .expect("handshake");
        assert_eq!(h1_get(&mut s, "app.test", "/").await.0, 200);
        proxy.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn sessions_resume_by_ticket_and_by_session_id() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("resume");
        let pair = write_leaf(&dir, "site", &ca.leaf(&["app.test"]));
        let proxy = Proxy::start(tls_config(&backend, vec![pair]));
        let tls12 = {
            let mut c = rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS12])
                .expect("TLS 1.2")
                .with_root_certificates(ca.roots())
                .with_no_client_auth();
            // Without tickets, TLS 1.2 can only resume by session ID.
            c.resumption = rustls::client::Resumption::in_memory_sessions(32)
                .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
            c
        };
        for (what, config) in [
            ("TLS 1.3 tickets", client_config(&ca, &[])),
            ("TLS 1.2 session ID", tls12),
        ] {
            let config = std::sync::Arc::new(config);
            let mut first = connect_shared(proxy.addr, "app.test", config.clone())
                .await
                .expect("first");
            assert_eq!(
                first.get_ref().1.handshake_kind(),
                Some(rustls::HandshakeKind::Full),
                "{what}"
            );
            // A round trip: TLS 1.3 tickets arrive after the handshake.
            assert_eq!(h1_get(&mut first, "app.test", "/").await.0, 200);
            drop(first);
            let mut second = connect_shared(proxy.addr, "app.test", config)
                .await
                .expect("second");
            assert_eq!(
                second.get_ref().1.handshake_kind(),
                Some(rustls::HandshakeKind::Resumed),
                "{what}"
            );
            assert_eq!(h1_get(&mut second, "app.test", "/").await.0, 200);
        }
        proxy.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

/// Starts `text` (written to `dir/ringway.toml`) as a reloadable engine.
fn start_file(dir: &std::path::Path, text: &str) -> (Proxy, std::path::PathBuf) {
    let path = dir.join("ringway.toml");
    std::fs::write(&path, text).expect("write config");
    let config = ringway::config::load(&path).unwrap_or_else(|e| panic!("config: {e:?}"));
    (Proxy::start_from(config, Some(path.clone())), path)
}

#[tokio::test]
async fn a_reload_serves_renewed_certificates_and_keeps_open_connections() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("renew");
        let old = ca.leaf(&["app.test"]);
        let pair = write_leaf(&dir, "site", &old);
        let (proxy, _) = start_file(&dir, &tls_config_text(&[pair], &backend.address(), None));

        let mut open = connect(proxy.addr, "app.test", client_config(&ca, &[]))
            .await
            .expect("handshake");
        assert_eq!(presented_der(&open), leaf_der(&old));
        assert_eq!(h1_get(&mut open, "app.test", "/").await.0, 200);

        // Renewed in place: same paths, new certificate and key.
        let new = ca.leaf(&["app.test"]);
        write_leaf(&dir, "site", &new);
        let summary = proxy
            .engine()
            .reload_from_file("test")
            .expect("reload with renewed files");
        assert!(summary.listeners.is_empty(), "{summary}");

        let fresh = connect(proxy.addr, "app.test", client_config(&ca, &[]))
            .await
            .expect("new handshake");
        assert_eq!(
            presented_der(&fresh),
            leaf_der(&new),
            "new handshakes get the renewed certificate"
        );
        // The connection opened before the reload goes on working.
        for _ in 0..3 {
            assert_eq!(h1_get(&mut open, "app.test", "/").await.0, 200);
        }
        assert_eq!(presented_der(&open), leaf_der(&old));
        proxy.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

/// A way to spoil the certificate files: what it is, what does it, what the reload says.
type BadCase<'a> = (&'static str, Box<dyn Fn() + 'a>, &'static str);

#[tokio::test]
async fn a_bad_new_certificate_is_refused_and_the_old_one_serves() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("badrenew");
        let good = ca.leaf(&["app.test"]);
        let pair = write_leaf(&dir, "site", &good);
        let (proxy, _) = start_file(
            &dir,
            &tls_config_text(std::slice::from_ref(&pair), &backend.address(), None),
        );
        let other = ca.leaf(&["app.test"]);
        let bad_cases: [BadCase<'_>; 3] = [
            (
                "a key of another certificate",
                Box::new(|| std::fs::write(&pair.key, &other.key_pem).expect("write key")),
                "does not match",
            ),
            (
                "no PEM in the certificate",
                Box::new(|| std::fs::write(&pair.cert, "renewal went wrong\n").expect("write cert")),
                "holds no PEM certificate",
            ),
            (
                "an expired certificate",
                Box::new(|| {
                    let now = unix_now();
                    let expired = ca.leaf_with(
                        &["app.test"],
                        &rcgen::PKCS_ECDSA_P256_SHA256,
                        now - 86_400 * 30,
                        now - 86_400,
                    );
                    write_leaf(&dir, "site", &expired);
                }),
                "has expired",
            ),
        ];
        for (what, spoil, message) in bad_cases {
            spoil();
            let errors = proxy.engine().reload_from_file("test").expect_err(what);
            assert!(errors.iter().any(|e| e.contains(message)), "{what}: {errors:?}");
            let mut s = connect(proxy.addr, "app.test", client_config(&ca, &[]))
                .await
                .expect("the old certificate still serves");
            assert_eq!(presented_der(&s), leaf_der(&good), "{what}");
            assert_eq!(h1_get(&mut s, "app.test", "/").await.0, 200);
            write_leaf(&dir, "site", &good);
        }
        proxy.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn plain_http_to_a_tls_port_gets_400() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("plain");
        let pair = write_leaf(&dir, "site", &ca.leaf(&["app.test"]));
        let proxy = Proxy::start(tls_config(&backend, vec![pair]));
        let out = raw_exchange(
            proxy.addr,
            b"GET /x HTTP/1.1\r\nHost: app.test\r\nUser-Agent: test\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(out.status, Some(400), "{}", out.text);
        assert!(out.text.contains("speaks HTTPS"), "{}", out.text);
        assert!(out.closed);
        assert_eq!(backend.requests(), 0);
        proxy.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn garbage_and_truncated_handshakes_are_closed_and_others_are_served() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("garbage");
        let pair = write_leaf(&dir, "site", &ca.leaf(&["app.test"]));
        let mut config = tls_config(&backend, vec![pair]);
        config.listeners[0].limits.header_timeout = Duration::from_secs(1);
        let proxy = Proxy::start(config);
        // A handshake record type followed by nonsense.
        let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x20];
        garbage.extend((0u8..32).map(|i| i.wrapping_mul(37)));
        let out = raw_exchange(proxy.addr, &garbage, Duration::from_secs(5)).await;
        assert!(out.closed, "garbage is closed");
        assert!(
            out.text.as_bytes().first().is_none_or(|&b| b == 0x15),
            "only an alert: {:?}",
            out.text
        );
        // Random bytes that are not a TLS record at all.
        let out = raw_exchange(proxy.addr, &[0xff, 0x00, 0x13, 0x37], Duration::from_secs(5)).await;
        assert!(out.closed, "non-TLS bytes are closed");
        // A truncated ClientHello, the client then closing its side.
        let hello = tls11_client_hello();
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        s.write_all(&hello[..20]).await.expect("write");
        s.shutdown().await.expect("half close");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a truncated hello then EOF is closed");
        // A truncated ClientHello from a client that stays: cut at the header timeout.
        let out = raw_exchange(proxy.addr, &hello[..20], Duration::from_secs(5)).await;
        assert!(out.closed, "a stalled handshake is closed");
        assert!(out.elapsed >= Duration::from_millis(800), "{:?}", out.elapsed);
        // Everyone else is served all along.
        let mut ok = connect(proxy.addr, "app.test", client_config(&ca, &[]))
            .await
            .expect("handshake");
        assert_eq!(h1_get(&mut ok, "app.test", "/").await.0, 200);
        proxy.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled_over_tls() {
    bounded(async {
        let backend = Backend::start("ws").await;
        let ca = TestCa::new();
        let dir = temp_dir("wss");
        let pair = write_leaf(&dir, "site", &ca.leaf(&["app.test"]));
        let proxy = Proxy::start(tls_config(&backend, vec![pair]));
        let mut stream = connect(proxy.addr, "app.test", client_config(&ca, &[b"http/1.1"]))
            .await
            .expect("handshake");
        let head = websocket_open(&mut stream, "app.test").await;
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
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn redirect_https_beside_a_tls_listener_keeps_host_path_and_query() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("redirect");
        let pair = write_leaf(&dir, "site", &ca.leaf(&["app.test"]));
        let mut config = tls_config(&backend, vec![pair]);
        let tls_port = {
            // The TLS port must be known for the redirect: take a free one.
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
            probe.local_addr().expect("probe address").port()
        };
        config.listeners[0].bind = SocketAddr::from(([127, 0, 0, 1], tls_port));
        let mut plain = ringway::cli::listener("plain", SocketAddr::from(([127, 0, 0, 1], 0)));
        plain.redirect_https = Some(ringway::config::RedirectHttps {
            port: tls_port,
            status: 308,
        });
        config.listeners.push(plain);
        let proxy = Proxy::start(config);
        let plain_addr = proxy.engine().listener_addr("plain").expect("plain listener");
        let url = format!("http://app.test:{}/a/b%20c?x=1&y=%2F", plain_addr.port());
        let reply = send(
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .resolve("app.test", plain_addr)
                .build()
                .expect("client")
                .get(&url),
        )
        .await;
        assert_eq!(reply.status, 308);
        let location = reply.header("location").expect("Location").to_owned();
        assert_eq!(location, format!("https://app.test:{tls_port}/a/b%20c?x=1&y=%2F"));
        let served = send(https_client(&ca, proxy.addr, &["app.test"], true).get(&location)).await;
        assert_eq!(served.seen().uri, "/a/b%20c?x=1&y=%2F");
        proxy.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn a_proxy_header_before_the_handshake_names_the_client() {
    bounded(async {
        let backend = Backend::start("b").await;
        let ca = TestCa::new();
        let dir = temp_dir("proxy-tls");
        let pair = write_leaf(&dir, "site", &ca.leaf(&["app.test"]));
        let mut c = tls_config(&backend, vec![pair]);
        c.listeners[0].proxy_protocol = true;
        let proxy = Proxy::start(c);
        let src: SocketAddr = "203.0.113.7:40000".parse().expect("address");
        let dst: SocketAddr = "192.0.2.1:443".parse().expect("address");
        for header in [common::edge::proxy_v1(src, dst), common::edge::proxy_v2(src, dst)] {
            let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
            // An L4 balancer in front: the PROXY header first, then the client's own handshake.
            tcp.write_all(&header).await.expect("PROXY header");
            let name = rustls::pki_types::ServerName::try_from("app.test").expect("name");
            let connector =
                tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config(&ca, &[b"http/1.1"])));
            let mut tls = connector
                .connect(name, tcp)
                .await
                .expect("handshake after the PROXY header");
            let (status, _, body) = h1_get(&mut tls, "app.test", "/").await;
            assert_eq!(status, 200);
            let seen = Seen::parse(&body);
            assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.7"));
            assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
        }
        proxy.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}
