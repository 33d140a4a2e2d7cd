//! Static files answered at the edge for `static_dir` routes.
//!
//! Owns: mapping a request path under the route's prefix to a file inside the directory, never
//! outside it (no `..`, no absolute segments), and a content type from the extension.

use std::path::{Component, Path, PathBuf};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::body::ResponseBody;
use super::forward::local_response;

/// Files larger than this are not served from memory (the route answers 404 for them).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The file a request path names under `dir`, or `None` if it would leave `dir`.
pub fn resolve(dir: &Path, path: &str, prefix: &str) -> Option<PathBuf> {
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    let mut out = dir.to_path_buf();
    for segment in rest.split('/') {
        if segment.is_empty() || segment == "." {
            continue;
        }
        if segment.contains('\\') || segment.contains('\0') {
            return None;
        }
        let mut comps = Path::new(segment).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// Answers a GET or HEAD for a file; directories answer their `index.html`.
pub async fn serve<B>(req: &Request<B>, dir: &Path, prefix: &str) -> Response<ResponseBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = local_response(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let not_found = || local_response(StatusCode::NOT_FOUND, "404 Not Found\n");
    let Some(mut path) = resolve(dir, req.uri().path(), prefix) else {
        return not_found();
    };
    let Ok(mut meta) = tokio::fs::metadata(&path).await else {
        return not_found();
    };
    if meta.is_dir() {
        path.push("index.html");
        match tokio::fs::metadata(&path).await {
            Ok(m) => meta = m,
            Err(_) => return not_found(),
        }
    }
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return not_found();
    }
    let Ok(data) = tokio::fs::read(&path).await else {
        return not_found();
    };
    let len = data.len();
    let body = if req.method() == Method::HEAD {
        ResponseBody::empty()
    } else {
        ResponseBody::full(data)
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_inside_the_directory() {
        let d = Path::new("/srv/www");
        assert_eq!(
            resolve(d, "/assets/a/b.css", "/assets/"),
            Some(PathBuf::from("/srv/www/a/b.css"))
        );
        assert_eq!(
            resolve(d, "/assets/", "/assets/"),
            Some(PathBuf::from("/srv/www"))
        );
        assert_eq!(resolve(d, "/assets/../etc/passwd", "/assets/"), None);
        assert_eq!(resolve(d, "/assets/a/..", "/assets/"), None);
        assert_eq!(resolve(d, "/assets/a\\..\\b", "/assets/"), None);
    }
}
