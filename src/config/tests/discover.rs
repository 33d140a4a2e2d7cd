//! `discover` of a pool: A/AAAA and SRV names, `interval`, `resolvers`, and the errors of each.

use super::*;

/// MINIMAL with a pool `d` whose line 13 is `discover = { … }` with `body` inside the braces.
fn discover(body: &str) -> String {
    format!("{MINIMAL}[pool.d]\ndiscover = {{ {body} }}\n")
}

fn parsed(body: &str) -> DiscoverConfig {
    let c = ok(&discover(body));
    let pool = c.pools.iter().find(|p| p.name == "d").expect("pool d");
    pool.discover.clone().expect("discover")
}

#[test]
fn address_and_srv_names() {
    let d = parsed(r#"dns = "API.internal:8000", interval = "250ms""#);
    assert_eq!(
        d.query,
        DnsQuery::Address {
            host: "api.internal".into(),
            port: 8000
        }
    );
    assert_eq!(d.dns, "API.internal:8000");
    assert_eq!(d.interval, Duration::from_millis(250));
    assert!(d.resolvers.is_empty());

    // Docker Compose service names carry underscores; a trailing dot is a rooted name.
    let d = parsed(r#"dns = "my_app.:80""#);
    assert_eq!(
        d.query,
        DnsQuery::Address {
            host: "my_app.".into(),
            port: 80
        }
    );

    for (name, expected) in [
        ("_http._tcp.api.internal", "_http._tcp.api.internal"),
        ("_API._TCP.Web.Service.Consul", "_api._tcp.web.service.consul"),
        (
            "_http-port._tcp.web.default.svc.cluster.local",
            "_http-port._tcp.web.default.svc.cluster.local",
        ),
    ] {
        let d = parsed(&format!("dns = \"{name}\""));
        assert_eq!(
            d.query,
            DnsQuery::Srv {
                name: expected.into()
            },
            "{name}"
        );
    }
}

#[test]
fn resolvers_take_a_default_port() {
    let d =
        parsed(r#"dns = "_http._tcp.x.internal", resolvers = ["10.0.0.2", "127.0.0.1:5353", "[::1]:53"]"#);
    let expected: Vec<SocketAddr> = ["10.0.0.2:53", "127.0.0.1:5353", "[::1]:53"]
        .iter()
        .map(|s| s.parse().expect("address"))
        .collect();
    assert_eq!(d.resolvers, expected);
}

#[test]
fn names_that_are_neither_host_port_nor_srv() {
    // Line 13 is `discover = { dns = "…" }`: the value starts at column 20.
    for (name, message) in [
        ("api.internal", "discover `dns` \"api.internal\" has no port"),
        (
            "api internal:80",
            "discover `dns` \"api internal:80\": `api internal` is not a valid DNS name",
        ),
        (
            "api.internal:0",
            "discover `dns` \"api.internal:0\": port `0` is not a number",
        ),
        (
            "api.internal:http",
            "discover `dns` \"api.internal:http\": port `http`",
        ),
        ("10.0.0.1:80", "discover `dns` \"10.0.0.1:80\" is an IP address"),
        ("[::1]:80", "discover `dns` \"[::1]:80\" is an IP address"),
        (
            "_http._tcp.api.internal:80",
            "discover `dns` \"_http._tcp.api.internal:80\": an SRV name takes no port",
        ),
        (
            "_http._udp.api.internal",
            "discover `dns` \"_http._udp.api.internal\" is not an SRV name",
        ),
        (
            "_http.api.internal",
            "discover `dns` \"_http.api.internal\" is not an SRV name",
        ),
        (
            "_._tcp.api.internal",
            "discover `dns` \"_._tcp.api.internal\" is not an SRV name",
        ),
        ("_http._tcp", "discover `dns` \"_http._tcp\" is not an SRV name"),
        ("", "discover `dns` \"\" has no port"),
    ] {
        one_err(
            &discover(&format!("dns = \"{name}\"")),
            &format!("13:20: {message}"),
        );
    }
}

#[test]
fn bad_intervals_and_resolvers() {
    one_err(
        &discover(r#"dns = "a.internal:80", interval = "10ms""#),
        "13:48: discover `interval` must be at least 100ms (found 10ms)",
    );
    one_err(
        &discover(r#"dns = "a.internal:80", interval = "0s""#),
        "13:48: `interval` must be longer than zero",
    );
    one_err(
        &discover(r#"dns = "a.internal:80", resolvers = []"#),
        "13:49: `resolvers` must list at least one name server",
    );
    // Every bad element is reported, each at its own position.
    assert_eq!(
        errs(&discover(
            r#"dns = "a.internal:80", resolvers = ["dns.internal", "127.0.0.1:0"]"#
        )),
        vec![
            "13:50: resolver \"dns.internal\" is not an IP address with an optional port \
             (\"10.0.0.2\", \"127.0.0.1:5353\", \"[fd00::53]:53\"); name servers are given by address"
                .to_string(),
            "13:66: resolver \"127.0.0.1:0\": port 0 is not a name server's port".to_string(),
        ]
    );
    one_err(
        &discover(r#"dns = "a.internal:80", ttl = "5s""#),
        "13:37: unknown key `ttl`",
    );
    one_err(
        &discover(r#"interval = "5s""#),
        "13:12: `discover` of [pool.d] has no `dns`; it is required",
    );
}

#[test]
fn discover_beside_servers() {
    let c = ok(&format!(
        "{MINIMAL}[pool.d]\nservers = [\"127.0.0.1:3001\"]\ndiscover = {{ dns = \"_http._tcp.x.internal\" }}\n"
    ));
    let pool = c.pools.iter().find(|p| p.name == "d").expect("pool d");
    assert_eq!(pool.servers.len(), 1);
    assert!(pool.discover.is_some());
}
