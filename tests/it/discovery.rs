//! DNS discovery over real sockets, against the test's own DNS server (hickory-server on
//! 127.0.0.1, UDP and TCP, answering from a map the test changes): servers appearing and
//! joining after their health checks, a server vanishing (drained, removed once idle, no failed
//! request), the resolver failing and recovering with the pool kept and the outage logged once,
//! empty answers and NXDOMAIN never emptying a pool, SRV weights and ports, a huge answer
//! capped, and reloads keeping or stopping discovery.

mod dns;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::*;
use dns::{Dns, log, log_lines};
use ringway::config::{Balance, Config, DiscoverConfig, DnsQuery, ExpectStatus, HealthConfig};
use ringway::proxy::state::Server as PoolServer;

// ---------------------------------------------------------------------------------------------
// Ringway with a discovering pool
// ---------------------------------------------------------------------------------------------

const INTERVAL: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(8);

fn discover(dns: &Dns, name: &str, query: DnsQuery) -> DiscoverConfig {
    DiscoverConfig {
        dns: name.to_string(),
        query,
        interval: INTERVAL,
        resolvers: vec![dns.addr],
    }
}

fn a_query(host: &str, port: u16) -> DnsQuery {
    DnsQuery::Address {
        host: host.to_string(),
        port,
    }
}

/// One route to pool [`POOL`], which has no listed servers and discovers with `d`.
fn discovering(d: DiscoverConfig) -> Config {
    let mut c = one_pool(Balance::RoundRobin, &[]);
    c.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.pools[0].discover = Some(d);
    c
}

fn health() -> HealthConfig {
    HealthConfig {
        path: "/healthz".into(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
        rise: 1,
        fall: 1,
        expect: ExpectStatus::default(),
    }
}

fn members(proxy: &Proxy) -> Vec<Arc<PoolServer>> {
    let snapshot = proxy.engine().shared.snapshot.load();
    snapshot
        .pools
        .get(POOL)
        .map_or_else(Vec::new, |p| p.members.load().servers.clone())
}

/// `(name, weight)` of the pool's servers, sorted.
fn names_weights(proxy: &Proxy) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = members(proxy)
        .iter()
        .map(|s| (s.name.clone(), s.weight()))
        .collect();
    v.sort();
    v
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn names(proxy: &Proxy) -> Vec<String> {
    names_weights(proxy).into_iter().map(|(n, _)| n).collect()
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    poll_until(WAIT, || ok().then_some(()))
        .await
        .unwrap_or_else(|| panic!("{what}: not within {WAIT:?}"));
}

/// Two backends on 127.0.0.2 and 127.0.0.3 with one port, as the A records of a service name
/// give them (addresses only; the port is the config's).
async fn two_loopback_backends() -> (Backend, Backend, u16) {
    for _ in 0..20 {
        let first = Backend::start_at("b2", SocketAddr::from(([127, 0, 0, 2], 0)))
            .await
            .expect("bind 127.0.0.2");
        let port = first.addr.port();
        if let Ok(second) = Backend::start_at("b3", SocketAddr::from(([127, 0, 0, 3], port))).await {
            return (first, second, port);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

async fn get_ok(client: &reqwest::Client, proxy: &Proxy) -> Reply {
    let reply = send(client.get(proxy.url("/x"))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_appear_and_join_once_their_checks_pass() {
    bounded(async {
        let dns = Dns::start().await;
        let (b2, b3, port) = two_loopback_backends().await;
        let name = "appear.test";
        dns.set_a(name, &[ip(127, 0, 0, 2)]);
        let mut c = discovering(discover(&dns, &format!("{name}:{port}"), a_query(name, port)));
        c.pools[0].health = Some(health());
        let proxy = Proxy::start(c);
        let client = client();

        let first = format!("127.0.0.2:{port}");
        wait_until("127.0.0.2 serving", || {
            members(&proxy).iter().any(|s| s.name == first && s.serving())
        })
        .await;
        assert!(members(&proxy)[0].discovered.load(Ordering::Relaxed));
        assert_eq!(get_ok(&client, &proxy).await.backend(), "b2");

        // A new address joins; one where nothing listens joins too but never passes its
        // checks, so it takes no request.
        dns.set_a(name, &[ip(127, 0, 0, 2), ip(127, 0, 0, 3), ip(127, 0, 0, 4)]);
        let second = format!("127.0.0.3:{port}");
        let dead = format!("127.0.0.4:{port}");
        wait_until("127.0.0.3 serving", || {
            members(&proxy).iter().any(|s| s.name == second && s.serving())
        })
        .await;
        assert_eq!(names(&proxy), vec![first.clone(), second.clone(), dead.clone()]);
        let dead_server = members(&proxy)
            .into_iter()
            .find(|s| s.name == dead)
            .expect("dead member");
        assert!(
            !dead_server.serving(),
            "a server that never passed a check takes no traffic"
        );
        let mut seen = HashMap::new();
        for _ in 0..20 {
            *seen
                .entry(get_ok(&client, &proxy).await.backend().to_string())
                .or_insert(0) += 1;
        }
        assert!(
            seen.get("b2") >= Some(&5) && seen.get("b3") >= Some(&5),
            "{seen:?}"
        );
        assert_eq!(seen.values().sum::<usize>(), 20);
        assert_eq!(dead_server.requests.load(Ordering::Relaxed), 0);
        assert!(b2.requests() > 0 && b3.requests() > 0);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_server_drains_and_leaves_once_idle() {
    bounded(async {
        let dns = Dns::start().await;
        let (b2, b3, port) = two_loopback_backends().await;
        let name = "vanish.test";
        dns.set_a(name, &[ip(127, 0, 0, 2), ip(127, 0, 0, 3)]);
        let proxy = Proxy::start(discovering(discover(
            &dns,
            &format!("{name}:{port}"),
            a_query(name, port),
        )));
        let client = client();
        wait_until("both servers in the pool", || members(&proxy).len() == 2).await;

        // One request held on b3: in flight when DNS stops naming it.
        b3.hold();
        let url = proxy.url("/slow");
        let held = {
            let client = client.clone();
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for _ in 0..2 {
                    replies.push(send(client.get(&url)).await);
                }
                replies
            })
        };
        b3.wait_requests(1).await;
        let gone = format!("127.0.0.3:{port}");
        let leaving = members(&proxy)
            .into_iter()
            .find(|s| s.name == gone)
            .expect("b3 member");
        assert_eq!(leaving.in_flight.load(Ordering::SeqCst), 1);

        dns.set_a(name, &[ip(127, 0, 0, 2)]);
        wait_until("127.0.0.3 draining", || leaving.removing.load(Ordering::SeqCst)).await;
        assert_eq!(leaving.admin_state().as_str(), "drain");
        // Still a member while its request runs; new requests go to the other server only.
        assert!(names(&proxy).contains(&gone));
        for _ in 0..10 {
            assert_eq!(get_ok(&client, &proxy).await.backend(), "b2");
        }
        assert!(
            names(&proxy).contains(&gone),
            "removed while a request was in flight"
        );

        b3.release();
        let replies = held.await.expect("held requests");
        assert!(replies.iter().all(|r| r.status == 200), "a request failed");
        assert!(replies.iter().any(|r| r.backend() == "b3"));
        wait_until("127.0.0.3 removed once idle", || !names(&proxy).contains(&gone)).await;
        assert_eq!(names(&proxy), vec![format!("127.0.0.2:{port}")]);
        assert!(b2.requests() >= 10);

        // Back in DNS: it joins afresh.
        dns.set_a(name, &[ip(127, 0, 0, 2), ip(127, 0, 0, 3)]);
        wait_until("127.0.0.3 back", || names(&proxy).contains(&gone)).await;
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_is_kept_while_the_resolver_fails_and_follows_it_again_after() {
    bounded(async {
        log();
        let mut dns = Dns::start().await;
        let (_b2, _b3, port) = two_loopback_backends().await;
        let name = "outage.test";
        dns.set_a(name, &[ip(127, 0, 0, 2), ip(127, 0, 0, 3)]);
        let proxy = Proxy::start(discovering(discover(
            &dns,
            &format!("{name}:{port}"),
            a_query(name, port),
        )));
        let client = client();
        wait_until("both servers in the pool", || members(&proxy).len() == 2).await;
        let before = names(&proxy);

        // SERVFAIL for many intervals: the pool stays, and the outage is logged once.
        dns.servfail(true);
        let asked = dns.queries();
        wait_until("failing resolutions", || dns.queries() >= asked + 10).await;
        let report = proxy.engine().shared.discovery.of(POOL).expect("a report");
        assert!(report.failing_since.is_some(), "{report:?}");
        let servfail = report.last_error.expect("the failure");
        assert!(servfail.contains("outage.test"), "{servfail}");
        assert_eq!(names(&proxy), before);
        for _ in 0..4 {
            get_ok(&client, &proxy).await;
        }
        let warned = || log_lines(&["WARN", "DNS discovery failed for `outage.test:"]);
        assert_eq!(warned(), 1, "one warning per outage");

        // The server gone altogether (queries refused): the same outage, still the same pool.
        dns.stop().await;
        wait_until("a failure other than SERVFAIL", || {
            let report = proxy.engine().shared.discovery.of(POOL).unwrap_or_default();
            report.last_error.is_some_and(|e| e != servfail)
        })
        .await;
        assert_eq!(names(&proxy), before);
        get_ok(&client, &proxy).await;
        assert_eq!(warned(), 1, "one warning per outage");

        // Back, with one server less: the pool follows, and the end of the outage is logged.
        dns.servfail(false);
        dns.set_a(name, &[ip(127, 0, 0, 2)]);
        dns.restart().await;
        wait_until("the pool follows DNS again", || {
            names(&proxy) == vec![format!("127.0.0.2:{port}")]
        })
        .await;
        assert_eq!(log_lines(&["INFO", "DNS `outage.test:", "answers again"]), 1);
        let report = proxy.engine().shared.discovery.of(POOL).expect("a report");
        assert!(report.failing_since.is_none() && report.used == 1, "{report:?}");
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_answers_and_nxdomain_never_empty_the_pool() {
    bounded(async {
        log();
        let dns = Dns::start().await;
        let (_b2, _b3, port) = two_loopback_backends().await;
        let name = "empty.test";
        dns.set_a(name, &[ip(127, 0, 0, 2), ip(127, 0, 0, 3)]);
        let proxy = Proxy::start(discovering(discover(
            &dns,
            &format!("{name}:{port}"),
            a_query(name, port),
        )));
        let client = client();
        wait_until("both servers in the pool", || members(&proxy).len() == 2).await;
        let before = names(&proxy);

        // The name without records (NOERROR, an empty answer), then no name at all (NXDOMAIN).
        for nxdomain in [false, true] {
            if nxdomain {
                dns.remove(name);
            } else {
                dns.set_a(name, &[]);
            }
            let asked = dns.queries();
            wait_until("answers without records", || dns.queries() >= asked + 6).await;
            assert_eq!(names(&proxy), before);
            get_ok(&client, &proxy).await;
        }
        assert_eq!(log_lines(&["WARN", "found no servers for `empty.test:"]), 1);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_and_weights() {
    bounded(async {
        let dns = Dns::start().await;
        let (a, b, backup) = (
            Backend::start("a").await,
            Backend::start("b").await,
            Backend::start("backup").await,
        );
        let name = "_http._tcp.srv.test";
        // `a` comes with its address in the additional section; `b` must be looked up.
        dns.set_a("b.srv.test", &[ip(127, 0, 0, 1)]);
        dns.set_srv(
            name,
            &[
                (10, 1, a.addr.port(), "a.srv.test"),
                (10, 3, b.addr.port(), "b.srv.test"),
                (20, 50, backup.addr.port(), "a.srv.test"),
            ],
            &[("a.srv.test", ip(127, 0, 0, 1))],
        );
        let proxy = Proxy::start(discovering(discover(
            &dns,
            name,
            DnsQuery::Srv { name: name.into() },
        )));
        let admin = proxy.start_admin();
        let client = client();
        let expected = sorted(vec![(a.address(), 1), (b.address(), 3)]);
        wait_until("the SRV servers", || names_weights(&proxy) == expected).await;

        // Smooth weighted round robin: exactly 1:3 over a cycle of 4.
        let mut seen = HashMap::new();
        for _ in 0..40 {
            *seen
                .entry(get_ok(&client, &proxy).await.backend().to_string())
                .or_insert(0) += 1;
        }
        assert_eq!((seen.get("a"), seen.get("b")), (Some(&10), Some(&30)), "{seen:?}");
        assert_eq!(backup.requests(), 0, "a record of a lower priority is not used");

        // The admin API shows them as discovered, and the pool's discovery.
        let pool = send(client.get(format!("{admin}/api/v1/pools/{POOL}"))).await;
        let pool: serde_json::Value = serde_json::from_str(&pool.text()).expect("json");
        assert_eq!(pool["discover"]["dns"], name);
        assert_eq!(pool["discover"]["used"], 2);
        assert!(
            pool["servers"]
                .as_array()
                .expect("servers")
                .iter()
                .all(|s| s["discovered"] == true)
        );

        // A weight changed in DNS changes the weight in the pool, without a new server.
        let ids: Vec<u64> = members(&proxy).iter().map(|s| s.id).collect();
        dns.set_srv(
            name,
            &[
                (10, 2, a.addr.port(), "a.srv.test"),
                (10, 3, b.addr.port(), "b.srv.test"),
            ],
            &[("a.srv.test", ip(127, 0, 0, 1))],
        );
        let expected = sorted(vec![(a.address(), 2), (b.address(), 3)]);
        wait_until("the new weight", || names_weights(&proxy) == expected).await;
        assert_eq!(members(&proxy).iter().map(|s| s.id).collect::<Vec<_>>(), ids);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_capped_not_refused() {
    bounded(async {
        log();
        let dns = Dns::start().await;
        let name = "huge.test";
        // 600 addresses: too many for UDP (the answer comes over TCP) and above the cap of 512.
        let ips: Vec<Ipv4Addr> = (0..600u32).map(|i| Ipv4Addr::from(0x7f01_0000 + i)).collect();
        dns.set_a(name, &ips);
        let proxy = Proxy::start(discovering(discover(
            &dns,
            &format!("{name}:8080"),
            a_query(name, 8080),
        )));
        wait_until("512 servers", || members(&proxy).len() == 512).await;
        let lowest = members(&proxy).iter().map(|s| s.addr).min().expect("members");
        assert_eq!(lowest, SocketAddr::new(IpAddr::V4(ip(127, 1, 0, 0)), 8080));
        let asked = dns.queries();
        wait_until("more answers", || dns.queries() >= asked + 6).await;
        assert_eq!(members(&proxy).len(), 512);
        assert_eq!(log_lines(&["WARN", "DNS `huge.test:8080` names 600 servers"]), 1);
        proxy.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_discovered_servers_and_stop_discovery_when_it_is_gone() {
    bounded(async {
        let dns = Dns::start().await;
        let (_b2, _b3, port) = two_loopback_backends().await;
        let name = "reload.test";
        dns.set_a(name, &[ip(127, 0, 0, 2), ip(127, 0, 0, 3)]);
        let d = discover(&dns, &format!("{name}:{port}"), a_query(name, port));
        let proxy = Proxy::start(discovering(d.clone()));
        wait_until("both servers in the pool", || members(&proxy).len() == 2).await;
        let ids = |proxy: &Proxy| {
            let mut v: Vec<u64> = members(proxy).iter().map(|s| s.id).collect();
            v.sort();
            v
        };
        let before = ids(&proxy);

        // The same discovery with another interval: the servers stay as they are (no new
        // checks, counters kept), and the restarted task follows DNS.
        let mut slower = d.clone();
        slower.interval = Duration::from_millis(150);
        proxy
            .engine()
            .reload(discovering(slower), "test")
            .expect("reload");
        assert_eq!(ids(&proxy), before);
        dns.set_a(name, &[ip(127, 0, 0, 2)]);
        wait_until("the restarted task follows DNS", || members(&proxy).len() == 1).await;

        // Discovery removed from the pool: its servers go with it, and DNS no longer matters.
        let mut listed = discovering(d);
        listed.pools[0].discover = None;
        listed.pools[0].servers = vec![ringway::cli::server(&format!("127.0.0.3:{port}"))];
        proxy.engine().reload(listed, "test").expect("reload");
        assert_eq!(names(&proxy), vec![format!("127.0.0.3:{port}")]);
        dns.set_a(name, &[ip(127, 0, 0, 2), ip(127, 0, 0, 3)]);
        let asked = dns.queries();
        tokio::time::sleep(INTERVAL * 5).await;
        assert_eq!(dns.queries(), asked, "discovery stopped");
        assert_eq!(names(&proxy), vec![format!("127.0.0.3:{port}")]);
        assert!(!members(&proxy)[0].discovered.load(Ordering::Relaxed));
        proxy.stop().await;
    })
    .await;
}
