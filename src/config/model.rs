//! The validated configuration: plain data, every default filled in.
//!
//! Built by [`super::parse`] from TOML; read by the runtime. Nothing here does I/O.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// How long in-flight requests may take to finish on shutdown (default 30s).
    pub shutdown_grace: Duration,
    /// Threads serving traffic.
    pub workers: Workers,
    /// The admin interface (status page, API, metrics).
    pub admin: AdminConfig,
    /// Access log settings.
    pub log: LogConfig,
    /// Listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// Pools, in file order.
    pub pools: Vec<PoolConfig>,
    /// `[cluster]`: cluster mode through etcd; `None` (no section) runs standalone.
    pub cluster: Option<ClusterConfig>,
}

/// Number of threads serving traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// One per CPU core.
    Auto,
    /// Exactly this many (>= 1).
    Fixed(usize),
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where the admin interface listens (default 127.0.0.1:9090).
    pub listen: SocketAddr,
    /// Environment variable holding the bearer token for mutating calls.
    pub token_env: String,
}

/// `[cluster]`: where this instance finds its fleet's shared state in etcd.
///
/// Instance-local: the runtime always takes it from the instance's own file, never from a
/// published config, and only a restart applies a change of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd endpoints, at least one: `http://host:port` or `https://host:port`, the scheme in
    /// lower case, no trailing slash.
    pub etcd: Vec<String>,
    /// Every key of the fleet lives under it: starts with `/`, no trailing `/`, segments of
    /// `[A-Za-z0-9._-]`.
    pub prefix: String,
    /// This instance's name; `None`: the host name, known at run time (see
    /// [`ClusterConfig::instance_name`]).
    pub name: Option<String>,
    /// The cache file as written (made relative to the config file's directory by `load`);
    /// `None`: the default of [`ClusterConfig::cache_file`].
    pub cache: Option<PathBuf>,
    /// The bound of every etcd call (default 2s, 100ms..=60s).
    pub timeout: Duration,
    /// A CA and/or client certificate for TLS to etcd; `None`: `https://` endpoints are
    /// verified against the system's roots. When set, every endpoint is `https://`.
    pub tls: Option<ClusterTls>,
    /// etcd user to authenticate as; `None`: no authentication.
    pub user: Option<String>,
    /// Environment variable holding `user`'s password: set exactly when `user` is (default
    /// `RINGWAY_ETCD_PASSWORD`); read by the runtime, not by the parser.
    pub password_env: Option<String>,
}

impl ClusterConfig {
    /// The instance's name: `name`, or `host_name` when none is written.
    pub fn instance_name<'a>(&'a self, host_name: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(host_name)
    }

    /// The cache file: `cache`, or `{name}.cluster-cache.json` in `config_dir` (the directory of
    /// the instance's own configuration file), `name` being [`ClusterConfig::instance_name`].
    pub fn cache_file(&self, name: &str, config_dir: &Path) -> PathBuf {
        match &self.cache {
            Some(p) => p.clone(),
            None => config_dir.join(format!("{name}.cluster-cache.json")),
        }
    }
}

/// `ca`, `cert` and `key` of `[cluster]`: TLS to etcd (paths relative to the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// PEM file of the CA(s) that sign etcd's certificates; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// Client certificate and key, when etcd asks for one (`cert` and `key` come together).
    pub client: Option<CertPair>,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Where access log lines go.
    pub access: AccessLogTarget,
    /// Line format.
    pub format: AccessLogFormat,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output (default).
    Stdout,
    /// No access log.
    Off,
    /// Appended to this file.
    File(PathBuf),
}

/// Access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// nginx combined followed by upstream fields (default).
    Combined,
    /// One JSON object per line.
    Json,
}

/// `[[listener]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// Unique name.
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
    /// TLS certificates; `None` for plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Expect a PROXY protocol v1/v2 header on each connection.
    pub proxy_protocol: bool,
    /// Peers allowed to send a PROXY header (empty: any peer); others are refused.
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` names the real client (nginx's
    /// `set_real_ip_from`); empty: the header is never believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Limits and timeouts of client connections.
    pub limits: Limits,
    /// Answer every request with a redirect to https.
    pub redirect_https: Option<RedirectHttps>,
}

/// TLS certificates of a listener (SNI picks among them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain and key pairs; the first is the default.
    pub certs: Vec<CertPair>,
}

/// One certificate chain and its private key, as PEM file paths (relative to the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[listener.limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole request head must arrive within this (default 10s).
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed (default 60s).
    pub idle_timeout: Duration,
    /// Largest request head (default 64 KiB).
    pub max_header_bytes: usize,
    /// Largest request body (default 100 MiB).
    pub max_body_bytes: u64,
    /// A response the client stops reading (an HTTP/1.1 socket that stays unwritable, an
    /// HTTP/2 window that stays at zero) is cut after this (default 60s, as nginx's
    /// `send_timeout`).
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 65536,
            max_body_bytes: 100 * 1024 * 1024,
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// `redirect_https = { port, status }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectHttps {
    /// The https port to redirect to (443 is left out of the URL).
    pub port: u16,
    /// 301, 302, 303, 307 or 308 (default 308).
    pub status: u16,
}

/// `[[route]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Unique name.
    pub name: String,
    /// Host to match; `None` matches any host.
    pub host: Option<HostPattern>,
    /// Path prefix (default "/"); the longest matching prefix wins.
    pub path: String,
    /// What the route does with a matching request.
    pub action: RouteAction,
    /// Answer 400 to a request whose path holds an encoded slash (`%2F`).
    pub reject_encoded_slash: bool,
    /// Maintenance settings, if the route has a `[route.maintenance]` table.
    pub maintenance: Option<MaintenanceConfig>,
}

/// A route's host pattern, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `api.example.com`.
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Wildcard(String),
}

/// What a route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Forward to a pool.
    Pool {
        /// Name of the pool (validated to exist).
        pool: String,
        /// Remove the route's path prefix before forwarding.
        strip_prefix: bool,
    },
    /// Answer with a redirect.
    Redirect {
        /// Target URL.
        to: String,
        /// 301, 302, 303, 307 or 308 (default 301).
        status: u16,
    },
    /// Serve files from a directory (relative to the config file).
    Static {
        /// The directory.
        dir: PathBuf,
    },
}

/// `[route.maintenance]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// In maintenance now.
    pub enabled: bool,
    /// Clients that still pass during maintenance (a bare address is a network of one).
    pub allow: Vec<ipnet::IpNet>,
    /// Scheduled windows (e.g. "sun 02:00-04:00 UTC"), parsed with their time zones.
    pub windows: Vec<crate::route::maintenance::Window>,
    /// HTML page file answered during maintenance.
    pub page: Option<PathBuf>,
    /// `Retry-After` during maintenance (default 30m).
    pub retry_after: Duration,
}

/// `[pool.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// The table name.
    pub name: String,
    /// Algorithm and its parameters.
    pub balance: Balance,
    /// Static servers (may be empty only when `discover` is set).
    pub servers: Vec<ServerConfig>,
    /// DNS discovery.
    pub discover: Option<DiscoverConfig>,
    /// Retries on a different server (default 2).
    pub retries: u32,
    /// Connect timeout (default 3s).
    pub connect_timeout: Duration,
    /// Time to the response head (default 60s).
    pub response_timeout: Duration,
    /// Per-server limit of in-flight requests, 0 = unlimited.
    pub max_conns: u32,
    /// Active health checks.
    pub health: Option<HealthConfig>,
    /// Passive ejection.
    pub passive: Option<PassiveConfig>,
    /// The protocol spoken to the servers (default HTTP/1.1).
    pub protocol: UpstreamProtocol,
    /// TLS to the servers (`tls = true` or a table); `None` for cleartext.
    pub tls: Option<UpstreamTls>,
    /// A PROXY protocol header sent first on every connection to a server.
    pub send_proxy: Option<ProxyVersion>,
    /// Slow start: a server coming back ramps to its full weight over this time (none = no
    /// ramp). Only on pools whose algorithm reads weights per pick (not hashed pools).
    pub slow_start: Option<Duration>,
}

/// The protocol a pool speaks to its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// `http1` (default): HTTP/1.1 with pooled keep-alive connections.
    #[default]
    Http1,
    /// `h2`: HTTP/2 over TLS (the pool must have `tls`), multiplexed.
    H2,
    /// `h2c`: cleartext HTTP/2 by prior knowledge, multiplexed.
    H2c,
}

/// `tls = true` or `tls = { ca, server_name, verify }` on a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM file of the CA(s) that sign the servers' certificates; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// Name sent as SNI and verified in the certificate; `None`: the server's host (or its IP).
    pub server_name: Option<String>,
    /// Verify the servers' certificates (default true; false is warned about at start).
    pub verify: bool,
}

/// A PROXY protocol version (`send_proxy = "v1" | "v2"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text form.
    V1,
    /// The binary form.
    V2,
}

/// A pool's algorithm with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Balance {
    /// `round_robin` (default).
    RoundRobin,
    /// `least_requests`.
    LeastRequests,
    /// `random_two`.
    RandomTwo,
    /// `consistent_hash`.
    ConsistentHash(HashSettings),
    /// `maglev`.
    Maglev(HashSettings),
}

/// Settings shared by the hashed algorithms.
#[derive(Debug, Clone, PartialEq)]
pub struct HashSettings {
    /// What to hash (default path).
    pub key: HashKeySpec,
    /// Points per unit of weight (default 160; 1..=10000).
    pub vnodes: u32,
    /// Hash function (default xxh3).
    pub hash: HashFn,
    /// `bounded_load` (> 1) if set.
    pub bounded_load: Option<f64>,
    /// Maglev table size (prime, default 65537).
    pub maglev_table_size: u32,
}

/// `hash_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKeySpec {
    /// The path without the query.
    Path,
    /// Path and query.
    Uri,
    /// The client's IP address.
    ClientIp,
    /// A request header (name lower-cased).
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

/// `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFn {
    /// xxh3 64-bit.
    Xxh3,
    /// First 7 hex digits of SHA-1.
    Sha1_28,
}

/// One server of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `host:port` (IP literal or DNS name), as written.
    pub address: String,
    /// 1..=256 (default 1).
    pub weight: u32,
    /// Unique within the pool; default the address.
    pub name: String,
}

/// `discover = { dns, interval, resolvers }`: servers of a pool found in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverConfig {
    /// The name as written: `name:port` (A/AAAA) or `_service._tcp.name` (SRV).
    pub dns: String,
    /// What to ask for, read from `dns`.
    pub query: DnsQuery,
    /// How often to resolve (default 5s).
    pub interval: Duration,
    /// Name servers to ask; empty means the system's configuration (`/etc/resolv.conf`).
    pub resolvers: Vec<SocketAddr>,
}

/// The DNS question of a discovering pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DnsQuery {
    /// A and AAAA records of `host`; every address is a server on `port`.
    Address {
        /// The name to resolve.
        host: String,
        /// The servers' port.
        port: u16,
    },
    /// SRV records of `name` (`_service._tcp.domain`): targets, ports and weights.
    Srv {
        /// The SRV name.
        name: String,
    },
}

/// `health = { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Path to GET (default "/healthz").
    pub path: String,
    /// Check interval (default 2s).
    pub interval: Duration,
    /// Check timeout (default 1s).
    pub timeout: Duration,
    /// Consecutive successes to mark up (default 2).
    pub rise: u32,
    /// Consecutive failures to mark down (default 3).
    pub fall: u32,
    /// Statuses that pass (default `2xx`).
    pub expect: ExpectStatus,
}

/// Which response statuses pass a health check: `expect = "2xx"`, `"200,204"`, `204` or
/// `[200, 204]`. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectStatus {
    items: Vec<StatusMatch>,
}

/// One item of an [`ExpectStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// A class: `2` for `2xx` (1..=5).
    Class(u8),
    /// One status code (100..=599).
    Code(u16),
}

impl StatusMatch {
    /// Whether `status` is this code or in this class.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Class(c) => status / 100 == u16::from(c),
            StatusMatch::Code(code) => status == code,
        }
    }
}

impl ExpectStatus {
    /// The items, or `None` if there are none or one is out of range (class 1..=5, code
    /// 100..=599).
    pub fn new(items: Vec<StatusMatch>) -> Option<ExpectStatus> {
        let valid = |m: &StatusMatch| match *m {
            StatusMatch::Class(c) => (1..=5).contains(&c),
            StatusMatch::Code(code) => (100..=599).contains(&code),
        };
        (!items.is_empty() && items.iter().all(valid)).then_some(ExpectStatus { items })
    }

    /// Whether a response with `status` passes.
    pub fn matches(&self, status: u16) -> bool {
        self.items.iter().any(|m| m.matches(status))
    }

    /// The items, in the order written.
    pub fn items(&self) -> &[StatusMatch] {
        &self.items
    }
}

impl Default for ExpectStatus {
    /// `2xx`. (HAProxy's bare `option httpchk` also passes 3xx; a health path that redirects
    /// is more often a mistake than a sign of health.)
    fn default() -> ExpectStatus {
        ExpectStatus {
            items: vec![StatusMatch::Class(2)],
        }
    }
}

impl std::fmt::Display for ExpectStatus {
    /// `2xx`, `200,204`: the form the API and the status page show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, m) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match m {
                StatusMatch::Class(c) => write!(f, "{c}xx")?,
                StatusMatch::Code(code) => write!(f, "{code}")?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for ExpectStatus {
    type Err = String;

    /// Parses the string form: `"2xx"`, `"200"`, `"200,204"`, `"2xx, 304"`.
    fn from_str(s: &str) -> Result<ExpectStatus, String> {
        super::values::expect_list(s)
    }
}

impl serde::Serialize for ExpectStatus {
    /// As its string form (`"2xx"`, `"200,204"`), as the admin API shows it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `passive = { failures, eject }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveConfig {
    /// Consecutive failures that eject (default 5).
    pub failures: u32,
    /// How long an ejection lasts (default 30s).
    pub eject: Duration,
}
