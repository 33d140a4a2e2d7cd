//! The status page at `GET /` of the admin address, without a browser: it is one HTML page whose
//! script and stylesheet come from the same origin, it loads nothing from another host, its
//! script talks only to `/api/v1`, and it is served uncached under a strict
//! Content-Security-Policy. `.ci/browser-test` drives the same page in Chromium.

use std::net::SocketAddr;

use crate::common::*;
use ringway::config::Balance;

/// The namespace of SVG elements: a name, never fetched.
const SVG_NS: &str = "http://www.w3.org/2000/svg";

struct Fetched {
    status: u16,
    content_type: String,
    cache_control: String,
    csp: String,
    body: String,
}

async fn fetch(client: &reqwest::Client, url: String) -> Fetched {
    let r = client.get(url).send().await.expect("admin answers");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    Fetched {
        status: r.status().as_u16(),
        content_type: header("content-type"),
        cache_control: header("cache-control"),
        csp: header("content-security-policy"),
        body: r.text().await.expect("body"),
    }
}

/// The values of every `name="…"` attribute in `html`.
fn attribute_values<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let marker = format!(" {name}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&marker) {
        rest = &rest[i + marker.len()..];
        let end = rest.find('"').expect("attribute value closes");
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

/// Every `api('METHOD', 'PATH'…` or `` api('METHOD', `PATH`… `` call of the script, as
/// (method, path): the script's one way to the network.
fn api_calls(js: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = js;
    while let Some(i) = rest.find("api('") {
        rest = &rest[i + 5..];
        let end = rest.find('\'').expect("method closes");
        let method = &rest[..end];
        let after = rest[end + 1..].trim_start_matches([',', ' ']);
        let path_end = after[1..].find(['\'', '`']).expect("path closes") + 1;
        out.push((method, &after[1..path_end]));
        rest = &rest[end..];
    }
    out
}

#[tokio::test]
async fn status_page_is_self_contained_and_talks_only_to_the_api() {
    bounded(async {
        let mut config = one_pool(Balance::RoundRobin, &[dead_addr()]);
        config.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let proxy = Proxy::start(config);
        let admin = proxy.start_admin();
        let client = client();

        let page = fetch(&client, format!("{admin}/")).await;
        assert_eq!(page.status, 200);
        assert!(
            page.content_type.starts_with("text/html"),
            "{}",
            page.content_type
        );
        assert!(page.body.starts_with("<!doctype html>"), "not an HTML page");
        assert_eq!(page.cache_control, "no-store");
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                page.csp.contains(directive),
                "CSP lacks {directive}: {}",
                page.csp
            );
        }
        assert!(!page.csp.contains("unsafe"), "{}", page.csp);

        // Nothing from another host, and nothing inline that the policy would block.
        let html = &page.body;
        let mut linked = Vec::new();
        for name in ["src", "href", "action"] {
            for v in attribute_values(html, name) {
                let same_origin = v.starts_with('/') && !v.starts_with("//");
                assert!(same_origin || v == "data:,", "{name}=\"{v}\" leaves the origin");
                linked.push(v);
            }
        }
        assert!(!html.contains("<style"), "inline style element");
        assert!(!html.contains(" style=\""), "inline style attribute");
        assert!(!html.contains(" onclick=") && !html.contains(" onload="));
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script type=\"module\" src=\"/status.js\"></script>"));
        assert!(linked.contains(&"/status.css") && linked.contains(&"/status.js"));

        let css = fetch(&client, format!("{admin}/status.css")).await;
        assert_eq!(css.status, 200);
        assert!(css.content_type.starts_with("text/css"), "{}", css.content_type);
        assert_eq!(css.cache_control, "no-store");
        assert!(!css.body.contains("url(") && !css.body.contains("@import"));
        assert!(css.body.contains("prefers-color-scheme: dark"));

        // The script: the module the page loads and every module it imports, all same-origin.
        let mut js = String::new();
        let mut modules = vec!["/status.js".to_owned()];
        let mut i = 0;
        while i < modules.len() {
            let module = fetch(&client, format!("{admin}{}", modules[i])).await;
            assert_eq!(module.status, 200, "{}", modules[i]);
            assert!(
                module.content_type.starts_with("text/javascript"),
                "{}",
                module.content_type
            );
            assert_eq!(module.cache_control, "no-store");
            for from in module.body.split("} from '").skip(1) {
                let path = &from[..from.find('\'').expect("import path closes")];
                assert!(path.starts_with("./") && !path.contains(".."), "import {path}");
                let path = format!("/{}", &path[2..]);
                if !modules.contains(&path) {
                    modules.push(path);
                }
            }
            js.push_str(&module.body);
            i += 1;
        }
        assert!(modules.len() > 1, "status.js imports its modules: {modules:?}");
        assert_eq!(
            js.matches("import {").count(),
            js.matches("} from './").count(),
            "every import is a same-origin module"
        );
        // Absolute URLs: only the SVG namespace, which names elements and is never fetched.
        for scheme in ["http://", "https://"] {
            for (i, _) in js.match_indices(scheme) {
                assert!(
                    js[i..].starts_with(SVG_NS),
                    "absolute URL in the script at byte {i}"
                );
            }
        }
        assert!(!js.contains("'//") && !js.contains("\"//") && !js.contains("`//"));
        // One way to the network, to same-origin /api/v1 ...
        assert!(js.contains("export const API = '/api/v1';"));
        assert_eq!(js.matches("fetch(").count(), 1, "one fetch() call");
        assert!(js.contains("fetch(API + path, {"));
        for other in [
            "XMLHttpRequest",
            "WebSocket",
            "EventSource",
            "sendBeacon",
            "import(",
            "location.href =",
            "window.open",
        ] {
            assert!(!js.contains(other), "the script uses {other}");
        }
        // ... to the endpoints of the contract the page uses ...
        let calls = api_calls(&js);
        assert!(!calls.is_empty());
        for (method, path) in &calls {
            let known = match *method {
                "GET" => path == &"/status" || path.starts_with("/pools/"),
                "PATCH" | "POST" => path.starts_with("/pools/"),
                _ => false,
            };
            assert!(known, "api('{method}', '{path}…')");
        }
        for want in [("GET", "/status"), ("PATCH", "/pools/"), ("POST", "/pools/")] {
            assert!(calls.contains(&want), "no {want:?} call");
        }
        // ... and data reaches the page as text, never as markup.
        for markup in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"] {
            assert!(!js.contains(markup), "the script uses {markup}");
        }
        // The token lives in session storage only.
        assert!(js.contains("sessionStorage") && !js.contains("localStorage"));
        assert!(!js.contains("document.cookie"));

        let other = fetch(&client, format!("{admin}/status.html")).await;
        assert_eq!(other.status, 404, "only the page's own files are served");
        proxy.stop().await;
    })
    .await
}
