//! The admin interface on `[admin].listen`: status page, `/healthz`, pools as JSON, reload.
//!
//! Owns: the admin HTTP server (its own thread and runtime, so a busy proxy never starves it)
//! and the JSON views of the live state. Must not touch the request path.
//! The rest of DESIGN.md section 5 (server PATCH/POST/DELETE, ring, maintenance, /metrics)
//! builds on this module.

pub mod client;
mod reload;
mod status_page;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::proxy::Engine;
use crate::proxy::state::{Pool, Snapshot};

/// Starts the admin server on the configured address; returns the bound address.
pub fn start(engine: Arc<Engine>) -> std::io::Result<SocketAddr> {
    let addr = engine.shared.snapshot.load().config.admin.listen;
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
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
                loop {
                    let (stream, _) = match listener.accept().await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!("admin accept failed: {e}");
                            continue;
                        }
                    };
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let engine = engine.clone();
                            async move { Ok::<_, Infallible>(handle(req, &engine).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        })?;
    tracing::info!("admin interface on http://{bound}");
    Ok(bound)
}

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"error": {"status": status.as_u16(), "message": message}}),
    )
}

fn authorized(req: &Request<Incoming>, snapshot: &Snapshot) -> bool {
    let Ok(token) = std::env::var(&snapshot.config.admin.token_env) else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == token)
}

async fn handle(req: Request<Incoming>, engine: &Engine) -> Response<Full<Bytes>> {
    let snapshot = engine.shared.snapshot.load_full();
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, [name]) if status_page::serves(name) => status_page::response(name),
        (&Method::GET, ["healthz"]) => {
            if engine.shared.shutting_down.load(Ordering::Relaxed) {
                error(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            } else {
                json_response(StatusCode::OK, &json!({"status": "ok"}))
            }
        }
        (&Method::GET, ["api", "v1", "pools"]) => {
            let mut names: Vec<&String> = snapshot.pools.keys().collect();
            names.sort();
            let pools: Vec<Value> = names
                .iter()
                .filter_map(|n| snapshot.pools.get(*n))
                .map(|p| pool_json(p))
                .collect();
            json_response(StatusCode::OK, &json!({ "pools": pools }))
        }
        (&Method::GET, ["api", "v1", "pools", name]) => match snapshot.pools.get(*name) {
            Some(p) => json_response(StatusCode::OK, &pool_json(p)),
            None => error(StatusCode::NOT_FOUND, &format!("no pool `{name}`")),
        },
        (&Method::POST, ["api", "v1", "reload"]) => {
            if !authorized(&req, &snapshot) {
                return error(StatusCode::UNAUTHORIZED, "a bearer token is required");
            }
            reload::answer(engine)
        }
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// A pool with its servers and live figures.
pub fn pool_json(p: &Pool) -> Value {
    let members = p.members.load();
    let servers: Vec<Value> = members
        .servers
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "address": s.address,
                "weight": s.weight(),
                "state": s.admin_state().as_str(),
                "health": if s.is_up() { "up" } else { "down" },
                "in_flight": s.in_flight.load(Ordering::Relaxed),
                "requests": s.requests.load(Ordering::Relaxed),
                "failures": s.failures.load(Ordering::Relaxed),
            })
        })
        .collect();
    json!({ "name": p.name, "balance": format!("{:?}", p.settings.algorithm), "servers": servers })
}
