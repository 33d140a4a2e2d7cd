//! The `ringway` binary: `check` on good and bad files, and `proxy` end to end with a graceful
//! stop on SIGTERM.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringway");

/// Writes `text` to a fresh file under the temp dir.
fn temp_file(tag: &str, text: &[u8]) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = std::env::temp_dir().join(format!("ringway-cli-{tag}-{}-{nanos}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write temp file");
    path
}

async fn check(path: &PathBuf) -> std::process::Output {
    let out = Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(path)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run ringway check");
    let _ = std::fs::remove_file(path);
    out
}

#[tokio::test]
async fn check_accepts_a_valid_file() {
    bounded(async {
        let path = temp_file(
            "good",
            br#"
[[listener]]
name = "web"
bind = "127.0.0.1:0"

[[route]]
name = "all"
pool = "app"

[pool.app]
servers = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3 }]
"#,
        );
        let out = check(&path).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "stdout: {stdout} stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("app"), "the summary names the pool: {stdout}");
    })
    .await
}

#[tokio::test]
async fn check_reports_every_error_with_file_line_col() {
    bounded(async {
        let path = temp_file(
            "bad",
            br#"[[listener]]
name = "web"
bind = "127.0.0.1:notaport"

[[route]]
name = "all"
pool = "missing"

[pool.app]
servers = ["127.0.0.1:9001"]
retrys = 2
timeouts = { connect = "3 parsecs" }
"#,
        );
        let name = path.display().to_string();
        let out = check(&path).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        for (line, what) in [(3, "notaport"), (7, "missing"), (11, "retries"), (12, "parsecs")] {
            let prefix = format!("{name}:{line}:");
            assert!(
                stderr.lines().any(|l| l.starts_with(&prefix) && l.contains(what)),
                "no error at line {line} mentioning `{what}`:\n{stderr}"
            );
        }
        assert!(stderr.contains("did you mean"), "{stderr}");
    })
    .await
}

#[tokio::test]
async fn check_never_panics_on_garbage() {
    bounded(async {
        for (i, text) in [
            &b"[[listener\n=== \n"[..],
            b"\xff\xfe not utf-8",
            b"workers = -1\nshutdown_grace = 5\n[pool]\nx = []\n",
            b"[[route]]\n[[route]]\npath = 7\n",
            b"",
        ]
        .iter()
        .enumerate()
        {
            let path = temp_file(&format!("garbage{i}"), text);
            let out = check(&path).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "file {i}: {stderr}");
            assert!(!stderr.contains("panicked"), "file {i}: {stderr}");
        }
    })
    .await
}

#[tokio::test]
async fn proxy_command_serves_and_stops_gracefully_on_sigterm() {
    bounded(async {
        let backend = Backend::start("cli").await;
        let mut child = ringway_command()
            .args(["proxy", "--listen", "127.0.0.1:0", "--threads", "1", "--to"])
            .arg(backend.address())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway proxy");
        // The engine logs the address it bound (port 0 resolved).
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = lines
                .next_line()
                .await
                .expect("read stderr")
                .expect("ringway exited before listening");
            if let Some(addr) = address_after(&line, "http://") {
                break addr;
            }
        };
        // Keep draining stderr so that the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let client = client();
        let r = send(client.get(format!("http://{addr}/hello"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.backend(), "cli");

        let slow = client
            .get(format!("http://{addr}/slow"))
            .header(DELAY_HEADER, "500");
        let in_flight = tokio::spawn(async move {
            match slow.send().await {
                Ok(resp) => Ok(Reply::read(resp).await),
                Err(e) => Err(e),
            }
        });
        backend.wait_requests(2).await;
        let pid = child.id().expect("child pid").to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("run kill");
        assert!(killed.success());
        let reply = in_flight.await.expect("request task");
        let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .expect("ringway exits after SIGTERM once idle")
            .expect("wait for ringway");
        match reply {
            Ok(r) => assert_eq!(r.status, 200, "the request in flight at SIGTERM: {}", r.text()),
            Err(e) => panic!("the request in flight at SIGTERM failed ({e:?}); ringway exited with {status}"),
        }
        assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    })
    .await
}

#[tokio::test]
async fn sigterm_right_after_the_listener_is_announced_is_graceful() {
    use tokio::io::AsyncWriteExt;
    bounded(async {
        // Once ringway has said where it listens, SIGTERM must mean a graceful stop (exit 0),
        // never the default action of an uncaught signal. The signal is sent by a shell started
        // beforehand (no fork/exec in between) and tried ten times, to make a race visible.
        for attempt in 0..10 {
            let mut killer = Command::new("sh")
                .args(["-c", "read pid && kill -TERM \"$pid\""])
                .stdin(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn sh");
            let mut killer_stdin = killer.stdin.take().expect("killer stdin");
            let mut child = Command::new(BIN)
                .args([
                    "proxy",
                    "--listen",
                    "127.0.0.1:0",
                    "--threads",
                    "1",
                    "--to",
                    "127.0.0.1:9",
                ])
                .env("NO_COLOR", "1")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn ringway proxy");
            let pid = child.id().expect("child pid");
            let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("read stderr")
                    .expect("ringway exited before listening");
                if line.contains("http://") {
                    break;
                }
            }
            killer_stdin
                .write_all(format!("{pid}\n").as_bytes())
                .await
                .expect("tell the killer");
            drop(killer_stdin);
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            assert!(killer.wait().await.expect("killer").success());
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .expect("ringway exits after SIGTERM")
                .expect("wait for ringway");
            assert_eq!(
                status.code(),
                Some(0),
                "attempt {attempt}: SIGTERM just after start gave {status}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn check_refuses_settings_this_version_cannot_honour() {
    bounded(async {
        // The certificate files exist but hold no PEM: refused (TLS itself is supported now).
        let cert = temp_file("tls-cert", b"cert");
        let key = temp_file("tls-key", b"key");
        let name = |p: &PathBuf| {
            p.file_name()
                .and_then(|n| n.to_str())
                .expect("file name")
                .to_owned()
        };
        let text = r#"
[[listener]]
name = "web"
bind = "127.0.0.1:0"
tls = { cert = "CERT", key = "KEY" }

[[route]]
name = "all"
pool = "app"

[pool.app]
servers = ["127.0.0.1:9001"]
health = { path = "/healthz" }
"#
        .replace("CERT", &name(&cert))
        .replace("KEY", &name(&key));
        let path = temp_file("tls", text.as_bytes());
        let out = check(&path).await;
        let _ = std::fs::remove_file(&cert);
        let _ = std::fs::remove_file(&key);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
        assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
        // Health checks run now: nothing to warn about.
        assert!(!stderr.contains("health"), "{stderr}");
    })
    .await
}

#[tokio::test]
async fn ring_plans_a_configured_pool() {
    bounded(async {
        let path = temp_file(
            "ring",
            br#"
[[listener]]
name = "web"
bind = "127.0.0.1:0"

[[route]]
name = "cache"
path = "/cache/"
pool = "cache"

[pool.cache]
balance = "consistent_hash"
hash = "sha1-28"
vnodes = 5
servers = [{ address = "127.0.0.1:11211", name = "server-a" }, { address = "127.0.0.1:11212", name = "server-b" }]

[pool.web]
servers = ["127.0.0.1:8001"]
"#,
        );
        let ring = |args: &'static [&'static str]| {
            let path = path.clone();
            async move {
                Command::new(BIN)
                    .arg("ring")
                    .arg("-c")
                    .arg(&path)
                    .args(args)
                    .output()
                    .await
                    .expect("run ringway ring")
            }
        };
        let out = ring(&["--pool", "cache", "--add", "server-c"]).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        // The classic demonstration's tables, read from the pool's names, vnodes and hash.
        assert!(stdout.contains("   23746828 --> server-a-4 (6848918 hashes)"), "{stdout}");
        assert!(stdout.contains("84970214 hashes move, 31.654% of the hash space"), "{stdout}");
        assert!(stdout.contains("Nothing moves between two servers that stay."), "{stdout}");

        let missing = ring(&["--pool", "nope"]).await;
        assert_eq!(missing.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&missing.stderr);
        assert!(stderr.contains("no pool `nope`"), "{stderr}");
        assert!(stderr.contains(": cache"), "the hashed pools are listed: {stderr}");

        // --summary: the shares and the migration, without the tables.
        let out = ring(&["--pool", "cache", "--add", "server-c", "--summary"]).await;
        let summary = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{summary}");
        assert!(!summary.contains("Routing table"), "{summary}");
        assert!(!summary.contains("-->  "), "{summary}");
        assert_eq!(summary.matches("Shares:").count(), 2, "{summary}");
        assert!(summary.contains("84970214 hashes move, 31.654% of the hash space"), "{summary}");
        assert!(summary.lines().count() < 30, "{summary}");

        // A pool that does not hash: said so, exit 1.
        let out = ring(&["--pool", "web"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("pool `web` balances with round_robin"), "{stderr}");
        assert!(stderr.contains(": cache"), "{stderr}");
        assert!(out.stdout.is_empty());

        // An unknown --remove lists the servers there are.
        let out = ring(&["--pool", "cache", "--remove", "server-z"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("\"server-z\""), "{stderr}");
        assert!(stderr.contains("(server-a, server-b)"), "{stderr}");
    })
    .await
}

/// The issue's proof for the ring's wrap-around row: the classic two-server demonstration,
/// every row of both tables, the counts summing to 2^28.
#[tokio::test]
async fn ring_prints_the_wrap_around_row_at_zero() {
    bounded(async {
        let out = Command::new(BIN)
            .args([
                "ring",
                "--servers",
                "server-a,server-b",
                "--vnodes",
                "5",
                "--hash",
                "sha1-28",
            ])
            .output()
            .await
            .expect("run ringway ring");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let rows = |title: &str| -> Vec<(u64, String, u64)> {
            stdout
                .split(title)
                .nth(1)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .take_while(|l| !l.is_empty())
                .map(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    let count = words[3].trim_start_matches('(');
                    (
                        words[0].parse().expect("start"),
                        words[2].to_string(),
                        count.parse().expect("count"),
                    )
                })
                .collect()
        };
        let full = rows("\nRouting table:");
        let row = |start: u64, name: &str, count: u64| (start, name.to_string(), count);
        assert_eq!(full.len(), 11, "{stdout}");
        assert_eq!(full[0], row(0, "server-b-1", 23_746_828), "{stdout}");
        assert_eq!(full[1], row(23_746_828, "server-a-4", 6_848_918), "{stdout}");
        assert_eq!(full[10], row(262_844_523, "server-b-1", 5_590_933), "{stdout}");
        assert_eq!(full.iter().map(|r| r.2).sum::<u64>(), 1 << 28);
        let simplified = rows("\nSimplified routing table:");
        assert_eq!(
            simplified,
            [
                row(0, "server-b", 23_746_828),
                row(23_746_828, "server-a", 37_156_400),
                row(60_903_228, "server-b", 87_553_592),
                row(148_456_820, "server-a", 85_098_037),
                row(233_554_857, "server-b", 34_880_599),
            ],
            "{stdout}"
        );
        assert!(
            stdout.contains("server-b  weight   1        5 points  146181019 hashes"),
            "{stdout}"
        );
    })
    .await
}

#[tokio::test]
async fn check_and_run_refuse_an_access_log_in_a_missing_directory() {
    bounded(async {
        let text = br#"[log]
access = "ringway-no-such-dir/access.log"

[admin]
listen = "127.0.0.1:0"

[[listener]]
name = "web"
bind = "127.0.0.1:0"

[[route]]
pool = "app"

[pool.app]
servers = ["127.0.0.1:9001"]
"#;
        let path = temp_file("logdir", text);
        let name = path.display().to_string();
        let run = Command::new(BIN)
            .arg("run")
            .arg("-c")
            .arg(&path)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output();
        let run = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("run refuses at once")
            .expect("run ringway run");
        let out = check(&path).await;
        for (what, out) in [("check", out), ("run", run)] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
            let line = stderr
                .lines()
                .find(|l| l.starts_with(&format!("{name}:2:1: ")))
                .unwrap_or_else(|| panic!("{what}: no error at 2:1:\n{stderr}"));
            assert!(
                line.contains("ringway-no-such-dir does not exist"),
                "{what}: {line}"
            );
        }
    })
    .await
}

/// A free port on 127.0.0.1 (bound, then closed).
fn free_port() -> u16 {
    dead_addr()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

#[tokio::test]
async fn reload_command_reads_the_file_sends_the_token_and_prints_errors() {
    bounded(async {
        let backend = Backend::start("r").await;
        let admin_port = free_port();
        let token_env = format!("RINGWAY_TEST_TOKEN_{}", std::process::id());
        let good = |admin_port: u16, listen_port: u16, log: &str| {
            format!(
                r#"workers = 1
shutdown_grace = "2s"

[admin]
listen = "127.0.0.1:{admin_port}"
token_env = "{token_env}"

[log]
access = "{log}"

[[listener]]
name = "main"
bind = "127.0.0.1:{listen_port}"

[[route]]
pool = "app"

[pool.app]
servers = ["{}"]
"#,
                backend.address()
            )
        };
        let path = temp_file("reload-cmd", good(admin_port, 0, "off").as_bytes());
        let name = path.display().to_string();
        let mut child = ringway_command()
            .arg("run")
            .arg("-c")
            .arg(&path)
            .env(&token_env, "sesame")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway run");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut listen = None;
        loop {
            let line = lines
                .next_line()
                .await
                .expect("stderr")
                .expect("ringway exited early");
            if line.contains("listener `main`") {
                listen = address_after(&line, "http://");
            }
            if line.contains("admin interface") {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let listen_port: u16 = listen
            .and_then(|l| l.rsplit(':').next().and_then(|p| p.parse().ok()))
            .expect("listener port");
        let reload = |args: Vec<String>, token: Option<&'static str>| {
            let mut c = Command::new(BIN);
            c.arg("reload")
                .args(args)
                .env("NO_COLOR", "1")
                .env_remove(&token_env);
            if let Some(t) = token {
                c.env(&token_env, t);
            }
            async move {
                let out = tokio::time::timeout(Duration::from_secs(10), c.output())
                    .await
                    .expect("reload answers")
                    .expect("run ringway reload");
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            }
        };
        let with_file = || vec!["-c".to_string(), name.clone()];

        // The admin address comes from the file; without the token: 401, exit 1.
        let (code, _, stderr) = reload(with_file(), None).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("401"), "{stderr}");
        // With the token from the variable the file names.
        let (code, stdout, stderr) = reload(with_file(), Some("sesame")).await;
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(stdout.starts_with("reloaded: 1 routes, 1 pools"), "{stdout}");

        // A file the instance refuses (its log directory is missing): the errors as check prints them.
        std::fs::write(&path, good(admin_port, listen_port, "no-such-dir-r/a.log")).expect("write");
        let (code, stdout, stderr) = reload(with_file(), Some("sesame")).await;
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("{name}:9:1: ")) && l.contains("no-such-dir-r")),
            "{stderr}"
        );
        assert!(stderr.lines().any(|l| l == "1 error found"), "{stderr}");
        assert!(!stderr.contains("{\""), "no raw JSON: {stderr}");

        // A file that does not parse: the same errors, found before asking.
        std::fs::write(&path, "workers = 0\n").expect("write");
        let (code, _, stderr) = reload(with_file(), Some("sesame")).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("{name}:1:11: `workers`"))),
            "{stderr}"
        );

        // What a reload cannot apply is said: a new admin address (reached at the old one).
        std::fs::write(&path, good(free_port(), listen_port, "off")).expect("write");
        let mut args = with_file();
        args.extend(["--admin".to_string(), format!("http://127.0.0.1:{admin_port}")]);
        let (code, stdout, stderr) = reload(args, Some("sesame")).await;
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(stdout.contains("not applied: [admin] listen changed"), "{stdout}");

        terminate_gracefully(&mut child).await;
        let _ = std::fs::remove_file(&path);
    })
    .await
}

#[tokio::test]
async fn a_second_process_on_a_served_port_is_refused_and_logs_have_no_colour_in_a_pipe() {
    bounded(async {
        let backend = Backend::start("first").await;
        // NO_COLOR unset: plain text must come from stderr being a pipe, not from the variable.
        let proxy = |listen: &str| {
            let mut c = Command::new(BIN);
            c.args(["proxy", "--threads", "2", "--listen", listen, "--to"])
                .arg(backend.address())
                .env_remove("NO_COLOR")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            c
        };
        let mut first = proxy("127.0.0.1:0").spawn().expect("spawn first ringway");
        let mut lines = BufReader::new(first.stderr.take().expect("stderr")).lines();
        let line = lines
            .next_line()
            .await
            .expect("stderr")
            .expect("ringway exited before listening");
        assert!(!line.contains('\u{1b}'), "ANSI codes in a pipe: {line:?}");
        let addr = address_after(&line, "http://").expect("listener address");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let second = tokio::time::timeout(Duration::from_secs(10), proxy(&addr).output())
            .await
            .expect("the second one gives up at once")
            .expect("run the second ringway");
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert_eq!(second.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("address already in use"), "{stderr}");
        assert!(!stderr.contains('\u{1b}'), "{stderr:?}");

        // Every request still reaches the first one.
        let client = client();
        for _ in 0..20 {
            let r = send(client.get(format!("http://{addr}/x"))).await;
            assert_eq!(r.backend(), "first");
        }
        terminate_gracefully(&mut first).await;
    })
    .await
}
