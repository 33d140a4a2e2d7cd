//! The client's address from the hop in front: an inbound PROXY protocol header (v1, v2) on a
//! listener with `proxy_protocol = true`, and `X-Forwarded-For` from `trusted_proxies`. The
//! address must reach the server's `X-Forwarded-For`, the access log and `client_ip` hashing.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::common::edge::*;
use crate::common::*;
use ringway::config::{AccessLogFormat, AccessLogTarget, Balance, Config, HashKeySpec, HashSettings};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn client_ip_hash() -> Balance {
    Balance::ConsistentHash(HashSettings {
        key: HashKeySpec::ClientIp,
        ..ringway::cli::default_hash_settings()
    })
}

/// A config whose listener reads PROXY headers and logs JSON to `log`.
fn proxied(backends: &[&Backend], balance: Balance, log: &std::path::Path) -> Config {
    let mut c = one_pool(balance, &addrs(backends));
    c.listeners[0].proxy_protocol = true;
    c.log.access = AccessLogTarget::File(log.to_owned());
    c.log.format = AccessLogFormat::Json;
    c
}

/// A GET with request id `rid`, closing after its answer.
fn get(rid: &str, extra: &str) -> Vec<u8> {
    format!("GET /x HTTP/1.1\r\nHost: app.example\r\nX-Request-Id: {rid}\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

/// Sends `header` and a GET in one write; returns what the backend saw.
async fn through(proxy: &Proxy, header: &[u8], rid: &str, extra: &str) -> (RawResponse, Seen) {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&get(rid, extra));
    let r = one_write(proxy.addr, &bytes).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    let seen = Seen::parse(&r.body);
    (r, seen)
}

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

#[tokio::test]
async fn v1_and_v2_sources_reach_the_server_and_the_access_log() {
    bounded(async {
        let dir = TempDir::new("pp");
        let log = dir.0.join("access.log");
        let backend = Backend::start("b").await;
        let proxy = Proxy::start(proxied(&[&backend], Balance::RoundRobin, &log));
        let cases = [
            (
                "v1-tcp4",
                proxy_v1(sock("192.0.2.10:40000"), sock("198.51.100.1:80")),
            ),
            (
                "v1-tcp6",
                proxy_v1(sock("[2001:db8::10]:40000"), sock("[2001:db8::1]:80")),
            ),
            (
                "v2-tcp4",
                proxy_v2(sock("192.0.2.20:40000"), sock("198.51.100.1:80")),
            ),
            (
                "v2-tcp6",
                proxy_v2(sock("[2001:db8::20]:40000"), sock("[2001:db8::1]:443")),
            ),
        ];
        for (rid, header) in &cases {
            let source = match header.first() {
                Some(b'P') => String::from_utf8_lossy(header)
                    .split(' ')
                    .nth(2)
                    .expect("source")
                    .to_owned(),
                _ if rid.ends_with("tcp4") => "192.0.2.20".to_owned(),
                _ => "2001:db8::20".to_owned(),
            };
            let (_, seen) = through(&proxy, header, rid, "").await;
            assert_eq!(seen.header("x-forwarded-for"), Some(source.as_str()), "{rid}");
            let line = log_line(&log, rid).await;
            assert_eq!(line["remote_addr"], source.as_str(), "{rid}: {line}");
            // A chain received is kept, the PROXY source appended.
            let chained = format!("{rid}-chain");
            let (_, seen) = through(&proxy, header, &chained, "X-Forwarded-For: 203.0.113.7\r\n").await;
            let want = format!("203.0.113.7, {source}");
            assert_eq!(seen.header("x-forwarded-for"), Some(want.as_str()), "{rid}");
        }
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn local_and_unknown_use_the_socket_address() {
    bounded(async {
        let dir = TempDir::new("pp-local");
        let log = dir.0.join("access.log");
        let backend = Backend::start("b").await;
        let proxy = Proxy::start(proxied(&[&backend], Balance::RoundRobin, &log));
        for (rid, header) in [
            ("local", proxy_v2_local()),
            ("unknown", b"PROXY UNKNOWN\r\n".to_vec()),
        ] {
            let (_, seen) = through(&proxy, &header, rid, "").await;
            assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{rid}");
            assert_eq!(log_line(&log, rid).await["remote_addr"], "127.0.0.1");
        }
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn client_ip_hashing_uses_the_proxy_source() {
    bounded(async {
        let dir = TempDir::new("pp-hash");
        let log = dir.0.join("access.log");
        let backends = [
            Backend::start("h0").await,
            Backend::start("h1").await,
            Backend::start("h2").await,
        ];
        let refs: Vec<&Backend> = backends.iter().collect();
        let proxy = Proxy::start(proxied(&refs, client_ip_hash(), &log));
        let mut owner: HashMap<IpAddr, String> = HashMap::new();
        for i in 1..=24u8 {
            let src = SocketAddr::from(([192, 0, 2, i], 5000));
            for round in 0..2 {
                let header = if round == 0 {
                    proxy_v1(src, sock("198.51.100.1:80"))
                } else {
                    proxy_v2(src, sock("198.51.100.1:80"))
                };
                let (_, seen) = through(&proxy, &header, &format!("h{i}-{round}"), "").await;
                let prev = owner.insert(src.ip(), seen.backend.clone());
                assert!(
                    prev.is_none_or(|p| p == seen.backend),
                    "{src}: the same client goes to the same server"
                );
            }
        }
        let servers: HashSet<&String> = owner.values().collect();
        assert!(
            servers.len() >= 2,
            "24 PROXY sources all hashed to one server: the hash ignored them ({owner:?})"
        );
        proxy.stop().await;
    })
    .await
}

/// A connection that must be closed without an answer.
async fn refused(proxy: &Proxy, bytes: &[u8], shutdown: bool) {
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    if shutdown {
        s.shutdown().await.expect("shutdown");
    }
    let r = read_until_close(&mut s).await;
    assert_eq!(
        r.status,
        None,
        "{:?} was answered: {r:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[tokio::test]
async fn connections_without_a_valid_header_are_closed_and_the_next_served() {
    bounded(async {
        let dir = TempDir::new("pp-bad");
        let log = dir.0.join("access.log");
        let backend = Backend::start("b").await;
        let proxy = Proxy::start(proxied(&[&backend], Balance::RoundRobin, &log));
        let good = proxy_v1(sock("192.0.2.99:1234"), sock("198.51.100.1:80"));
        let mut oversized = b"PROXY TCP4 ".to_vec();
        oversized.extend_from_slice(&[b'1'; 200]);
        oversized.extend_from_slice(b"\r\n");
        let mut huge_v2 = proxy_v2(sock("192.0.2.1:1"), sock("192.0.2.2:2"));
        huge_v2[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        let mut unix = proxy_v2(sock("192.0.2.1:1"), sock("192.0.2.2:2"));
        unix[13] = 0x31;
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("plain HTTP", get("plain", ""), false),
            ("garbage", b"\x00\x01garbage\r\n\r\n".to_vec(), false),
            ("TLS ClientHello", vec![0x16, 0x03, 0x01, 0x00, 0x10, 0x01], false),
            ("truncated v1", b"PROXY TCP4 192.0.2.1 198.51".to_vec(), true),
            (
                "truncated v2",
                proxy_v2(sock("192.0.2.1:1"), sock("192.0.2.2:2"))[..20].to_vec(),
                true,
            ),
            ("oversized v1", oversized, false),
            ("oversized v2", huge_v2, false),
            (
                "bad v1 address",
                b"PROXY TCP4 192.0.2.300 198.51.100.1 1 2\r\n".to_vec(),
                false,
            ),
            ("UNIX family", unix, false),
        ];
        for (i, (what, bytes, shutdown)) in cases.iter().enumerate() {
            let mut with_request = bytes.clone();
            if !shutdown {
                with_request.extend_from_slice(&get(what, ""));
            }
            refused(&proxy, &with_request, *shutdown).await;
            // The listener goes on serving the next good connection.
            let (_, seen) = through(&proxy, &good, &format!("after-{i}"), "").await;
            assert_eq!(seen.header("x-forwarded-for"), Some("192.0.2.99"), "after {what}");
        }
        assert_eq!(
            backend.requests(),
            cases.len(),
            "no refused request reached the server"
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_header_arriving_in_pieces_is_read_whole() {
    bounded(async {
        let dir = TempDir::new("pp-pieces");
        let log = dir.0.join("access.log");
        let backend = Backend::start("b").await;
        let proxy = Proxy::start(proxied(&[&backend], Balance::RoundRobin, &log));
        for header in [
            proxy_v1(sock("192.0.2.5:1"), sock("198.51.100.1:80")),
            proxy_v2(sock("192.0.2.5:1"), sock("198.51.100.1:80")),
        ] {
            let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            for piece in header.chunks(7) {
                s.write_all(piece).await.expect("write");
                s.flush().await.expect("flush");
            }
            s.write_all(&get("pieces", "")).await.expect("write");
            let r = read_until_close(&mut s).await;
            assert_eq!(r.status, Some(200), "{r:?}");
            assert_eq!(Seen::parse(&r.body).header("x-forwarded-for"), Some("192.0.2.5"));
        }
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn proxy_protocol_from_refuses_other_peers() {
    bounded(async {
        let dir = TempDir::new("pp-from");
        let log = dir.0.join("access.log");
        let backend = Backend::start("b").await;
        let header = proxy_v2(sock("192.0.2.8:1"), sock("198.51.100.1:80"));
        let mut c = proxied(&[&backend], Balance::RoundRobin, &log);
        c.listeners[0].proxy_protocol_from = vec!["10.0.0.0/8".parse().expect("net")];
        let proxy = Proxy::start(c);
        let mut bytes = header.clone();
        bytes.extend_from_slice(&get("from-refused", ""));
        refused(&proxy, &bytes, false).await;
        assert_eq!(backend.requests(), 0);
        proxy.stop().await;

        let mut c = proxied(&[&backend], Balance::RoundRobin, &log);
        c.listeners[0].proxy_protocol_from = vec![
            "10.0.0.0/8".parse().expect("net"),
            "127.0.0.0/8".parse().expect("net"),
        ];
        let proxy = Proxy::start(c);
        let (_, seen) = through(&proxy, &header, "from-allowed", "").await;
        assert_eq!(seen.header("x-forwarded-for"), Some("192.0.2.8"));
        proxy.stop().await;
    })
    .await
}

/// A config whose listener trusts `trusted` for `X-Forwarded-For`.
fn behind(backends: &[&Backend], balance: Balance, log: &std::path::Path, trusted: &[&str]) -> Config {
    let mut c = one_pool(balance, &addrs(backends));
    c.listeners[0].trusted_proxies = trusted.iter().map(|n| n.parse().expect("net")).collect();
    c.log.access = AccessLogTarget::File(log.to_owned());
    c.log.format = AccessLogFormat::Json;
    c
}

#[tokio::test]
async fn trusted_proxies_name_the_right_most_untrusted_client() {
    bounded(async {
        let dir = TempDir::new("trusted");
        let log = dir.0.join("access.log");
        let backend = Backend::start("b").await;
        let proxy = Proxy::start(behind(
            &[&backend],
            Balance::RoundRobin,
            &log,
            &["127.0.0.1/32", "10.0.0.0/8"],
        ));
        let client = http_client();
        let r = send(
            client
                .get(proxy.url("/t"))
                .header("x-request-id", "trusted-1")
                .header("x-forwarded-for", "198.51.100.66, 203.0.113.9, 10.0.0.2"),
        )
        .await;
        // The chain goes on whole, the immediate peer appended.
        assert_eq!(
            r.seen().header("x-forwarded-for"),
            Some("198.51.100.66, 203.0.113.9, 10.0.0.2, 127.0.0.1")
        );
        assert_eq!(log_line(&log, "trusted-1").await["remote_addr"], "203.0.113.9");
        let r = send(
            client
                .get(proxy.url("/t"))
                .header("x-request-id", "trusted-2")
                .header(
                    "forwarded",
                    "for=\"[2001:db8::9]:4711\";proto=https, for=10.0.0.3",
                ),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(log_line(&log, "trusted-2").await["remote_addr"], "2001:db8::9");
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_ignored() {
    bounded(async {
        let dir = TempDir::new("untrusted");
        let log = dir.0.join("access.log");
        let backend = Backend::start("b").await;
        let proxy = Proxy::start(behind(&[&backend], Balance::RoundRobin, &log, &["10.0.0.0/8"]));
        let r = send(
            http_client()
                .get(proxy.url("/t"))
                .header("x-request-id", "untrusted-1")
                .header("x-forwarded-for", "203.0.113.9, 10.0.0.2"),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(log_line(&log, "untrusted-1").await["remote_addr"], "127.0.0.1");
        proxy.stop().await;
    })
    .await
}

/// Which backend each `X-Forwarded-For` client lands on, asked twice.
async fn xff_owners(proxy: &Proxy) -> HashMap<String, String> {
    let client = http_client();
    let mut owner = HashMap::new();
    for i in 1..=24u8 {
        let xff = format!("203.0.113.{i}, 10.0.0.2");
        for _ in 0..2 {
            let r = send(client.get(proxy.url("/h")).header("x-forwarded-for", &xff)).await;
            let b = r.seen().backend;
            let prev = owner.insert(xff.clone(), b.clone());
            assert!(
                prev.is_none_or(|p| p == b),
                "{xff}: the same client, the same server"
            );
        }
    }
    owner
}

#[tokio::test]
async fn client_ip_hashing_follows_trusted_proxies_only() {
    bounded(async {
        let dir = TempDir::new("trusted-hash");
        let log = dir.0.join("access.log");
        let backends = [
            Backend::start("t0").await,
            Backend::start("t1").await,
            Backend::start("t2").await,
        ];
        let refs: Vec<&Backend> = backends.iter().collect();
        let proxy = Proxy::start(behind(
            &refs,
            client_ip_hash(),
            &log,
            &["127.0.0.1/32", "10.0.0.0/8"],
        ));
        let owners = xff_owners(&proxy).await;
        let servers: HashSet<&String> = owners.values().collect();
        assert!(
            servers.len() >= 2,
            "trusted: clients spread over servers ({owners:?})"
        );
        proxy.stop().await;

        let proxy = Proxy::start(behind(&refs, client_ip_hash(), &log, &["10.0.0.0/8"]));
        let owners = xff_owners(&proxy).await;
        let servers: HashSet<&String> = owners.values().collect();
        assert_eq!(
            servers.len(),
            1,
            "untrusted: every request hashes on 127.0.0.1 ({owners:?})"
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn refusals_are_logged_once_per_window_with_the_cause() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    bounded(async {
        let backend = Backend::start("b").await;
        let dir = TempDir::new("pp-log");
        let path = dir.0.join("ringway.toml");
        std::fs::write(
            &path,
            format!(
                "[admin]\nlisten = \"127.0.0.1:0\"\n\n[log]\naccess = \"off\"\n\n[[listener]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\n\n[[route]]\nname = \"all\"\npool = \"app\"\n\n[pool.app]\nservers = [\"{}\"]\n",
                backend.address()
            ),
        )
        .expect("write config");
        let mut child = ringway_command()
            .arg("run")
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ringway run");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr: SocketAddr = loop {
            let line = lines.next_line().await.expect("stderr").expect("ringway exited early");
            if line.contains("listener `main`")
                && let Some(a) = address_after(&line, "http://")
            {
                break a.parse().expect("listener address");
            }
        };
        for _ in 0..3 {
            let r = one_write(addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
            assert_eq!(r.status, None);
        }
        // A good connection afterwards: once it is answered, the refusals were all handled.
        let good = proxy_v1(sock("192.0.2.1:1"), sock("192.0.2.2:80"));
        let mut bytes = good.clone();
        bytes.extend_from_slice(&get("after-refusals", ""));
        assert_eq!(one_write(addr, &bytes).await.status, Some(200));
        terminate_gracefully(&mut child).await;
        let mut warned = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("WARN") && line.contains("PROXY") {
                warned.push(line);
            }
        }
        assert_eq!(warned.len(), 1, "one warning for three refusals: {warned:#?}");
        assert!(warned[0].contains("no PROXY protocol header"), "{}", warned[0]);
        assert!(warned[0].contains("listener `main`"), "{}", warned[0]);
    })
    .await
}
