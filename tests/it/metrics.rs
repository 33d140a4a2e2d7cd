//! `/metrics` parses as Prometheus text and its counters and histograms match the requests sent,
//! per route, server and status code; the API's live figures follow them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use prometheus_parse::{Sample, Scrape, Value};
use ringway::config::Balance;

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text")
}

fn labels_match(s: &Sample, want: &[(&str, &str)]) -> bool {
    want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
}

/// The value of the one sample of `metric` with `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels_match(s, labels))
        .collect();
    assert!(
        found.len() <= 1,
        "{metric} {labels:?} appears {} times",
        found.len()
    );
    found.first().and_then(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        _ => None,
    })
}

fn histogram<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels_match(s, labels) && matches!(s.value, Value::Histogram(_)))
}

#[tokio::test]
async fn counters_match_the_requests_sent() {
    bounded(async {
        let a = Backend::start("a").await;
        let b = Backend::start("b").await;
        let mut cfg = base_config();
        cfg.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        cfg.routes.push(ringway::cli::route("one", "/one/", POOL));
        cfg.routes.push(ringway::cli::route("two", "/two/", POOL));
        cfg.pools.push(ringway::cli::pool(
            POOL,
            Balance::RoundRobin,
            vec![
                ringway::cli::server(&a.address()),
                ringway::cli::server(&b.address()),
            ],
        ));
        let proxy = Proxy::start(cfg);
        let admin = proxy.start_admin();
        let client = client();
        for _ in 0..6 {
            assert_eq!(send(client.get(proxy.url("/one/x"))).await.status, 200);
        }
        for _ in 0..2 {
            assert_eq!(send(client.get(proxy.url("/two/x"))).await.status, 200);
        }
        for _ in 0..3 {
            assert_eq!(send(client.get(proxy.url("/nowhere"))).await.status, 404);
        }
        // Drained pool: Ringway answers 503 itself, under the route, with no server.
        proxy
            .server(POOL, 0)
            .set_admin_state(ringway::proxy::state::AdminState::Drain);
        proxy
            .server(POOL, 1)
            .set_admin_state(ringway::proxy::state::AdminState::Drain);
        assert_eq!(send(client.get(proxy.url("/two/y"))).await.status, 503);

        // Answers are counted when their bodies end, a moment after the client has them.
        let metrics_url = format!("{admin}/metrics");
        let total = |s: &Scrape| {
            s.samples
                .iter()
                .filter(|x| x.metric == "ringway_requests_total")
                .filter_map(|x| match x.value {
                    Value::Counter(v) => Some(v),
                    _ => None,
                })
                .sum::<f64>()
        };
        let mut scrape = None;
        for _ in 0..100 {
            let r = send(client.get(&metrics_url)).await;
            assert_eq!(r.status, 200);
            assert!(
                r.header("content-type")
                    .is_some_and(|c| c.starts_with("text/plain; version=0.0.4"))
            );
            let s = parse(&r.text());
            if total(&s) == 12.0 {
                scrape = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = scrape.expect("12 requests counted");
        let (aa, ba) = (a.address(), b.address());
        let req = |route: &str, server: &str, code: &str| {
            value(
                &s,
                "ringway_requests_total",
                &[("route", route), ("server", server), ("code", code)],
            )
        };
        assert_eq!(req("one", &aa, "200"), Some(3.0));
        assert_eq!(req("one", &ba, "200"), Some(3.0));
        assert_eq!(req("two", &aa, "200"), Some(1.0));
        assert_eq!(req("two", &ba, "200"), Some(1.0));
        assert_eq!(req("two", "", "503"), Some(1.0));
        assert_eq!(req("", "", "404"), Some(3.0));
        assert_eq!(
            value(&s, "ringway_requests_total", &[("route", "one"), ("server", &aa)]).map(|_| ()),
            Some(())
        );
        let pool_label = s
            .samples
            .iter()
            .find(|x| x.metric == "ringway_requests_total" && x.labels.get("route") == Some("one"))
            .and_then(|x| x.labels.get("pool").map(str::to_owned));
        assert_eq!(pool_label.as_deref(), Some(POOL));

        // Histograms: one observation per answer, by route.
        for (route, n) in [("one", 6.0), ("two", 3.0), ("", 3.0)] {
            assert_eq!(
                value(&s, "ringway_request_duration_seconds_count", &[("route", route)]),
                Some(n),
                "{route}"
            );
            let h =
                histogram(&s, "ringway_request_duration_seconds", &[("route", route)]).expect("histogram");
            let Value::Histogram(buckets) = &h.value else {
                unreachable!()
            };
            let inf = buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .expect("+Inf bucket");
            assert_eq!(inf.count, n);
            assert_eq!(buckets.first().map(|b| b.less_than), Some(0.0005));
            assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count), "cumulative");
        }

        let per_server =
            |metric: &str, server: &str| value(&s, metric, &[("pool", POOL), ("server", server)]);
        assert_eq!(per_server("ringway_upstream_in_flight", &aa), Some(0.0));
        assert_eq!(per_server("ringway_server_up", &aa), Some(0.0), "drained");
        assert_eq!(per_server("ringway_server_health_changes_total", &aa), Some(0.0));
        assert_eq!(per_server("ringway_upstream_requests_total", &aa), Some(4.0));
        assert_eq!(per_server("ringway_upstream_failures_total", &aa), Some(0.0));
        assert!(value(&s, "ringway_connections_open", &[("listener", LISTENER)]).is_some());
        assert_eq!(value(&s, "ringway_reloads_total", &[("result", "ok")]), Some(0.0));
        assert_eq!(
            value(&s, "ringway_reloads_total", &[("result", "failed")]),
            Some(0.0)
        );
        for name in [
            "ringway_requests_total",
            "ringway_request_duration_seconds",
            "ringway_upstream_in_flight",
            "ringway_server_up",
            "ringway_connections_open",
            "ringway_reloads_total",
        ] {
            assert!(s.docs.contains_key(name), "no HELP for {name}");
        }
        proxy
            .server(POOL, 0)
            .set_admin_state(ringway::proxy::state::AdminState::Ready);
        let again = parse(&send(client.get(&metrics_url)).await.text());
        assert_eq!(
            value(&again, "ringway_server_up", &[("pool", POOL), ("server", &aa)]),
            Some(1.0)
        );
    })
    .await
}

#[tokio::test]
async fn the_api_shows_live_rates_from_the_sampler() {
    bounded(async {
        let a = Backend::start("a").await;
        let mut cfg = one_pool(Balance::RoundRobin, &addrs(&[&a]));
        cfg.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let proxy = Proxy::start(cfg);
        let admin = proxy.start_admin();
        let client = client();
        let url = format!("{admin}/api/v1/status");
        // The sampler's first sample is the baseline: the requests must come after it.
        let mut sampled = false;
        for _ in 0..50 {
            let v: serde_json::Value =
                serde_json::from_slice(&send(client.get(&url)).await.body).expect("JSON");
            if v["pools"][0]["history"].as_array().is_some_and(|h| !h.is_empty()) {
                sampled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(sampled, "no first sample");
        for _ in 0..20 {
            assert_eq!(send(client.get(proxy.url("/x"))).await.status, 200);
        }
        // The sampler takes a sample every 2 s; the figures appear with the next one.
        let mut seen: HashMap<&str, f64> = HashMap::new();
        for _ in 0..60 {
            let r = send(client.get(&url)).await;
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            let pool = &v["pools"][0];
            let rps = pool["requests_per_s"].as_f64().unwrap_or(0.0);
            if rps > 0.0 {
                seen.insert("pool", rps);
                seen.insert(
                    "server",
                    pool["servers"][0]["requests_per_s"].as_f64().unwrap_or(0.0),
                );
                seen.insert("route", v["routes"][0]["requests_per_s"].as_f64().unwrap_or(0.0));
                assert!(pool["p99_s"].as_f64().is_some_and(|p| p > 0.0), "{pool}");
                assert_eq!(pool["error_5xx_ratio"], 0.0);
                let history = pool["history"].as_array().expect("history");
                assert!(history.len() >= 2, "{pool}");
                assert!(history.iter().any(|h| h["requests_per_s"].as_f64() > Some(0.0)));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen.get("pool").is_some_and(|r| *r > 0.0), "no rate within 6 s");
        assert_eq!(seen.get("pool"), seen.get("server"));
        assert_eq!(seen.get("pool"), seen.get("route"));
    })
    .await
}
