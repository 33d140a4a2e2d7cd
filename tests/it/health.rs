//! Active health checks, passive ejection and slow start, over real sockets: servers killed and
//! restarted under load, servers answering 500 or refusing, a server ramping back in.
//!
//! State is read in-process from the engine's snapshot (`Server::health()`, `is_ejected()`,
//! `ramp()`), not through the admin API. Every wait is bounded by a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::logs::{capture_logs, logged};
use crate::common::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ringway::config::{Balance, Config, ExpectStatus, HealthConfig, PassiveConfig};
use ringway::proxy::state::{Health, Server};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------------------------
// A server whose health answer and application answer can be changed, killed and restarted
// ---------------------------------------------------------------------------------------------

struct Answers {
    health: AtomicU16,
    app: AtomicU16,
    checks: AtomicUsize,
    requests: AtomicUsize,
}

/// An HTTP/1.1 server on 127.0.0.1: `GET /healthz` answers `health` (200 at first), anything
/// else answers `app` (200 at first) with `X-Backend: <name>`.
struct Upstream {
    name: &'static str,
    addr: SocketAddr,
    answers: Arc<Answers>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Upstream::serve(name, listener, None)
    }

    /// A server again on the address of a stopped one, with its counters.
    async fn restart(name: &'static str, addr: SocketAddr, answers: Arc<Answers>) -> Upstream {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {addr}: {e}");
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("cannot bind {addr} again: {e}"),
            }
        };
        Upstream::serve(name, listener, Some(answers))
    }

    fn serve(name: &'static str, listener: TcpListener, answers: Option<Arc<Answers>>) -> Upstream {
        let addr = listener.local_addr().expect("address");
        let answers = answers.unwrap_or_else(|| {
            Arc::new(Answers {
                health: AtomicU16::new(200),
                app: AtomicU16::new(200),
                checks: AtomicUsize::new(0),
                requests: AtomicUsize::new(0),
            })
        });
        let shared = answers.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let answers = shared.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let answers = answers.clone();
                        async move {
                            let status = if req.uri().path() == "/healthz" {
                                answers.checks.fetch_add(1, Ordering::SeqCst);
                                answers.health.load(Ordering::SeqCst)
                            } else {
                                answers.requests.fetch_add(1, Ordering::SeqCst);
                                answers.app.load(Ordering::SeqCst)
                            };
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                            resp.headers_mut()
                                .insert("x-backend", name.parse().expect("header value"));
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            name,
            addr,
            answers,
            task,
        }
    }

    fn address(&self) -> String {
        self.addr.to_string()
    }

    fn set_health(&self, status: u16) {
        self.answers.health.store(status, Ordering::SeqCst);
    }

    fn set_app(&self, status: u16) {
        self.answers.app.store(status, Ordering::SeqCst);
    }

    fn checks(&self) -> usize {
        self.answers.checks.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.answers.requests.load(Ordering::SeqCst)
    }

    /// Stops the server: its listener and every connection close before this returns.
    async fn kill(self) -> Arc<Answers> {
        let Upstream { task, answers, .. } = self;
        task.abort();
        let _ = task.await;
        answers
    }
}

// ---------------------------------------------------------------------------------------------
// Configurations and waits
// ---------------------------------------------------------------------------------------------

fn health(interval_ms: u64, rise: u32, fall: u32) -> HealthConfig {
    HealthConfig {
        path: "/healthz".into(),
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(interval_ms),
        rise,
        fall,
        expect: ExpectStatus::default(),
    }
}

fn pool_of(upstreams: &[&Upstream]) -> Config {
    one_pool(
        Balance::RoundRobin,
        &upstreams.iter().map(|u| u.address()).collect::<Vec<_>>(),
    )
}

/// Polls `ok` until it holds; returns how long that took. Panics with `what` after `limit`.
async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    poll_until(limit, || ok().then_some(()))
        .await
        .unwrap_or_else(|| panic!("{what}: not within {limit:?}"));
    start.elapsed()
}

/// Status and backend of one GET.
async fn get(client: &reqwest::Client, proxy: &Proxy, path: &str) -> (u16, Option<String>) {
    match client.get(proxy.url(path)).send().await {
        Ok(r) => {
            let backend = r
                .headers()
                .get("x-backend")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            (status, backend)
        }
        Err(e) => {
            eprintln!("request failed: {e}");
            (0, None)
        }
    }
}

/// Concurrent GETs until stopped; counts the answers and the failures (anything but 200).
struct Load {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<(usize, usize)>,
}

impl Load {
    fn start(proxy: &Proxy, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = JoinSet::new();
        for i in 0..clients {
            let (stop, url) = (stop.clone(), proxy.url(&format!("/load/{i}")));
            tasks.spawn(async move {
                let client = client();
                let (mut ok, mut failed) = (0, 0);
                while !stop.load(Ordering::SeqCst) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            ok += 1;
                        }
                        Ok(r) => {
                            eprintln!("load: status {}", r.status());
                            failed += 1;
                        }
                        Err(e) => {
                            eprintln!("load: {e}");
                            failed += 1;
                        }
                    }
                }
                (ok, failed)
            });
        }
        Load { stop, tasks }
    }

    async fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let (mut ok, mut failed) = (0, 0);
        while let Some(r) = self.tasks.join_next().await {
            let (o, f) = r.expect("load task");
            ok += o;
            failed += f;
        }
        (ok, failed)
    }
}

fn changes(s: &Server) -> u64 {
    s.health_changes.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// Active checks
// ---------------------------------------------------------------------------------------------

const INTERVAL_MS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_goes_down_in_time_and_comes_back_after_rise_passes() {
    capture_logs();
    bounded(async {
        let (a, b, c) = (
            Upstream::start("a").await,
            Upstream::start("b").await,
            Upstream::start("c").await,
        );
        let (rise, fall) = (2, 2);
        let interval = Duration::from_millis(INTERVAL_MS);
        let mut config = pool_of(&[&a, &b, &c]);
        config.pools[0].health = Some(health(INTERVAL_MS, rise, fall));
        config.pools[0].retries = 2;
        let proxy = Proxy::start(config);
        let sb = proxy.server(POOL, 1);
        for i in 0..3 {
            let s = proxy.server(POOL, i);
            wait_for("servers up", Duration::from_secs(5), || s.health() == Health::Up).await;
        }

        let load = Load::start(&proxy, 6);
        let served_before = b.requests();
        wait_for("b takes traffic", Duration::from_secs(5), || {
            b.requests() > served_before + 20
        })
        .await;
        let (b_addr, b_name) = (b.addr, b.name);
        let answers = b.kill().await;
        let down_after = wait_for("b down", Duration::from_secs(5), || sb.health() == Health::Down).await;
        let bound = interval * fall + interval;
        assert!(
            down_after <= bound,
            "marked down after {down_after:?}, more than interval × fall + interval = {bound:?}"
        );
        assert!(!sb.serving());
        let last = sb.last_check.lock().unwrap().clone().expect("a check result");
        assert!(!last.passed);
        assert_eq!(last.detail, "connection refused");

        // Back on the same port: up after `rise` passes, which take (rise - 1) intervals at least.
        let checks_before = answers.checks.load(Ordering::SeqCst);
        let b = Upstream::restart(b_name, b_addr, answers).await;
        let up_after = wait_for("b up again", Duration::from_secs(5), || sb.health() == Health::Up).await;
        assert!(
            b.checks() >= checks_before + rise as usize,
            "{} checks",
            b.checks()
        );
        assert!(
            up_after + Duration::from_millis(20) >= interval * (rise - 1),
            "up after {up_after:?}: sooner than {rise} passes allow"
        );
        let served_again = b.requests();
        wait_for("b takes traffic again", Duration::from_secs(5), || {
            b.requests() > served_again + 20
        })
        .await;
        let (ok, failed) = load.finish().await;
        assert_eq!(failed, 0, "no request may fail ({ok} succeeded)");
        assert!(ok > 100, "only {ok} requests ran");

        // Checking → up, up → down, down → up: three changes, each logged once.
        assert_eq!(changes(&sb), 3);
        let addr = b_addr.to_string();
        assert_eq!(logged(&[&addr, "is down (was up)", "2 checks failed"]).len(), 1);
        assert_eq!(logged(&[&addr, "is up (was down)", "2 checks passed"]).len(), 1);
        assert_eq!(logged(&[&addr, "is up (was checking)"]).len(), 1);
        proxy.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_servers_start_checking_and_take_no_traffic_until_they_pass() {
    bounded(async {
        let (a, c, d) = (
            Upstream::start("a").await,
            Upstream::start("c").await,
            Upstream::start("d").await,
        );
        let mut config = pool_of(&[&a]);
        config.pools[0].health = Some(health(INTERVAL_MS, 2, 100));
        let proxy = Proxy::start(config.clone());
        let sa = proxy.server(POOL, 0);
        assert_eq!(
            sa.health(),
            Health::Checking,
            "a new server is not trusted before a check"
        );
        let client = client();
        assert_eq!(get(&client, &proxy, "/").await.0, 503, "nothing passed yet");
        wait_for("a up", Duration::from_secs(5), || sa.health() == Health::Up).await;

        // A server added by a reload and one added at run time, failing their checks at first.
        c.set_health(503);
        d.set_health(503);
        config.pools[0].servers.push(ringway::cli::server(&c.address()));
        proxy.engine().reload(config, "test").expect("reload");
        let sc = proxy.server(POOL, 1);
        assert_eq!(sc.health(), Health::Checking);
        // A server added at run time, as the admin API does.
        let sd = Arc::new(Server::new("d".into(), d.address(), d.addr, 1, Health::Checking));
        sd.runtime_added.store(true, Ordering::SeqCst);
        {
            let shared = &proxy.engine().shared;
            let _changes = shared.changes.lock().unwrap();
            let pool = shared.snapshot.load().pools[POOL].clone();
            let mut servers = pool.members.load().servers.clone();
            servers.push(sd.clone());
            pool.set_members(servers);
        }
        wait_for("c checked", Duration::from_secs(5), || c.checks() >= 2).await;
        wait_for("d checked", Duration::from_secs(5), || d.checks() >= 1).await;
        for i in 0..30 {
            assert_eq!(
                get(&client, &proxy, &format!("/{i}")).await,
                (200, Some("a".into()))
            );
        }
        assert_eq!(
            sc.health(),
            Health::Checking,
            "failing checks, never up, fall not reached"
        );
        let last = sc.last_check.lock().unwrap().clone().expect("a check result");
        assert_eq!(last.detail, "expected 2xx, got 503");
        assert_eq!(sd.health(), Health::Checking);
        assert_eq!((c.requests(), d.requests()), (0, 0));

        c.set_health(200);
        d.set_health(200);
        wait_for("c up", Duration::from_secs(5), || sc.health() == Health::Up).await;
        wait_for("d up", Duration::from_secs(5), || sd.health() == Health::Up).await;
        let mut seen = std::collections::HashMap::new();
        for i in 0..30 {
            let (status, who) = get(&client, &proxy, &format!("/{i}")).await;
            assert_eq!(status, 200);
            *seen.entry(who.expect("backend")).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 3, "every server takes traffic once up: {seen:?}");
        // An idle connection the client opened and never used would hold the stop back.
        drop(client);
        proxy.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashed_pool_skips_a_down_server_as_it_skips_a_drained_one() {
    bounded(async {
        let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
        let mut config = one_pool(
            Balance::Maglev(ringway::cli::default_hash_settings()),
            &[a.address(), b.address()],
        );
        config.pools[0].health = Some(health(100, 1, 1));
        let proxy = Proxy::start(config);
        for i in 0..2 {
            let s = proxy.server(POOL, i);
            wait_for("servers up", Duration::from_secs(5), || s.health() == Health::Up).await;
        }
        let client = client();
        let (status, owner) = get(&client, &proxy, "/key/42").await;
        assert_eq!(status, 200);
        let owner = owner.expect("backend");
        let (down, other, index) = if owner == "a" { (&a, "b", 0) } else { (&b, "a", 1) };
        down.set_health(503);
        let s = proxy.server(POOL, index);
        wait_for("owner down", Duration::from_secs(5), || {
            s.health() == Health::Down
        })
        .await;
        for _ in 0..5 {
            assert_eq!(
                get(&client, &proxy, "/key/42").await,
                (200, Some(other.to_owned()))
            );
        }
        down.set_health(200);
        wait_for("owner up", Duration::from_secs(5), || s.health() == Health::Up).await;
        assert_eq!(get(&client, &proxy, "/key/42").await, (200, Some(owner)));
        drop(client);
        proxy.stop().await;
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Passive ejection
// ---------------------------------------------------------------------------------------------

fn passive(failures: u32, eject_ms: u64) -> Option<PassiveConfig> {
    Some(PassiveConfig {
        failures,
        eject: Duration::from_millis(eject_ms),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_ejects_after_failures_and_readmits_after_eject() {
    capture_logs();
    bounded(async {
        let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
        b.set_app(500);
        let mut config = pool_of(&[&a, &b]);
        config.pools[0].passive = passive(3, 1000);
        config.pools[0].retries = 0;
        let proxy = Proxy::start(config);
        let sb = proxy.server(POOL, 1);
        let client = client();
        // Sequential requests alternate a, b: b's third 500 ejects it, and no request reaches it
        // after that.
        let mut fives = 0;
        for i in 0..40 {
            let (status, _) = get(&client, &proxy, &format!("/{i}")).await;
            if status == 500 {
                fives += 1;
            }
        }
        assert_eq!(fives, 3, "exactly `failures` answers from b before its ejection");
        assert!(sb.is_ejected());
        let ejected_at = Instant::now();
        assert_eq!(b.requests(), 3);

        b.set_app(200);
        let waited = wait_for("b readmitted", Duration::from_secs(5), || !sb.is_ejected()).await;
        let after = ejected_at.elapsed();
        assert!(
            after >= Duration::from_millis(900) && waited <= Duration::from_millis(1500),
            "readmitted {after:?} after the ejection (eject = 1s, one tick of precision)"
        );
        for i in 0..10 {
            assert_eq!(get(&client, &proxy, &format!("/{i}")).await.0, 200);
        }
        assert!(b.requests() >= 8, "b takes traffic again");
        assert_eq!(changes(&sb), 2);
        let addr = b.address();
        assert_eq!(logged(&[&addr, "ejected: 3 failures in a row"]).len(), 1);
        assert_eq!(
            logged(&[&addr, "readmitted: ejection time of 1s is over"]).len(),
            1
        );
        // An idle connection the client opened and never used would hold the stop back.
        drop(client);
        proxy.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_server_is_ejected_and_requests_are_retried() {
    capture_logs();
    bounded(async {
        let a = Upstream::start("a").await;
        let dead = dead_addr();
        let mut config = one_pool(Balance::RoundRobin, &[a.address(), dead.clone()]);
        config.pools[0].passive = passive(2, 60_000);
        config.pools[0].retries = 1;
        let proxy = Proxy::start(config);
        let dead_server = proxy.server(POOL, 1);
        let client = client();
        for i in 0..20 {
            assert_eq!(get(&client, &proxy, &format!("/{i}")).await.0, 200);
        }
        assert!(dead_server.is_ejected());
        assert_eq!(
            dead_server.failures.load(Ordering::SeqCst),
            2,
            "no attempt after ejection"
        );
        // Upstream failures are logged at warn, once per server per 10 s.
        let lines = logged(&["WARN", &dead, "failed: connect"]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        // An idle connection the client opened and never used would hold the stop back.
        drop(client);
        proxy.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_eligible_server_is_never_ejected() {
    capture_logs();
    bounded(async {
        let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
        a.set_app(503);
        b.set_app(500);
        let mut config = pool_of(&[&a, &b]);
        config.pools[0].passive = passive(2, 60_000);
        config.pools[0].retries = 0;
        let proxy = Proxy::start(config);
        let (sa, sb) = (proxy.server(POOL, 0), proxy.server(POOL, 1));
        let client = client();
        for i in 0..20 {
            let (status, _) = get(&client, &proxy, &format!("/{i}")).await;
            assert!(status == 500 || status == 503, "{status}");
        }
        // One of them went first; the other is the last one serving and stays.
        assert!(sa.is_ejected() != sb.is_ejected(), "exactly one ejected");
        let (kept, kept_addr) = if sa.is_ejected() {
            (&sb, b.address())
        } else {
            (&sa, a.address())
        };
        assert!(kept.serving());
        assert!(kept.consecutive_failures.load(Ordering::SeqCst) >= 10);
        assert_eq!(changes(kept), 0);
        let lines = logged(&[&kept_addr, "not ejected after 2 failures in a row", "last server"]);
        assert_eq!(lines.len(), 1, "said once: {lines:?}");
        // A good answer ends the run of failures.
        if sa.is_ejected() {
            b.set_app(200)
        } else {
            a.set_app(200)
        };
        assert_eq!(get(&client, &proxy, "/ok").await.0, 200);
        assert_eq!(kept.consecutive_failures.load(Ordering::SeqCst), 0);
        // An idle connection the client opened and never used would hold the stop back.
        drop(client);
        proxy.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_check_readmits_an_ejected_server_at_once() {
    bounded(async {
        let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
        let mut config = pool_of(&[&a, &b]);
        config.pools[0].passive = passive(2, 60_000);
        config.pools[0].health = Some(health(INTERVAL_MS, 1, 3));
        config.pools[0].retries = 0;
        let proxy = Proxy::start(config);
        let sb = proxy.server(POOL, 1);
        wait_for("b up", Duration::from_secs(5), || sb.health() == Health::Up).await;
        wait_for("a up", Duration::from_secs(5), || {
            proxy.server(POOL, 0).health() == Health::Up
        })
        .await;
        // The application fails while the health endpoint says all is well.
        b.set_app(502);
        let client = client();
        for i in 0..10 {
            get(&client, &proxy, &format!("/{i}")).await;
            if sb.is_ejected() {
                break;
            }
        }
        assert!(sb.is_ejected());
        let waited = wait_for("b readmitted by a check", Duration::from_secs(5), || {
            !sb.is_ejected()
        })
        .await;
        assert!(
            waited <= Duration::from_millis(INTERVAL_MS) + Duration::from_millis(300),
            "readmitted after {waited:?}, not within one check interval"
        );
        // An idle connection the client opened and never used would hold the stop back.
        drop(client);
        proxy.stop().await;
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Slow start
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_server_ramps_from_a_small_share_to_its_full_share() {
    bounded(async {
        let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
        let mut config = pool_of(&[&a, &b]);
        config.pools[0].health = Some(health(100, 1, 1));
        let ramp = Duration::from_secs(2);
        config.pools[0].slow_start = Some(ramp);
        let proxy = Proxy::start(config);
        let (sa, sb) = (proxy.server(POOL, 0), proxy.server(POOL, 1));
        wait_for("a up", Duration::from_secs(5), || sa.health() == Health::Up).await;
        wait_for("b up", Duration::from_secs(5), || sb.health() == Health::Up).await;
        assert_eq!(sb.ramp(), 1000, "servers up at Ringway's start do not ramp");

        b.set_health(500);
        wait_for("b down", Duration::from_secs(5), || sb.health() == Health::Down).await;
        b.set_health(200);
        wait_for("b up again", Duration::from_secs(5), || sb.health() == Health::Up).await;
        let back = Instant::now();
        assert!(sb.ramp() < 1000, "b ramps");

        // Requests in windows of half a second over the ramp and after it.
        let client = client();
        let windows = 6;
        let width = Duration::from_millis(500);
        let mut counts = vec![(0usize, 0usize); windows];
        loop {
            let at = back.elapsed();
            let w = (at.as_nanos() / width.as_nanos()) as usize;
            if w >= windows {
                break;
            }
            let (status, who) = get(&client, &proxy, "/w").await;
            assert_eq!(status, 200);
            counts[w].0 += 1;
            if who.as_deref() == Some("b") {
                counts[w].1 += 1;
            }
        }
        let shares: Vec<f64> = counts
            .iter()
            .map(|&(n, from_b)| from_b as f64 / n.max(1) as f64)
            .collect();
        eprintln!("b's share per half second: {shares:.2?} of {counts:?}");
        assert!(
            counts.iter().all(|&(n, _)| n >= 20),
            "too few requests: {counts:?}"
        );
        assert!(shares[0] < 0.2, "b starts small: {shares:.2?}");
        assert!(shares[5] > 0.4, "b ends at its full share (0.5): {shares:.2?}");
        assert!(
            shares[0] < shares[3] && shares[3] < shares[5],
            "b's share grows: {shares:.2?}"
        );
        assert_eq!(sb.ramp(), 1000);
        // An idle connection the client opened and never used would hold the stop back.
        drop(client);
        proxy.stop().await;
    })
    .await
}
