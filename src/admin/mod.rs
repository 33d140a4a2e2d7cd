//! The admin interface on `[admin].listen`: status page, `/healthz`, `/metrics` and the REST
//! API of DESIGN.md section 5 (docs/api.md).
//!
//! Owns: the admin HTTP server (its own thread and runtime, so a busy proxy never starves it;
//! a header timeout and a body limit, so a slow or hostile client cannot hold it), the sampler
//! task, and the modules below: `router` (endpoints), `http` (JSON in and out, errors, auth),
//! `views` (JSON of the live state), `mutations` (server changes), `routes` (route
//! maintenance), `ring` (ring endpoints),
//! `metrics` (Prometheus), `sampler` (live figures), `status_page`, `reload`.
//! Must not touch: the request path, beyond the atomics and member swaps of `proxy::state`.

pub mod client;
mod fleet;
mod http;
mod metrics;
mod mutations;
mod reload;
mod ring;
mod router;
mod routes;
mod sampler;
mod status_page;
mod views;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;

pub(crate) use http::json_response;
use sampler::Sampler;

use crate::proxy::Engine;

/// Time a client has to send a whole request head (a slowloris is cut off after it).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin handlers share.
struct Admin {
    engine: Arc<Engine>,
    sampler: Arc<Sampler>,
    registry: Registry,
    started_at: SystemTime,
    bound: SocketAddr,
    hostname: String,
}

/// A time as the API writes it (RFC 3339, UTC, milliseconds).
pub fn rfc3339(t: SystemTime) -> String {
    views::time(t)
}

/// This machine's host name (Linux), or `HOSTNAME`, or "localhost".
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Starts the admin server on the configured address; returns the bound address.
pub fn start(engine: Arc<Engine>) -> std::io::Result<SocketAddr> {
    let started_at = SystemTime::now();
    let addr = engine.shared.snapshot.load().config.admin.listen;
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let admin_engine = engine.clone();
    let admin = Arc::new(Admin {
        registry: metrics::registry(engine.clone()),
        sampler: Arc::new(Sampler::default()),
        engine,
        started_at,
        bound,
        hostname: hostname(),
    });
    std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("admin listener: {e}");
                        return;
                    }
                };
                tokio::spawn(sample_every(admin.clone()));
                serve(listener, admin).await;
            });
        })?;
    if let Some(cluster) = admin_engine.cluster.get() {
        cluster.set_admin(bound);
    }
    tracing::info!("admin interface on http://{bound}");
    Ok(bound)
}

/// Takes a sample now (the baseline) and then every [`sampler::SAMPLE_EVERY`].
async fn sample_every(admin: Arc<Admin>) {
    let mut every = tokio::time::interval(sampler::SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let snapshot = admin.engine.shared.snapshot.load_full();
        admin
            .sampler
            .sample(&snapshot, std::time::Instant::now(), SystemTime::now());
    }
}

async fn serve(listener: tokio::net::TcpListener, admin: Arc<Admin>) {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: back off a little and go on.
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let admin = admin.clone();
        let conn = http1.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(router::handle(req, &admin).await) }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("admin connection: {e}");
            }
        });
    }
}
