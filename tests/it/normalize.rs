//! Path normalisation over real sockets: every spelling of a guarded prefix is answered by the
//! route that guards it, and its server reads the normal path; a path above the root is 400
//! and reaches no server; `reject_encoded_slash`; static files, HTTP/2 clients and an HTTP/2
//! pool alike.
//!
//! The odd spellings go out on raw sockets (HTTP/1.1) or through hyper's HTTP/2 client, which
//! send a target as written: reqwest (through `url`) would resolve the dot segments itself.

use std::time::Duration;

use crate::common::edge::{RawResponse, TempDir, log_line, one_write};
use crate::common::upstream::{ServerOptions, TestServer, describe, h2_client, no_body};
use crate::common::*;
use ringway::cli::{pool, route, server};
use ringway::config::{AccessLogFormat, AccessLogTarget, Balance, Config, RouteAction, UpstreamProtocol};

/// The spellings of issue 13 and their kin: each names `/admin/x` on the server behind.
const SPELLINGS: &[&str] = &[
    "/pub/../admin/x",
    "/./admin/x",
    "/%61dmin/x",
    "//admin/x",
    "/pub/%2e%2e/admin/x",
    "/pub/%2E./admin/x",
    "/pub/.%2E/admin/x",
    "/admin/./x",
    "/admin//x",
    "/adm%69n/%78",
    "/pub/a/%2e%2e/../admin/x",
    "/admin/x/y/..",
];

/// Route `/admin/` to pool `admin`, `/` to pool `public`, `/files/` (refusing encoded slashes)
/// to `admin`, `/old/` redirecting, `/api/` to `admin` with its prefix stripped.
fn config(admin: &str, public: &str) -> Config {
    let mut c = base_config();
    c.pools
        .push(pool("admin", Balance::RoundRobin, vec![server(admin)]));
    c.pools
        .push(pool("public", Balance::RoundRobin, vec![server(public)]));
    c.routes.push(route("admin", "/admin/", "admin"));
    c.routes.push(route("public", "/", "public"));
    let mut files = route("files", "/files/", "admin");
    files.reject_encoded_slash = true;
    c.routes.push(files);
    let mut old = route("old", "/old/", "admin");
    old.action = RouteAction::Redirect {
        to: "https://example.com/new/".into(),
        status: 301,
    };
    c.routes.push(old);
    let mut api = route("api", "/api/", "admin");
    api.action = RouteAction::Pool {
        pool: "admin".into(),
        strip_prefix: true,
    };
    c.routes.push(api);
    c
}

/// One GET of `target` on its own connection, as written.
async fn get_raw(proxy: &Proxy, target: &str) -> RawResponse {
    let request = format!("GET {target} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n");
    one_write(proxy.addr, request.as_bytes()).await
}

/// The target the server behind read, from its JSON answer.
fn served(r: &RawResponse, target: &str) -> Seen {
    assert_eq!(r.status, Some(200), "{target}: {}", r.head);
    Seen::parse(&r.body)
}

#[tokio::test]
async fn each_spelling_is_answered_by_the_route_guarding_the_prefix() {
    bounded(async {
        let admin = Backend::start("admin").await;
        let public = Backend::start("public").await;
        let proxy = Proxy::start(config(&admin.address(), &public.address()));
        for spelling in SPELLINGS {
            // The query goes as received, odd spellings and all.
            let target = format!("{spelling}?next=/pub/../%2e%2e/&a=%61");
            let r = get_raw(&proxy, &target).await;
            let seen = served(&r, &target);
            assert_eq!(seen.backend, "admin", "{target}");
            let expected = if spelling.ends_with("..") {
                "/admin/x/"
            } else {
                "/admin/x"
            };
            assert_eq!(
                seen.uri,
                format!("{expected}?next=/pub/../%2e%2e/&a=%61"),
                "{target}"
            );
        }
        assert_eq!(public.requests(), 0, "the catch-all pool saw none of them");

        // Other encodings stay as they are, in upper-case hex; unreserved ones are decoded.
        let r = get_raw(&proxy, "/admin/a%2fb/%7euser/%c3%a9").await;
        assert_eq!(served(&r, "").uri, "/admin/a%2Fb/~user/%C3%A9");
        // A normal path goes exactly as received.
        let r = get_raw(&proxy, "/pub/.well-known/..a?x=%2e").await;
        let seen = served(&r, "");
        assert_eq!(
            (seen.backend.as_str(), seen.uri.as_str()),
            ("public", "/pub/.well-known/..a?x=%2e")
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_path_above_the_root_is_400_and_reaches_no_server() {
    bounded(async {
        let admin = Backend::start("admin").await;
        let public = Backend::start("public").await;
        let proxy = Proxy::start(config(&admin.address(), &public.address()));
        for target in ["/%2e%2e/x", "/../admin/x", "/pub/../../admin/x", "/%2E./admin/x", "/..", "/%zz/admin", "/admin/%4"] {
            let r = get_raw(&proxy, target).await;
            assert_eq!(r.status, Some(400), "{target}: {}", r.head);
        }
        assert_eq!(admin.requests() + public.requests(), 0);
        // The request's framing was sound: the connection carries on to the next request.
        let out = raw_exchange(
            proxy.addr,
            b"GET /../x HTTP/1.1\r\nHost: a\r\n\r\nGET /pub/../admin/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(out.status, Some(400), "{}", out.text);
        assert!(out.text.contains("HTTP/1.1 200 "), "{}", out.text);
        assert!(out.text.contains("\"uri\":\"/admin/y\""), "{}", out.text);
        assert_eq!(admin.requests(), 1);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_route_may_refuse_encoded_slashes() {
    bounded(async {
        let admin = Backend::start("admin").await;
        let public = Backend::start("public").await;
        let proxy = Proxy::start(config(&admin.address(), &public.address()));
        for target in ["/files/a%2Fb", "/files/a%2fb", "/pub/../files/..%2Fadmin/x"] {
            let r = get_raw(&proxy, target).await;
            assert_eq!(r.status, Some(400), "{target}: {}", r.head);
        }
        assert_eq!(admin.requests(), 0);
        let r = get_raw(&proxy, "/files/a/b?x=%2F").await;
        assert_eq!(served(&r, "").uri, "/files/a/b?x=%2F", "a query may hold one");
        // A route without the flag forwards it, encoded.
        let r = get_raw(&proxy, "/admin/..%2fx").await;
        assert_eq!(served(&r, "").uri, "/admin/..%2Fx");
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn redirects_and_stripped_prefixes_see_the_normal_path() {
    bounded(async {
        let admin = Backend::start("admin").await;
        let public = Backend::start("public").await;
        let proxy = Proxy::start(config(&admin.address(), &public.address()));
        for target in ["/pub/../old/page", "/%6Fld/page", "//old/page"] {
            let r = get_raw(&proxy, target).await;
            assert_eq!(r.status, Some(301), "{target}: {}", r.head);
            assert_eq!(r.header("location"), Some("https://example.com/new/"), "{target}");
        }
        let r = get_raw(&proxy, "/pub/../api/./v1//users/%2e%2e/items?x=1").await;
        assert_eq!(served(&r, "").uri, "/v1/items?x=1");
        assert_eq!(public.requests(), 0);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn http2_clients_are_normalised_too() {
    bounded(async {
        let admin = Backend::start("admin").await;
        let public = Backend::start("public").await;
        let proxy = Proxy::start(config(&admin.address(), &public.address()));
        let mut h2 = h2_client(proxy.addr).await;
        for spelling in SPELLINGS.iter().filter(|s| !s.ends_with("..")) {
            let req = hyper::Request::get(format!("http://{}{spelling}?q=1", proxy.addr))
                .body(no_body())
                .expect("request");
            let resp = h2.send_request(req).await.expect("h2 response");
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
            let d = describe(resp).await;
            assert_eq!(d.status, 200, "{spelling}: {}", d.body);
            let seen = Seen::parse(d.body.as_bytes());
            assert_eq!(
                (seen.backend.as_str(), seen.uri.as_str()),
                ("admin", "/admin/x?q=1"),
                "{spelling}"
            );
        }
        for spelling in ["/%2e%2e/admin/x", "/pub/../../admin/x"] {
            let req = hyper::Request::get(format!("http://{}{spelling}", proxy.addr))
                .body(no_body())
                .expect("request");
            let resp = h2.send_request(req).await.expect("h2 response");
            assert_eq!(resp.status(), 400, "{spelling}");
        }
        assert_eq!(public.requests(), 0);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn an_h2c_pool_is_sent_the_normal_path() {
    bounded(async {
        let h2c = TestServer::start(
            "h2c",
            ServerOptions {
                h2_only: true,
                ..ServerOptions::default()
            },
        )
        .await;
        let public = Backend::start("public").await;
        let mut c = config(&h2c.address(), &public.address());
        c.pools[0].protocol = UpstreamProtocol::H2c;
        let proxy = Proxy::start(c);
        let r = get_raw(&proxy, "/pub/%2e%2e/%61dmin//x?q=%2e").await;
        assert_eq!(r.status, Some(200), "{}", r.head);
        let json: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        let uri: hyper::Uri = json["uri"].as_str().expect("uri").parse().expect("a URI");
        assert_eq!(json["version"], "HTTP/2.0");
        assert_eq!(uri.path_and_query().map(|p| p.as_str()), Some("/admin/x?q=%2e"));
        assert_eq!(public.requests(), 0);
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn the_access_log_keeps_the_target_as_received() {
    bounded(async {
        let dir = TempDir::new("normalize-log");
        let log = dir.0.join("access.log");
        let admin = Backend::start("admin").await;
        let public = Backend::start("public").await;
        let mut c = config(&admin.address(), &public.address());
        c.log.access = AccessLogTarget::File(log.clone());
        c.log.format = AccessLogFormat::Json;
        let proxy = Proxy::start(c);
        let r = get_raw(&proxy, "/pub/%2e%2e/admin/x?a=1").await;
        assert_eq!(served(&r, "").uri, "/admin/x?a=1");
        let rid = r.header("x-request-id").expect("request id");
        let line = log_line(&log, rid).await;
        assert_eq!(line["uri"], "/pub/%2e%2e/admin/x?a=1", "{line}");
        assert_eq!(line["route"], "admin", "{line}");
        let r = get_raw(&proxy, "/../x").await;
        let rid = r.header("x-request-id").expect("request id");
        let line = log_line(&log, rid).await;
        assert_eq!(
            (line["uri"].as_str(), line["status"].as_u64()),
            (Some("/../x"), Some(400)),
            "{line}"
        );
        proxy.stop().await;
    })
    .await
}

#[tokio::test]
async fn static_files_are_mapped_from_the_normal_path() {
    bounded(async {
        let dir = TempDir::new("normalize-static");
        std::fs::write(dir.0.join("page.txt"), "the page\n").expect("write file");
        let admin = Backend::start("admin").await;
        let public = Backend::start("public").await;
        let mut c = config(&admin.address(), &public.address());
        let mut files = route("static", "/s/", "admin");
        files.action = RouteAction::Static { dir: dir.0.clone() };
        c.routes.push(files);
        let proxy = Proxy::start(c);
        for target in [
            "/s/page.txt",
            "/pub/../s/page.txt",
            "//s/./page.txt",
            "/%73/pag%65.txt",
        ] {
            let r = get_raw(&proxy, target).await;
            assert_eq!(r.status, Some(200), "{target}: {}", r.head);
            assert_eq!(r.body, b"the page\n", "{target}");
        }
        let r = get_raw(&proxy, "/s/../../page.txt").await;
        assert_eq!(r.status, Some(400), "{}", r.head);
        assert_eq!(admin.requests() + public.requests(), 0);
        proxy.stop().await;
    })
    .await
}
