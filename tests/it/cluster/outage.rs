//! etcd failing under the fleet: one member lost (nothing changes), the whole store cut off or
//! stopped (the instances serve their last state, admin writes answer 503 and change nothing,
//! an instance restarted meanwhile starts from its cache, and everyone converges when etcd is
//! back, changes made with `etcdctl` meanwhile included), an etcd that never answers (writes
//! bounded by the timeout, nothing else slowed), and a compaction while an instance was away.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// Reads (admin GETs, proxied requests) must answer at once whatever etcd does.
const AT_ONCE: Duration = Duration::from_millis(300);

/// The answer to a write etcd did not take: 503 within the timeout and a little, with the
/// spec's words.
fn assert_refused(r: &Reply, took: Duration, what: &str) {
    assert_eq!(r.status, 503, "{what} with etcd away: {}", r.text());
    assert!(
        took <= ETCD_TIMEOUT + Duration::from_secs(1),
        "{what} took {took:?}"
    );
    let text = r.text();
    assert!(
        text.contains("etcd did not take the change") && text.contains("nothing was applied"),
        "{what}: {text}"
    );
}

/// One member of three killed (the leader, the worst of them): requests, admin writes through
/// every instance (200, applied everywhere within a second) and reads go on as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn one_etcd_member_lost_changes_nothing() {
    bounded_for(CLUSTER_TEST, async {
        let mut fleet = Fleet::start().await;
        let load = fleet.load(&[0, 1, 2]);
        load.wait_more(100).await;
        let leader = fleet.etcd.leader().await;
        fleet.etcd.kill_member(leader);
        fleet.etcd.wait_running_healthy().await;

        let writes = [
            (0, "s1", json!({"state": "drain"})),
            (1, "s2", json!({"weight": 3})),
            (2, "s1", json!({"state": "ready"})),
            (0, "s3", json!({"weight": 2})),
        ];
        for (i, server, body) in writes {
            let start = Instant::now();
            let r = fleet.inst[i].patch_server("p", server, body.clone()).await;
            let took = start.elapsed();
            assert_eq!(
                r.status,
                200,
                "PATCH {server} {body} through {}: {}",
                NAMES[i],
                r.text()
            );
            assert!(took < ETCD_TIMEOUT, "PATCH through {} took {took:?}", NAMES[i]);
            let (field, want) = body.as_object().and_then(|o| o.iter().next()).expect("one field");
            let (field, want) = (field.clone(), want.clone());
            fleet
                .wait_server(&[0, 1, 2], "p", server, APPLY_WITHIN, |st, v| {
                    st == 200 && v[&field] == want
                })
                .await;
        }
        for inst in &fleet.inst {
            let v = inst.cluster().await;
            assert_eq!(v["etcd"]["connected"], true, "{}: {v}", inst.name);
        }
        fleet.etcd.start_member(leader).await;
        let r = fleet.b().patch_server("p", "s2", json!({"weight": 1})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        fleet
            .wait_server(&[0, 1, 2], "p", "s2", APPLY_WITHIN, |st, v| {
                st == 200 && v["weight"] == 1
            })
            .await;
        load.wait_more(100).await;
        let (_, failures) = load.stop().await;
        assert!(
            failures.is_empty(),
            "failed requests: {:?}",
            &failures[..failures.len().min(5)]
        );
    })
    .await
}

/// The instances lose etcd while `etcdctl` still reaches it (every relay refuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn cut_off_from_etcd_the_fleet_serves_and_converges() {
    bounded_for(CLUSTER_TEST, outage(Outage::Cut)).await
}

/// Every etcd member stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn etcd_stopped_the_fleet_serves_and_converges() {
    bounded_for(CLUSTER_TEST, outage(Outage::Stopped)).await
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outage {
    /// The relays refuse: etcd runs, the instances cannot reach it.
    Cut,
    /// The members are stopped.
    Stopped,
}

/// A published config and a drain in place, C killed in the middle of a burst of changes; then
/// etcd goes away: A and B serve the same answers, refuse writes with 503 (nothing changes)
/// and answer reads at once, each logs the outage once; C started meanwhile comes up from its
/// cache file and serves the drained server still drained; a change is made with `etcdctl`;
/// the registrations expire; etcd back, every instance converges and lists all three again.
async fn outage(kind: Outage) {
    let mut fleet = Fleet::start().await;
    let n1 = Upstream::start("n1").await;
    let rev = publish_ok(&fleet, "published.toml", &fleet.config_text(0, &new_route(&n1))).await;
    fleet
        .wait_cluster(&[0, 1, 2], CONVERGE_WITHIN, |v| v["config"]["revision"] == rev)
        .await;
    let r = fleet.a().patch_server("p", "s1", json!({"state": "drain"})).await;
    let drained = Instant::now();
    assert_eq!(r.status, 200, "{}", r.text());
    fleet
        .wait_server(&[0, 1, 2], "p", "s1", APPLY_WITHIN, |st, v| {
            st == 200 && v["state"] == "drain"
        })
        .await;

    // A burst of weight changes through A; C is killed in the middle of it (its cache file may
    // be in the middle of a write).
    let mut weights = vec![1u64];
    for n in 0..30u64 {
        let weight = 10 + n;
        let r = fleet.a().patch_server("p", "s2", json!({"weight": weight})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        weights.push(weight);
        if n == 15 {
            fleet.inst[2].kill().await;
        }
    }
    let last_weight = *weights.last().expect("weights");
    fleet
        .wait_server(&[0, 1], "p", "s2", APPLY_WITHIN, |st, v| {
            st == 200 && v["weight"] == last_weight
        })
        .await;
    let load = fleet.load(&[0, 1]);
    load.wait_more(100).await;

    // etcd goes away.
    match kind {
        Outage::Cut => fleet.set_relays(&[0, 1, 2], RelayMode::Refuse),
        Outage::Stopped => fleet.etcd.stop_all(),
    }
    fleet
        .wait_cluster(&[0, 1], Duration::from_secs(5), |v| {
            v["etcd"]["connected"] == false
        })
        .await;
    for inst in &fleet.inst[..2] {
        let start = Instant::now();
        let v = inst.cluster().await;
        assert!(
            start.elapsed() < AT_ONCE,
            "GET /api/v1/cluster took {:?}",
            start.elapsed()
        );
        let names: Vec<&str> = v["instances"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            names.contains(&"a") && names.contains(&"b"),
            "the last known list: {v}"
        );
        assert!(v["etcd"]["error"].is_string(), "{}: {v}", inst.name);
    }

    // Writes are refused, whichever the instance and the kind.
    let s9 = dead_addr();
    let start = Instant::now();
    let r = fleet.a().patch_server("p", "s2", json!({"state": "drain"})).await;
    assert_refused(&r, start.elapsed(), "PATCH through A");
    let start = Instant::now();
    let r = fleet
        .b()
        .post_server("p", json!({"address": s9, "name": "s9"}))
        .await;
    assert_refused(&r, start.elapsed(), "POST through B");
    let start = Instant::now();
    let r = fleet.a().delete_server("p", "s3").await;
    assert_refused(&r, start.elapsed(), "DELETE through A");
    let start = Instant::now();
    let r = fleet.b().put_maintenance("main", json!({"enabled": true})).await;
    assert_refused(&r, start.elapsed(), "PUT maintenance through B");
    for inst in &fleet.inst[..2] {
        let start = Instant::now();
        let (st, v) = inst.server("p", "s2").await;
        assert!(
            start.elapsed() < AT_ONCE,
            "GET of a server took {:?}",
            start.elapsed()
        );
        assert_eq!(
            (st, v["state"].as_str()),
            (200, Some("ready")),
            "{}: {v}",
            inst.name
        );
        assert_eq!(inst.server("p", "s3").await.0, 200, "s3 still on {}", inst.name);
        assert_eq!(inst.server("p", "s9").await.0, 404, "no s9 on {}", inst.name);
        let r = inst.get("/new/x").await;
        assert_eq!(
            (r.status, r.backend()),
            (200, "n1"),
            "{} serves the published config",
            inst.name
        );
    }

    // C starts during the outage: from its cache.
    let cache = fleet.cache_file(2);
    let text = std::fs::read_to_string(&cache).unwrap_or_else(|e| panic!("{}: {e}", cache.display()));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("cache is JSON ({e}): {text}"));
    assert_eq!(
        (doc["version"].as_i64(), doc["name"].as_str()),
        (Some(1), Some("c")),
        "{doc}"
    );
    assert_eq!(doc["prefix"], fleet.prefix.as_str());
    let kvs = doc["kvs"].as_object().expect("kvs");
    // Keys as in etcd (with the prefix); the spec does not say, so without it is taken too.
    let cached = |rel: &str| kvs.contains_key(&fleet.key(rel)) || kvs.contains_key(rel);
    assert!(cached("config"), "cache holds P/config: {doc}");
    assert!(cached("servers/p/s1"), "cache holds the drain: {doc}");
    assert!(
        kvs.keys().all(|k| !k.contains("instances/")),
        "no registrations in the cache: {doc}"
    );
    let log_before = fleet.c().log_text().len();
    fleet.inst[2].restart().await;
    let c = fleet.c();
    let v = c.cluster().await;
    assert_eq!(v["config"]["source"], "cache", "C starts from its cache: {v}");
    assert_eq!(v["config"]["revision"], rev, "{v}");
    let since_restart = c.log_text()[log_before..].to_lowercase();
    assert!(
        since_restart.contains("cache"),
        "C's log says it started from its cache: {since_restart}"
    );
    let (_, s1) = c.server("p", "s1").await;
    assert_eq!(s1["state"], "drain", "C has s1 still drained: {s1}");
    let (_, s2) = c.server("p", "s2").await;
    assert!(
        s2["weight"].as_u64().is_some_and(|w| weights.contains(&w)),
        "C's s2 weight is one it had: {s2}"
    );
    for _ in 0..20 {
        let r = c.get("/").await;
        assert_eq!(r.status, 200, "C serves");
        assert_ne!(r.backend(), "s1", "C sends nothing to drained s1");
    }
    assert_eq!(c.get("/new/x").await.backend(), "n1");

    // A change with etcdctl during the outage, straight to the members.
    if kind == Outage::Stopped {
        fleet.set_relays(&[0, 1, 2], RelayMode::Refuse);
        fleet.etcd.start_all().await;
    }
    let put_rev = fleet
        .etcd
        .put(&fleet.key("servers/p/s3"), r#"{"weight": 7}"#)
        .await;
    // The registrations expire while nobody keeps them alive (lease TTL 10 s).
    let instances = fleet.key("instances/");
    wait_for(Duration::from_secs(20), "the registrations expire", async || {
        let keys = fleet.etcd.keys(&instances).await;
        if keys.is_empty() {
            Ok(())
        } else {
            Err(format!("{keys:?}"))
        }
    })
    .await;
    for inst in &fleet.inst[..2] {
        let lines = inst.log_lines(&["etcd unreachable"]);
        assert_eq!(lines.len(), 1, "{} logs the outage once: {lines:?}", inst.name);
    }

    // etcd back: everyone converges.
    fleet.set_relays(&[0, 1, 2], RelayMode::Pass);
    fleet
        .wait_server(&[0, 1, 2], "p", "s3", CONVERGE_WITHIN, |st, v| {
            st == 200 && v["weight"] == 7
        })
        .await;
    fleet
        .wait_server(&[0, 1, 2], "p", "s2", Duration::from_secs(1), |st, v| {
            st == 200 && v["weight"] == last_weight && v["state"] == "ready"
        })
        .await;
    for inst in &fleet.inst {
        let (_, s1) = inst.server("p", "s1").await;
        assert_eq!(s1["state"], "drain", "{}: {s1}", inst.name);
        assert_eq!(
            inst.server("p", "s9").await.0,
            404,
            "the refused POST never applied"
        );
        let (_, m) = inst.get_json("/api/v1/routes/main/maintenance").await;
        assert_eq!(m["enabled"], false, "the refused PUT never applied: {m}");
    }
    fleet
        .wait_cluster(&[0, 1, 2], CONVERGE_WITHIN, |v| {
            v["etcd"]["connected"] == true
                && v["etcd"]["revision"].as_i64().is_some_and(|r| r >= put_rev)
                && v["config"]["revision"] == rev
        })
        .await;
    for i in 0..3 {
        fleet.wait_registered(i, CONVERGE_WITHIN).await;
    }
    for inst in &fleet.inst[..2] {
        let lines = inst.log_lines(&["etcd unreachable"]);
        assert_eq!(lines.len(), 1, "{} logged the outage once: {lines:?}", inst.name);
    }
    load.wait_more(100).await;
    let (_, failures) = load.stop().await;
    assert!(
        failures.is_empty(),
        "failed requests: {:?}",
        &failures[..failures.len().min(5)]
    );
    for via in ["a", "b"] {
        let last = fleet.server("s1").last_via(via).unwrap_or(drained);
        assert!(
            last <= drained + APPLY_WITHIN,
            "s1 took a request through {via} after its drain"
        );
    }
}

/// An etcd that accepts connections and never answers (every relay stalls): an admin write
/// answers 503 within `[cluster] timeout` + 1 s while admin GETs and proxied requests on every
/// instance answer at once, and the write is applied nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn stalled_etcd_bounds_admin_writes_and_slows_nothing_else() {
    bounded_for(CLUSTER_TEST, async {
        let fleet = Fleet::start().await;
        let load = fleet.load(&[0, 1, 2]);
        load.wait_more(100).await;
        fleet.set_relays(&[0, 1, 2], RelayMode::Stall);

        let write = async {
            let start = Instant::now();
            let r = fleet.a().patch_server("p", "s1", json!({"state": "drain"})).await;
            (r, start.elapsed())
        };
        let reads = async {
            let mut slowest = Duration::ZERO;
            for _ in 0..15 {
                for inst in &fleet.inst {
                    let start = Instant::now();
                    let (st, _) = inst.server("p", "s1").await;
                    assert_eq!(st, 200);
                    let r = inst.get("/").await;
                    assert_eq!(r.status, 200);
                    slowest = slowest.max(start.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            slowest
        };
        let ((r, took), slowest) = tokio::join!(write, reads);
        assert_refused(&r, took, "PATCH through A with etcd stalled");
        assert!(
            slowest < AT_ONCE,
            "a GET and a request took {slowest:?} while the write hung"
        );
        let start = Instant::now();
        let r = fleet.c().put_maintenance("main", json!({"enabled": true})).await;
        assert_refused(&r, start.elapsed(), "PUT maintenance through C with etcd stalled");

        fleet.set_relays(&[0, 1, 2], RelayMode::Pass);
        fleet
            .wait_cluster(&[0, 1, 2], CONVERGE_WITHIN, |v| v["etcd"]["connected"] == true)
            .await;
        let r = fleet.b().patch_server("p", "s2", json!({"weight": 4})).await;
        assert_eq!(r.status, 200, "a write once etcd answers again: {}", r.text());
        fleet
            .wait_server(&[0, 1, 2], "p", "s2", APPLY_WITHIN, |st, v| {
                st == 200 && v["weight"] == 4
            })
            .await;
        for inst in &fleet.inst {
            let (_, v) = inst.server("p", "s1").await;
            assert_eq!(
                v["state"], "ready",
                "the refused drain applied nowhere: {}: {v}",
                inst.name
            );
            assert_eq!(inst.get("/").await.status, 200);
        }
        let (_, failures) = load.stop().await;
        assert!(
            failures.is_empty(),
            "failed requests: {:?}",
            &failures[..failures.len().min(5)]
        );
    })
    .await
}

/// C is cut off while etcd changes (a key deleted, a weight changed twice, maintenance
/// switched on) and its history is compacted past what C saw, then one more change: back, C
/// cannot resume its watch and resyncs, and ends where A and B are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn compacted_while_cut_off_an_instance_resyncs() {
    bounded_for(CLUSTER_TEST, async {
        let fleet = Fleet::start().await;
        let r = fleet.a().patch_server("p", "s1", json!({"state": "drain"})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        fleet
            .wait_server(&[0, 1, 2], "p", "s1", APPLY_WITHIN, |st, v| {
                st == 200 && v["state"] == "drain"
            })
            .await;

        fleet.set_relays(&[2], RelayMode::Refuse);
        fleet
            .wait_cluster(&[2], Duration::from_secs(5), |v| v["etcd"]["connected"] == false)
            .await;
        fleet.etcd.del(&fleet.key("servers/p/s1")).await;
        fleet
            .etcd
            .put(&fleet.key("servers/p/s2"), r#"{"weight": 5}"#)
            .await;
        fleet
            .etcd
            .put(&fleet.key("servers/p/s2"), r#"{"weight": 6}"#)
            .await;
        fleet
            .etcd
            .put(&fleet.key("routes/main/maintenance"), r#"{"enabled": true}"#)
            .await;
        let now = fleet.etcd.revision().await;
        fleet.etcd.compact(now).await;
        let last = fleet
            .etcd
            .put(&fleet.key("servers/p/s3"), r#"{"state": "drain"}"#)
            .await;
        fleet
            .wait_server(&[0, 1], "p", "s3", APPLY_WITHIN, |st, v| {
                st == 200 && v["state"] == "drain"
            })
            .await;
        let (_, s2) = fleet.c().server("p", "s2").await;
        assert_eq!(s2["weight"], 1, "C, cut off, has not seen the changes: {s2}");

        fleet.set_relays(&[2], RelayMode::Pass);
        let checks = [
            ("s1", "state", json!("ready")),
            ("s2", "weight", json!(6)),
            ("s3", "state", json!("drain")),
        ];
        for (server, field, want) in checks {
            fleet
                .wait_server(&[0, 1, 2], "p", server, CONVERGE_WITHIN, |st, v| {
                    st == 200 && v[field] == want
                })
                .await;
        }
        for inst in &fleet.inst {
            assert_eq!(
                inst.get("/").await.status,
                503,
                "{} has main in maintenance",
                inst.name
            );
        }
        fleet
            .wait_cluster(&[2], CONVERGE_WITHIN, |v| {
                v["etcd"]["connected"] == true && v["etcd"]["revision"].as_i64().is_some_and(|r| r >= last)
            })
            .await;
    })
    .await
}
