//! Runtime changes made through one instance (or with `etcdctl`) and applied by all three: a
//! drain, a weight, an added and a removed server under load, route maintenance, values in
//! etcd that cannot apply, and the time a change takes to reach the others.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// Under load through B and C: a drain of s1 through A stops B's and C's requests to s1 within
/// one second of A's answer; s2's weight set to 256 moves B's and C's shares; s4 added through
/// A takes traffic through B and C within one second; deleted through A it is gone from all
/// three. The keys are the documented JSON. Not one request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn drain_weight_add_delete_through_a_apply_on_b_and_c_under_load() {
    bounded_for(CLUSTER_TEST, async {
        let fleet = Fleet::start().await;
        let s4 = Upstream::start("s4").await;
        let begin = Instant::now();
        let load = fleet.load(&[1, 2]);
        load.wait_more(150).await;
        for s in &fleet.servers {
            for via in ["b", "c"] {
                assert!(
                    s.count_via(via, begin) > 0,
                    "{} took no request through {via}",
                    s.name
                );
            }
        }

        // Drain.
        let r = fleet.a().patch_server("p", "s1", json!({"state": "drain"})).await;
        let drained = Instant::now();
        assert_eq!(r.status, 200, "drain through A: {}", r.text());
        assert_eq!(json(&r)["state"], "drain", "A answers the server as it now is");
        fleet
            .wait_server(&[1, 2], "p", "s1", APPLY_WITHIN, |st, v| {
                st == 200 && v["state"] == "drain"
            })
            .await;
        let (value, _) = fleet
            .etcd
            .get(&fleet.key("servers/p/s1"))
            .await
            .expect("key servers/p/s1");
        let value: Value = serde_json::from_str(&value).expect("the key's value is JSON");
        assert_eq!(value["state"], "drain", "P/servers/p/s1 = {value}");

        // Weight: shares on B and C before and after (from one second after each answer).
        tokio::time::sleep_until((drained + APPLY_WITHIN).into()).await;
        let before = Instant::now();
        load.wait_more(300).await;
        let r = fleet.a().patch_server("p", "s2", json!({"weight": 256})).await;
        let weighted = Instant::now();
        assert_eq!(r.status, 200, "weight through A: {}", r.text());
        assert_eq!(json(&r)["weight"], 256);
        fleet
            .wait_server(&[1, 2], "p", "s2", APPLY_WITHIN, |st, v| {
                st == 200 && v["weight"] == 256
            })
            .await;
        for via in ["b", "c"] {
            let s2 = fleet.server("s2").arrivals();
            let s3 = fleet.server("s3").arrivals();
            let count = |a: &[crate::common::fleet::Arrival]| {
                a.iter()
                    .filter(|x| x.via == via && x.at >= before && x.at < weighted)
                    .count()
            };
            let (n2, n3) = (count(&s2), count(&s3));
            let share = n2 as f64 / (n2 + n3).max(1) as f64;
            assert!(
                (0.3..0.7).contains(&share),
                "s2's share through {via} before: {n2} of {}",
                n2 + n3
            );
        }
        tokio::time::sleep_until((weighted + APPLY_WITHIN).into()).await;
        let after = Instant::now();
        load.wait_more(400).await;
        for via in ["b", "c"] {
            let n2 = fleet.server("s2").count_via(via, after);
            let n3 = fleet.server("s3").count_via(via, after);
            let share = n2 as f64 / (n2 + n3).max(1) as f64;
            assert!(n2 + n3 >= 100, "too few requests through {via}: {}", n2 + n3);
            assert!(
                share > 0.9,
                "s2 (weight 256) got {n2} of {} through {via}",
                n2 + n3
            );
        }
        let r = fleet.a().patch_server("p", "s2", json!({"weight": 1})).await;
        assert_eq!(r.status, 200, "weight back to 1: {}", r.text());
        fleet
            .wait_server(&[1, 2], "p", "s2", APPLY_WITHIN, |st, v| {
                st == 200 && v["weight"] == 1
            })
            .await;

        // Add s4 through A.
        let r = fleet
            .a()
            .post_server("p", json!({"address": s4.address(), "name": "s4"}))
            .await;
        let added = Instant::now();
        assert_eq!(r.status, 201, "POST through A: {}", r.text());
        assert_eq!(r.header("location"), Some("/api/v1/pools/p/servers/s4"));
        for via in ["b", "c"] {
            wait_for(
                APPLY_WITHIN,
                &format!("s4 takes a request through {via}"),
                async || {
                    if s4.count_via(via, added) > 0 {
                        Ok(())
                    } else {
                        Err("none yet".to_owned())
                    }
                },
            )
            .await;
        }
        fleet
            .wait_server(&[1, 2], "p", "s4", APPLY_WITHIN, |st, v| {
                st == 200 && v["address"] == s4.address()
            })
            .await;

        // Delete s4 through A: drained at once, gone from all three once idle.
        let r = fleet.a().delete_server("p", "s4").await;
        let deleted = Instant::now();
        assert_eq!(r.status, 202, "DELETE through A: {}", r.text());
        fleet
            .wait_server(&[0, 1, 2], "p", "s4", APPLY_WITHIN * 2, |st, _| st == 404)
            .await;
        load.wait_more(200).await;

        let (ok, failures) = load.stop().await;
        assert!(
            failures.is_empty(),
            "{} failed requests of {}: {:?}",
            failures.len(),
            ok + failures.len(),
            &failures[..failures.len().min(5)]
        );
        for via in ["b", "c"] {
            let last = fleet
                .server("s1")
                .last_via(via)
                .expect("s1 took requests before its drain");
            assert!(
                last <= drained + APPLY_WITHIN,
                "s1 took a request through {via} {:?} after A answered its drain",
                last - drained
            );
            if let Some(last) = s4.last_via(via) {
                assert!(
                    last <= deleted + APPLY_WITHIN,
                    "s4 took a request through {via} {:?} after A answered its deletion",
                    last.saturating_duration_since(deleted)
                );
            }
        }
    })
    .await
}

/// Maintenance switched on through A makes the route answer 503 on B and C within one second;
/// switched off, they serve again; the key is the PUT's body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn route_maintenance_through_a_applies_on_b_and_c() {
    bounded_for(CLUSTER_TEST, async {
        let fleet = Fleet::start().await;
        for inst in &fleet.inst {
            assert_eq!(inst.get("/").await.status, 200, "{} serves before", inst.name);
        }
        let r = fleet
            .a()
            .put_maintenance("main", json!({"enabled": true, "retry_after": "2m"}))
            .await;
        let put = Instant::now();
        assert_eq!(r.status, 200, "PUT maintenance through A: {}", r.text());
        assert_eq!(json(&r)["active"], true);
        for inst in &fleet.inst[1..] {
            let left = APPLY_WITHIN.saturating_sub(put.elapsed());
            let (reply, _) = wait_for(left, &format!("503 from {}", inst.name), async || {
                let r = inst.get("/").await;
                if r.status == 503 {
                    Ok(r)
                } else {
                    Err(format!("{} {}", r.status, r.text()))
                }
            })
            .await;
            assert_eq!(
                reply.header("retry-after"),
                Some("120"),
                "Retry-After from {}",
                inst.name
            );
            let (status, m) = inst.get_json("/api/v1/routes/main/maintenance").await;
            assert_eq!(status, 200);
            assert_eq!(m["enabled"], true, "{}: {m}", inst.name);
        }
        let (value, _) = fleet
            .etcd
            .get(&fleet.key("routes/main/maintenance"))
            .await
            .expect("key routes/main/maintenance");
        let value: Value = serde_json::from_str(&value).expect("JSON value");
        assert_eq!(value["enabled"], true, "P/routes/main/maintenance = {value}");

        let r = fleet.a().put_maintenance("main", json!({"enabled": false})).await;
        let off = Instant::now();
        assert_eq!(r.status, 200, "maintenance off through A: {}", r.text());
        for inst in &fleet.inst {
            let left = APPLY_WITHIN.saturating_sub(off.elapsed());
            wait_for(left, &format!("{} serves again", inst.name), async || {
                let r = inst.get("/").await;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(format!("{} {}", r.status, r.text()))
                }
            })
            .await;
        }
    })
    .await
}

/// Values written with `etcdctl` that cannot apply (not JSON, a weight out of range, an
/// unknown pool, an unknown server without address, an unknown route, the removal of a pool's
/// last server) are ignored by every instance, each logged once with its key and revision, and
/// disturb no request; a good value afterwards, on the same key, applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn values_that_cannot_apply_are_ignored_and_logged_once() {
    bounded_for(CLUSTER_TEST, async {
        let fleet = Fleet::start().await;
        let load = fleet.load(&[0, 1, 2]);
        load.wait_more(100).await;
        let bad = [
            ("servers/p/s1", r#"{"state": "drain""#),
            ("servers/p/s2", r#"{"weight": 999}"#),
            ("servers/nopool/s1", r#"{"state": "drain"}"#),
            ("servers/p/ghost", r#"{"weight": 5}"#),
            ("routes/nope/maintenance", r#"{"enabled": true}"#),
            ("servers/solo/x1", r#"{"removed": true}"#),
        ];
        let mut written = Vec::new();
        for (rel, value) in bad {
            let rev = fleet.etcd.put(&fleet.key(rel), value).await;
            written.push((rel, rev));
        }
        let after_bad = Instant::now();
        // Each is logged by each instance (with its key and revision).
        for inst in &fleet.inst {
            for (rel, rev) in &written {
                wait_for(
                    Duration::from_secs(2),
                    &format!("{} logs {rel} at {rev}", inst.name),
                    async || {
                        if logged(inst, rel, *rev).is_empty() {
                            Err("not logged".to_owned())
                        } else {
                            Ok(())
                        }
                    },
                )
                .await;
            }
        }
        // Nothing changed.
        for name in ["s1", "s2", "s3"] {
            fleet
                .wait_server(&[0, 1, 2], "p", name, APPLY_WITHIN, |st, v| {
                    st == 200 && v["state"] == "ready" && v["weight"] == 1
                })
                .await;
        }
        for inst in &fleet.inst {
            assert_eq!(
                inst.server("p", "ghost").await.0,
                404,
                "no ghost on {}",
                inst.name
            );
            let r = inst.get("/solo/").await;
            assert_eq!(
                (r.status, r.backend()),
                (200, "x1"),
                "x1 still serves /solo/ on {}",
                inst.name
            );
            let (_, m) = inst.get_json("/api/v1/routes/main/maintenance").await;
            assert_eq!(m["active"], false, "{}", inst.name);
        }
        load.wait_more(300).await;
        for inst in &fleet.inst {
            assert!(
                fleet.server("s1").count_via(&inst.name, after_bad) > 0,
                "s1 keeps its traffic through {}",
                inst.name
            );
        }

        // Further changes, good ones: the bad values are not logged again.
        let r = fleet.a().patch_server("p", "s3", json!({"weight": 2})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        fleet
            .etcd
            .put(&fleet.key("servers/p/s1"), r#"{"state": "drain"}"#)
            .await;
        let put = Instant::now();
        fleet
            .wait_server(&[0, 1, 2], "p", "s1", APPLY_WITHIN, |st, v| {
                st == 200 && v["state"] == "drain"
            })
            .await;
        fleet
            .wait_server(&[0, 1, 2], "p", "s3", APPLY_WITHIN, |st, v| {
                st == 200 && v["weight"] == 2
            })
            .await;
        fleet.etcd.del(&fleet.key("servers/p/ghost")).await;
        fleet
            .etcd
            .put(&fleet.key("servers/p/s2"), r#"{"weight": 3}"#)
            .await;
        fleet
            .wait_server(&[0, 1, 2], "p", "s2", APPLY_WITHIN, |st, v| {
                st == 200 && v["weight"] == 3
            })
            .await;
        for inst in &fleet.inst {
            for (rel, bad_rev) in &written {
                let lines = logged(inst, rel, *bad_rev);
                assert_eq!(
                    lines.len(),
                    1,
                    "{} logged {rel} at {bad_rev} {} times: {lines:?}",
                    inst.name,
                    lines.len()
                );
            }
        }
        load.wait_more(100).await;
        let (_, failures) = load.stop().await;
        assert!(
            failures.is_empty(),
            "failed requests: {:?}",
            &failures[..failures.len().min(5)]
        );
        for via in NAMES {
            if let Some(last) = fleet.server("s1").last_via(via) {
                assert!(
                    last <= put + APPLY_WITHIN,
                    "s1 drained by etcdctl took a request through {via}"
                );
            }
        }
    })
    .await
}

/// The figure of issue 15's performance section: from the start of an admin PATCH on A to
/// the change visible in B's and C's `GET` of the server (polled every millisecond), over 100
/// changes. Prints `propagation: median X ms, max Y ms (100 changes)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: .ci/cluster-test"]
async fn propagation_figure() {
    bounded_for(CLUSTER_TEST, async {
        let fleet = Fleet::start().await;
        let mut times = Vec::new();
        let mut answers = Vec::new();
        for n in 0..100u64 {
            let weight = 2 + n % 200;
            let start = Instant::now();
            let r = fleet.a().patch_server("p", "s2", json!({"weight": weight})).await;
            answers.push(start.elapsed());
            assert_eq!(r.status, 200, "change {n}: {}", r.text());
            let (b, c) = tokio::join!(
                seen(fleet.b(), weight, start, n),
                seen(fleet.c(), weight, start, n)
            );
            times.push(b.max(c));
        }
        times.sort();
        answers.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
        println!(
            "propagation: median {:.1} ms, max {:.1} ms ({} changes)",
            ms(median),
            ms(max),
            times.len()
        );
        println!(
            "admin PATCH answered on A: median {:.1} ms, max {:.1} ms",
            ms(answers[answers.len() / 2]),
            ms(answers[answers.len() - 1])
        );
        assert!(median < APPLY_WITHIN, "median propagation {median:?}");
        assert!(max < Duration::from_secs(5), "max propagation {max:?}");
    })
    .await
}

/// Polls `inst`'s GET of s2 every millisecond until it shows `weight`; the time since `start`.
async fn seen(inst: &Instance, weight: u64, start: Instant, n: u64) -> Duration {
    loop {
        let (_, v) = inst.server("p", "s2").await;
        if v["weight"] == weight {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "change {n} not seen on {}",
            inst.name
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Warnings in `inst`'s log that name key `rel` and revision `rev` (as a whole number, after
/// the line's leading timestamp, so that `5` does not match `15` or the clock).
fn logged(inst: &Instance, rel: &str, rev: i64) -> Vec<String> {
    let rev = rev.to_string();
    inst.log_lines(&[rel, " WARN "])
        .into_iter()
        .filter(|line| {
            let message = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest);
            message.split(|c: char| !c.is_ascii_digit()).any(|n| n == rev)
        })
        .collect()
}
