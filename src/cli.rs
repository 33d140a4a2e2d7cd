//! What the `ringway` commands do beyond parsing their flags: the one-line proxy's
//! configuration, the demo, signals, and asking a running instance to reload.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::balance::{HashFunction, Member};
use crate::config::{
    AccessLogFormat, AccessLogTarget, AdminConfig, Balance, CertPair, Config, HashFn, HashKeySpec,
    HashSettings, Limits, ListenerConfig, LogConfig, PoolConfig, RouteAction, RouteConfig, ServerConfig,
    TlsConfig, UpstreamProtocol, Workers,
};
use crate::proxy::Engine;

/// Hash settings of a hashed pool when nothing else is said: path key, 160 vnodes, xxh3.
pub fn default_hash_settings() -> HashSettings {
    HashSettings {
        key: HashKeySpec::Path,
        vnodes: 160,
        hash: HashFn::Xxh3,
        bounded_load: None,
        maglev_table_size: 65537,
    }
}

/// A pool with the defaults of the configuration file.
pub fn pool(name: &str, balance: Balance, servers: Vec<ServerConfig>) -> PoolConfig {
    PoolConfig {
        name: name.to_owned(),
        balance,
        servers,
        discover: None,
        retries: 2,
        connect_timeout: Duration::from_secs(3),
        response_timeout: Duration::from_secs(60),
        max_conns: 0,
        health: None,
        passive: None,
        slow_start: None,
        protocol: UpstreamProtocol::Http1,
        tls: None,
        send_proxy: None,
    }
}

/// A server with weight 1 named by its address.
pub fn server(address: &str) -> ServerConfig {
    ServerConfig {
        address: address.to_owned(),
        weight: 1,
        name: address.to_owned(),
    }
}

/// A route forwarding `path` to `pool`.
pub fn route(name: &str, path: &str, pool: &str) -> RouteConfig {
    RouteConfig {
        name: name.to_owned(),
        host: None,
        path: path.to_owned(),
        action: RouteAction::Pool {
            pool: pool.to_owned(),
            strip_prefix: false,
        },
        reject_encoded_slash: false,
        maintenance: None,
    }
}

/// A plain HTTP listener with default limits.
pub fn listener(name: &str, bind: SocketAddr) -> ListenerConfig {
    ListenerConfig {
        name: name.to_owned(),
        bind,
        tls: None,
        proxy_protocol: false,
        proxy_protocol_from: Vec::new(),
        trusted_proxies: Vec::new(),
        limits: Limits::default(),
        redirect_https: None,
    }
}

/// A configuration with every default and nothing in it.
pub fn empty_config() -> Config {
    Config {
        shutdown_grace: Duration::from_secs(30),
        workers: Workers::Auto,
        admin: AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token_env: "RINGWAY_ADMIN_TOKEN".into(),
        },
        log: LogConfig {
            access: AccessLogTarget::Stdout,
            format: AccessLogFormat::Combined,
        },
        listeners: Vec::new(),
        routes: Vec::new(),
        pools: Vec::new(),
        cluster: None,
    }
}

/// The configuration of `ringway proxy`: one listener (TLS with `tls`), one route, one pool.
pub fn proxy_config(
    listen: SocketAddr,
    to: &[String],
    balance: Balance,
    access_log: bool,
    tls: Option<CertPair>,
) -> Config {
    let mut c = empty_config();
    if !access_log {
        c.log.access = AccessLogTarget::Off;
    }
    let mut l = listener("proxy", listen);
    l.tls = tls.map(|pair| TlsConfig { certs: vec![pair] });
    c.listeners.push(l);
    c.routes.push(route("proxy", "/", "proxy"));
    c.pools.push(pool(
        "proxy",
        balance,
        to.iter().map(|a| server(a.trim())).collect(),
    ));
    c
}

/// Checks the `--cert`/`--key` pair of `ringway proxy` as `ringway check` would (readable PEM,
/// valid now, key matching); prints a warning when it expires soon.
pub fn check_cert_pair(pair: &CertPair) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let loaded = crate::config::tls_check::load_pair(pair, now).map_err(|e| e.message)?;
    if let Some(w) = loaded.expiry_warning(pair) {
        eprintln!("ringway: warning: {w}");
    }
    Ok(())
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment this is built.
///
/// Built before the engine starts serving: until a handler is registered those signals keep their
/// default action, which ends the process at once (SIGHUP too), in-flight requests and all.
pub struct Signals {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers.
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (term, int, hup) = {
            let _guard = rt.enter();
            (
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            )
        };
        Ok(Signals { rt, term, int, hup })
    }

    /// Waits on the calling thread: SIGTERM/SIGINT stop gracefully, SIGHUP reloads.
    pub fn wait(self, engine: &Engine) -> std::io::Result<()> {
        let Signals {
            rt,
            mut term,
            mut int,
            mut hup,
        } = self;
        rt.block_on(async {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    // The engine logs the outcome.
                    _ = hup.recv() => {
                        let _ = engine.reload_from_file("SIGHUP");
                    }
                }
            }
            tracing::info!("shutting down: finishing in-flight requests");
            engine.shutdown();
            Ok(())
        })
    }
}

/// `ringway ring -c FILE --pool NAME`: the members and ring settings of a configured pool.
pub fn pool_source(path: &Path, pool: &str) -> Result<crate::ring_cmd::PoolSource, String> {
    // Only the pool is needed: the files the configuration names may live on another machine.
    let config = crate::config::read(path).map_err(|errs| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let hashed: Vec<&str> = config
        .pools
        .iter()
        .filter(|p| matches!(p.balance, Balance::ConsistentHash(_) | Balance::Maglev(_)))
        .map(|p| p.name.as_str())
        .collect();
    let which = if hashed.is_empty() {
        format!("{} has no hashed pool", path.display())
    } else {
        format!("hashed pools in {}: {}", path.display(), hashed.join(", "))
    };
    let p = config
        .pools
        .iter()
        .find(|p| p.name == pool)
        .ok_or_else(|| format!("no pool `{pool}` in {}; {which}", path.display()))?;
    let (vnodes, hash) = match &p.balance {
        Balance::ConsistentHash(h) | Balance::Maglev(h) => (h.vnodes, h.hash),
        Balance::RoundRobin | Balance::LeastRequests | Balance::RandomTwo => {
            let alg = match p.balance {
                Balance::RoundRobin => "round_robin",
                Balance::LeastRequests => "least_requests",
                _ => "random_two",
            };
            return Err(format!(
                "pool `{pool}` balances with {alg}, which does not hash keys: `ringway ring` \
                 plans consistent_hash and maglev pools ({which})"
            ));
        }
    };
    Ok(crate::ring_cmd::PoolSource {
        members: p
            .servers
            .iter()
            .map(|s| Member {
                name: s.name.clone(),
                weight: s.weight,
            })
            .collect(),
        vnodes,
        hash: match hash {
            HashFn::Xxh3 => HashFunction::Xxh3,
            HashFn::Sha1_28 => HashFunction::Sha1_28,
        },
    })
}

/// Prints configuration errors as `ringway check` does: one per line, then how many.
pub fn print_config_errors(errors: &[crate::config::ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
    print_error_count(errors.len());
}

fn print_error_count(n: usize) {
    eprintln!("{n} error{} found", if n == 1 { "" } else { "s" });
}

/// `ringway reload`: POST /api/v1/reload to a running instance's admin interface.
///
/// The address is `--admin`, else `[admin] listen` of `-c FILE` (default `ringway.toml`); the
/// bearer token comes from the variable named by the file's `[admin] token_env`.
pub fn send_reload(admin: Option<&str>, config: Option<&Path>) -> ExitCode {
    let file = config.or_else(|| admin.is_none().then_some(Path::new("ringway.toml")));
    let loaded = match file.map(crate::config::read) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(errors)) => {
            print_config_errors(&errors);
            return ExitCode::FAILURE;
        }
    };
    let base = match (admin, &loaded) {
        (Some(url), _) => url.to_string(),
        (None, Some(c)) => match admin_url(c.admin.listen) {
            Ok(url) => url,
            Err(e) => {
                eprintln!("ringway: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => {
            eprintln!("ringway: give --admin URL or -c FILE");
            return ExitCode::FAILURE;
        }
    };
    let token_env = loaded
        .as_ref()
        .map_or("RINGWAY_ADMIN_TOKEN", |c| c.admin.token_env.as_str());
    let token = std::env::var(token_env).ok().filter(|t| !t.is_empty());
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringway: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(crate::admin::client::post(
        &base,
        "/api/v1/reload",
        token.as_deref(),
    )) {
        Ok((status, body)) => match reload_report(status, &body) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(ReloadFailure::Refused(errors)) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                print_error_count(errors.len());
                ExitCode::FAILURE
            }
            Err(ReloadFailure::Other(message)) => {
                eprintln!("ringway: {message}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("ringway: cannot reach {base}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The URL to reach an admin interface listening on `listen` from this host.
fn admin_url(listen: SocketAddr) -> Result<String, String> {
    if listen.port() == 0 {
        return Err(format!(
            "[admin] listen is {listen}: the port is picked at start, so it cannot be read from \
             the file; pass --admin http://ADDRESS:PORT"
        ));
    }
    let ip = match listen.ip() {
        std::net::IpAddr::V4(a) if a.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(a) if a.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!("http://{}", SocketAddr::new(ip, listen.port())))
}

/// Why `ringway reload` failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadFailure {
    /// The configuration was refused: every error, `file:line:col: message`.
    Refused(Vec<String>),
    /// Anything else (no token, not an admin interface, ...).
    Other(String),
}

/// What `ringway reload` prints for the admin interface's answer: the summary (stdout), or why
/// it failed.
pub fn reload_report(status: u16, body: &str) -> Result<String, ReloadFailure> {
    use std::fmt::Write as _;
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let Some(v) = json else {
        return Err(ReloadFailure::Other(format!(
            "unexpected answer {status}: {}",
            body.trim_end()
        )));
    };
    if status != 200 {
        let errors: Vec<String> = v["error"]["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if status == 422 && !errors.is_empty() {
            return Err(ReloadFailure::Refused(errors));
        }
        let message = v["error"]["message"].as_str().unwrap_or("no message");
        return Err(ReloadFailure::Other(format!(
            "reload failed ({status}): {message}"
        )));
    }
    let mut out = format!(
        "reloaded: {} routes, {} pools\n",
        v["routes"].as_u64().unwrap_or(0),
        v["pools"].as_u64().unwrap_or(0)
    );
    let l = &v["listeners"];
    let list = |key: &str| l[key].as_array().cloned().unwrap_or_default();
    for a in list("added") {
        let _ = writeln!(
            out,
            "  listener {} added on {}",
            text(&a["name"]),
            text(&a["bind"])
        );
    }
    for r in list("removed") {
        let _ = writeln!(
            out,
            "  listener {} on {} removed",
            text(&r["name"]),
            text(&r["bind"])
        );
    }
    for r in list("rebound") {
        let _ = writeln!(
            out,
            "  listener {} moved from {} to {}",
            text(&r["name"]),
            text(&r["from"]),
            text(&r["to"])
        );
    }
    for c in list("changed") {
        let _ = writeln!(out, "  listener {} settings changed", text(&c));
    }
    for n in v["notes"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(out, "  not applied: {}", text(&n));
    }
    Ok(out)
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// `ringway demo`: three rooms services on loopback behind a balancer on `port`, the status
/// page on `admin_port`.
pub fn demo(port: u16, admin_port: u16) -> ExitCode {
    let (tx, rx) = std::sync::mpsc::channel();
    // The rooms services run on their own thread and runtime, like servers on other hosts.
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        rt.block_on(async move {
            match crate::demo::spawn_rooms_instances(3).await {
                Ok(instances) => {
                    let addrs: Vec<SocketAddr> = instances.iter().map(|(a, _)| *a).collect();
                    let _ = tx.send(Ok(addrs));
                    for (_, h) in instances {
                        let _ = h.await;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    });
    let addrs = match rx.recv() {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            eprintln!("ringway demo: cannot start the rooms services: {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => return ExitCode::FAILURE,
    };
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringway demo: cannot catch signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = demo_config(port, &addrs);
    config.admin.listen = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let engine = match Engine::start(config, None, None) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("ringway demo: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin = crate::admin::start(engine.clone());
    let admin_line = match &admin {
        Ok(a) => format!("status page     http://{a}/"),
        Err(e) => format!("status page     not started: {e}"),
    };
    let base = engine
        .listener_addr("demo")
        .map_or_else(|| format!("127.0.0.1:{port}"), |a| a.to_string());
    println!(
        "Ringway demo: three rooms services ({}) behind http://{base}\n\n\
         Try:\n  \
         curl -i http://{base}/rooms                      round robin: watch X-Served-By change\n  \
         curl -i 'http://{base}/rooms?status=available'\n  \
         curl -i http://{base}/cache/rooms/abc            consistent hash: the same path, the same server\n  \
         {admin_line}\n\n\
         Access log below; Ctrl-C stops.",
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    match signals.wait(&engine) {
        Ok(()) => {
            engine.wait();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringway demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The demo's configuration: `/rooms` round robin, `/cache/` consistent hash keyed by path.
pub fn demo_config(port: u16, rooms: &[SocketAddr]) -> Config {
    let mut c = empty_config();
    c.shutdown_grace = Duration::from_secs(5);
    c.listeners
        .push(listener("demo", SocketAddr::from(([127, 0, 0, 1], port))));
    c.routes.push(route("rooms", "/rooms", "rooms"));
    c.routes.push(route("cache", "/cache/", "cache"));
    let servers = |_: ()| -> Vec<ServerConfig> {
        rooms
            .iter()
            .enumerate()
            .map(|(i, a)| ServerConfig {
                address: a.to_string(),
                weight: 1,
                name: format!("rooms-{}", i + 1),
            })
            .collect()
    };
    c.pools.push(pool("rooms", Balance::RoundRobin, servers(())));
    c.pools.push(pool(
        "cache",
        Balance::ConsistentHash(default_hash_settings()),
        servers(()),
    ));
    c
}
