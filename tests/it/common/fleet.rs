//! Ringway instances as separate processes for the cluster-mode tests (`ringway run -c FILE`
//! with `${RW_*_PORT}` variables for their addresses, stderr kept in a file the test searches,
//! killed on drop), upstream servers that record when each request arrived and through which
//! instance, and a steady load of clients. Owns only the processes and servers it starts.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Reply, ringway_command};

/// Request header naming the instance a test client sent a request through.
pub const VIA: &str = "x-test-via";

/// How long an instance may take from spawn to answering `/healthz` (a start in cluster mode
/// asks etcd first, bounded by its `timeout`).
const UP_WITHIN: Duration = Duration::from_secs(20);

/// Each admin call is bounded so that a hung one fails the test with a message.
const CALL_LIMIT: Duration = Duration::from_secs(15);

/// A free port on 127.0.0.1 that no other caller in this process has been given.
pub fn unique_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = super::etcd::free_ports(1)[0];
        if given.insert(port) {
            return port;
        }
    }
}

/// One `ringway run -c FILE` process with its own ports (`RW_WEB_PORT`, `RW_ADMIN_PORT`,
/// `RW_EXTRA_PORT` in its environment); killed on drop.
pub struct Instance {
    /// The name (the file's `[cluster] name`).
    pub name: String,
    /// Its configuration file.
    pub config: PathBuf,
    /// Port of the listener bound to `${RW_WEB_PORT}`.
    pub web_port: u16,
    /// Port of the admin interface (`${RW_ADMIN_PORT}`).
    pub admin_port: u16,
    /// A port for a listener a published config may add (`${RW_EXTRA_PORT}`).
    pub extra_port: u16,
    /// Its stderr, kept across restarts (appended).
    pub log: PathBuf,
    child: Option<tokio::process::Child>,
    http: reqwest::Client,
}

impl Instance {
    /// Starts `ringway run -c config` as `name`; returns once its admin interface answers.
    pub async fn start(name: &str, config: &Path) -> Instance {
        let mut i = Instance::prepare(name, config);
        i.spawn().await;
        i
    }

    /// The instance with its ports chosen, not started yet ([`Instance::spawn`] starts it).
    pub fn prepare(name: &str, config: &Path) -> Instance {
        let dir = config.parent().expect("config directory");
        Instance {
            name: name.to_owned(),
            config: config.to_owned(),
            web_port: unique_port(),
            admin_port: unique_port(),
            extra_port: unique_port(),
            log: dir.join(format!("{name}.stderr")),
            child: None,
            http: super::client(),
        }
    }

    /// The `RW_*` variables this instance runs with.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("RW_WEB_PORT", self.web_port.to_string()),
            ("RW_ADMIN_PORT", self.admin_port.to_string()),
            ("RW_EXTRA_PORT", self.extra_port.to_string()),
        ]
    }

    /// Starts the process (after [`Instance::prepare`] or [`Instance::kill`]); returns once its
    /// admin interface answers.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("instance log file");
        let mut cmd = ringway_command();
        cmd.arg("run")
            .arg("-c")
            .arg(&self.config)
            .envs(self.env())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().expect("spawn ringway run");
        self.child = Some(child);
        self.wait_up().await;
    }

    async fn wait_up(&mut self) {
        let deadline = Instant::now() + UP_WITHIN;
        let url = self.admin("/healthz");
        loop {
            if let Some(c) = &mut self.child
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "instance {} exited ({status}) at start:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if let Ok(r) = self
                .http
                .get(&url)
                .timeout(Duration::from_millis(500))
                .send()
                .await
                && r.status().as_u16() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "instance {} not up within {UP_WITHIN:?}:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process (SIGKILL: a crash) and waits for it.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Kills the process and starts it again with the same file, ports and log.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// Everything the instance wrote to stderr so far (all its runs).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines that contain every one of `parts`.
    pub fn log_lines(&self, parts: &[&str]) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_owned)
            .collect()
    }

    /// `http://127.0.0.1:ADMIN{path}`.
    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// `http://127.0.0.1:WEB{path}`.
    pub fn web(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.web_port)
    }

    /// The web listener's address.
    pub fn web_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.web_port))
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Reply {
        match req.timeout(CALL_LIMIT).send().await {
            Ok(r) => Reply::read(r).await,
            Err(e) => panic!("admin call to instance {} failed: {e}", self.name),
        }
    }

    /// GET an admin path: (status, JSON body or Null).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.call(self.http.get(self.admin(path))).await;
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// `GET /api/v1/cluster`.
    pub async fn cluster(&self) -> serde_json::Value {
        let (status, v) = self.get_json("/api/v1/cluster").await;
        assert_eq!(status, 200, "GET /api/v1/cluster on {}: {v}", self.name);
        v
    }

    /// `GET /api/v1/pools/{pool}/servers/{server}`: (status, the `<server>`).
    pub async fn server(&self, pool: &str, server: &str) -> (u16, serde_json::Value) {
        self.get_json(&server_path(pool, server)).await
    }

    /// `PATCH /api/v1/pools/{pool}/servers/{server}` with `body`.
    pub async fn patch_server(&self, pool: &str, server: &str, body: serde_json::Value) -> Reply {
        let url = self.admin(&server_path(pool, server));
        self.call(
            self.http
                .patch(url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// `POST /api/v1/pools/{pool}/servers` with `body`.
    pub async fn post_server(&self, pool: &str, body: serde_json::Value) -> Reply {
        let url = self.admin(&format!("/api/v1/pools/{}/servers", segment(pool)));
        self.call(
            self.http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// `DELETE /api/v1/pools/{pool}/servers/{server}`.
    pub async fn delete_server(&self, pool: &str, server: &str) -> Reply {
        let url = self.admin(&server_path(pool, server));
        self.call(self.http.delete(url)).await
    }

    /// `PUT /api/v1/routes/{route}/maintenance` with `body`.
    pub async fn put_maintenance(&self, route: &str, body: serde_json::Value) -> Reply {
        let url = self.admin(&format!("/api/v1/routes/{}/maintenance", segment(route)));
        self.call(
            self.http
                .put(url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// GET `path` on the web listener.
    pub async fn get(&self, path: &str) -> Reply {
        let r = self
            .http
            .get(self.web(path))
            .header(VIA, &self.name)
            .timeout(CALL_LIMIT)
            .send()
            .await;
        match r {
            Ok(r) => Reply::read(r).await,
            Err(e) => panic!("GET {path} through {} failed: {e}", self.name),
        }
    }
}

/// `name` percent-encoded as one URL path segment, as the admin API's paths and the cluster's
/// etcd keys encode names: Ringway's own encoding, so the tests build the paths it parses.
pub fn segment(name: &str) -> String {
    ringway::cluster::keys::segment(name)
}

/// `/api/v1/pools/{pool}/servers/{server}`, names encoded.
pub fn server_path(pool: &str, server: &str) -> String {
    format!("/api/v1/pools/{}/servers/{}", segment(pool), segment(server))
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Upstream servers that record arrivals
// ---------------------------------------------------------------------------------------------

/// One request as an [`Upstream`] saw it.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// When its head arrived.
    pub at: Instant,
    /// The [`VIA`] header: which instance it came through (`""` without one).
    pub via: String,
}

/// An HTTP/1.1 server on 127.0.0.1 that answers 200 with `X-Backend: <name>` and its name as
/// the body, and records every request's arrival.
pub struct Upstream {
    /// Its name.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Arrival>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts one.
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(upstream_accept(listener, name.to_owned(), log.clone()));
        Upstream {
            name: name.to_owned(),
            addr,
            log,
            task,
        }
    }

    /// Its address as a config string.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Every arrival so far.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Arrivals through instance `via` at or after `since`.
    pub fn count_via(&self, via: &str, since: Instant) -> usize {
        self.arrivals()
            .iter()
            .filter(|a| a.via == via && a.at >= since)
            .count()
    }

    /// The last arrival through instance `via`, if any.
    pub fn last_via(&self, via: &str) -> Option<Instant> {
        self.arrivals()
            .iter()
            .filter(|a| a.via == via)
            .map(|a| a.at)
            .max()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upstream_accept(listener: TcpListener, name: String, log: Arc<Mutex<Vec<Arrival>>>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (name, log) = (name.clone(), log.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let via = req
                            .headers()
                            .get(VIA)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        log.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Arrival { at: Instant::now(), via });
                        let mut resp = Response::new(Full::new(Bytes::from(name.clone())));
                        if let Ok(v) = name.parse() {
                            resp.headers_mut().insert("x-backend", v);
                        }
                        async { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

/// What a [`Load`] saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: Mutex<Vec<String>>,
}

/// Clients sending GETs in a loop through some instances, each request tagged with [`VIA`];
/// every answer that is not a 200 from a backend is a failure.
pub struct Load {
    tally: Arc<Tally>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Load {
    /// `clients` clients per `(via, url)` target, each pausing `pause` between requests (the
    /// machine is shared: the load must not starve etcd).
    pub fn start(targets: &[(String, String)], clients: usize, pause: Duration) -> Load {
        let tally = Arc::new(Tally::default());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (via, url) in targets {
            for _ in 0..clients {
                let (via, url, tally, stop) = (via.clone(), url.clone(), tally.clone(), stop_rx.clone());
                tasks.spawn(load_client(via, url, tally, stop, pause));
            }
        }
        Load { tally, stop, tasks }
    }

    /// Requests answered 200 by a backend so far.
    pub fn ok(&self) -> usize {
        self.tally.ok.load(Ordering::SeqCst)
    }

    /// Failures so far (what went wrong, one line each).
    pub fn failures(&self) -> Vec<String> {
        self.tally
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `n` more requests have succeeded (bounded).
    pub async fn wait_more(&self, n: usize) {
        let target = self.ok() + n;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ok() < target {
            assert!(
                Instant::now() < deadline,
                "load made no progress: {:?}",
                self.failures()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the clients; waits for their last requests.
    pub async fn stop(mut self) -> (usize, Vec<String>) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        (self.ok(), self.failures())
    }
}

async fn load_client(
    via: String,
    url: String,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
    pause: Duration,
) {
    let http = super::client();
    while !*stop.borrow_and_update() {
        let r = http
            .get(&url)
            .header(VIA, &via)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().as_u16() == 200 && resp.headers().contains_key("x-backend") => {
                let _ = resp.bytes().await;
                tally.ok.fetch_add(1, Ordering::SeqCst);
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                tally
                    .failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{via} {url}: {status} {body}"));
            }
            Err(e) => tally
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{via} {url}: {e}")),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}
