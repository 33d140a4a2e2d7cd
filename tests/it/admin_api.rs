//! The admin REST API over real sockets: every endpoint and its statuses, server changes under
//! load (drain, weight, add, delete), runtime changes across a reload, the token, bad input,
//! and an admin listener that survives slow and garbage clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use ringway::config::{Balance, Config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// [`one_pool`] with the admin interface on an ephemeral port.
fn config(balance: Balance, servers: &[String]) -> Config {
    let mut c = one_pool(balance, servers);
    c.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    // No token in these tests (the token test runs the binary with one).
    c.admin.token_env = "RINGWAY_TEST_TOKEN_NEVER_SET".into();
    c
}

/// An answer of the admin API: status, headers, JSON body (Null when not JSON).
struct Api {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

async fn call(client: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> Api {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = send(req).await;
    Api {
        status: r.status,
        json: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        headers: r.headers,
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Api {
    call(client, "GET", url, None).await
}

fn error_message(a: &Api) -> &str {
    assert_eq!(a.json["error"]["status"], a.status, "{}", a.json);
    a.json["error"]["message"].as_str().expect("error message")
}

#[tokio::test]
async fn every_endpoint_answers_with_its_status() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let proxy = Proxy::start(config(Balance::RoundRobin, &addrs(&[&a, &b])));
        let admin = proxy.start_admin();
        let client = client();
        assert_eq!(get_host(&client, &proxy.url("/x"), "h").await.status, 200);

        let page = send(client.get(format!("{admin}/"))).await;
        assert_eq!(page.status, 200);
        assert!(
            page.header("content-type")
                .is_some_and(|c| c.starts_with("text/html"))
        );
        assert_eq!(get(&client, &format!("{admin}/healthz")).await.status, 200);
        let m = send(client.get(format!("{admin}/metrics"))).await;
        assert_eq!(m.status, 200);
        assert!(m.text().contains("ringway_requests_total"), "{}", m.text());

        let status = get(&client, &format!("{admin}/api/v1/status")).await;
        assert_eq!(status.status, 200);
        assert_eq!(status.json["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            status.json["started_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert_eq!(status.json["listeners"][0]["name"], LISTENER);
        assert_eq!(status.json["listeners"][0]["bind"], proxy.addr.to_string());
        assert_eq!(status.json["routes"][0]["name"], "all");
        assert_eq!(
            status.json["routes"][0]["target"],
            json!({"kind": "pool", "pool": POOL})
        );
        assert_eq!(status.json["routes"][0]["host"], Value::Null);
        assert_eq!(status.json["pools"][0]["name"], POOL);

        let routes = get(&client, &format!("{admin}/api/v1/routes")).await;
        assert_eq!(routes.status, 200);
        assert_eq!(routes.json["routes"][0]["path"], "/");

        let pools = get(&client, &format!("{admin}/api/v1/pools")).await;
        assert_eq!(pools.status, 200);
        let pool = &pools.json["pools"][0];
        assert_eq!(pool["balance"], json!({"algorithm": "round_robin"}));
        assert_eq!(pool["description"], "smooth weighted round robin");
        assert_eq!(pool["retries"], 2);
        assert_eq!(pool["health_check"], Value::Null);
        assert!(pool["history"].is_array());
        let server = &pool["servers"][0];
        for key in [
            "name",
            "address",
            "status",
            "state",
            "health",
            "ejected",
            "weight",
            "effective_weight",
            "ramp",
            "added_at_runtime",
            "removing",
            "last_check",
            "in_flight",
            "requests",
            "failures",
            "requests_per_s",
            "error_5xx_ratio",
            "p50_s",
            "p99_s",
        ] {
            assert!(server.get(key).is_some(), "no {key} in {server}");
        }
        assert_eq!(server["status"], "up");
        assert_eq!(server["ramp"], 1.0);

        let one = get(&client, &format!("{admin}/api/v1/pools/{POOL}")).await;
        assert_eq!(one.status, 200);
        assert_eq!(one.json["servers"].as_array().map(Vec::len), Some(2));
        let list = get(&client, &format!("{admin}/api/v1/pools/{POOL}/servers")).await;
        assert_eq!(list.json["servers"].as_array().map(Vec::len), Some(2));
        let s = get(
            &client,
            &format!("{admin}/api/v1/pools/{POOL}/servers/{}", a.address()),
        )
        .await;
        assert_eq!(s.status, 200);
        assert_eq!(s.json["address"], a.address());

        // Not found, wrong method, trailing slash.
        let r = get(&client, &format!("{admin}/api/v1/pools/nope")).await;
        assert_eq!(r.status, 404);
        assert!(error_message(&r).contains("nope"));
        assert_eq!(get(&client, &format!("{admin}/api/v1/pools/")).await.status, 404);
        assert_eq!(get(&client, &format!("{admin}/api/v2/x")).await.status, 404);
        let r = call(&client, "DELETE", &format!("{admin}/api/v1/pools"), None).await;
        assert_eq!(r.status, 405);
        assert_eq!(r.headers["allow"], "GET, HEAD");
        let r = get(&client, &format!("{admin}/api/v1/reload")).await;
        assert_eq!(r.status, 405);
        assert_eq!(r.headers["allow"], "POST");
        let r = call(
            &client,
            "POST",
            &format!("{admin}/api/v1/pools/{POOL}/servers/x"),
            None,
        )
        .await;
        assert_eq!(r.headers["allow"], "GET, HEAD, PATCH, DELETE");

        // A round-robin pool has no ring.
        let r = get(&client, &format!("{admin}/api/v1/pools/{POOL}/ring")).await;
        assert_eq!(r.status, 409);
        assert_eq!(
            error_message(&r),
            "pool `p` is not hashed (balance = round_robin)"
        );

        // A route without [route.maintenance] has no switch (tests/maintenance.rs has the rest).
        let body = json!({"enabled": true, "retry_after": "30m"});
        let r = call(
            &client,
            "PUT",
            &format!("{admin}/api/v1/routes/all/maintenance"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(r.status, 409);
        let r = call(
            &client,
            "PUT",
            &format!("{admin}/api/v1/routes/none/maintenance"),
            Some(body),
        )
        .await;
        assert_eq!(r.status, 404);

        let c = get(&client, &format!("{admin}/api/v1/cluster")).await;
        assert_eq!(c.status, 200);
        assert_eq!(c.json["mode"], "standalone");
        assert_eq!(
            c.json["instances"][0]["admin"],
            admin.trim_start_matches("http://")
        );
        assert_eq!(c.json["instances"][0]["health"], "ok");

        // This engine was not started from a file.
        let r = call(&client, "POST", &format!("{admin}/api/v1/reload"), None).await;
        assert_eq!(r.status, 422);
    })
    .await
}

#[tokio::test]
async fn hashed_pools_show_their_ring_and_plan_moves() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let c = Backend::start("c").await;
        let mut cfg = config(
            Balance::ConsistentHash(ringway::cli::default_hash_settings()),
            &addrs(&[&a, &b, &c]),
        );
        cfg.pools[0].servers[2].name = "c".into();
        let proxy = Proxy::start(cfg);
        let admin = proxy.start_admin();
        let client = client();
        let ring = get(&client, &format!("{admin}/api/v1/pools/{POOL}/ring")).await;
        assert_eq!(ring.status, 200, "{}", ring.json);
        assert_eq!(ring.json["algorithm"], "consistent_hash");
        assert_eq!(ring.json["hash"], "xxh3");
        // One row per point, and the wrap-around row at 0 first (as `ringway ring` prints it).
        assert_eq!(
            ring.json["partitions"].as_array().map(Vec::len),
            Some(3 * 160 + 1)
        );
        assert_eq!(ring.json["partitions"][0]["start"], "0");
        let shares = ring.json["shares"].as_array().expect("shares");
        let total: f64 = shares.iter().map(|s| s["share"].as_f64().expect("share")).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert!(ring.json["partitions"][0]["start"].is_string());
        let share_of_c = shares
            .iter()
            .find(|s| s["server"] == "c")
            .and_then(|s| s["share"].as_f64())
            .expect("c's share");

        let url = format!("{admin}/api/v1/pools/{POOL}/ring/plan");
        let plan = call(&client, "POST", &url, Some(json!({"remove": ["c"]}))).await;
        assert_eq!(plan.status, 200, "{}", plan.json);
        // Exactly what c served moves, and only away from c.
        assert!((plan.json["moved_share"].as_f64().expect("moved") - share_of_c).abs() < 1e-9);
        assert!(
            plan.json["moves"]
                .as_array()
                .expect("moves")
                .iter()
                .all(|m| m["from"] == "c")
        );
        assert_eq!(plan.json["after"].as_array().map(Vec::len), Some(2));
        let plan = call(&client, "POST", &url, Some(json!({"add": ["d"]}))).await;
        assert_eq!(plan.status, 200);
        assert!(
            plan.json["moves"]
                .as_array()
                .expect("moves")
                .iter()
                .all(|m| m["to"] == "d")
        );

        let r = call(&client, "POST", &url, Some(json!({"remove": ["zz", "c"]}))).await;
        assert_eq!(r.status, 422);
        let msg = error_message(&r);
        assert!(
            msg.contains("`zz`") && msg.contains("`c`") && msg.contains(&a.address()),
            "{msg}"
        );
        let r = call(&client, "POST", &url, Some(json!({"add": ["c"]}))).await;
        assert_eq!(r.status, 422, "{}", r.json);
        let r = call(&client, "POST", &url, Some(json!({"remove": ["c"], "move": 1}))).await;
        assert_eq!(r.status, 400);
        assert!(error_message(&r).contains("unknown field `move`"));
    })
    .await
}

#[tokio::test]
async fn drain_under_load_fails_nothing_and_sends_nothing_new() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let proxy = Proxy::start(config(Balance::RoundRobin, &addrs(&[&a, &b])));
        let admin = proxy.start_admin();
        let drained = proxy.server(POOL, 1);
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let mut load = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (stop, failed, done, url) = (stop.clone(), failed.clone(), done.clone(), proxy.url("/load"));
            load.spawn(async move {
                let client = client();
                while !stop.load(Ordering::SeqCst) {
                    let ok = match client.get(&url).send().await {
                        Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if !ok {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        b.wait_requests(50).await;
        let client = client();
        let url = format!("{admin}/api/v1/pools/{POOL}/servers/{}", b.address());
        let r = call(&client, "PATCH", &url, Some(json!({"state": "drain"}))).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["state"], "drain");
        assert_eq!(r.json["status"], "drain");
        // Every request given to `b` was picked before the call returned.
        let picked = drained.requests.load(Ordering::SeqCst);
        let after = done.load(Ordering::SeqCst);
        poll_until(Duration::from_secs(10), || {
            (done.load(Ordering::SeqCst) >= after + 400).then_some(())
        })
        .await
        .expect("load goes on");
        stop.store(true, Ordering::SeqCst);
        while load.join_next().await.is_some() {}
        assert_eq!(failed.load(Ordering::SeqCst), 0, "failed requests");
        assert_eq!(
            drained.requests.load(Ordering::SeqCst),
            picked,
            "picked after the drain"
        );
        assert_eq!(
            b.requests() as u64,
            picked,
            "requests reaching the drained server"
        );
        assert_eq!(drained.in_flight.load(Ordering::SeqCst), 0);

        // Back to ready: it takes traffic again.
        let r = call(&client, "PATCH", &url, Some(json!({"state": "ready"}))).await;
        assert_eq!(r.json["status"], "up");
        let before = b.requests();
        for _ in 0..4 {
            assert_eq!(send(client.get(proxy.url("/x"))).await.status, 200);
        }
        assert_eq!(b.requests(), before + 2);
    })
    .await
}

#[tokio::test]
async fn weight_applies_at_once() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let proxy = Proxy::start(config(Balance::RoundRobin, &addrs(&[&a, &b])));
        let admin = proxy.start_admin();
        let client = client();
        let url = format!("{admin}/api/v1/pools/{POOL}/servers/{}", a.address());
        let r = call(&client, "PATCH", &url, Some(json!({"weight": 3}))).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["weight"], 3);
        let (a0, b0) = (a.requests(), b.requests());
        for _ in 0..40 {
            assert_eq!(send(client.get(proxy.url("/w"))).await.status, 200);
        }
        assert_eq!((a.requests() - a0, b.requests() - b0), (30, 10));
    })
    .await
}

#[tokio::test]
async fn post_adds_a_server_that_takes_traffic() {
    bounded(async {
        let a = Backend::start("a").await;
        let c = Backend::start("c").await;
        let proxy = Proxy::start(config(Balance::RoundRobin, &addrs(&[&a])));
        let admin = proxy.start_admin();
        let client = client();
        let url = format!("{admin}/api/v1/pools/{POOL}/servers");
        let r = call(
            &client,
            "POST",
            &url,
            Some(json!({"address": c.address(), "name": "c", "weight": 1})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.json);
        assert_eq!(r.headers["location"], format!("/api/v1/pools/{POOL}/servers/c"));
        assert_eq!(r.json["name"], "c");
        assert_eq!(r.json["added_at_runtime"], true);
        assert_eq!(r.json["health"], "up");
        let seen = get(
            &client,
            &format!("{admin}{}", r.headers["location"].to_str().expect("text")),
        )
        .await;
        assert_eq!(seen.status, 200);
        for _ in 0..4 {
            assert_eq!(send(client.get(proxy.url("/x"))).await.status, 200);
        }
        assert_eq!(c.requests(), 2);

        // The same name or the same address again: 409, nothing added.
        let r = call(
            &client,
            "POST",
            &url,
            Some(json!({"address": a.address(), "name": "c"})),
        )
        .await;
        assert_eq!(r.status, 409);
        assert!(error_message(&r).contains("named `c`"));
        let r = call(
            &client,
            "POST",
            &url,
            Some(json!({"address": c.address(), "name": "other"})),
        )
        .await;
        assert_eq!(r.status, 409);
        // The name defaults to the address.
        let d = Backend::start("d").await;
        let r = call(&client, "POST", &url, Some(json!({"address": d.address()}))).await;
        assert_eq!(r.status, 201);
        assert_eq!(r.json["name"], d.address());
        let pool = get(&client, &format!("{admin}/api/v1/pools/{POOL}")).await;
        assert_eq!(pool.json["servers"].as_array().map(Vec::len), Some(3));
    })
    .await
}

#[tokio::test]
async fn delete_removes_a_server_after_its_last_request() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let proxy = Proxy::start(config(Balance::RoundRobin, &addrs(&[&a, &b])));
        let admin = proxy.start_admin();
        let client = client();
        b.hold();
        // Round robin: of two requests, one waits on `b`.
        let first = tokio::spawn(send(client.get(proxy.url("/1"))));
        let second = tokio::spawn(send(client.get(proxy.url("/2"))));
        b.wait_requests(1).await;
        let url = format!("{admin}/api/v1/pools/{POOL}/servers/{}", b.address());
        let r = call(&client, "DELETE", &url, None).await;
        assert_eq!(r.status, 202, "{}", r.json);
        assert_eq!(r.json["status"], "removing");
        assert_eq!(r.json["removing"], true);
        // Still listed while its request runs; no new request reaches it.
        let listed = get(&client, &url).await;
        assert_eq!(listed.status, 200);
        assert_eq!(listed.json["status"], "removing");
        assert_eq!(listed.json["in_flight"], 1);
        for _ in 0..3 {
            assert_eq!(send(client.get(proxy.url("/x"))).await.backend(), "a");
        }
        // A removing server cannot be changed.
        let r = call(&client, "PATCH", &url, Some(json!({"state": "ready"}))).await;
        assert_eq!(r.status, 409);
        b.release();
        for t in [first, second] {
            assert_eq!(t.await.expect("request").status, 200);
        }
        let mut gone = false;
        for _ in 0..200 {
            if get(&client, &url).await.status == 404 {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the server was not removed after its last request");
        let pool = get(&client, &format!("{admin}/api/v1/pools/{POOL}")).await;
        assert_eq!(pool.json["servers"].as_array().map(Vec::len), Some(1));
        assert_eq!(b.requests(), 1);
    })
    .await
}

#[tokio::test]
async fn runtime_changes_survive_a_reload() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let c = Backend::start("c").await;
        let dir = std::env::temp_dir().join(format!("ringway-admin-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ringway.toml");
        let text = format!(
            "workers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"RINGWAY_TEST_TOKEN_NEVER_SET\"\n\
             [log]\naccess = \"off\"\n[[listener]]\nname = \"{LISTENER}\"\nbind = \"127.0.0.1:0\"\n\
             [[route]]\nname = \"all\"\npool = \"{POOL}\"\n[pool.{POOL}]\nservers = [\"{}\", \"{}\"]\n",
            a.address(),
            b.address()
        );
        std::fs::write(&path, &text).expect("write config");
        let cfg = ringway::config::load(&path).expect("config");
        let proxy = Proxy::start_from(cfg, Some(path.clone()));
        let admin = proxy.start_admin();
        let client = client();
        let servers = format!("{admin}/api/v1/pools/{POOL}/servers");
        let r = call(
            &client,
            "PATCH",
            &format!("{servers}/{}", a.address()),
            Some(json!({"state": "drain"})),
        )
        .await;
        assert_eq!(r.status, 200);
        let r = call(
            &client,
            "PATCH",
            &format!("{servers}/{}", b.address()),
            Some(json!({"weight": 7})),
        )
        .await;
        assert_eq!(r.status, 200);
        let r = call(
            &client,
            "POST",
            &servers,
            Some(json!({"address": c.address(), "name": "c"})),
        )
        .await;
        assert_eq!(r.status, 201);

        let r = call(&client, "POST", &format!("{admin}/api/v1/reload"), None).await;
        assert_eq!(r.status, 200, "{}", r.json);
        let pool = get(&client, &format!("{admin}/api/v1/pools/{POOL}")).await;
        let by_name = |n: &str| {
            pool.json["servers"]
                .as_array()
                .expect("servers")
                .iter()
                .find(|s| s["name"] == n)
                .cloned()
                .unwrap_or_else(|| panic!("no server {n} in {}", pool.json))
        };
        assert_eq!(by_name(&a.address())["state"], "drain");
        assert_eq!(by_name(&b.address())["weight"], 7);
        assert_eq!(by_name("c")["added_at_runtime"], true);
        for _ in 0..8 {
            assert_ne!(send(client.get(proxy.url("/x"))).await.backend(), "a");
        }
        assert!(c.requests() > 0);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let proxy = Proxy::start(config(Balance::RoundRobin, &addrs(&[&a, &b])));
        let admin = proxy.start_admin();
        let client = client();
        let pool_url = format!("{admin}/api/v1/pools/{POOL}");
        let before = get(&client, &pool_url).await.json["servers"].clone();
        let server = format!("{pool_url}/servers/{}", a.address());
        let servers = format!("{pool_url}/servers");
        let raw = |method: &str, url: &str, ct: &str, body: String| {
            let req = client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                    url,
                )
                .header("content-type", ct)
                .body(body);
            async move {
                let r = send(req).await;
                Api {
                    status: r.status,
                    json: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
                    headers: r.headers,
                }
            }
        };
        let cases: Vec<(Api, u16, &str)> = vec![
            (
                raw("PATCH", &server, "application/json", "{\"state\": ".into()).await,
                400,
                "invalid JSON",
            ),
            (
                raw(
                    "PATCH",
                    &server,
                    "application/json",
                    "{\"colour\": \"red\"}".into(),
                )
                .await,
                400,
                "unknown field `colour`",
            ),
            (
                raw(
                    "PATCH",
                    &server,
                    "application/json",
                    "{\"weight\": \"heavy\"}".into(),
                )
                .await,
                400,
                "invalid type",
            ),
            (
                raw("PATCH", &server, "text/plain", "{\"state\": \"drain\"}".into()).await,
                415,
                "Content-Type: application/json",
            ),
            (
                raw(
                    "PATCH",
                    &server,
                    "application/json",
                    format!("{{\"state\": \"drain\", \"x\": \"{}\"}}", "y".repeat(70_000)),
                )
                .await,
                413,
                "larger than 65536",
            ),
            (
                call(
                    &client,
                    "PATCH",
                    &format!("{pool_url}/servers/nobody"),
                    Some(json!({"state": "drain"})),
                )
                .await,
                404,
                "no server `nobody`",
            ),
            (
                call(
                    &client,
                    "PATCH",
                    &format!("{admin}/api/v1/pools/nopool/servers/x"),
                    Some(json!({"state": "drain"})),
                )
                .await,
                404,
                "no pool `nopool`",
            ),
            (
                call(&client, "PATCH", &server, Some(json!({"weight": 0}))).await,
                422,
                "between 1 and 256",
            ),
            (
                call(&client, "PATCH", &server, Some(json!({"weight": 257}))).await,
                422,
                "between 1 and 256",
            ),
            (
                call(
                    &client,
                    "PATCH",
                    &server,
                    Some(json!({"state": "drain", "weight": -3})),
                )
                .await,
                422,
                "between 1 and 256",
            ),
            (
                call(
                    &client,
                    "PATCH",
                    &server,
                    Some(json!({"state": "off", "weight": 2})),
                )
                .await,
                422,
                "state must be",
            ),
            (
                call(&client, "PATCH", &server, Some(json!({}))).await,
                422,
                "nothing to change",
            ),
            (
                call(&client, "POST", &servers, Some(json!({"address": "no-port"}))).await,
                422,
                "has no port",
            ),
            (
                call(
                    &client,
                    "POST",
                    &servers,
                    Some(json!({"address": "127.0.0.1:99999"})),
                )
                .await,
                422,
                "port `99999`",
            ),
            (
                call(
                    &client,
                    "POST",
                    &servers,
                    Some(json!({"address": "127.0.0.1:1", "name": "a b"})),
                )
                .await,
                422,
                "server name",
            ),
            (
                call(
                    &client,
                    "POST",
                    &servers,
                    Some(json!({"address": "127.0.0.1:1", "weight": 300})),
                )
                .await,
                422,
                "between 1 and 256",
            ),
            (
                call(&client, "POST", &servers, Some(json!({"name": "x"}))).await,
                400,
                "missing field `address`",
            ),
            (
                call(
                    &client,
                    "POST",
                    &servers,
                    Some(json!({"address": "127.0.0.1:1", "name": a.address()})),
                )
                .await,
                409,
                "already has a server named",
            ),
            (
                call(
                    &client,
                    "POST",
                    &format!("{admin}/api/v1/pools/nopool/servers"),
                    Some(json!({"address": "127.0.0.1:1"})),
                )
                .await,
                404,
                "no pool",
            ),
            (
                call(&client, "DELETE", &format!("{pool_url}/servers/nobody"), None).await,
                404,
                "no server",
            ),
        ];
        for (i, (answer, status, words)) in cases.iter().enumerate() {
            assert_eq!(answer.status, *status, "case {i}: {}", answer.json);
            let msg = error_message(answer);
            assert!(msg.contains(words), "case {i}: `{msg}` does not say `{words}`");
        }
        let after = get(&client, &pool_url).await.json["servers"].clone();
        let strip = |v: &Value| -> Vec<(Value, Value, Value)> {
            v.as_array()
                .expect("servers")
                .iter()
                .map(|s| (s["name"].clone(), s["state"].clone(), s["weight"].clone()))
                .collect()
        };
        assert_eq!(strip(&after), strip(&before));
    })
    .await
}

#[tokio::test]
async fn slow_and_garbage_clients_do_not_stop_the_admin() {
    bounded(async {
        let a = Backend::start("a").await;
        let proxy = Proxy::start(config(Balance::RoundRobin, &addrs(&[&a])));
        let admin = proxy.start_admin();
        let addr: SocketAddr = admin.trim_start_matches("http://").parse().expect("address");
        // Slowloris: many connections each holding half a request head.
        let mut slow = Vec::new();
        for _ in 0..50 {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .expect("write");
            slow.push(s);
        }
        // Garbage: answered 400 (or closed), never a crash.
        let out = raw_exchange(
            addr,
            b"\x16\x03\x01\x00\xff\x01garbage\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(out.closed, "{out:?}");
        assert_eq!(out.status, Some(400), "{out:?}");
        let client = client();
        for _ in 0..5 {
            assert_eq!(get(&client, &format!("{admin}/healthz")).await.status, 200);
            assert_eq!(get(&client, &format!("{admin}/api/v1/pools")).await.status, 200);
        }
        // The slow connections are still open and get nothing until their heads end.
        let mut s = slow.pop().expect("a slow connection");
        s.write_all(b"1\r\n\r\n").await.expect("write");
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.expect("answer");
        assert_eq!(&buf, b"HTTP/1.1 200");
        // The others are cut off once the 10 s header timeout has passed.
        let mut s = slow.pop().expect("a slow connection");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a slow request head held its connection for 15 s");
    })
    .await
}

#[tokio::test]
async fn mutating_calls_need_the_token_when_one_is_set() {
    use tokio::io::AsyncBufReadExt;
    bounded(async {
        let a = Backend::start("a").await;
        let dir = std::env::temp_dir().join(format!("ringway-admin-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("ringway.toml");
        let text = format!(
            "workers = 1\nshutdown_grace = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n\
             [[listener]]\nname = \"{LISTENER}\"\nbind = \"127.0.0.1:0\"\n\
             [[route]]\nname = \"all\"\npool = \"{POOL}\"\n[pool.{POOL}]\nservers = [\"{}\"]\n",
            a.address()
        );
        std::fs::write(&path, &text).expect("write config");
        let mut child = ringway_command()
            .env("RINGWAY_ADMIN_TOKEN", "s3cret-token")
            .arg("run")
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ringway run");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let admin = loop {
            let line = lines.next_line().await.expect("stderr").expect("ringway exited early");
            if let Some(a) = address_after(&line, "admin interface on http://") {
                break format!("http://{a}");
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let client = client();
        let url = format!("{admin}/api/v1/pools/{POOL}/servers/{}", a.address());
        let patch = |token: Option<&str>| {
            let mut req = client
                .patch(&url)
                .header("content-type", "application/json")
                .body(json!({"state": "drain"}).to_string());
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            send(req)
        };
        for token in [None, Some("wrong"), Some("s3cret-token-and-more")] {
            let r = patch(token).await;
            assert_eq!(r.status, 401, "{token:?}: {}", r.text());
            assert!(r.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")));
            let now = get(&client, &url).await;
            assert_eq!(now.status, 200, "GETs need no token");
            assert_eq!(now.json["state"], "ready", "changed without the token");
        }
        let r = send(client.post(format!("{admin}/api/v1/reload"))).await;
        assert_eq!(r.status, 401);
        let r = send(client.delete(&url)).await;
        assert_eq!(r.status, 401);
        // A ring plan changes nothing and needs no token (this pool is not hashed: 409).
        let plan = client
            .post(format!("{admin}/api/v1/pools/{POOL}/ring/plan"))
            .header("content-type", "application/json")
            .body("{}");
        assert_eq!(send(plan).await.status, 409);
        let r = patch(Some("s3cret-token")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(get(&client, &url).await.json["state"], "drain");
        let _ = child.kill().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}
