//! The admin interface's routes: which path is which endpoint, which methods it allows (405
//! with `Allow` otherwise), which need the token, and the handler each one runs.
//!
//! Owns: the endpoint table of DESIGN.md section 5 (docs/api.md). Must not touch: the live
//! state itself (handlers in the sibling modules change it).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::http::{ApiError, Resp, authorize, bytes_response, json_response};
use super::{Admin, metrics, mutations, reload, ring, routes, status_page, views};

/// An endpoint with the names taken from its path.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    /// The status page (`""`) or one of its files.
    StatusPage(String),
    Healthz,
    Metrics,
    Status,
    Routes,
    Maintenance(String),
    Pools,
    Pool(String),
    Servers(String),
    Server(String, String),
    Ring(String),
    RingPlan(String),
    Cluster,
    Reload,
}

impl Endpoint {
    /// The endpoint at `path`, its segments percent-decoded; `None` for no endpoint.
    fn parse(path: &str) -> Option<Endpoint> {
        let segments: Option<Vec<String>> = path
            .strip_prefix('/')?
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .ok()
                    .map(|c| c.into_owned())
            })
            .collect();
        let segments = segments?;
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let name = |n: &str| (!n.is_empty()).then(|| n.to_owned());
        Some(match s.as_slice() {
            [file] if status_page::serves(file) => Endpoint::StatusPage(file.to_string()),
            ["healthz"] => Endpoint::Healthz,
            ["metrics"] => Endpoint::Metrics,
            ["api", "v1", rest @ ..] => match rest {
                ["status"] => Endpoint::Status,
                ["routes"] => Endpoint::Routes,
                ["routes", r, "maintenance"] => Endpoint::Maintenance(name(r)?),
                ["pools"] => Endpoint::Pools,
                ["pools", p] => Endpoint::Pool(name(p)?),
                ["pools", p, "servers"] => Endpoint::Servers(name(p)?),
                ["pools", p, "servers", s] => Endpoint::Server(name(p)?, name(s)?),
                ["pools", p, "ring"] => Endpoint::Ring(name(p)?),
                ["pools", p, "ring", "plan"] => Endpoint::RingPlan(name(p)?),
                ["cluster"] => Endpoint::Cluster,
                ["reload"] => Endpoint::Reload,
                _ => return None,
            },
            _ => return None,
        })
    }

    /// The methods the endpoint answers, as an `Allow` value (HEAD wherever GET is).
    fn allow(&self) -> &'static str {
        match self {
            Endpoint::Servers(_) => "GET, HEAD, POST",
            Endpoint::Server(..) => "GET, HEAD, PATCH, DELETE",
            Endpoint::RingPlan(_) | Endpoint::Reload => "POST",
            Endpoint::Maintenance(_) => "GET, HEAD, PUT",
            _ => "GET, HEAD",
        }
    }

    fn allows(&self, method: &Method) -> bool {
        self.allow().split(", ").any(|m| m == method.as_str())
    }
}

/// Whether `method` changes something (and so needs the token).
fn mutating(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Answers one request of the admin interface; never panics on any input.
pub async fn handle(req: Request<Incoming>, admin: &Admin) -> Resp {
    match dispatch(req, admin).await {
        Ok(r) => r,
        Err(e) => e.into(),
    }
}

async fn dispatch(req: Request<Incoming>, admin: &Admin) -> Result<Resp, ApiError> {
    let Some(endpoint) = Endpoint::parse(req.uri().path()) else {
        return Err(ApiError::not_found(format!(
            "no endpoint at {} (see docs/api.md)",
            req.uri().path()
        )));
    };
    let method = req.method().clone();
    if !endpoint.allows(&method) {
        return Err(ApiError {
            allow: Some(endpoint.allow()),
            ..ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed here; allowed: {}", endpoint.allow()),
            )
        });
    }
    // A ring plan is asked with POST but changes nothing: the status page previews with it.
    if mutating(&method) && !matches!(endpoint, Endpoint::RingPlan(_)) {
        let snapshot = admin.engine.shared.snapshot.load();
        let token_env = &snapshot.config.admin.token_env;
        let token = std::env::var(token_env).ok();
        authorize(req.headers(), token_env, token.as_deref())?;
    }
    let engine = &admin.engine;
    let sampler = &admin.sampler;
    match endpoint {
        Endpoint::StatusPage(file) => Ok(status_page::response(&file)),
        Endpoint::Healthz => {
            if engine.shared.shutting_down.load(Ordering::Relaxed) {
                Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))
            } else {
                Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
            }
        }
        Endpoint::Metrics => metrics::render(&admin.registry)
            .map(|text| bytes_response(StatusCode::OK, metrics::CONTENT_TYPE, Bytes::from(text)))
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot render the metrics")),
        Endpoint::Status => Ok(json_response(
            StatusCode::OK,
            &views::status(engine, sampler, admin.started_at),
        )),
        Endpoint::Routes => {
            let snapshot = engine.shared.snapshot.load();
            let now = engine.shared.clock.now();
            Ok(json_response(
                StatusCode::OK,
                &json!({"routes": views::routes(&snapshot, sampler, now)}),
            ))
        }
        Endpoint::Maintenance(route) => match method {
            Method::PUT => routes::put(req, admin, &route).await,
            _ => routes::get(admin, &route),
        },
        Endpoint::Pools => {
            let snapshot = engine.shared.snapshot.load();
            Ok(json_response(
                StatusCode::OK,
                &json!({"pools": views::pools(&snapshot, sampler, &engine.shared.discovery)}),
            ))
        }
        Endpoint::Pool(p) => {
            let snapshot = engine.shared.snapshot.load();
            let pool = mutations::find_pool(&snapshot, &p)?;
            Ok(json_response(
                StatusCode::OK,
                &views::pool(&pool, &snapshot, sampler, &engine.shared.discovery),
            ))
        }
        Endpoint::Servers(p) => {
            if method == Method::POST {
                return mutations::add(req, admin, &p).await;
            }
            let pool = mutations::find_pool(&engine.shared.snapshot.load(), &p)?;
            let servers: Vec<_> = pool
                .members
                .load()
                .servers
                .iter()
                .map(|s| views::server(s, sampler))
                .collect();
            Ok(super::http::json_ok(StatusCode::OK, &json!({"servers": servers})))
        }
        Endpoint::Server(p, s) => match method {
            Method::PATCH => mutations::patch(req, admin, &p, &s).await,
            Method::DELETE => mutations::delete(admin, &p, &s).await,
            _ => {
                let pool = mutations::find_pool(&engine.shared.snapshot.load(), &p)?;
                let server = mutations::find_server(&pool, &s)?;
                Ok(super::http::json_ok(
                    StatusCode::OK,
                    &views::server(&server, sampler),
                ))
            }
        },
        Endpoint::Ring(p) => ring::table(admin, &p),
        Endpoint::RingPlan(p) => ring::plan(req, admin, &p).await,
        Endpoint::Cluster => Ok(json_response(
            StatusCode::OK,
            &match engine.cluster.get() {
                Some(c) => c.view(engine),
                None => json!({
                "mode": "standalone",
                "instances": [{
                    "name": admin.hostname,
                    "admin": admin.bound.to_string(),
                    "version": env!("CARGO_PKG_VERSION"),
                    "started_at": views::time(admin.started_at),
                    "health": if engine.shared.shutting_down.load(Ordering::Relaxed) { "shutting_down" } else { "ok" },
                }],
                }),
            },
        )),
        // Another part of the work owns the reload answer; it runs on the admin thread.
        Endpoint::Reload => Ok(reload::answer(engine)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_endpoints() {
        assert_eq!(Endpoint::parse("/"), Some(Endpoint::StatusPage(String::new())));
        assert_eq!(
            Endpoint::parse("/status.js"),
            Some(Endpoint::StatusPage("status.js".into()))
        );
        assert_eq!(Endpoint::parse("/status.html"), None);
        assert_eq!(Endpoint::parse("/metrics"), Some(Endpoint::Metrics));
        assert_eq!(
            Endpoint::parse("/api/v1/pools/api/servers/127.0.0.1:9002"),
            Some(Endpoint::Server("api".into(), "127.0.0.1:9002".into()))
        );
        assert_eq!(
            Endpoint::parse("/api/v1/pools/a%20b/ring/plan"),
            Some(Endpoint::RingPlan("a b".into()))
        );
        for none in [
            "/api/v1/pools/",
            "/api/v1/pools//servers",
            "/api/v2/pools",
            "/nope",
            "/api/v1/pools/%ff",
            "",
        ] {
            assert_eq!(Endpoint::parse(none), None, "{none}");
        }
    }

    #[test]
    fn methods_per_endpoint() {
        let server = Endpoint::Server("p".into(), "s".into());
        assert!(server.allows(&Method::PATCH));
        assert!(server.allows(&Method::HEAD));
        assert!(!server.allows(&Method::POST));
        assert!(!Endpoint::Reload.allows(&Method::GET));
        assert!(Endpoint::Maintenance("r".into()).allows(&Method::PUT));
        assert!(mutating(&Method::DELETE));
        assert!(!mutating(&Method::GET));
    }
}
