//! Route maintenance over real sockets: switched on and off through the admin API, by a window
//! with a clock the test sets, the `Retry-After` of each case, the page, the allow list, the
//! switch across reloads, and bad input (configuration errors with file:line:col, bad PUT
//! bodies).

use std::path::{Path, PathBuf};

use crate::common::*;
use jiff::Timestamp;
use serde_json::{Value, json};

/// The page the tests' routes answer with.
const PAGE: &str = "<!doctype html><title>Back soon</title><h1>Down for maintenance</h1>\n";

/// A scratch directory of its own for each test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringway-maintenance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("down.html"), PAGE).expect("page");
    dir
}

/// A configuration file: the admin on an ephemeral port, one listener, `routes` (TOML) and the
/// pool [`POOL`] of `backend`.
fn config_text(backend: &Backend, routes: &str) -> String {
    format!(
        "workers = 1\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"RINGWAY_TEST_TOKEN_NEVER_SET\"\n\
         [log]\naccess = \"off\"\n[[listener]]\nname = \"{LISTENER}\"\nbind = \"127.0.0.1:0\"\n\
         {routes}\n[pool.{POOL}]\nservers = [\"{}\"]\n",
        backend.address()
    )
}

/// Writes `text` as `dir/ringway.toml` and starts Ringway and its admin interface from it.
fn start(dir: &Path, text: &str) -> (Proxy, String) {
    let path = dir.join("ringway.toml");
    std::fs::write(&path, text).expect("write config");
    let config = ringway::config::load(&path).unwrap_or_else(|e| panic!("config: {e:?}"));
    let proxy = Proxy::start_from(config, Some(path));
    let admin = proxy.start_admin();
    (proxy, admin)
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// An admin API answer: status and JSON.
async fn api(method: &str, url: &str, body: Option<String>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(method, url);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let r = send(req).await;
    (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

async fn put(admin: &str, route: &str, body: Value) -> (u16, Value) {
    api(
        "PUT",
        &format!("{admin}/api/v1/routes/{route}/maintenance"),
        Some(body.to_string()),
    )
    .await
}

/// The `maintenance` of route `name` in `GET /api/v1/routes`.
async fn route_view(admin: &str, name: &str) -> Value {
    let (status, v) = api("GET", &format!("{admin}/api/v1/routes"), None).await;
    assert_eq!(status, 200);
    v["routes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .map(|r| r["maintenance"].clone())
        .unwrap_or_else(|| panic!("no route {name} in {v}"))
}

/// Asserts a maintenance answer: 503, the page or the text, and `Retry-After: retry`.
#[track_caller]
fn assert_maintenance(r: &Reply, page: bool, retry: u64) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some(retry.to_string().as_str()));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.header("x-backend").is_none(),
        "answered by Ringway, not the server"
    );
    if page {
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.text(), PAGE);
    } else {
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(r.text().contains("maintenance"), "{}", r.text());
    }
}

#[tokio::test]
async fn switched_on_and_off_through_the_api() {
    bounded(async {
        let backend = Backend::start("app").await;
        let dir = scratch("api");
        let routes = format!(
            "[[route]]\nname = \"app\"\npath = \"/app/\"\npool = \"{POOL}\"\n\
             [route.maintenance]\npage = \"down.html\"\nretry_after = \"2h\"\n\
             [[route]]\nname = \"other\"\npath = \"/\"\npool = \"{POOL}\"\n"
        );
        let (proxy, admin) = start(&dir, &config_text(&backend, &routes));
        let clock = &proxy.engine().shared.clock;
        let now = ts("2026-12-02T12:00:00Z");
        clock.set(now);
        let c = client();
        let get = |path: &str| send(c.get(proxy.url(path)));

        assert_eq!(get("/app/x").await.backend(), "app");
        let view = route_view(&admin, "app").await;
        assert_eq!(view["active"], false);
        assert_eq!(view["set_by"], "config");

        // On by hand: the file's retry_after.
        let (status, v) = put(&admin, "app", json!({"enabled": true})).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (&v["route"], &v["active"], &v["enabled"]),
            (&json!("app"), &json!(true), &json!(true))
        );
        assert_eq!(
            (&v["set_by"], &v["retry_after"], &v["retry_after_s"]),
            (&json!("api"), &json!("2h"), &json!(7200))
        );
        let before = backend.requests();
        assert_maintenance(&get("/app/x").await, true, 7200);
        assert_eq!(backend.requests(), before, "nothing reached the server");
        // A route without maintenance carries on.
        assert_eq!(get("/elsewhere").await.backend(), "app");

        // The API's retry_after, then an `until` ten minutes ahead.
        assert_eq!(
            put(&admin, "app", json!({"enabled": true, "retry_after": "30m"}))
                .await
                .0,
            200
        );
        assert_maintenance(&get("/app/x").await, true, 1800);
        let (status, v) = put(
            &admin,
            "app",
            json!({"enabled": true, "until": "2026-12-02T13:10:00+01:00"}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["until"], "2026-12-02T12:10:00.000Z");
        assert_eq!(v["ends_at"], "2026-12-02T12:10:00.000Z");
        assert_maintenance(&get("/app/x").await, true, 600);
        clock.set(ts("2026-12-02T12:09:59.500Z"));
        assert_maintenance(&get("/app/x").await, true, 1);
        // `until` reached: the switch is off by itself.
        clock.set(ts("2026-12-02T12:10:00Z"));
        assert_eq!(get("/app/x").await.backend(), "app");
        let (status, v) = api("GET", &format!("{admin}/api/v1/routes/app/maintenance"), None).await;
        assert_eq!(
            (status, &v["active"], &v["enabled"]),
            (200, &json!(false), &json!(false))
        );

        // On, then off again.
        assert_eq!(put(&admin, "app", json!({"enabled": true})).await.0, 200);
        assert_eq!(get("/app/x").await.status, 503);
        let (status, v) = put(&admin, "app", json!({"enabled": false})).await;
        assert_eq!((status, &v["active"]), (200, &json!(false)));
        assert_eq!(get("/app/x").await.backend(), "app");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test]
async fn a_window_with_a_controlled_clock() {
    bounded(async {
        let backend = Backend::start("app").await;
        let dir = scratch("window");
        // No page: a short text. Sunday 02:00-04:00 in Paris is 01:00-03:00Z in winter.
        let routes = format!(
            "[[route]]\nname = \"app\"\npool = \"{POOL}\"\n\
             [route.maintenance]\nwindows = [\"sun 02:00-04:00 Europe/Paris\", \"sat 23:00-01:00 UTC\"]\n"
        );
        let (proxy, admin) = start(&dir, &config_text(&backend, &routes));
        let clock = &proxy.engine().shared.clock;
        let c = client();
        let get = || send(c.get(proxy.url("/x")));

        // Saturday 2026-11-28, noon: outside; the next window is Saturday 23:00 UTC, which runs
        // into Sunday 01:00 UTC, where the Paris window takes over until 03:00 UTC.
        clock.set(ts("2026-11-28T12:00:00Z"));
        assert_eq!(get().await.backend(), "app");
        let view = route_view(&admin, "app").await;
        assert_eq!(view["active"], false);
        assert_eq!(
            view["next_window"],
            json!({"start": "2026-11-28T23:00:00.000Z", "end": "2026-11-29T03:00:00.000Z"})
        );
        assert_eq!(
            view["windows"],
            json!(["sun 02:00-04:00 Europe/Paris", "sat 23:00-01:00 UTC"])
        );

        // Inside the UTC window: Retry-After is the end of the merged maintenance.
        clock.set(ts("2026-11-28T23:30:00Z"));
        assert_maintenance(&get().await, false, 3 * 3600 + 1800);
        // Inside the Paris window (02:30 CET): 90 minutes to its end.
        clock.set(ts("2026-11-29T01:30:00Z"));
        assert_maintenance(&get().await, false, 5400);
        let view = route_view(&admin, "app").await;
        assert_eq!(
            (&view["active"], &view["in_window"], &view["enabled"]),
            (&json!(true), &json!(true), &json!(false))
        );
        assert_eq!(view["ends_at"], "2026-11-29T03:00:00.000Z");
        assert_eq!(view["retry_after_s"], 5400);
        // At the end of the window the route is back.
        clock.set(ts("2026-11-29T03:00:00Z"));
        assert_eq!(get().await.backend(), "app");
        // Spring forward: 02:00 does not exist in Paris on 2026-03-29; the Paris window opens
        // at the jump (01:00Z, 03:00 CEST, where the UTC window ends) and closes at 04:00 CEST
        // (02:00Z), an hour earlier than on a winter Sunday.
        clock.set(ts("2026-03-29T00:30:00Z"));
        assert_maintenance(&get().await, false, 5400);
        clock.set(ts("2026-03-29T01:30:00Z"));
        assert_maintenance(&get().await, false, 1800);
        clock.set(ts("2026-03-29T02:00:00Z"));
        assert_eq!(get().await.backend(), "app");

        // By hand during a window: the later of the two ends.
        clock.set(ts("2026-11-29T01:30:00Z"));
        let (status, v) = put(
            &admin,
            "app",
            json!({"enabled": true, "until": "2026-11-29T05:00:00Z"}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_maintenance(&get().await, false, 3 * 3600 + 1800);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test]
async fn the_allow_list_lets_its_clients_through() {
    bounded(async {
        let backend = Backend::start("app").await;
        let dir = scratch("allow");
        let routes = format!(
            "[[route]]\nname = \"ops\"\npath = \"/ops/\"\npool = \"{POOL}\"\n\
             [route.maintenance]\nenabled = true\nallow = [\"127.0.0.0/8\"]\n\
             [[route]]\nname = \"public\"\npath = \"/\"\npool = \"{POOL}\"\n\
             [route.maintenance]\nenabled = true\nallow = [\"10.0.0.0/8\", \"192.0.2.7\"]\npage = \"down.html\"\nretry_after = \"5m\"\n"
        );
        // Behind a trusted proxy (the test itself), the client is the one X-Forwarded-For names.
        let text = config_text(&backend, &routes).replace(
            "bind = \"127.0.0.1:0\"\n",
            "bind = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
        );
        let (proxy, admin) = start(&dir, &text);
        let c = client();
        // The test's client is 127.0.0.1: inside the first list, outside the second.
        assert_eq!(send(c.get(proxy.url("/ops/x"))).await.backend(), "app");
        assert_maintenance(&send(c.get(proxy.url("/x"))).await, true, 300);
        // HEAD: the same head, no body.
        let r = send(c.head(proxy.url("/x"))).await;
        assert_eq!((r.status, r.header("retry-after")), (503, Some("300")));
        assert!(r.body.is_empty());
        // The real client, not the peer, is what the lists are read against.
        let from = |path: &str, ip: &str| send(c.get(proxy.url(path)).header("x-forwarded-for", ip));
        assert_eq!(from("/x", "10.1.2.3").await.backend(), "app");
        assert_eq!(from("/x", "192.0.2.7").await.backend(), "app");
        assert_maintenance(&from("/x", "192.0.2.8").await, true, 300);
        assert_eq!(from("/ops/x", "192.0.2.8").await.status, 503);
        let view = route_view(&admin, "public").await;
        assert_eq!(view["allow"], json!(["10.0.0.0/8", "192.0.2.7/32"]));
        assert_eq!(view["active"], true);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test]
async fn the_switch_survives_a_reload_and_the_page_is_read_at_reload() {
    bounded(async {
        let backend = Backend::start("app").await;
        let dir = scratch("reload");
        let maintenance = |enabled: bool| {
            format!(
                "[[route]]\nname = \"app\"\npool = \"{POOL}\"\n\
                 [route.maintenance]\nenabled = {enabled}\npage = \"down.html\"\n"
            )
        };
        let (proxy, admin) = start(&dir, &config_text(&backend, &maintenance(false)));
        let path = dir.join("ringway.toml");
        let c = client();
        let get = || send(c.get(proxy.url("/x")));
        let reload_url = format!("{admin}/api/v1/reload");
        let reload = || api("POST", &reload_url, None);

        assert_eq!(
            put(&admin, "app", json!({"enabled": true, "retry_after": "45s"}))
                .await
                .0,
            200
        );
        assert_maintenance(&get().await, true, 45);
        // The page changes on disk: nothing changes until a reload reads it.
        let new_page = "<h1>Still working on it</h1>\n";
        std::fs::write(dir.join("down.html"), new_page).expect("page");
        assert_eq!(get().await.text(), PAGE);
        let (status, v) = reload().await;
        assert_eq!(status, 200, "{v}");
        // The switch set through the API outlived the reload; the page is the new one.
        let r = get().await;
        assert_eq!((r.status, r.header("retry-after")), (503, Some("45")));
        assert_eq!(r.text(), new_page);
        assert_eq!(route_view(&admin, "app").await["set_by"], "api");

        // A reload whose file changes `enabled` takes the file's word, the latest.
        std::fs::write(&path, config_text(&backend, &maintenance(true))).expect("config");
        assert_eq!(reload().await.0, 200);
        assert_eq!(get().await.status, 503);
        assert_eq!(route_view(&admin, "app").await["set_by"], "config");
        std::fs::write(&path, config_text(&backend, &maintenance(false))).expect("config");
        assert_eq!(reload().await.0, 200);
        assert_eq!(get().await.backend(), "app");

        // A reload refused for a missing page keeps the running maintenance as it was.
        assert_eq!(put(&admin, "app", json!({"enabled": true})).await.0, 200);
        std::fs::remove_file(dir.join("down.html")).expect("remove page");
        let (status, v) = reload().await;
        assert_eq!(status, 422, "{v}");
        let errors = v["error"]["errors"].to_string();
        assert!(errors.contains("ringway.toml:15:1: maintenance page"), "{errors}");
        let r = get().await;
        assert_eq!((r.status, r.text()), (503, new_page.to_string()));
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test]
async fn bad_configuration_is_refused_with_its_position() {
    bounded(async {
        let backend = Backend::start("app").await;
        let dir = scratch("config");
        let path = dir.join("ringway.toml");
        let routes = format!(
            "[[route]]\nname = \"app\"\npool = \"{POOL}\"\n[route.maintenance]\n\
             windows = [\"sun 02:00-04:00 Europe/Pariss\", \"sunday 02:00-04:00 UTC\", \"sun 02:00 UTC\"]\n\
             allow = [\"10.0.0.1/8\"]\npage = \"missing.html\"\n"
        );
        std::fs::write(&path, config_text(&backend, &routes)).expect("config");
        let errors: Vec<String> = ringway::config::load(&path)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        let shown = path.display();
        let expected = [
            format!(
                "{shown}:14:12: invalid maintenance window \"sun 02:00-04:00 Europe/Pariss\": unknown time zone `Europe/Pariss`"
            ),
            format!("{shown}:14:45: invalid maintenance window \"sunday 02:00-04:00 UTC\": `sunday` is not a day"),
            format!("{shown}:14:71: invalid maintenance window \"sun 02:00 UTC\"; write \"DAY[-DAY] HH:MM-HH:MM ZONE\""),
            format!("{shown}:15:10: network \"10.0.0.1/8\" has host bits set"),
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (e, x) in errors.iter().zip(&expected) {
            assert!(e.starts_with(x.as_str()), "{e}\n  does not start with\n{x}");
        }
        // With the windows right, the missing page is reported at its key.
        let routes = format!(
            "[[route]]\nname = \"app\"\npool = \"{POOL}\"\n[route.maintenance]\n\
             windows = [\"sat 23:00-01:00 UTC\"]\npage = \"missing.html\"\n"
        );
        std::fs::write(&path, config_text(&backend, &routes)).expect("config");
        let errors: Vec<String> = ringway::config::load(&path)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with(&format!("{shown}:15:1: maintenance page ")) && errors[0].contains("missing.html"),
            "{}",
            errors[0]
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}

#[tokio::test]
async fn bad_put_bodies_are_refused_and_change_nothing() {
    bounded(async {
        let backend = Backend::start("app").await;
        let dir = scratch("put");
        let routes = format!(
            "[[route]]\nname = \"app\"\npath = \"/app/\"\npool = \"{POOL}\"\n[route.maintenance]\n\
             [[route]]\nname = \"plain\"\npath = \"/\"\npool = \"{POOL}\"\n"
        );
        let (proxy, admin) = start(&dir, &config_text(&backend, &routes));
        proxy.engine().shared.clock.set(ts("2026-12-02T12:00:00Z"));
        let url = format!("{admin}/api/v1/routes/app/maintenance");
        let raw = |body: &str| api("PUT", &url, Some(body.to_string()));
        for (body, status, words) in [
            ("{\"enabled\": tru", 400, "invalid JSON"),
            ("{}", 400, "missing field `enabled`"),
            ("{\"enabled\": \"yes\"}", 400, "invalid type"),
            (
                "{\"enabled\": true, \"reason\": \"x\"}",
                400,
                "unknown field `reason`",
            ),
            (
                "{\"enabled\": true, \"until\": \"tomorrow\"}",
                400,
                "`until` \"tomorrow\" is not an RFC 3339 time",
            ),
            (
                "{\"enabled\": true, \"until\": \"2026-12-02 14:00\"}",
                400,
                "is not an RFC 3339 time",
            ),
            (
                "{\"enabled\": true, \"retry_after\": \"soon\"}",
                400,
                "`retry_after` \"soon\" is not a duration",
            ),
            (
                "{\"enabled\": true, \"until\": \"2026-12-02T11:00:00Z\"}",
                422,
                "is not in the future",
            ),
            (
                "{\"enabled\": false, \"until\": \"2026-12-03T11:00:00Z\"}",
                422,
                "only go with",
            ),
            (
                "{\"enabled\": true, \"retry_after\": \"0s\"}",
                422,
                "longer than zero",
            ),
        ] {
            let (s, v) = raw(body).await;
            assert_eq!(s, status, "{body}: {v}");
            assert_eq!(v["error"]["status"], status);
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(words), "{body}: {message}");
        }
        assert_eq!(send(client().get(proxy.url("/app/x"))).await.backend(), "app");
        // Not JSON at all.
        let r = send(
            client()
                .put(&url)
                .header("content-type", "text/plain")
                .body("enabled"),
        )
        .await;
        assert_eq!(r.status, 415);
        // No such route; a route without [route.maintenance].
        let (s, v) = put(&admin, "nope", json!({"enabled": true})).await;
        assert_eq!(s, 404, "{v}");
        let (s, v) = put(&admin, "plain", json!({"enabled": true})).await;
        assert_eq!(s, 409, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("[route.maintenance]")
        );
        assert_eq!(route_view(&admin, "plain").await, Value::Null);
        let (s, _) = api("DELETE", &url, None).await;
        assert_eq!(s, 405);
        assert_eq!(send(client().get(proxy.url("/app/x"))).await.backend(), "app");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
}
