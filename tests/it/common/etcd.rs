//! A real etcd cluster for the cluster-mode tests: N members of Debian's `etcd` on 127.0.0.1
//! with ephemeral ports and their own data directories, members killed and started again, and
//! `etcdctl` run against them; plus [`Relay`], a TCP relay in front of one member that can pass,
//! refuse or stall connections, so that Ringway instances lose etcd while `etcdctl` still reaches
//! it. Owns only the etcd processes and relays it starts; knows nothing of Ringway.
//!
//! Needs `etcd` and `etcdctl` (3.4 or later) on the PATH: the tests that use it are ignored by
//! plain `cargo test` and run by `.ci/cluster-test`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::upstream::TempDir;

/// Reason given to `#[ignore]` on every test that needs etcd.
pub const NEEDS_ETCD: &str = "needs etcd: .ci/cluster-test";

/// How long a cluster (or a member started again) may take to become healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// Runs a test body bounded by `limit` (cluster tests need more than [`super::TEST_TIMEOUT`]).
pub async fn bounded_for<F: Future>(limit: Duration, f: F) -> F::Output {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {limit:?}"),
    }
}

/// `n` distinct free ports on 127.0.0.1 (bound together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Whether the process is running (reaps it if it has exited).
    fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// N members of one etcd cluster on 127.0.0.1; killed and their directories removed on drop.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    // Last field: removed after the members are killed.
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one is healthy. A port taken between choosing
    /// and binding it makes a member exit: the whole start is then tried again on new ports.
    pub async fn start(n: usize) -> EtcdCluster {
        let mut last_error = String::new();
        for _ in 0..3 {
            let mut cluster = EtcdCluster::spawn(n);
            match cluster.wait_healthy(&(0..n).collect::<Vec<_>>()).await {
                Ok(()) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("etcd cluster of {n} did not start: {last_error}");
    }

    fn spawn(n: usize) -> EtcdCluster {
        let dir = TempDir::new("etcd");
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.0.join(format!("m{i}.data")),
                log: dir.0.join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            token: format!("rw-{:016x}", fastrand::u64(..)),
            dir,
        };
        for i in 0..n {
            cluster.spawn_member(i);
        }
        cluster
    }

    fn spawn_member(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(m.client_url())
            .arg("--advertise-client-urls")
            .arg(m.client_url())
            .arg("--listen-peer-urls")
            .arg(m.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(m.peer_url())
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd ({e}); install etcd-server: .ci/cluster-test"));
        self.members[i].child = Some(child);
    }

    /// Waits until every member in `which` answers `/health` with `true` (it has a leader).
    async fn wait_healthy(&mut self, which: &[usize]) -> Result<(), String> {
        let http = super::client();
        let deadline = Instant::now() + HEALTHY_WITHIN;
        let mut pending: Vec<usize> = which.to_vec();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for &i in &pending {
                if !self.members[i].running() {
                    return Err(format!("member {i} exited: {}", self.member_log_tail(i)));
                }
                let url = format!("{}/health", self.members[i].client_url());
                let healthy = match http.get(&url).timeout(Duration::from_millis(500)).send().await {
                    Ok(r) => r.text().await.is_ok_and(|t| t.contains("\"true\"")),
                    Err(_) => false,
                };
                if !healthy {
                    still.push(i);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "members {pending:?} not healthy within {HEALTHY_WITHIN:?}; last log: {}",
                    self.member_log_tail(pending[0])
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// The last lines of member `i`'s log, for failure messages.
    pub fn member_log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member (never: for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client URL (`http://127.0.0.1:port`), running or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// Member `i`'s client address.
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.members[i].client_port))
    }

    /// Kills member `i` (SIGKILL: a crash) and waits for it to exit.
    pub fn kill_member(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again with its data directory and ports; waits until it is healthy
    /// (which needs a quorum of members running).
    pub async fn start_member(&mut self, i: usize) {
        if !self.members[i].running() {
            self.spawn_member(i);
        }
        if let Err(e) = self.wait_healthy(&[i]).await {
            panic!("etcd member {i} did not come back: {e}");
        }
    }

    /// Kills every member.
    pub fn stop_all(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }

    /// Starts every member that is not running; waits until all are healthy.
    pub async fn start_all(&mut self) {
        for i in 0..self.members.len() {
            if !self.members[i].running() {
                self.spawn_member(i);
            }
        }
        let all: Vec<usize> = (0..self.members.len()).collect();
        if let Err(e) = self.wait_healthy(&all).await {
            panic!("etcd cluster did not come back: {e}");
        }
    }

    /// Waits until the running members are healthy (after a member was killed, a new leader
    /// may have to be elected).
    pub async fn wait_running_healthy(&mut self) {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].running())
            .collect();
        if let Err(e) = self.wait_healthy(&running).await {
            panic!("etcd members {running:?} not healthy: {e}");
        }
    }

    /// `etcdctl` (API v3) with `args` against every member's endpoint.
    pub async fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_at(&self.endpoints(), args).await
    }

    /// `etcdctl` (API v3) with `args` against `endpoints` only.
    pub async fn etcdctl_at(&self, endpoints: &[String], args: &[&str]) -> Output {
        tokio::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=5s")
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run etcdctl ({e}); install etcd-client: .ci/cluster-test"))
    }

    /// `etcdctl` that must succeed; its JSON output (`-w json` is added).
    async fn etcdctl_json(&self, args: &[&str]) -> serde_json::Value {
        // Before `args`: flags after a `--` would be read as keys and values.
        let mut all = vec!["-w", "json"];
        all.extend_from_slice(args);
        let out = self.etcdctl(&all).await;
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "etcdctl {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Writes `key` = `value`; returns the revision of the write.
    pub async fn put(&self, key: &str, value: &str) -> i64 {
        // `--` so that a value starting with `-` is not read as a flag.
        let v = self.etcdctl_json(&["put", "--", key, value]).await;
        header_revision(&v)
    }

    /// `key`'s value and mod_revision, if it exists.
    pub async fn get(&self, key: &str) -> Option<(String, i64)> {
        let v = self.etcdctl_json(&["get", "--", key]).await;
        let kv = v["kvs"].as_array()?.first()?;
        let value = base64_decode(kv["value"].as_str().unwrap_or(""));
        Some((
            String::from_utf8_lossy(&value).into_owned(),
            kv["mod_revision"].as_i64().expect("mod_revision"),
        ))
    }

    /// The keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let v = self
            .etcdctl_json(&["get", "--prefix", "--keys-only", "--", prefix])
            .await;
        v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        String::from_utf8_lossy(&base64_decode(kv["key"].as_str().unwrap_or(""))).into_owned()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Deletes `key`; returns the revision of the deletion.
    pub async fn del(&self, key: &str) -> i64 {
        let v = self.etcdctl_json(&["del", "--", key]).await;
        header_revision(&v)
    }

    /// The cluster's current revision.
    pub async fn revision(&self) -> i64 {
        let v = self.etcdctl_json(&["get", "--", "/"]).await;
        header_revision(&v)
    }

    /// The index of the member that leads now.
    pub async fn leader(&self) -> usize {
        let v = self.etcdctl_json(&["endpoint", "status"]).await;
        let statuses = v.as_array().unwrap_or_else(|| panic!("endpoint status: {v}"));
        let endpoints = self.endpoints();
        statuses
            .iter()
            .find(|s| {
                let st = &s["Status"];
                st["header"]["member_id"].as_u64().is_some() && st["header"]["member_id"] == st["leader"]
            })
            .and_then(|s| endpoints.iter().position(|e| s["Endpoint"] == e.as_str()))
            .unwrap_or_else(|| panic!("no leader in {v}"))
    }

    /// Compacts the history up to `revision`.
    pub async fn compact(&self, revision: i64) {
        let out = self.etcdctl(&["compact", &revision.to_string()]).await;
        assert!(
            out.status.success(),
            "etcdctl compact {revision}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn header_revision(v: &serde_json::Value) -> i64 {
    v["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header.revision in {v}"))
}

/// Decodes standard base64 (etcdctl's JSON output encodes keys and values so).
pub fn base64_decode(text: &str) -> Vec<u8> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter_map(sextet) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Relay
// ---------------------------------------------------------------------------------------------

/// What a [`Relay`] does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayMode {
    /// Forward bytes both ways.
    Pass,
    /// Close every connection, open ones and new ones: etcd is unreachable.
    Refuse,
    /// Accept, and hold open connections without forwarding a byte: an etcd that never
    /// answers. Held connections are closed when the mode changes (their bytes are dropped,
    /// never delivered late).
    Stall,
}

/// A TCP relay on 127.0.0.1:0 in front of one address; stops when dropped.
pub struct Relay {
    /// Where the relay listens.
    pub addr: SocketAddr,
    mode: watch::Sender<RelayMode>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay to `target`, passing.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let (mode, rx) = watch::channel(RelayMode::Pass);
        let task = tokio::spawn(relay_accept(listener, target, rx));
        Relay { addr, mode, task }
    }

    /// `http://127.0.0.1:port`, as an etcd endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the mode; open connections follow at once.
    pub fn set(&self, mode: RelayMode) {
        self.mode.send_replace(mode);
    }

    /// The mode now.
    pub fn mode(&self) -> RelayMode {
        *self.mode.borrow()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The accept task owns the connection tasks: aborting it ends them all.
        self.task.abort();
    }
}

async fn relay_accept(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<RelayMode>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let mut rx = mode.clone();
                rx.mark_unchanged();
                conns.spawn(relay_conn(stream, target, rx));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn relay_conn(client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<RelayMode>) {
    let now = *mode.borrow_and_update();
    match now {
        RelayMode::Refuse => return,
        RelayMode::Stall => {
            // Held, unanswered, until the mode changes; then closed.
            let _ = mode.changed().await;
            drop(client);
            return;
        }
        RelayMode::Pass => {}
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let mut to_up = vec![0u8; 16 * 1024];
    let mut to_client = vec![0u8; 16 * 1024];
    loop {
        let now = *mode.borrow_and_update();
        match now {
            RelayMode::Refuse => return,
            RelayMode::Stall => {
                let _ = mode.changed().await;
                return;
            }
            RelayMode::Pass => {}
        }
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            r = cr.read(&mut to_up) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if uw.write_all(&to_up[..n]).await.is_err() {
                        return;
                    }
                }
            },
            r = ur.read(&mut to_client) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if cw.write_all(&to_client[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}
