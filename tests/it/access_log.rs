//! The access log: one line per request, nginx `combined` plus upstream fields, or JSON.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use ringway::config::{AccessLogFormat, AccessLogTarget, Balance};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("ringway-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the client knows about one request.
struct Sent {
    path: String,
    referer: String,
    agent: String,
    status: u16,
    bytes: usize,
    rid: String,
}

const N: usize = 5;

/// Starts a proxy logging to `log` in `format`, sends `N` routed requests and one unrouted.
async fn run_requests(log: &Path, format: AccessLogFormat) -> (Backend, Vec<Sent>) {
    let backend = Backend::start("logged").await;
    let mut c = one_pool(Balance::RoundRobin, &addrs(&[&backend]));
    c.routes[0].path = "/log/".into();
    c.log.access = AccessLogTarget::File(log.to_owned());
    c.log.format = format;
    let proxy = Proxy::start(c);
    let client = client();
    let mut sent = Vec::new();
    for i in 0..=N {
        let path = if i < N {
            format!("/log/{i}?q={i}")
        } else {
            "/unrouted".to_owned()
        };
        let referer = format!("http://ref.example/{i}");
        let agent = format!("ringway-test/{i}");
        let r = send(
            client
                .get(proxy.url(&path))
                .header("referer", &referer)
                .header("user-agent", &agent),
        )
        .await;
        let rid = r.header("x-request-id").expect("request id").to_owned();
        sent.push(Sent {
            path,
            referer,
            agent,
            status: r.status,
            bytes: r.body.len(),
            rid,
        });
    }
    assert_eq!(sent.iter().filter(|s| s.status == 200).count(), N);
    assert_eq!(sent[N].status, 404);
    // Lines are written as each response body ends, just after the client has it.
    let lines = poll_until(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() > N).then_some(lines)
    })
    .await;
    let lines = lines.unwrap_or_else(|| {
        panic!(
            "expected {} lines, log has: {:?}",
            N + 1,
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    assert_eq!(lines.len(), N + 1, "one line per request: {lines:#?}");
    proxy.stop().await;
    (backend, sent)
}

/// Finds the line of the request with id `rid`.
fn line_for<'a>(lines: &'a [String], rid: &str) -> &'a str {
    let found: Vec<&String> = lines.iter().filter(|l| l.contains(rid)).collect();
    assert_eq!(found.len(), 1, "one line for request {rid}: {lines:#?}");
    found[0]
}

/// Splits the nginx combined part of a line; returns its fields and the rest of the line.
struct Combined<'a> {
    client: &'a str,
    time: &'a str,
    request: &'a str,
    status: &'a str,
    bytes: &'a str,
    referer: &'a str,
    agent: &'a str,
    rest: &'a str,
}

fn parse_combined(line: &str) -> Combined<'_> {
    let bad = || panic!("not a combined line: {line}");
    let (client, rest) = line.split_once(" - - [").unwrap_or_else(bad);
    let (time, rest) = rest.split_once("] \"").unwrap_or_else(bad);
    let (request, rest) = rest.split_once("\" ").unwrap_or_else(bad);
    let (status, rest) = rest.split_once(' ').unwrap_or_else(bad);
    let (bytes, rest) = rest.split_once(" \"").unwrap_or_else(bad);
    let (referer, rest) = rest.split_once("\" \"").unwrap_or_else(bad);
    let (agent, rest) = rest.split_once("\" ").unwrap_or_else(bad);
    Combined {
        client,
        time,
        request,
        status,
        bytes,
        referer,
        agent,
        rest,
    }
}

/// `23/Nov/2026:19:22:01 +0000`.
fn looks_like_time_local(t: &str) -> bool {
    let b = t.as_bytes();
    t.len() == 26
        && b[2] == b'/'
        && b[6] == b'/'
        && b[11] == b':'
        && t.ends_with(" +0000")
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&&t[3..6])
}

#[tokio::test]
async fn combined_lines_with_upstream_fields() {
    bounded(async {
        let dir = TempDir::new("combined");
        let log = dir.0.join("access.log");
        let (backend, sent) = run_requests(&log, AccessLogFormat::Combined).await;
        let text = std::fs::read_to_string(&log).expect("read log");
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        for s in &sent {
            let line = line_for(&lines, &s.rid);
            let c = parse_combined(line);
            assert_eq!(c.client, "127.0.0.1", "{line}");
            assert!(looks_like_time_local(c.time), "time {:?} in {line}", c.time);
            assert_eq!(c.request, format!("GET {} HTTP/1.1", s.path), "{line}");
            assert_eq!(c.status, s.status.to_string(), "{line}");
            assert_eq!(c.bytes, s.bytes.to_string(), "body bytes sent, in {line}");
            assert_eq!(c.referer, s.referer, "{line}");
            assert_eq!(c.agent, s.agent, "{line}");
            let fields: Vec<(&str, &str)> = c
                .rest
                .split(' ')
                .map(|kv| kv.split_once('=').unwrap_or_else(|| panic!("`{kv}` in {line}")))
                .collect();
            let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys, ["upstream", "rt", "urt", "rid"], "{line}");
            let (upstream, rt, urt, rid) = (fields[0].1, fields[1].1, fields[2].1, fields[3].1);
            assert_eq!(rid, s.rid, "rid is the response's X-Request-Id: {line}");
            let rt: f64 = rt.parse().unwrap_or_else(|_| panic!("rt in {line}"));
            assert!((0.0..5.0).contains(&rt), "{line}");
            if s.status == 200 {
                assert_eq!(upstream, backend.address(), "{line}");
                let urt: f64 = urt.parse().unwrap_or_else(|_| panic!("urt in {line}"));
                assert!(
                    urt >= 0.0 && urt <= rt + 0.0015,
                    "urt {urt} within rt {rt}: {line}"
                );
            } else {
                assert_eq!(upstream, "-", "no upstream for a 404: {line}");
                assert_eq!(urt, "-", "{line}");
            }
        }
    })
    .await
}

#[tokio::test]
async fn json_lines_parse_with_the_right_fields() {
    bounded(async {
        let dir = TempDir::new("json");
        let log = dir.0.join("access.log");
        let (backend, sent) = run_requests(&log, AccessLogFormat::Json).await;
        let text = std::fs::read_to_string(&log).expect("read log");
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        for s in &sent {
            let line = line_for(&lines, &s.rid);
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert_eq!(v["remote_addr"], "127.0.0.1", "{line}");
            assert_eq!(v["method"], "GET", "{line}");
            assert_eq!(v["host"], "127.0.0.1", "the host routed on, without port: {line}");
            assert_eq!(v["uri"], s.path.as_str(), "{line}");
            assert_eq!(v["protocol"], "HTTP/1.1", "{line}");
            assert_eq!(v["status"], s.status, "{line}");
            assert_eq!(v["bytes"], s.bytes, "{line}");
            assert_eq!(v["referer"], s.referer.as_str(), "{line}");
            assert_eq!(v["user_agent"], s.agent.as_str(), "{line}");
            assert_eq!(v["rid"], s.rid.as_str(), "{line}");
            assert!(
                v["time"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
                "{line}"
            );
            let rt = v["rt"].as_f64().unwrap_or_else(|| panic!("rt in {line}"));
            assert!((0.0..5.0).contains(&rt), "{line}");
            if s.status == 200 {
                assert_eq!(v["upstream"], backend.address().as_str(), "{line}");
                assert_eq!(v["route"], "all", "{line}");
                assert_eq!(v["complete"], true, "{line}");
                let urt = v["urt"].as_f64().unwrap_or_else(|| panic!("urt in {line}"));
                assert!(urt >= 0.0 && urt <= rt, "urt {urt} within rt {rt}: {line}");
            } else {
                assert!(v["upstream"].is_null(), "{line}");
                assert!(v["urt"].is_null(), "{line}");
            }
        }
    })
    .await
}
