//! The HTTP side of the admin API: JSON answers, error bodies, reading a JSON request body
//! within its limit, and the bearer-token check.
//!
//! Owns: the error shape `{"error": {"status", "message"}}`, the 64 KiB body limit, the
//! content-type rule and the constant-time token comparison.
//! Must not touch: the live state (handlers in the sibling modules do).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// An answer of the admin interface.
pub type Resp = Response<Full<Bytes>>;

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Bytes of an oversized body read and thrown away before answering 413, so that a client
/// still sending it gets the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// A JSON answer with `status`.
pub fn json_response(status: StatusCode, v: &Value) -> Resp {
    bytes_response(status, "application/json", Bytes::from(v.to_string()))
}

/// A serialisable value as a JSON answer.
pub fn json_ok<T: Serialize>(status: StatusCode, v: &T) -> Resp {
    match serde_json::to_vec(v) {
        Ok(body) => bytes_response(status, "application/json", Bytes::from(body)),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render JSON: {e}"),
        )
        .into(),
    }
}

/// A body of `content_type` with `status`.
pub fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// An error answer: `{"error": {"status": N, "message": "..."}}` and the headers it needs.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What is wrong, for a person.
    pub message: String,
    /// `Allow` for a 405.
    pub allow: Option<&'static str>,
    /// `WWW-Authenticate` for a 401.
    pub authenticate: Option<&'static str>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            allow: None,
            authenticate: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 422: a well-formed request whose values cannot be applied.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 409: the request conflicts with the live state.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
}

impl From<ApiError> for Resp {
    fn from(e: ApiError) -> Resp {
        let mut r = json_response(
            e.status,
            &json!({"error": {"status": e.status.as_u16(), "message": e.message}}),
        );
        if let Some(allow) = e.allow {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(a) = e.authenticate {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(a));
        }
        r
    }
}

/// Whether a `Content-Type` names JSON (`application/json` or `application/…+json`, any
/// parameters).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads the request body as JSON of type `T`: 415 unless it is declared JSON (a browser
/// cannot send that cross-site without a CORS preflight, so a web page cannot drive the API),
/// 413 over [`MAX_BODY_BYTES`], 400 for malformed JSON, wrong types or unknown fields.
pub async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json(content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON, sent with `Content-Type: application/json`",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        drain(body).await;
        return Err(too_large());
    }
    let mut limited = Limited::new(&mut body, MAX_BODY_BYTES);
    let mut buf = Vec::new();
    loop {
        match limited.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => {
                if e.is::<http_body_util::LengthLimitError>() {
                    drain(body).await;
                    return Err(too_large());
                }
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                ));
            }
        }
    }
    serde_json::from_slice(&buf)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// Reads and drops up to [`DRAIN_LIMIT`] bytes of a body, for at most a second.
async fn drain(mut body: Incoming) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let mut seen = 0usize;
        while seen < DRAIN_LIMIT {
            match body.frame().await {
                Some(Ok(f)) => seen += f.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    })
    .await;
}

/// Checks the bearer token of a mutating call. `token` is the value of the variable named by
/// `[admin].token_env` (`None` when unset: every call is allowed, as on a loopback address
/// without a token). A variable set but empty refuses every call rather than accept an empty
/// token.
pub fn authorize(headers: &HeaderMap, token_env: &str, token: Option<&str>) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Ok(());
    };
    let unauthorized = |message: String, authenticate: &'static str| ApiError {
        authenticate: Some(authenticate),
        ..ApiError::new(StatusCode::UNAUTHORIZED, message)
    };
    if token.is_empty() {
        return Err(unauthorized(
            format!("the admin token variable {token_env} is set but empty; no call can change anything"),
            "Bearer realm=\"ringway\"",
        ));
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(unauthorized(
            "this call changes the running configuration: send `Authorization: Bearer <token>`".into(),
            "Bearer realm=\"ringway\"",
        ));
    };
    if tokens_equal(given.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized(
            "the bearer token is not the admin token".into(),
            "Bearer realm=\"ringway\", error=\"invalid_token\"",
        ))
    }
}

/// Compares in time independent of where the two differ (the length may show).
fn tokens_equal(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }

    #[test]
    fn tokens() {
        let mut h = HeaderMap::new();
        assert!(authorize(&h, "T", None).is_ok());
        let e = authorize(&h, "T", Some("s3cret")).expect_err("no header");
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.authenticate.is_some());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert!(authorize(&h, "T", Some("s3cret")).is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(authorize(&h, "T", Some("s3cret")).is_ok());
        assert!(authorize(&h, "T", Some("")).is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic s3cret"));
        assert!(authorize(&h, "T", Some("s3cret")).is_err());
    }
}
