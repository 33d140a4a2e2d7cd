//! The short answers Ringway gives itself: errors at the edge (400, 404, 413, 502, 503, 504)
//! and the base of every local answer, with a short `text/plain` body and no internal detail
//! (DESIGN.md 1.6).
//!
//! Must not touch: when each is given (the request path decides).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::ResponseBody;

/// Seconds a client is asked to wait when no server is available.
const RETRY_AFTER_SECS: &str = "5";

/// A short answer from Ringway itself.
pub fn local_response(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    r
}

pub(super) fn bad_request() -> Response<ResponseBody> {
    let mut r = local_response(StatusCode::BAD_REQUEST, "400 Bad Request\n");
    // A request whose framing we refused leaves the connection in an unknown state.
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

pub(super) fn not_found() -> Response<ResponseBody> {
    local_response(StatusCode::NOT_FOUND, "404 Not Found\n")
}

pub(super) fn bad_gateway() -> Response<ResponseBody> {
    local_response(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
}

pub(super) fn gateway_timeout() -> Response<ResponseBody> {
    local_response(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Timeout\n")
}

pub(super) fn unavailable() -> Response<ResponseBody> {
    local_response(StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable\n")
}

pub(super) fn too_large() -> Response<ResponseBody> {
    let mut r = local_response(StatusCode::PAYLOAD_TOO_LARGE, "413 Content Too Large\n");
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The answer to a path that cannot be normalised or that its route refuses: the request's
/// framing was sound, so the connection stays open.
pub(super) fn bad_path() -> Response<ResponseBody> {
    local_response(StatusCode::BAD_REQUEST, "400 Bad Request\n")
}
