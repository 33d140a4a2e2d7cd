//! The status page at `GET /` of the admin address: one HTML page, its stylesheet and its script
//! (three JavaScript modules), compiled into the binary so the page works offline and needs
//! nothing from another host.
//!
//! Owns: the static files of the page and the headers they are served with (no caching, a strict
//! Content-Security-Policy). Must not touch live state: the page reads everything from the
//! `/api/v1` endpoints with `fetch()` and changes servers only through them.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::Full;

/// The scripts and the stylesheet are separate same-origin files, so the policy needs neither
/// `'unsafe-inline'` nor hashes that would have to follow every edit of the page.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the page: its name under `/`, its type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 5] = [
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("status_page/index.html"),
    },
    Asset {
        name: "status.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("status_page/status.css"),
    },
    Asset {
        name: "status.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("status_page/status.js"),
    },
    Asset {
        name: "status-lib.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("status_page/status-lib.js"),
    },
    Asset {
        name: "status-draw.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("status_page/status-draw.js"),
    },
];

/// Whether `name` (a path of one segment, without its leading `/`) is a file of the status page.
pub fn serves(name: &str) -> bool {
    ASSETS.iter().any(|a| a.name == name)
}

/// The file of the status page at `/{name}`, or the page itself for any name it does not serve.
pub fn response(name: &str) -> Response<Full<Bytes>> {
    let asset = ASSETS.iter().find(|a| a.name == name).unwrap_or(&ASSETS[0]);
    let mut r = Response::new(Full::new(Bytes::from_static(asset.body.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // Live figures: a cached copy of the page or its script would show an old build's view.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_and_its_files_with_no_store_and_a_policy() {
        for (name, kind) in [
            ("", "text/html"),
            ("status.css", "text/css"),
            ("status.js", "text/javascript"),
            ("status-lib.js", "text/javascript"),
            ("status-draw.js", "text/javascript"),
        ] {
            assert!(serves(name), "{name}");
            let r = response(name);
            let h = r.headers();
            assert!(
                h[header::CONTENT_TYPE]
                    .to_str()
                    .is_ok_and(|v| v.starts_with(kind))
            );
            assert_eq!(h[header::CACHE_CONTROL], "no-store");
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap_or("");
            assert!(
                csp.contains("script-src 'self'") && !csp.contains("unsafe"),
                "{csp}"
            );
        }
        assert!(!serves("api"));
        assert!(!serves("favicon.ico"));
    }
}
