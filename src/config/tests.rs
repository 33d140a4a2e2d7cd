//! Tests of `parse`, `load`, `summary` and `check_admin_token` on whole files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// `[cluster]` and `load_text`: their own file, with the helpers of this one.
mod cluster;
/// `discover` tables: their own file, with the helpers of this one.
mod discover;
/// `${NAME}` in addresses: their own file, with the helpers of this one.
mod vars;

/// The example of DESIGN.md section 4, verbatim.
const DESIGN_EXAMPLE: &str = r#"shutdown_grace = "30s"
workers = "auto"                   # threads serving traffic: "auto" = one per CPU core, or a number

[admin]
listen = "127.0.0.1:9090"          # status page, REST API, /metrics, /healthz
token_env = "RINGWAY_ADMIN_TOKEN"  # when the variable is set, mutating calls need "Authorization: Bearer <token>";
                                   # a non-loopback admin listen address without a token is a config error

[log]
access = "stdout"                  # "stdout" | "off" | a file path
format = "combined"                # nginx combined + upstream fields | "json"

[[listener]]
name = "public"
bind = "0.0.0.0:8443"
tls = { cert = "certs/site.pem", key = "certs/site.key" }   # repeatable via [[listener.tls.cert]] for SNI
proxy_protocol = false
[listener.limits]                  # defaults shown
header_timeout = "10s"             # whole request head must arrive within this
idle_timeout = "60s"
max_header_bytes = 65536
max_body_bytes = "100MiB"

[[listener]]
name = "plain"
bind = "0.0.0.0:8080"
redirect_https = { port = 8443, status = 308 }  # every request answered with a redirect to https

[[route]]
name = "api"
host = "api.example.com"           # optional; exact or "*.example.com"
path = "/api/"                     # prefix, default "/"; longest prefix wins
pool = "api"
strip_prefix = true

[[route]]
name = "assets"
path = "/assets/"
static_dir = "public"

[[route]]
name = "old-blog"
path = "/blog/"
redirect = { to = "https://blog.example.com/", status = 301 }

[route.maintenance]                # belongs to the route above it
enabled = false
windows = ["sun 02:00-04:00 UTC"]  # scheduled downtime: answered with the page during the window
page = "maintenance.html"
retry_after = "2h"

[pool.api]
balance = "round_robin"            # round_robin (smooth weighted) | least_requests | random_two |
                                   # consistent_hash | maglev
servers = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3, name = "api-2" }]
# discover = { dns = "api.internal:8000", interval = "5s" }   # instead of (or beside) servers
retries = 2
timeouts = { connect = "3s", response = "60s" }
max_conns = 0                      # per server, 0 = unlimited
health = { path = "/healthz", interval = "2s", timeout = "1s", rise = 2, fall = 3, expect = "2xx" }
passive = { failures = 5, eject = "30s" }     # consecutive connect errors / 5xx eject a server for a while
slow_start = "30s"                 # a server coming back ramps up to its full weight over this time

[pool.cache]
balance = "consistent_hash"
hash_key = "path"                  # path | uri | client_ip | header:NAME | cookie:NAME | query:NAME
vnodes = 160                       # points on the ring per unit of weight
hash = "xxh3"                      # xxh3 | sha1-28 (compatibility, section 6)
bounded_load = 1.25                # optional: no server takes more than ceil(1.25 × mean in-flight)
servers = ["cache-a:11211", "cache-b:11211"]
"#;

/// The smallest valid configuration.
const MINIMAL: &str = r#"
[[listener]]
name = "web"
bind = "0.0.0.0:8080"

[[route]]
name = "all"
pool = "app"

[pool.app]
servers = ["127.0.0.1:3000"]
"#;

/// A listener and a pool, to which tests append what they exercise.
const BASE: &str = r#"[[listener]]
name = "web"
bind = "0.0.0.0:8080"
[pool.app]
servers = ["127.0.0.1:3000"]
"#;

fn ok(src: &str) -> Config {
    match parse(src, "t.toml") {
        Ok(c) => c,
        Err(es) => panic!(
            "expected no errors, got:\n{}",
            es.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
        ),
    }
}

/// Errors as "LINE:COL: message".
fn errs(src: &str) -> Vec<String> {
    match parse(src, "t.toml") {
        Ok(_) => Vec::new(),
        Err(es) => es
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
            .collect(),
    }
}

/// Asserts that `src` gives exactly one error, starting with `expected` ("LINE:COL: message").
#[track_caller]
fn one_err(src: &str, expected: &str) {
    let es = errs(src);
    assert!(
        es.len() == 1 && es[0].starts_with(expected),
        "expected one error starting with\n  {expected}\ngot:\n  {}",
        es.join("\n  ")
    );
}

/// `BASE` followed by `rest`; `rest` starts on line 6.
fn with_base(rest: &str) -> String {
    format!("{BASE}{rest}")
}

#[test]
fn design_example_parses() {
    let c = ok(DESIGN_EXAMPLE);
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.routes.len(), 3);
    assert_eq!(c.pools.len(), 2);
    let public = &c.listeners[0];
    assert_eq!(public.bind, "0.0.0.0:8443".parse::<SocketAddr>().unwrap());
    assert_eq!(
        public.tls.as_ref().map(|t| t.certs.clone()),
        Some(vec![CertPair {
            cert: "certs/site.pem".into(),
            key: "certs/site.key".into()
        }])
    );
    assert_eq!(public.limits, Limits::default());
    assert_eq!(
        c.listeners[1].redirect_https,
        Some(RedirectHttps {
            port: 8443,
            status: 308
        })
    );
    assert_eq!(
        c.routes[0].host,
        Some(HostPattern::Exact("api.example.com".into()))
    );
    assert_eq!(
        c.routes[0].action,
        RouteAction::Pool {
            pool: "api".into(),
            strip_prefix: true
        }
    );
    assert_eq!(c.routes[1].action, RouteAction::Static { dir: "public".into() });
    let blog = &c.routes[2];
    assert_eq!(
        blog.action,
        RouteAction::Redirect {
            to: "https://blog.example.com/".into(),
            status: 301
        }
    );
    assert_eq!(
        blog.maintenance,
        Some(MaintenanceConfig {
            enabled: false,
            allow: vec![],
            windows: vec!["sun 02:00-04:00 UTC".parse().unwrap()],
            page: Some("maintenance.html".into()),
            retry_after: Duration::from_secs(7200),
        })
    );
    let api = &c.pools[0];
    assert_eq!(api.name, "api");
    assert_eq!(
        api.servers,
        vec![
            ServerConfig {
                address: "127.0.0.1:9001".into(),
                weight: 1,
                name: "127.0.0.1:9001".into()
            },
            ServerConfig {
                address: "127.0.0.1:9002".into(),
                weight: 3,
                name: "api-2".into()
            },
        ]
    );
    assert!(api.health.is_some() && api.passive.is_some());
    assert_eq!(api.slow_start, Some(Duration::from_secs(30)));
    let cache = &c.pools[1];
    assert_eq!(
        cache.balance,
        Balance::ConsistentHash(HashSettings {
            key: HashKeySpec::Path,
            vnodes: 160,
            hash: HashFn::Xxh3,
            bounded_load: Some(1.25),
            maglev_table_size: 65537,
        })
    );
}

#[test]
fn minimal_config_gets_every_default() {
    let c = ok(MINIMAL);
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.workers, Workers::Auto);
    assert_eq!(
        c.admin,
        AdminConfig {
            listen: "127.0.0.1:9090".parse().unwrap(),
            token_env: "RINGWAY_ADMIN_TOKEN".into()
        }
    );
    assert_eq!(
        c.log,
        LogConfig {
            access: AccessLogTarget::Stdout,
            format: AccessLogFormat::Combined
        }
    );
    assert_eq!(
        c.listeners,
        vec![ListenerConfig {
            name: "web".into(),
            bind: "0.0.0.0:8080".parse().unwrap(),
            tls: None,
            proxy_protocol: false,
            proxy_protocol_from: vec![],
            trusted_proxies: vec![],
            limits: Limits {
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_header_bytes: 65536,
                max_body_bytes: 100 * 1024 * 1024,
                send_timeout: Duration::from_secs(60),
            },
            redirect_https: None,
        }]
    );
    assert_eq!(
        c.routes,
        vec![RouteConfig {
            name: "all".into(),
            host: None,
            path: "/".into(),
            action: RouteAction::Pool {
                pool: "app".into(),
                strip_prefix: false
            },
            reject_encoded_slash: false,
            maintenance: None,
        }]
    );
    assert_eq!(
        c.pools,
        vec![PoolConfig {
            name: "app".into(),
            balance: Balance::RoundRobin,
            servers: vec![ServerConfig {
                address: "127.0.0.1:3000".into(),
                weight: 1,
                name: "127.0.0.1:3000".into()
            }],
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
        }]
    );
}

#[test]
fn sub_table_defaults() {
    let c = ok(&with_base(
        r#"health = {}
passive = {}
discover = { dns = "app.internal:80" }
[[route]]
name = "r"
redirect = { to = "https://x.example/" }
[route.maintenance]
[[listener]]
name = "plain"
bind = "0.0.0.0:80"
redirect_https = {}
"#,
    ));
    let pool = &c.pools[0];
    assert_eq!(
        pool.health,
        Some(HealthConfig {
            path: "/healthz".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            expect: ExpectStatus::default()
        })
    );
    assert_eq!(
        pool.passive,
        Some(PassiveConfig {
            failures: 5,
            eject: Duration::from_secs(30)
        })
    );
    assert_eq!(
        pool.discover,
        Some(DiscoverConfig {
            dns: "app.internal:80".into(),
            query: DnsQuery::Address {
                host: "app.internal".into(),
                port: 80
            },
            interval: Duration::from_secs(5),
            resolvers: Vec::new(),
        })
    );
    assert_eq!(
        c.routes[0].action,
        RouteAction::Redirect {
            to: "https://x.example/".into(),
            status: 301
        }
    );
    assert_eq!(
        c.routes[0].maintenance,
        Some(MaintenanceConfig {
            enabled: false,
            allow: vec![],
            windows: vec![],
            page: None,
            retry_after: Duration::from_secs(1800)
        })
    );
    assert_eq!(
        c.listeners[1].redirect_https,
        Some(RedirectHttps {
            port: 443,
            status: 308
        })
    );
}

#[test]
fn hashed_pool_defaults() {
    let c = ok(&format!(
        "{MINIMAL}[pool.h]\nbalance = \"consistent_hash\"\nservers = [\"a:1\"]\n\
         [pool.m]\nbalance = \"maglev\"\nservers = [\"b:1\"]\n"
    ));
    let defaults = HashSettings {
        key: HashKeySpec::Path,
        vnodes: 160,
        hash: HashFn::Xxh3,
        bounded_load: None,
        maglev_table_size: 65537,
    };
    assert_eq!(c.pools[1].balance, Balance::ConsistentHash(defaults.clone()));
    assert_eq!(c.pools[2].balance, Balance::Maglev(defaults));
}

#[test]
fn values_of_every_kind_parse() {
    let c = ok(r#"
shutdown_grace = "0s"
workers = 4
[admin]
listen = "[::1]:9091"
token_env = "MY_TOKEN"
[log]
access = "/var/log/ringway/access.log"
format = "json"
[[listener]]
name = "tls"
bind = "[::]:443"
proxy_protocol = true
[[listener.tls.cert]]
cert = "a.pem"
key = "a.key"
[[listener.tls.cert]]
cert = "b.pem"
key = "b.key"
[listener.limits]
header_timeout = "250ms"
idle_timeout = "2m"
max_header_bytes = "8KiB"
max_body_bytes = "10KB"
[[route]]
name = "wild"
host = "*.Example.COM"
path = "/api/"
pool = "c"
[pool.c]
balance = "maglev"
hash_key = "header:X-User"
hash = "sha1-28"
bounded_load = 2
maglev_table_size = 1021
servers = ["[::1]:80", "cache_1.internal:11211"]
health = { expect = "200,3xx", path = "/ping", interval = "5s", timeout = "5s" }
"#);
    assert_eq!(c.shutdown_grace, Duration::ZERO);
    assert_eq!(c.workers, Workers::Fixed(4));
    assert_eq!(c.admin.listen, "[::1]:9091".parse::<SocketAddr>().unwrap());
    assert_eq!(
        c.log.access,
        AccessLogTarget::File("/var/log/ringway/access.log".into())
    );
    assert_eq!(c.log.format, AccessLogFormat::Json);
    let l = &c.listeners[0];
    assert!(l.proxy_protocol);
    assert_eq!(l.tls.as_ref().map(|t| t.certs.len()), Some(2));
    assert_eq!(
        l.limits,
        Limits {
            header_timeout: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(120),
            max_header_bytes: 8192,
            max_body_bytes: 10_000,
            send_timeout: Duration::from_secs(60),
        }
    );
    assert_eq!(
        c.routes[0].host,
        Some(HostPattern::Wildcard(".example.com".into()))
    );
    assert_eq!(
        c.pools[0].balance,
        Balance::Maglev(HashSettings {
            key: HashKeySpec::Header("x-user".into()),
            vnodes: 160,
            hash: HashFn::Sha1_28,
            bounded_load: Some(2.0),
            maglev_table_size: 1021
        })
    );
}

#[test]
fn servers_as_array_of_tables() {
    let c = ok(r#"
[[listener]]
name = "web"
bind = "0.0.0.0:8080"
[[route]]
name = "all"
pool = "app"
[[pool.app.servers]]
address = "10.0.0.1:80"
weight = 2
[[pool.app.servers]]
address = "10.0.0.2:80"
name = "two"
"#);
    let names: Vec<_> = c.pools[0].servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["10.0.0.1:80", "two"]);
    assert_eq!(c.pools[0].servers[0].weight, 2);
}

#[test]
fn syntax_error_has_its_position() {
    one_err("a = 1\nb = \n", "2:5: TOML syntax error");
    one_err("x = 1\nx = 2\n", "2:1: TOML syntax error: duplicate key");
}

#[test]
fn display_is_file_line_col() {
    let e = parse(
        &MINIMAL.replace("name = \"web\"", "name = \"web\"\nnme = 1"),
        "ringway.toml",
    )
    .err()
    .unwrap_or_default();
    assert_eq!(
        e.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        ["ringway.toml:4:1: unknown key `nme` in [[listener]]; did you mean `name`?"]
    );
}

#[test]
fn empty_config_needs_listener_and_route() {
    assert_eq!(
        errs(""),
        [
            "1:1: no [[listener]] is defined; Ringway needs at least one to accept connections",
            "1:1: no [[route]] is defined; Ringway needs at least one to answer requests",
        ]
    );
}

#[test]
fn empty_arrays_count_as_missing() {
    let es = errs("listener = []\nroute = []\n");
    assert_eq!(
        es,
        [
            "1:12: `listener` is empty; Ringway needs at least one listener",
            "2:9: `route` is empty; Ringway needs at least one route",
        ]
    );
}

#[test]
fn unknown_keys_suggest_close_names() {
    one_err(
        &format!("{MINIMAL}balanse = \"maglev\"\n"),
        "12:1: unknown key `balanse` in [pool.app]; did you mean `balance`?",
    );
    one_err(
        &format!("{MINIMAL}[[route]]\nname = \"b\"\npath = \"/b\"\npool = \"app\"\nstirp_prefix = true\n"),
        "16:1: unknown key `stirp_prefix` in [[route]]; did you mean `strip_prefix`?",
    );
    one_err(
        &format!("{MINIMAL}completely_unrelated = 1\n"),
        "12:1: unknown key `completely_unrelated` in [pool.app]",
    );
    let es = errs(&format!("wrkers = 2\n{MINIMAL}"));
    assert_eq!(
        es,
        ["1:1: unknown key `wrkers` in the top level; did you mean `workers`?"]
    );
}

#[test]
fn wrong_types() {
    one_err(
        &format!("{MINIMAL}retries = \"2\"\n"),
        "12:11: `retries`: expected an integer, found a string",
    );
    one_err(
        "[[listener]]\nname = \"a\"\nbind = 8080\n[[route]]\nname = \"r\"\nstatic_dir = \"x\"\n",
        "3:8: `bind`: expected a string, found an integer",
    );
    one_err(
        &with_base("[[route]]\nname = \"r\"\npool = \"app\"\nstrip_prefix = \"yes\"\n"),
        "9:16: `strip_prefix`: expected a boolean (true or false), found a string",
    );
    one_err(
        &format!(
            "listener = 3\n{}",
            &MINIMAL[MINIMAL.find("[[route]]").unwrap_or(0)..]
        ),
        "1:12: `listener`: expected an array of tables, found an integer",
    );
    one_err(
        "[listener]\nname = \"a\"\nbind = \"0.0.0.0:1\"\n[[route]]\nname = \"r\"\nstatic_dir = \"x\"\n",
        "1:2: `listener` must be an array of tables: write [[listener]]",
    );
}

#[test]
fn bad_socket_addresses() {
    one_err(
        "[[listener]]\nname = \"a\"\nbind = \"localhost:80\"\n[[route]]\nname = \"r\"\nstatic_dir = \"x\"\n",
        "3:8: `bind`: invalid address \"localhost:80\"; write IP:port",
    );
    one_err(
        &format!("[admin]\nlisten = \"9090\"\n{MINIMAL}"),
        "2:10: `listen`: invalid address \"9090\"",
    );
}

#[test]
fn bad_server_addresses() {
    let src = format!(
        "{MINIMAL}[pool.b]\nservers = [\"nohost\", \"a:0\", \"a:99999\", \"::1:80\", \"-bad-:80\", \"[::1]:8080\", \"ok.example:1\"]\n"
    );
    assert_eq!(
        errs(&src),
        [
            "13:12: address \"nohost\" has no port; write host:port, e.g. \"nohost:80\"",
            "13:22: invalid address \"a:0\": port `0` is not a number in 1..=65535",
            "13:29: invalid address \"a:99999\": port `99999` is not a number in 1..=65535",
            "13:40: invalid address \"::1:80\"; write an IPv6 address in brackets, e.g. \"[::1]:8080\"",
            "13:50: invalid address \"-bad-:80\": `-bad-` is neither an IP address nor a valid DNS name",
        ]
    );
}

#[test]
fn durations() {
    one_err(
        &format!("shutdown_grace = \"soon\"\n{MINIMAL}"),
        "1:18: `shutdown_grace`: invalid duration \"soon\"",
    );
    one_err(
        &format!("{MINIMAL}timeouts = {{ connect = \"0s\" }}\n"),
        "12:24: `connect` must be longer than zero",
    );
    one_err(
        &format!("{MINIMAL}timeouts = {{ response = 60 }}\n"),
        "12:25: `response`: expected a duration string such as \"30s\", found an integer",
    );
}

#[test]
fn sizes_and_limits() {
    let listener = |limits: &str| {
        format!(
            "[[listener]]\nname = \"a\"\nbind = \"0.0.0.0:1\"\n[listener.limits]\n{limits}\n\
             [[route]]\nname = \"r\"\nstatic_dir = \"x\"\n"
        )
    };
    one_err(
        &listener("max_header_bytes = 4096"),
        "5:20: `max_header_bytes` must be between 8KiB (8192, hyper's smallest buffer) and 1MiB (1048576), found 4096",
    );
    one_err(
        &listener("max_header_bytes = \"2MiB\""),
        "5:20: `max_header_bytes` must be between 8KiB",
    );
    one_err(
        &listener("max_body_bytes = \"10 parsecs\""),
        "5:18: `max_body_bytes`: invalid size \"10 parsecs\"",
    );
    one_err(
        &listener("max_body_bytes = -5"),
        "5:18: `max_body_bytes` must not be negative",
    );
    one_err(
        &listener("max_body_bytes = 0"),
        "5:18: `max_body_bytes` must be at least 1 byte",
    );
    let c = ok(&listener(
        "max_body_bytes = \"1GiB\"\nmax_header_bytes = \"1MiB\"",
    ));
    assert_eq!(c.listeners[0].limits.max_body_bytes, 1 << 30);
    assert_eq!(c.listeners[0].limits.max_header_bytes, 1 << 20);
}

#[test]
fn weights() {
    one_err(
        &format!("{MINIMAL}[pool.b]\nservers = [{{ address = \"a:1\", weight = 0 }}]\n"),
        "13:40: `weight` must be between 1 and 256, found 0",
    );
    one_err(
        &format!("{MINIMAL}[pool.b]\nservers = [{{ address = \"a:1\", weight = 257 }}]\n"),
        "13:40: `weight` must be between 1 and 256, found 257",
    );
    one_err(
        &format!("{MINIMAL}[pool.b]\nservers = [{{ address = \"a:1\", weight = 1.5 }}]\n"),
        "13:40: `weight`: expected an integer, found a float",
    );
}

#[test]
fn workers_values() {
    one_err(
        &format!("workers = 0\n{MINIMAL}"),
        "1:11: `workers` must be between 1 and 1024, found 0",
    );
    one_err(
        &format!("workers = \"all\"\n{MINIMAL}"),
        "1:11: `workers` must be \"auto\" or a number of threads, found \"all\"",
    );
}

#[test]
fn duplicate_names_and_binds() {
    let src = r#"[[listener]]
name = "a"
bind = "0.0.0.0:8080"
[[listener]]
name = "a"
bind = "127.0.0.1:8080"
[[listener]]
name = "c"
bind = "127.0.0.1:8081"
[[listener]]
name = "d"
bind = "127.0.0.1:8081"
[[route]]
name = "r"
pool = "p"
[[route]]
name = "r"
path = "/x"
pool = "p"
[pool.p]
servers = ["a:1", { address = "b:1", name = "a:1" }]
"#;
    assert_eq!(
        errs(src),
        [
            "5:8: listener name `a` is already used by the listener at line 2",
            "6:8: `bind` 127.0.0.1:8080 conflicts with 0.0.0.0:8080 of the listener at line 3",
            "12:8: `bind` 127.0.0.1:8081 conflicts with 127.0.0.1:8081 of the listener at line 9",
            "17:8: route name `r` is already used by the route at line 14",
            "21:45: pool `p` has two servers named `a:1` (a server's name defaults to its address; set `name` to tell them apart)",
        ]
    );
    // Port 0 asks the kernel for a free port: never a conflict.
    ok(&MINIMAL.replace(
        "bind = \"0.0.0.0:8080\"",
        "bind = \"127.0.0.1:0\"\n[[listener]]\nname = \"b\"\nbind = \"127.0.0.1:0\"",
    ));
}

#[test]
fn admin_listen_conflicts_with_listener() {
    one_err(
        &format!("[admin]\nlisten = \"0.0.0.0:8080\"\n{MINIMAL}"),
        "2:10: `[admin].listen` 0.0.0.0:8080 conflicts with 0.0.0.0:8080 of the listener at line 6",
    );
}

#[test]
fn listener_on_the_default_admin_address() {
    one_err(
        &MINIMAL.replace("0.0.0.0:8080", "0.0.0.0:9090"),
        "4:8: `bind` 0.0.0.0:9090 conflicts with the admin interface's default address 127.0.0.1:9090",
    );
    ok(&format!(
        "[admin]\nlisten = \"127.0.0.1:9999\"\n{}",
        MINIMAL.replace("0.0.0.0:8080", "0.0.0.0:9090")
    ));
}

#[test]
fn routes_naming_missing_pools() {
    one_err(
        &with_base("[[route]]\nname = \"api\"\npool = \"ap\"\n"),
        "8:8: route `api` names pool `ap`, which is not defined; did you mean `app`?",
    );
    one_err(
        &with_base("[[route]]\nname = \"api\"\npool = \"zzz\"\n"),
        "8:8: route `api` names pool `zzz`, which is not defined",
    );
    let design_typo = DESIGN_EXAMPLE.replace("pool = \"api\"", "pool = \"apii\"");
    one_err(
        &design_typo,
        "33:8: route `api` names pool `apii`, which is not defined; did you mean `api`?",
    );
}

#[test]
fn route_actions() {
    one_err(
        &with_base("[[route]]\nname = \"r\"\n"),
        "6:1: route `r` needs one of `pool`, `redirect` or `static_dir`",
    );
    one_err(
        &with_base("[[route]]\nname = \"r\"\npool = \"app\"\nstatic_dir = \"x\"\n"),
        "9:1: route `r` has both `pool` and `static_dir`; a route does exactly one of pool, redirect or static_dir",
    );
    one_err(
        &with_base("[[route]]\nname = \"r\"\nstatic_dir = \"x\"\nstrip_prefix = true\n"),
        "9:1: route `r`: `strip_prefix` only applies to a route with `pool`",
    );
    one_err(
        &with_base("[[route]]\nname = \"r\"\npath = \"api/\"\npool = \"app\"\n"),
        "8:8: `path` must start with \"/\", found \"api/\"",
    );
    one_err(
        &with_base("[[route]]\nname = \"a\"\npool = \"app\"\n[[route]]\nname = \"b\"\npool = \"app\"\n"),
        "9:1: route `b` has the same host and path as the route at line 6; it could never be chosen",
    );
}

#[test]
fn reject_encoded_slash_and_normal_route_paths() {
    let c = ok(&with_base(
        "[[route]]\npool = \"app\"\n\
         [[route]]\npath = \"/files/\"\npool = \"app\"\nreject_encoded_slash = true\n",
    ));
    assert!(!c.routes[0].reject_encoded_slash, "off by default");
    assert!(c.routes[1].reject_encoded_slash);
    // Any route may refuse encoded slashes: static files and redirects too.
    ok(&with_base(
        "[[route]]\npath = \"/s/\"\nstatic_dir = \"public\"\nreject_encoded_slash = false\n",
    ));
    one_err(
        &with_base("[[route]]\nname = \"r\"\npool = \"app\"\nreject_encoded_slash = \"yes\"\n"),
        "9:24: `reject_encoded_slash`: expected a boolean (true or false), found a string",
    );
    one_err(
        &with_base("[[route]]\nname = \"r\"\npool = \"app\"\nreject_encoded_slashes = true\n"),
        "9:1: unknown key `reject_encoded_slashes` in [[route]]; did you mean `reject_encoded_slash`?",
    );
    // Requests are matched on normal paths: a prefix in any other spelling could never match.
    one_err(
        &with_base("[[route]]\nname = \"r\"\npath = \"/pub/../%61dmin//\"\npool = \"app\"\n"),
        "8:8: `path` \"/pub/../%61dmin//\" is not in normal form; requests are matched on their \
         normalised path, so write \"/admin/\"",
    );
    one_err(
        &with_base("[[route]]\nname = \"r\"\npath = \"/a%2fb\"\npool = \"app\"\n"),
        "8:8: `path` \"/a%2fb\" is not in normal form; requests are matched on their normalised path, \
         so write \"/a%2Fb\"",
    );
    one_err(
        &with_base("[[route]]\nname = \"r\"\npath = \"/../x/\"\npool = \"app\"\n"),
        "8:8: `path` \"/../x/\" cannot be normalised: a `..` segment climbs above the root",
    );
    one_err(
        &with_base("[[route]]\nname = \"r\"\npath = \"/%zz/\"\npool = \"app\"\n"),
        "8:8: `path` \"/%zz/\" cannot be normalised: a `%` is not followed by two hex digits",
    );
}

#[test]
fn routes_without_a_name_are_named_after_host_and_path() {
    let c = ok(&with_base(
        "[[route]]\npool = \"app\"\n\
         [[route]]\nhost = \"API.example.com\"\npath = \"/api/\"\npool = \"app\"\n\
         [[route]]\nhost = \"*.example.com\"\npool = \"app\"\n\
         [[route]]\npath = \"/assets/\"\nstatic_dir = \"public\"\n\
         [[route]]\nname = \"named\"\npath = \"/n/\"\npool = \"app\"\n",
    ));
    let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["/", "api.example.com/api/", "*.example.com/", "/assets/", "named"]
    );
    assert_eq!(route_name(None, "/x/"), "/x/");
    // Messages about an unnamed route use its derived name.
    one_err(
        &with_base("[[route]]\npath = \"/api/\"\npool = \"ap\"\n"),
        "8:8: route `/api/` names pool `ap`, which is not defined; did you mean `app`?",
    );
    // Two unnamed routes get the same name only with the same host and path: one error.
    one_err(
        &with_base("[[route]]\npath = \"/a/\"\npool = \"app\"\n[[route]]\npath = \"/a/\"\npool = \"app\"\n"),
        "9:1: route `/a/` has the same host and path as the route at line 6; it could never be chosen",
    );
    // Two written names that are equal: an error at the second.
    one_err(
        &with_base(
            "[[route]]\nname = \"x\"\npath = \"/a/\"\npool = \"app\"\n[[route]]\nname = \"x\"\npath = \"/b/\"\npool = \"app\"\n",
        ),
        "11:8: route name `x` is already used by the route at line 7",
    );
    // A written name that is invalid is not replaced by a derived one.
    one_err(
        &with_base("[[route]]\nname = \"a/b\"\npool = \"app\"\n"),
        "7:8: name \"a/b\" must be non-empty",
    );
    let s = summary(&ok(&with_base(
        "[[route]]\nhost = \"api.example.com\"\npath = \"/api/\"\npool = \"app\"\n",
    )));
    assert!(
        s.contains("route    api.example.com/api/  api.example.com/api/ → pool app"),
        "{s}"
    );
}

#[test]
fn route_hosts() {
    let route = |host: &str| {
        with_base(&format!(
            "[[route]]\nname = \"r\"\nhost = \"{host}\"\npool = \"app\"\n"
        ))
    };
    for good in ["api.example.com", "*.example.com", "10.0.0.1", "localhost"] {
        ok(&route(good));
    }
    one_err(
        &route("api.example.com:443"),
        "8:8: `host` \"api.example.com:443\" is neither a valid host name nor a wildcard like \"*.example.com\" (leave out the port: routes match any port)",
    );
    one_err(&route("*"), "8:8: `host` \"*\" is neither");
    one_err(&route("a.*.com"), "8:8: `host` \"a.*.com\" is neither");
    one_err(&route("bad_host.com"), "8:8: `host` \"bad_host.com\" is neither");
}

#[test]
fn redirects() {
    one_err(
        &with_base("[[route]]\nname = \"r\"\nredirect = { to = \"/new\", status = 200 }\n"),
        "8:36: `status` must be 301, 302, 303, 307 or 308, found 200",
    );
    one_err(
        &with_base("[[route]]\nname = \"r\"\nredirect = { status = 302 }\n"),
        "8:12: `redirect` has no `to`; it is required",
    );
    one_err(
        &MINIMAL.replace(
            "bind = \"0.0.0.0:8080\"",
            "bind = \"0.0.0.0:8080\"\nredirect_https = { port = 0 }",
        ),
        "5:27: `port` must be between 1 and 65535, found 0",
    );
    one_err(
        &MINIMAL.replace(
            "bind = \"0.0.0.0:8080\"",
            "bind = \"0.0.0.0:8080\"\ntls = { cert = \"c\", key = \"k\" }\nredirect_https = {}",
        ),
        "6:1: `redirect_https` on a TLS listener would redirect https to itself",
    );
}

#[test]
fn tls_forms() {
    let with = |tls: &str| MINIMAL.replace("bind = \"0.0.0.0:8080\"", tls);
    one_err(
        &with("bind = \"0.0.0.0:8080\"\ntls = { cert = \"c\" }"),
        "5:7: `tls` of [[listener]] has no `key`; it is required",
    );
    one_err(
        &with("bind = \"0.0.0.0:8080\"\ntls = { cert = \"c\", key = \"k\", ca = \"x\" }"),
        "5:32: unknown key `ca` in `tls` of [[listener]]",
    );
    one_err(
        &with("bind = \"0.0.0.0:8080\"\n[[listener.tls.cert]]\ncert = \"c\""),
        "5:1: [[listener.tls.cert]] has no `key`; it is required",
    );
    let c = ok(&with(
        "bind = \"0.0.0.0:8080\"\n[listener.tls]\ncert = \"c\"\nkey = \"k\"",
    ));
    assert_eq!(c.listeners[0].tls.as_ref().map(|t| t.certs.len()), Some(1));
}

#[test]
fn pools_need_servers_or_discover() {
    one_err(
        &format!("{MINIMAL}[pool.empty]\n"),
        "12:1: pool `empty` has no servers and no `discover`; it could never answer",
    );
    one_err(
        &format!("{MINIMAL}[pool.empty]\nservers = []\n"),
        "13:11: pool `empty` has no servers and no `discover`",
    );
    ok(&format!(
        "{MINIMAL}[pool.d]\ndiscover = {{ dns = \"api.internal:8000\", interval = \"10s\" }}\n"
    ));
    one_err(
        &format!("{MINIMAL}[pool.d]\ndiscover = {{ dns = \"api.internal\" }}\n"),
        "13:20: discover `dns` \"api.internal\" has no port",
    );
}

#[test]
fn retries_and_max_conns() {
    one_err(
        &format!("{MINIMAL}retries = 11\n"),
        "12:11: `retries` must be between 0 and 10, found 11",
    );
    one_err(
        &format!("{MINIMAL}max_conns = -1\n"),
        "12:13: `max_conns` must not be negative, found -1",
    );
}

#[test]
fn balance_names() {
    one_err(
        &format!("{MINIMAL}balance = \"round-robin\"\n"),
        "12:11: `balance` must be one of \"round_robin\", \"least_requests\", \"random_two\", \"consistent_hash\", \"maglev\", found \"round-robin\"; did you mean `round_robin`?",
    );
    for b in ["least_requests", "random_two"] {
        ok(&format!("{MINIMAL}balance = \"{b}\"\n"));
    }
}

#[test]
fn hashed_pool_keys() {
    let hashed = |extra: &str| format!("{MINIMAL}balance = \"consistent_hash\"\n{extra}\n");
    one_err(
        &hashed("hash_key = \"header:\""),
        "13:12: hash_key \"header:\" needs a name after `header:`",
    );
    one_err(
        &hashed("hash_key = \"header:X User\""),
        "13:12: hash_key \"header:X User\": `X User` is not a valid header name",
    );
    one_err(
        &hashed("hash_key = \"paht\""),
        "13:12: invalid hash_key \"paht\"; expected path | uri | client_ip | header:NAME | cookie:NAME | query:NAME; did you mean `path`?",
    );
    one_err(
        &hashed("hash = \"md5\""),
        "13:8: `hash` must be one of \"xxh3\", \"sha1-28\", found \"md5\"",
    );
    one_err(
        &hashed("vnodes = 0"),
        "13:10: `vnodes` must be between 1 and 10000, found 0",
    );
    one_err(
        &hashed("vnodes = 10001"),
        "13:10: `vnodes` must be between 1 and 10000",
    );
    one_err(
        &hashed("bounded_load = 1.0"),
        "13:16: `bounded_load` must be greater than 1 (e.g. 1.25), found 1",
    );
    one_err(
        &hashed("bounded_load = \"1.25\""),
        "13:16: `bounded_load`: expected a number, found a string",
    );
    one_err(
        &hashed("maglev_table_size = 65537"),
        "13:1: `maglev_table_size` only applies to maglev pools",
    );
    for key in ["cookie:sid", "query:user", "uri", "client_ip"] {
        ok(&hashed(&format!("hash_key = \"{key}\"")));
    }
}

#[test]
fn maglev_table_size() {
    let maglev = |size: &str| format!("{MINIMAL}balance = \"maglev\"\nmaglev_table_size = {size}\n");
    one_err(
        &maglev("65536"),
        "13:21: `maglev_table_size` must be a prime number (e.g. 65537), found 65536",
    );
    one_err(
        &maglev("1019"),
        "13:21: `maglev_table_size` must be between 1021 and 16777216, found 1019",
    );
    one_err(&maglev("16777259"), "13:21: `maglev_table_size` must be between");
    ok(&maglev("1021"));
    one_err(
        &format!("{MINIMAL}balance = \"maglev\"\nvnodes = 100\n"),
        "13:1: `vnodes` only applies to consistent_hash pools",
    );
}

#[test]
fn hash_keys_on_plain_pools() {
    let es = errs(&format!("{MINIMAL}hash_key = \"path\"\nvnodes = 100\n"));
    assert_eq!(
        es,
        [
            "12:1: `hash_key` only applies to hashed pools (balance = \"consistent_hash\" or \"maglev\")",
            "13:1: `vnodes` only applies to hashed pools (balance = \"consistent_hash\" or \"maglev\")",
        ]
    );
}

#[test]
fn ring_point_limit() {
    let servers: Vec<String> = (0..7)
        .map(|i| format!("{{ address = \"s{i}:1\", weight = 256 }}"))
        .collect();
    let src = format!(
        "{MINIMAL}[pool.big]\nbalance = \"consistent_hash\"\nvnodes = 10000\nservers = [{}]\n",
        servers.join(", ")
    );
    one_err(
        &src,
        "14:10: pool `big` would put 17920000 points on its ring (vnodes 10000 × total weight 1792); the limit is 16000000",
    );
    // 6 × 256 × 10000 = 15,360,000 fits.
    ok(&src.replace(", { address = \"s6:1\", weight = 256 }", ""));
}

#[test]
fn admin_section() {
    one_err(
        &format!("[admin]\ntoken_env = \"\"\n{MINIMAL}"),
        "2:13: `token_env` must name an environment variable",
    );
    let open = ok(&format!("[admin]\nlisten = \"0.0.0.0:9090\"\n{MINIMAL}"));
    let msg = check_admin_token(&open, false).unwrap_or_default();
    assert!(msg.contains("RINGWAY_ADMIN_TOKEN"), "{msg}");
    assert_eq!(check_admin_token(&open, true), None);
    let local = ok(MINIMAL);
    assert_eq!(check_admin_token(&local, false), None);
    let v6 = ok(&format!("[admin]\nlisten = \"[::1]:9090\"\n{MINIMAL}"));
    assert_eq!(check_admin_token(&v6, false), None);
}

#[test]
fn log_section() {
    one_err(
        &format!("[log]\nformat = \"jsn\"\n{MINIMAL}"),
        "2:10: `format` must be one of \"combined\", \"json\", found \"jsn\"; did you mean `json`?",
    );
    one_err(
        &format!("[log]\naccess = \"\"\n{MINIMAL}"),
        "2:10: `access` must not be empty",
    );
    one_err(
        &format!("[log]\naccess = \"stderr\"\n{MINIMAL}"),
        "2:10: `access` = \"stderr\" is not a target",
    );
    let off = ok(&format!("[log]\naccess = \"off\"\n{MINIMAL}"));
    assert_eq!(off.log.access, AccessLogTarget::Off);
}

#[test]
fn maintenance_windows() {
    let m = |body: &str| {
        with_base(&format!(
            "[[route]]\nname = \"r\"\npool = \"app\"\n[route.maintenance]\n{body}\n"
        ))
    };
    let c = ok(&m(
        "enabled = true\nwindows = [\"sun 02:00-04:00 UTC\", \"mon-fri 01:00-01:30 Europe/Paris\"]\nretry_after = \"10m\"",
    ));
    let mc = c.routes[0]
        .maintenance
        .clone()
        .unwrap_or_else(|| panic!("no maintenance"));
    assert!(mc.enabled);
    assert_eq!(mc.windows.len(), 2);
    assert_eq!(mc.retry_after, Duration::from_secs(600));
    assert_eq!(
        errs(&m(
            "windows = [\"sunday 02:00-04:00 UTC\", \"sun 02:00-25:00 UTC\", \"sun 02:00-04:00\"]"
        )),
        [
            "10:12: invalid maintenance window \"sunday 02:00-04:00 UTC\": `sunday` is not a day (mon, tue, wed, thu, fri, sat, sun)",
            "10:38: invalid maintenance window \"sun 02:00-25:00 UTC\": `25:00` is not a time HH:MM between 00:00 and 24:00",
            "10:61: invalid maintenance window \"sun 02:00-04:00\"; write \"DAY[-DAY] HH:MM-HH:MM ZONE\", e.g. \"sun 02:00-04:00 UTC\" or \"mon-fri 01:00-01:30 Europe/Paris\"",
        ]
    );
    // A window may cross midnight (its day is the start day); the zone must be known.
    let c = ok(&m(
        "windows = [\"sat 23:00-01:00 Europe/Paris\"]\nallow = [\"10.0.0.0/8\", \"192.0.2.7\"]",
    ));
    let mc = c.routes[0]
        .maintenance
        .clone()
        .unwrap_or_else(|| panic!("no maintenance"));
    assert_eq!(mc.windows[0].to_string(), "sat 23:00-01:00 Europe/Paris");
    assert_eq!(
        mc.allow,
        vec![
            "10.0.0.0/8".parse::<ipnet::IpNet>().unwrap(),
            "192.0.2.7/32".parse().unwrap()
        ]
    );
    assert_eq!(
        errs(&m(
            "windows = [\"sun 02:00-04:00 Europe/Pariss\", \"sun 03:00-03:00 UTC\"]\nallow = [\"lan\"]"
        )),
        [
            "10:12: invalid maintenance window \"sun 02:00-04:00 Europe/Pariss\": unknown time zone `Europe/Pariss`; write an IANA name such as \"Europe/Paris\" or \"America/New_York\", or \"UTC\"",
            "10:45: invalid maintenance window \"sun 03:00-03:00 UTC\": it starts and ends at the same time; write 00:00-24:00 for a whole day",
            "11:10: invalid network \"lan\": expected an address or CIDR such as \"10.0.0.0/8\"",
        ]
    );
    one_err(
        &m("retry_after = \"0s\""),
        "10:15: `retry_after` must be longer than zero",
    );
    one_err(
        &m("enabeld = true"),
        "10:1: unknown key `enabeld` in [route.maintenance]; did you mean `enabled`?",
    );
}

#[test]
fn health_and_passive() {
    one_err(
        &format!("{MINIMAL}health = {{ expect = \"600\" }}\n"),
        "12:21: invalid expect \"600\"",
    );
    one_err(
        &format!("{MINIMAL}health = {{ path = \"healthz\" }}\n"),
        "12:19: health `path` must start with \"/\"",
    );
    one_err(
        &format!("{MINIMAL}health = {{ timeout = \"3s\" }}\n"),
        "12:22: health `timeout` (3s) is longer than its `interval` (2s); checks would overlap",
    );
    one_err(
        &format!("{MINIMAL}health = {{ rise = 0 }}\n"),
        "12:19: `rise` must be between 1 and 1000, found 0",
    );
    one_err(
        &format!("{MINIMAL}passive = {{ failures = 0 }}\n"),
        "12:24: `failures` must be between 1 and 1000, found 0",
    );
    one_err(
        &format!("{MINIMAL}passive = {{ eject = \"0s\" }}\n"),
        "12:21: `eject` must be longer than zero",
    );
    let c = ok(&format!("{MINIMAL}health = {{ expect = 204 }}\n"));
    assert_eq!(
        c.pools[0].health.as_ref().map(|h| h.expect.to_string()),
        Some("204".into())
    );
}

#[test]
fn health_expect_forms() {
    let expect = |v: &str| {
        let c = ok(&format!("{MINIMAL}health = {{ expect = {v} }}\n"));
        c.pools[0].health.clone().map(|h| h.expect)
    };
    let e = expect("\"2xx\"").unwrap();
    assert_eq!(e.items(), &[StatusMatch::Class(2)]);
    let e = expect("[200, 204]").unwrap();
    assert_eq!(e.items(), &[StatusMatch::Code(200), StatusMatch::Code(204)]);
    assert_eq!(e.to_string(), "200,204");
    assert!(e.matches(204) && !e.matches(201));
    let e = expect("[\"2xx\", 304]").unwrap();
    assert_eq!(e.items(), &[StatusMatch::Class(2), StatusMatch::Code(304)]);
    let e = expect("\"200, 3xx\"").unwrap();
    assert!(e.matches(200) && e.matches(302) && !e.matches(201));

    one_err(
        &format!("{MINIMAL}health = {{ expect = [200, 700] }}\n"),
        "12:27: `expect`: 700 is not an HTTP status code (100 to 599)",
    );
    one_err(
        &format!("{MINIMAL}health = {{ expect = [] }}\n"),
        "12:21: `expect` must list at least one status",
    );
    one_err(
        &format!("{MINIMAL}health = {{ expect = [\"2xx\", \"ok\"] }}\n"),
        "12:29: `expect`: \"ok\" is neither a status code (200) nor a class (\"2xx\")",
    );
    one_err(
        &format!("{MINIMAL}health = {{ expect = [true] }}\n"),
        "12:22: `expect`: expected a status code or class, found a boolean",
    );
    one_err(
        &format!("{MINIMAL}health = {{ expect = 99 }}\n"),
        "12:21: `expect`: 99 is not an HTTP status code (100 to 599)",
    );
    one_err(
        &format!("{MINIMAL}health = {{ expect = 2.5 }}\n"),
        "12:21: `expect`: expected a status class (\"2xx\"), a code (200) or an array of codes ([200, 204]), found a float",
    );
}

#[test]
fn slow_start() {
    let c = ok(&format!("{MINIMAL}slow_start = \"30s\"\n"));
    assert_eq!(c.pools[0].slow_start, Some(Duration::from_secs(30)));
    let c = ok(&format!("{MINIMAL}slow_start = \"0s\"\n"));
    assert_eq!(c.pools[0].slow_start, None);
    let c = ok(MINIMAL);
    assert_eq!(c.pools[0].slow_start, None);
    one_err(
        &format!("{MINIMAL}slow_start = 30\n"),
        "12:14: `slow_start`: expected a duration string such as \"30s\", found an integer",
    );
    one_err(
        &format!("{MINIMAL}slow_start = \"soon\"\n"),
        "12:14: `slow_start`: ",
    );
    one_err(
        &format!("{MINIMAL}balance = \"maglev\"\nslow_start = \"10s\"\n"),
        "13:1: `slow_start` does not apply to hashed pools",
    );
    one_err(
        &format!("{MINIMAL}slow_strat = \"10s\"\n"),
        "12:1: unknown key `slow_strat` in [pool.app]; did you mean `slow_start`?",
    );
}

#[test]
fn many_errors_reported_in_file_order() {
    let src = r#"workers = 0
[[listener]]
name = "web"
bind = "0.0.0.0:99999"
[[route]]
name = "r"
path = "nope"
pool = "ap"
[pool.app]
balanse = "maglev"
servers = ["127.0.0.1:3000", { address = "x:1", weight = 300 }]
"#;
    let es = errs(src);
    assert_eq!(
        es,
        [
            "1:11: `workers` must be between 1 and 1024, found 0",
            "4:8: `bind`: invalid address \"0.0.0.0:99999\"; write IP:port, e.g. \"0.0.0.0:8080\" or \"[::]:8080\" (host names are not resolved here)",
            "7:8: `path` must start with \"/\", found \"nope\"",
            "8:8: route `r` names pool `ap`, which is not defined; did you mean `app`?",
            "10:1: unknown key `balanse` in [pool.app]; did you mean `balance`?",
            "11:58: `weight` must be between 1 and 256, found 300",
        ]
    );
}

#[test]
fn columns_count_characters() {
    // "é" is two bytes; the column of `bind`'s value must still be 8.
    let src = "[[listener]]\nname = \"é\"\nbind = 1\n";
    let src = format!("# é é é\n{src}");
    let es = errs(&src);
    assert!(es.iter().any(|e| e.starts_with("4:8: `bind`")), "{es:?}");
    let src = "[[listener]]\nname = \"é\"  ; bind = 1\n";
    let es = errs(src);
    assert!(es[0].starts_with("2:13: TOML syntax error"), "{es:?}");
}

#[test]
fn names_must_fit_urls() {
    one_err(
        &MINIMAL.replace("name = \"web\"", "name = \"a/b\""),
        "3:8: name \"a/b\" must be non-empty",
    );
    one_err(
        &format!("{MINIMAL}[pool.\"a b\"]\nservers = [\"x:1\"]\n"),
        "12:7: pool name `a b` must be non-empty",
    );
}

/// xorshift64*: deterministic garbage without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        // n is small; the modulo bias does not matter for fuzzing.
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

#[track_caller]
fn check_positions(src: &str) {
    if let Err(es) = parse(src, "f.toml") {
        assert!(!es.is_empty());
        let lines = src.split('\n').count();
        for e in es {
            assert!(e.line >= 1 && e.line <= lines, "{e} in {src:?}");
            assert!(e.col >= 1, "{e} in {src:?}");
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let alphabet: Vec<char> = "[]{}=\"'.,:#\n -_0123456789abcdefghijklmnopqrstuvwxyzé*/\\"
        .chars()
        .collect();
    for _ in 0..2000 {
        let len = rng.below(200);
        let s: String = (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect();
        check_positions(&s);
    }
    // Mutations of a valid file reach the validator, not only the TOML parser.
    let base: Vec<char> = DESIGN_EXAMPLE.chars().collect();
    let pieces = [
        "0",
        "-1",
        "\"\"",
        "\"x\"",
        "[]",
        "{}",
        "true",
        "1.5",
        "\n[[route]]\n",
        "\n[pool.z]\n",
        "99999999999999999999",
        "\"0s\"",
        "\"*\"",
        "é",
    ];
    for _ in 0..1500 {
        let mut s = base.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(s.len());
            match rng.below(3) {
                0 => {
                    let end = (at + rng.below(8)).min(s.len());
                    s.drain(at..end);
                }
                1 => {
                    let p = pieces[rng.below(pieces.len())];
                    s.splice(at..at, p.chars());
                }
                _ => s[at] = alphabet[rng.below(alphabet.len())],
            }
        }
        let s: String = s.into_iter().collect();
        check_positions(&s);
    }
    // Deep nesting is cut off by the TOML parser, not by a stack overflow.
    check_positions(&format!("a = {}{}", "[".repeat(10_000), "]".repeat(10_000)));
    check_positions(&"[a.".repeat(5000));
}

#[test]
fn summary_lists_everything() {
    let c = ok(DESIGN_EXAMPLE);
    let s = summary(&c);
    let expected = "OK — 2 listeners, 3 routes, 2 pools, 4 servers
  listener public    0.0.0.0:8443  https (1 certificate)
  listener plain     0.0.0.0:8080  http, redirects to https port 8443 (308)
  route    api       api.example.com/api/ → pool api (strip prefix)
  route    assets    /assets/ → static public
  route    old-blog  /blog/ → redirect 301 https://blog.example.com/, maintenance windows `sun 02:00-04:00 UTC`
  pool     api       round_robin, 2 servers: 127.0.0.1:9001, api-2 (127.0.0.1:9002, weight 3)
  pool     cache     consistent_hash (key path, xxh3, 160 vnodes, bounded_load 1.25), 2 servers: cache-a:11211, cache-b:11211";
    assert_eq!(s, expected);
    let one = summary(&ok(MINIMAL));
    assert!(
        one.starts_with("OK — 1 listener, 1 route, 1 pool, 1 server\n"),
        "{one}"
    );
}

#[test]
fn summary_shows_the_next_maintenance_window_and_who_passes() {
    let c = ok(DESIGN_EXAMPLE);
    // Monday 30 November 2026: the next Sunday window starts on 6 December.
    let monday: jiff::Timestamp = "2026-11-30T17:00:00Z".parse().unwrap();
    let s = summary_at(&c, Some(monday));
    assert!(
        s.contains("maintenance windows `sun 02:00-04:00 UTC` (next 2026-12-06 02:00 UTC)"),
        "{s}"
    );
    let sunday: jiff::Timestamp = "2026-12-06T03:00:00Z".parse().unwrap();
    let s = summary_at(&c, Some(sunday));
    assert!(s.contains("(in one now, until 2026-12-06 04:00 UTC)"), "{s}");
    let on = ok(&with_base(
        "[[route]]\nname = \"r\"\npool = \"app\"\n[route.maintenance]\nenabled = true\nallow = [\"10.0.0.0/8\", \"192.0.2.7\"]\n",
    ));
    let s = summary_at(&on, Some(monday));
    assert!(
        s.contains(", IN MAINTENANCE, maintenance lets 10.0.0.0/8, 192.0.2.7/32 through"),
        "{s}"
    );
}

#[test]
fn load_anchors_relative_paths() {
    let dir = std::env::temp_dir().join(format!("ringway-config-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("ringway.toml");
    let src = DESIGN_EXAMPLE.replace("access = \"stdout\"", "access = \"logs/access.log\"");
    std::fs::write(&file, src).unwrap_or_else(|e| panic!("write: {e}"));
    // `read`: the files named by the example do not exist here.
    let c = read(&file).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.log.access, AccessLogTarget::File(dir.join("logs/access.log")));
    let tls = c.listeners[0].tls.clone().unwrap_or_else(|| panic!("no tls"));
    assert_eq!(tls.certs[0].cert, dir.join("certs/site.pem"));
    assert_eq!(tls.certs[0].key, dir.join("certs/site.key"));
    assert_eq!(
        c.routes[1].action,
        RouteAction::Static {
            dir: dir.join("public")
        }
    );
    assert_eq!(
        c.routes[2].maintenance.as_ref().and_then(|m| m.page.clone()),
        Some(dir.join("maintenance.html"))
    );
    // Absolute paths stay as they are.
    std::fs::write(
        &file,
        MINIMAL.replace("pool = \"app\"", "static_dir = \"/srv/www\""),
    )
    .unwrap_or_else(|e| panic!("write: {e}"));
    let c = read(&file).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        c.routes[0].action,
        RouteAction::Static {
            dir: PathBuf::from("/srv/www")
        }
    );
    // Errors name the file as given.
    std::fs::write(&file, "workers = 0\n").unwrap_or_else(|e| panic!("write: {e}"));
    let es = load(&file).err().unwrap_or_default();
    let want = format!("{}:1:11: `workers`", file.display());
    assert!(es.iter().any(|e| e.to_string().starts_with(&want)), "{es:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn load_checks_the_files_it_names() {
    let dir = std::env::temp_dir().join(format!("ringway-config-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let file = dir.join("ringway.toml");
    let src = r#"[log]
access = "logs/access.log"

[[listener]]
name = "web"
bind = "127.0.0.1:0"
tls = { cert = "site.pem", key = "site.key" }

[[route]]
path = "/assets/"
static_dir = "public"

[[route]]
pool = "app"
[route.maintenance]
page = "down.html"

[pool.app]
servers = ["127.0.0.1:3000"]
"#;
    std::fs::write(&file, src).unwrap_or_else(|e| panic!("write: {e}"));
    let shown = file.display().to_string();
    let es: Vec<String> = load(&file)
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    let at = |pos: &str, what: &str| {
        let prefix = format!("{shown}:{pos}: ");
        assert!(
            es.iter().any(|e| e.starts_with(&prefix) && e.contains(what)),
            "no error at {pos} about {what}:\n{}",
            es.join("\n")
        );
    };
    at("2:1", "directory");
    at("2:1", "logs does not exist");
    at("7:9", "certificate");
    at("7:28", "private key");
    at("11:1", "static_dir");
    at("11:1", "public does not exist");
    at("16:1", "maintenance page");
    assert_eq!(es.len(), 5, "{es:#?}");
    // `read` does not look at the files.
    assert!(read(&file).is_ok());

    // With everything in place the file loads.
    std::fs::create_dir_all(dir.join("logs")).unwrap_or_else(|e| panic!("mkdir: {e}"));
    std::fs::create_dir_all(dir.join("public")).unwrap_or_else(|e| panic!("mkdir: {e}"));
    // The certificate pair is checked for real (PEM, validity, matching key): a real one.
    let site = rcgen::generate_simple_self_signed(vec!["site.test".to_string()])
        .unwrap_or_else(|e| panic!("certificate: {e}"));
    for (f, text) in [
        ("site.pem", site.cert.pem()),
        ("site.key", site.signing_key.serialize_pem()),
        ("down.html", "x".to_string()),
    ] {
        std::fs::write(dir.join(f), text).unwrap_or_else(|e| panic!("write: {e}"));
    }
    assert!(load(&file).is_ok(), "{:?}", load(&file).err());
    // A static_dir that is a file, an access log that is a directory.
    std::fs::write(
        &file,
        src.replace("\"public\"", "\"site.pem\"")
            .replace("logs/access.log", "logs"),
    )
    .unwrap_or_else(|e| panic!("write: {e}"));
    let es: Vec<String> = load(&file)
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(es.len(), 2, "{es:#?}");
    assert!(es[0].contains("is a directory"), "{es:#?}");
    assert!(es[1].contains("is not a directory"), "{es:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn load_reports_unreadable_file() {
    let missing = std::env::temp_dir().join("ringway-definitely-missing/ringway.toml");
    let es = load(&missing).err().unwrap_or_default();
    assert_eq!(es.len(), 1);
    assert_eq!((es[0].line, es[0].col), (0, 0));
    assert!(es[0].message.starts_with("cannot read the configuration file: "));
}

#[test]
fn documented_examples_parse() {
    let doc = include_str!("../../docs/configuration.md");
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert!(blocks.len() > 5);
    // The minimal configuration at the top and the full example at the end are whole files.
    ok(blocks[0]);
    ok(blocks[blocks.len() - 1]);
    // The fragments are valid in context: top level, [admin], [log] go before a minimal file;
    // pool keys go after it.
    for b in &blocks[1..blocks.len() - 1] {
        let trimmed = b.trim_start();
        let src = if trimmed.starts_with("[[listener]]") {
            format!("{b}\n[[route]]\nname = \"r\"\nstatic_dir = \"x\"\n")
        } else if trimmed.starts_with("[[route]]") || trimmed.starts_with("[pool.") {
            format!("{MINIMAL}{b}")
        } else if trimmed.starts_with("[listener.limits]") {
            format!(
                "[[listener]]\nname = \"l\"\nbind = \"0.0.0.0:1\"\n{b}\n[[route]]\nname = \"r\"\nstatic_dir = \"x\"\n"
            )
        } else if trimmed.starts_with("[route.maintenance]") {
            format!("{MINIMAL}[[route]]\nname = \"m\"\npath = \"/m/\"\nstatic_dir = \"x\"\n{b}")
        } else if trimmed.starts_with("[[pool.api.servers]]") {
            format!("{MINIMAL}{b}")
        } else if trimmed.starts_with('[') || trimmed.starts_with("shutdown") {
            format!("{b}\n{MINIMAL}")
        } else {
            // A key of a pool or listener: put it in the pool, or the listener for `tls`.
            if trimmed.starts_with("tls") {
                MINIMAL.replace(
                    "bind = \"0.0.0.0:8080\"",
                    &format!("bind = \"0.0.0.0:8080\"\n{b}"),
                )
            } else {
                let servers = if b.contains("servers") || b.contains("discover") {
                    ""
                } else {
                    "servers = [\"x:1\"]\n"
                };
                format!("{MINIMAL}[pool.fragment]\n{servers}{b}")
            }
        };
        // The `${NAME}` example reads these variables.
        let vars = |name: &str| match name {
            "RW_WEB_PORT" => Some("8080".to_string()),
            "RW_ADMIN_PORT" => Some("9090".to_string()),
            _ => None,
        };
        let es: Vec<String> = parse_with_vars(&src, "t.toml", &vars)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            es.is_empty(),
            "documented example\n{b}\nfails:\n{}",
            es.join("\n")
        );
    }
}

#[test]
fn edge_keys_of_listeners() {
    let c = ok(r#"[[listener]]
name = "edge"
bind = "0.0.0.0:8080"
proxy_protocol = true
proxy_protocol_from = ["10.0.0.0/8", "192.0.2.7"]
trusted_proxies = ["2001:db8::/32"]
[listener.limits]
send_timeout = "15s"
[[route]]
name = "r"
pool = "app"
[pool.app]
servers = ["127.0.0.1:3000"]
"#);
    let l = &c.listeners[0];
    assert_eq!(
        l.proxy_protocol_from,
        vec![
            "10.0.0.0/8".parse::<ipnet::IpNet>().unwrap(),
            "192.0.2.7/32".parse().unwrap()
        ]
    );
    assert_eq!(
        l.trusted_proxies,
        vec!["2001:db8::/32".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(l.limits.send_timeout, Duration::from_secs(15));

    one_err(
        "[[listener]]\nname = \"a\"\nbind = \"0.0.0.0:1\"\nproxy_protocol_from = [\"10.0.0.0/8\"]\n\
         [[route]]\nname = \"r\"\npool = \"app\"\n[pool.app]\nservers = [\"127.0.0.1:3000\"]\n",
        "4:1: `proxy_protocol_from` needs `proxy_protocol = true`",
    );
    one_err(
        "[[listener]]\nname = \"a\"\nbind = \"0.0.0.0:1\"\ntrusted_proxies = [\"10.0.0.1/8\"]\n\
         [[route]]\nname = \"r\"\npool = \"app\"\n[pool.app]\nservers = [\"127.0.0.1:3000\"]\n",
        "4:20: network \"10.0.0.1/8\" has host bits set; did you mean \"10.0.0.0/8\"?",
    );
    one_err(
        "[[listener]]\nname = \"a\"\nbind = \"0.0.0.0:1\"\ntrusted_proxies = [\"10.0.0.0/8\", \"lan\"]\n\
         [[route]]\nname = \"r\"\npool = \"app\"\n[pool.app]\nservers = [\"127.0.0.1:3000\"]\n",
        "4:34: invalid network \"lan\"",
    );
}

#[test]
fn edge_keys_of_pools() {
    let c = ok(&pool_with(
        "protocol = \"h2\"\ntls = { ca = \"ca.pem\", server_name = \"API.internal\" }\nsend_proxy = \"v2\"\n",
    ));
    let p = &c.pools[0];
    assert_eq!(p.protocol, UpstreamProtocol::H2);
    assert_eq!(
        p.tls,
        Some(UpstreamTls {
            ca: Some("ca.pem".into()),
            server_name: Some("api.internal".into()),
            verify: true
        })
    );
    assert_eq!(p.send_proxy, Some(ProxyVersion::V2));
    let c = ok(&pool_with("tls = true\n"));
    assert_eq!(
        c.pools[0].tls,
        Some(UpstreamTls {
            ca: None,
            server_name: None,
            verify: true
        })
    );
    assert_eq!(ok(&pool_with("tls = false\n")).pools[0].tls, None);
    assert_eq!(
        ok(&pool_with("protocol = \"h2c\"\n")).pools[0].protocol,
        UpstreamProtocol::H2c
    );

    one_err(
        &pool_with("protocol = \"h2\"\n"),
        "12:12: pool `app`: `protocol = \"h2\"` is HTTP/2 over TLS and needs `tls`",
    );
    one_err(
        &pool_with("protocol = \"h2c\"\ntls = true\n"),
        "12:12: pool `app`: `protocol = \"h2c\"` is cleartext HTTP/2 and cannot go with `tls`",
    );
    one_err(&pool_with("protocol = \"http2\"\n"), "12:12: `protocol`");
    one_err(&pool_with("send_proxy = \"v3\"\n"), "12:14: `send_proxy`");
    one_err(
        &pool_with("tls = { verify = false, ca = \"ca.pem\" }\n"),
        "12:25: `ca` has no use with `verify = false`",
    );
    one_err(&pool_with("tls = { sni = \"x\" }\n"), "12:9: unknown key `sni`");
}

/// `MINIMAL` with `rest` appended to its pool; `rest` starts on line 12.
fn pool_with(rest: &str) -> String {
    format!("{MINIMAL}{rest}")
}
