//! HTTP adapter of the rooms service: routes requests to the use cases and renders JSON.
//!
//! Owns the routes, the mapping of `RoomsError` to status codes and the headers every response
//! carries (`X-Served-By`, `Content-Type`). It is a plain function of a request, so it is tested
//! without a socket; accepting connections is `demo::serve_rooms`'s job, business rules are not
//! this module's at all.

use std::sync::Arc;

use ::http::header::{ALLOW, CONTENT_TYPE, HeaderName};
use ::http::{HeaderValue, Method, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;

use super::repository::RoomRepository;
use super::use_cases::{GetRoom, ListRooms, RoomsError};

/// Header naming the instance that answered, so the demo shows where the balancer sent a request.
pub const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// One rooms instance as HTTP sees it: its name and the repository it serves.
#[derive(Clone)]
pub struct RoomsApp {
    name: Arc<str>,
    served_by: HeaderValue,
    repo: Arc<dyn RoomRepository>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct CacheBody<'a> {
    key: &'a str,
    served_by: &'a str,
}

impl RoomsApp {
    /// An app named `rooms-{instance}` serving from `repo`.
    pub fn new(instance: usize, repo: Arc<dyn RoomRepository>) -> Self {
        let name = format!("rooms-{instance}");
        let served_by = HeaderValue::from_str(&name).expect("rooms-N is a valid header value");
        Self {
            name: name.into(),
            served_by,
            repo,
        }
    }

    /// The instance name, as sent in `X-Served-By`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Answers one request; the body is never read because every route is a GET.
    pub fn handle<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let (status, body) = if matches!(*req.method(), Method::GET | Method::HEAD) {
            self.route(req.uri().path(), req.uri().query().unwrap_or(""))
        } else {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "only GET is served",
            )
        };
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(SERVED_BY, self.served_by.clone());
        if status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        resp
    }

    fn route(&self, path: &str, query: &str) -> (StatusCode, Bytes) {
        // Values we accept are plain tokens and digits, so no percent-decoding is needed: an
        // encoded value simply fails validation.
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")));
        if path == "/healthz" {
            (StatusCode::OK, Bytes::from_static(b"\"ok\""))
        } else if path == "/rooms" || path == "/rooms/" {
            render(ListRooms::new(&*self.repo).execute(params))
        } else if let Some(code) = path.strip_prefix("/rooms/")
            && !code.contains('/')
        {
            render(GetRoom::new(&*self.repo).execute(code))
        } else if path.starts_with("/cache/") {
            // The balancer hashes `/cache/` requests by path; echoing the key shows the affinity.
            (
                StatusCode::OK,
                json(&CacheBody {
                    key: path,
                    served_by: &self.name,
                }),
            )
        } else {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {path}"),
            )
        }
    }
}

fn render<T: Serialize>(result: Result<T, RoomsError>) -> (StatusCode, Bytes) {
    match result {
        Ok(value) => (StatusCode::OK, json(&value)),
        Err(err) => {
            let (status, kind) = match err {
                RoomsError::InvalidStatus(_) | RoomsError::InvalidPrice { .. } => {
                    (StatusCode::BAD_REQUEST, "invalid_parameter")
                }
                RoomsError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            };
            error(status, kind, &err.to_string())
        }
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> (StatusCode, Bytes) {
    (status, json(&ErrorBody { error: kind, message }))
}

fn json<T: Serialize + ?Sized>(value: &T) -> Bytes {
    serde_json::to_vec(value)
        .expect("our response types always serialize")
        .into()
}

#[cfg(test)]
mod tests {
    use ::http::HeaderMap;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};

    use super::*;
    use crate::demo::rooms::repository::MemoryRepository;

    async fn call(method: Method, uri: &str) -> (StatusCode, HeaderMap, Value) {
        let app = RoomsApp::new(2, Arc::new(MemoryRepository::seeded()));
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("valid test request");
        let resp = app.handle(&req);
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("Full never fails").to_bytes();
        let value = serde_json::from_slice(&bytes).expect("every response is JSON");
        (parts.status, parts.headers, value)
    }

    #[tokio::test]
    async fn lists_and_filters_rooms() {
        let (status, headers, all) = call(Method::GET, "/rooms").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[SERVED_BY], "rooms-2");
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(all.as_array().map(Vec::len), Some(7));

        let (status, _, available) = call(Method::GET, "/rooms?status=available").await;
        assert_eq!(status, StatusCode::OK);
        let rooms = available.as_array().expect("a list");
        assert_eq!(rooms.len(), 4);
        assert!(rooms.iter().all(|r| r["available"] == true));

        let (_, _, cheap) = call(Method::GET, "/rooms/?status=booked&price_lt=100").await;
        assert_eq!(cheap.as_array().map(Vec::len), Some(2));
    }

    #[tokio::test]
    async fn bad_filter_is_400() {
        let (status, headers, body) = call(Method::GET, "/rooms?status=sold").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[SERVED_BY], "rooms-2");
        assert_eq!(body["error"], "invalid_parameter");
    }

    #[tokio::test]
    async fn gets_one_room_or_404() {
        let code = "eed76e77-55c1-41ce-985d-ca49bf6c0585";
        let (status, _, room) = call(Method::GET, &format!("/rooms/{code}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(room["code"], code);
        assert_eq!(room["price"], 48);

        let (status, headers, body) = call(Method::GET, "/rooms/missing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(body["error"], "not_found");
        let (status, _, _) = call(Method::GET, &format!("/rooms/{code}/extra")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn cache_health_and_fallbacks() {
        let (status, _, body) = call(Method::GET, "/cache/rooms/ABC?x=1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"key": "/cache/rooms/ABC", "served_by": "rooms-2"}));

        let (status, _, body) = call(Method::GET, "/healthz").await;
        assert_eq!((status, body), (StatusCode::OK, json!("ok")));

        let (status, headers, body) = call(Method::GET, "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[SERVED_BY], "rooms-2");
        assert_eq!(body["error"], "not_found");

        let (status, headers, _) = call(Method::POST, "/rooms").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[ALLOW], "GET, HEAD");
    }
}
