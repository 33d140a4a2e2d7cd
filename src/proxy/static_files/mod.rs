//! Static files answered at the edge for `static_dir` routes, as nginx and Caddy serve them.
//!
//! Owns: the answer to a request for a file: method, mapping the path (`path.rs`, pure), finding
//! and opening the file (`open.rs`), the conditional and range decision (`conditional.rs`, pure),
//! the precompressed sibling (`encoding.rs`, pure), the response head, and the body streamed
//! from disk (`stream.rs`).
//! Must not touch: routing (the route and its prefix are given), the connection, the access log.

mod conditional;
mod encoding;
mod open;
mod path;
mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::answers::local_response;
use super::body::ResponseBody;
use conditional::{Answer, Conditions};
use open::{Lookup, Opened, Wait};

pub use open::Site;
pub use stream::FileStream;

/// Answers a request to a static route whose directory is `site` and whose prefix is `prefix`:
/// GET and HEAD of a file (`index.html` for a directory), 405 for any other method.
pub async fn serve<B>(req: &Request<B>, site: &Arc<Site>, prefix: &str) -> Response<ResponseBody> {
    let get = req.method() == Method::GET;
    if !get && req.method() != Method::HEAD {
        let mut r = local_response(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let raw = req.uri().path();
    let mapped = match path::map(raw, prefix) {
        Ok(m) => m,
        Err(why) => {
            tracing::debug!("static: 404 for {raw:?}: {}", why.as_str());
            return not_found();
        }
    };
    let headers = req.headers();
    let accept_encoding = list_field(headers, &header::ACCEPT_ENCODING);
    let accept = accept_encoding.as_ref().and_then(|v| v.to_str().ok());
    // The lookup cache answers almost every request at once; the rest wait in the blocking pool.
    let lookup = match open::find(site, &mapped, accept, Wait::CachedOnly) {
        Lookup::WouldBlock => {
            let site = site.clone();
            let accept = accept_encoding.clone();
            let job = move || {
                let accept = accept.as_ref().and_then(|v| v.to_str().ok());
                open::find(&site, &mapped, accept, Wait::Blocking)
            };
            match tokio::task::spawn_blocking(job).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!("static: lookup of {raw:?} failed: {e}");
                    return local_response(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error\n");
                }
            }
        }
        found => found,
    };
    let opened = match lookup {
        Lookup::File(opened) => opened,
        Lookup::Directory => {
            let location = path::slash_redirect(raw, req.uri().query());
            let mut r = Response::new(ResponseBody::empty());
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        Lookup::Escaped(real) => {
            tracing::debug!(
                "static: 404 for {raw:?}: it resolves to {}, outside the directory",
                real.display()
            );
            return not_found();
        }
        Lookup::NotFound | Lookup::WouldBlock => return not_found(),
        Lookup::Forbidden => return local_response(StatusCode::FORBIDDEN, "403 Forbidden\n"),
    };
    let if_match = list_field(headers, &header::IF_MATCH);
    let if_none_match = list_field(headers, &header::IF_NONE_MATCH);
    let conditions = Conditions {
        get,
        if_match: if_match.as_ref().and_then(text),
        if_none_match: if_none_match.as_ref().and_then(text),
        if_modified_since: single_field(headers, &header::IF_MODIFIED_SINCE),
        if_unmodified_since: single_field(headers, &header::IF_UNMODIFIED_SINCE),
        range: single_field(headers, &header::RANGE),
        if_range: single_field(headers, &header::IF_RANGE),
    };
    let answer = conditional::decide(&opened.validators, &conditions);
    respond(opened, answer, get)
}

fn respond(opened: Opened, answer: Answer, get: bool) -> Response<ResponseBody> {
    let Opened {
        file,
        validators,
        content_type,
        encoding,
        vary,
    } = opened;
    let (status, range) = match answer {
        Answer::Whole => (StatusCode::OK, None),
        Answer::Part(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        Answer::NotModified => (StatusCode::NOT_MODIFIED, None),
        Answer::PreconditionFailed => {
            return local_response(StatusCode::PRECONDITION_FAILED, "412 Precondition Failed\n");
        }
        Answer::Unsatisfiable => {
            let mut r = local_response(StatusCode::RANGE_NOT_SATISFIABLE, "416 Range Not Satisfiable\n");
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_RANGE,
                header_value(format!("bytes */{}", validators.len)),
            );
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return r;
        }
    };
    let mut headers = HeaderMap::with_capacity(9);
    headers.insert(header::ETAG, header_value(validators.etag));
    if let Some(secs) = validators.modified {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        headers.insert(header::LAST_MODIFIED, header_value(httpdate::fmt_http_date(t)));
    }
    if vary {
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    let body = if status == StatusCode::NOT_MODIFIED {
        ResponseBody::empty()
    } else {
        let (offset, len) = match range {
            Some(r) => {
                let last = r.last();
                headers.insert(
                    header::CONTENT_RANGE,
                    header_value(format!("bytes {}-{last}/{}", r.start, validators.len)),
                );
                (r.start, r.len)
            }
            None => (0, validators.len),
        };
        headers.insert(header::CONTENT_TYPE, content_type);
        if let Some(e) = encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(e.token()));
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if get && len > 0 {
            ResponseBody::file(FileStream::new(file, offset, len))
        } else {
            ResponseBody::empty()
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

fn not_found() -> Response<ResponseBody> {
    local_response(StatusCode::NOT_FOUND, "404 Not Found\n")
}

/// A field value built from text we made (digits, hex, a date): always valid.
fn header_value(s: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from(s)).unwrap_or(HeaderValue::from_static(""))
}

fn text(v: &HeaderValue) -> Option<&str> {
    v.to_str().ok()
}

/// A list field (`If-None-Match`, `Accept-Encoding`): its lines joined with commas, as RFC
/// 9110 5.3 says they mean.
fn list_field(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return Some(first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for line in std::iter::once(second).chain(lines) {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    HeaderValue::from_maybe_shared(Bytes::from(joined)).ok()
}

/// A field that must appear once (a date, `Range`, `If-Range`): absent when it is repeated,
/// so a request that repeats it is answered as if it had none.
fn single_field<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    first.to_str().ok()
}
