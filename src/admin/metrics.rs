//! `GET /metrics`: the Prometheus text format (0.0.4), written by `prometheus-client` from a
//! collector that reads the request path's atomics at scrape time.
//!
//! Owns: metric names, help texts and labels (DESIGN.md section 5, docs/operations.md).
//! Must not touch: the request path; nothing is registered or updated per request, the
//! counters live in `proxy::stats` and `proxy::state` and are only read here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::proxy::Engine;
use crate::proxy::state::Snapshot;
use crate::proxy::stats::{BUCKET_BOUNDS_US, HistogramSnapshot, RouteStats};

/// `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Reads a running Ringway's figures at each scrape.
#[derive(Debug)]
struct Figures {
    engine: Arc<Engine>,
}

/// A registry holding Ringway's collector.
pub fn registry(engine: Arc<Engine>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(Figures { engine }));
    r
}

/// The text of one scrape.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?;
    Ok(out)
}

type Labels<'a> = Vec<(&'static str, String)>;

/// A family of one metric type: its samples are written by `each`.
fn family<'e>(
    encoder: &mut DescriptorEncoder<'e>,
    name: &str,
    help: &str,
    metric: MetricType,
    samples: impl IntoIterator<Item = (Labels<'e>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut fam = encoder.encode_descriptor(name, help, None, metric)?;
    for (labels, value) in samples {
        let e = fam.encode_family(&labels)?;
        match metric {
            MetricType::Counter => ConstCounter::new(value).encode(e)?,
            _ => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(e)?,
        }
    }
    Ok(())
}

/// Counts by (route, pool, server, code); cells of a server removed and added again under the
/// same name are added up, so each label set appears once.
fn requests(snapshot: &Snapshot) -> BTreeMap<(String, String, String, u16), u64> {
    let mut out = BTreeMap::new();
    for r in routes(snapshot) {
        for c in r.counts() {
            let key = (
                r.name.clone(),
                r.pool.clone().unwrap_or_default(),
                c.server,
                c.code,
            );
            *out.entry(key).or_insert(0) += c.count;
        }
    }
    out
}

fn routes(snapshot: &Snapshot) -> impl Iterator<Item = &Arc<RouteStats>> {
    snapshot
        .routes
        .iter()
        .map(|r| &r.stats)
        .chain(std::iter::once(&snapshot.unrouted))
}

/// `(upper bound in seconds, count)` per bucket, the last one +Inf.
fn buckets(h: &HistogramSnapshot) -> Vec<(f64, u64)> {
    BUCKET_BOUNDS_US
        .iter()
        .map(|&us| us as f64 / 1e6)
        .chain(std::iter::once(f64::INFINITY))
        .zip(h.buckets.iter().copied())
        .collect()
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.engine.shared.snapshot.load_full();
        family(
            &mut encoder,
            "ringway_requests",
            "Requests answered, by route (\"\" when none matched), pool, server (\"\" when Ringway answered itself) and status code",
            MetricType::Counter,
            requests(&snapshot)
                .into_iter()
                .map(|((route, pool, server, code), n)| {
                    (
                        vec![
                            ("route", route),
                            ("pool", pool),
                            ("server", server),
                            ("code", code.to_string()),
                        ],
                        n,
                    )
                }),
        )?;
        {
            let mut fam = encoder.encode_descriptor(
                "ringway_request_duration_seconds",
                "Time from the request head's arrival to the end of the response, by route",
                None,
                MetricType::Histogram,
            )?;
            for r in routes(&snapshot) {
                let h = r.duration.snapshot();
                let labels: Labels = vec![("route", r.name.clone())];
                fam.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                    h.sum_us as f64 / 1e6,
                    h.count(),
                    &buckets(&h),
                    None,
                )?;
            }
        }
        let mut pools: Vec<_> = snapshot.pools.values().collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        let servers: Vec<_> = pools
            .iter()
            .flat_map(|p| {
                let members = p.members.load_full();
                let name = p.name.clone();
                (0..members.servers.len()).map(move |i| (name.clone(), members.servers[i].clone()))
            })
            .collect();
        let per_server = |f: &dyn Fn(&crate::proxy::state::Server) -> u64| {
            servers
                .iter()
                .map(|(pool, s)| (vec![("pool", pool.clone()), ("server", s.name.clone())], f(s)))
                .collect::<Vec<_>>()
        };
        family(
            &mut encoder,
            "ringway_upstream_in_flight",
            "Requests in flight to each server",
            MetricType::Gauge,
            per_server(&|s| s.in_flight.load(Ordering::Relaxed)),
        )?;
        family(
            &mut encoder,
            "ringway_server_up",
            "1 when the server takes new requests (state ready, health up, not ejected)",
            MetricType::Gauge,
            per_server(&|s| u64::from(s.serving())),
        )?;
        family(
            &mut encoder,
            "ringway_server_health_changes",
            "Changes of a server's health or ejection, either way",
            MetricType::Counter,
            per_server(&|s| s.health_changes.load(Ordering::Relaxed)),
        )?;
        family(
            &mut encoder,
            "ringway_upstream_requests",
            "Attempts to send a request to each server (retries included)",
            MetricType::Counter,
            per_server(&|s| s.requests.load(Ordering::Relaxed)),
        )?;
        family(
            &mut encoder,
            "ringway_upstream_failures",
            "Failed attempts (connect errors, resets, timeouts) per server",
            MetricType::Counter,
            per_server(&|s| s.failures.load(Ordering::Relaxed)),
        )?;
        family(
            &mut encoder,
            "ringway_connections_open",
            "Client connections open now, by listener",
            MetricType::Gauge,
            self.engine
                .listener_status()
                .into_iter()
                .map(|l| (vec![("listener", l.name)], l.open as u64)),
        )?;
        family(
            &mut encoder,
            "ringway_reloads",
            "Configuration reloads since start, by result",
            MetricType::Counter,
            [("ok", 0), ("failed", 1)].map(|(result, i)| {
                (
                    vec![("result", result.to_owned())],
                    self.engine.reloads[i].load(Ordering::Relaxed),
                )
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::stats::Histogram;
    use std::time::Duration;

    #[test]
    fn buckets_end_at_infinity() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(400));
        h.observe(Duration::from_secs(100));
        let b = buckets(&h.snapshot());
        assert_eq!(b.len(), BUCKET_BOUNDS_US.len() + 1);
        assert_eq!(b[0], (0.0005, 1));
        assert_eq!(b[b.len() - 1], (f64::INFINITY, 1));
    }
}
