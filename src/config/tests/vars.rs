//! `${NAME}` in a listener's `bind` and `[admin] listen`: expansion, and the errors of unset
//! variables and malformed references at the value's line and column.

use super::*;

/// A lookup of `${NAME}` from a fixed table.
fn vars(table: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        table
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_string())
    }
}

/// Errors of `parse_with_vars` as "LINE:COL: message".
fn errs_with(src: &str, vars: &Vars) -> Vec<String> {
    match parse_with_vars(src, "t.toml", vars) {
        Ok(_) => Vec::new(),
        Err(es) => es
            .iter()
            .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
            .collect(),
    }
}

/// MINIMAL with `bind` (line 4, value at column 8) and `[admin] listen` (line 13, column 10).
fn addresses(bind: &str, admin: &str) -> String {
    format!(
        "{}[admin]\nlisten = \"{admin}\"\n",
        MINIMAL.replace("\"0.0.0.0:8080\"", &format!("\"{bind}\""))
    )
}

#[test]
fn variables_in_bind_and_admin_listen() {
    let env = vars(&[
        ("RW_WEB_PORT", "8081"),
        ("RW_ADMIN", "127.0.0.2:9191"),
        ("RW_IP", "127.0.0.3"),
    ]);
    let c = parse_with_vars(
        &addresses("${RW_IP}:${RW_WEB_PORT}", "${RW_ADMIN}"),
        "t.toml",
        &env,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        c.listeners[0].bind,
        "127.0.0.3:8081".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.admin.listen, "127.0.0.2:9191".parse::<SocketAddr>().unwrap());
    // The summary shows the address listened on.
    assert!(summary(&c).contains("127.0.0.3:8081"), "{}", summary(&c));
    // A `$` without `{` is left alone (and here makes a bad address).
    assert_eq!(
        errs_with(&addresses("0.0.0.0:$RW_WEB_PORT", "127.0.0.1:9090"), &env),
        vec![
            "4:8: `bind`: invalid address \"0.0.0.0:$RW_WEB_PORT\"; write IP:port, e.g. \
             \"0.0.0.0:8080\" or \"[::]:8080\" (host names are not resolved here)"
                .to_string()
        ]
    );
    // A value that is not an address names both the value and what was written.
    assert_eq!(
        errs_with(&addresses("0.0.0.0:8080", "${RW_WEB_PORT}"), &env),
        vec![
            "13:10: `listen`: invalid address \"8081\"; write IP:port, e.g. \"0.0.0.0:8080\" or \
             \"[::]:8080\" (host names are not resolved here) (from \"${RW_WEB_PORT}\")"
                .to_string()
        ]
    );
    // Conflicts are judged on the expanded addresses.
    let es = errs_with(&addresses("127.0.0.2:${RW_WEB_PORT}", "127.0.0.2:8081"), &env);
    assert_eq!(
        es,
        vec![
            "13:10: `[admin].listen` 127.0.0.2:8081 conflicts with 127.0.0.2:8081 of the listener at line 4"
                .to_string()
        ]
    );
}

#[test]
fn bad_variables_are_errors_at_the_value() {
    let env = vars(&[("RW_WEB_PORT", "8081")]);
    let one = |src: String, expected: &str| {
        let es = errs_with(&src, &env);
        assert!(
            es.len() == 1 && es[0].starts_with(expected),
            "expected one error starting with\n  {expected}\ngot:\n  {}",
            es.join("\n  ")
        );
    };
    one(
        addresses("0.0.0.0:${RW_NOPE}", "127.0.0.1:9090"),
        "4:8: `bind`: environment variable RW_NOPE is not set (`${RW_NOPE}` in \"0.0.0.0:${RW_NOPE}\")",
    );
    one(
        addresses("0.0.0.0:8080", "127.0.0.1:${RW_NOPE}"),
        "13:10: `listen`: environment variable RW_NOPE is not set",
    );
    one(
        addresses("${RW_A}:${RW_WEB_PORT}${RW_B}${RW_A}", "127.0.0.1:9090"),
        "4:8: `bind`: environment variables RW_A, RW_B are not set",
    );
    one(
        addresses("0.0.0.0:${RW_WEB_PORT", "127.0.0.1:9090"),
        "4:8: `bind`: `${` without a closing `}` in \"0.0.0.0:${RW_WEB_PORT\"",
    );
    one(
        addresses("0.0.0.0:${}", "127.0.0.1:9090"),
        "4:8: `bind`: `${}` in \"0.0.0.0:${}\" names no variable; write `${NAME}`",
    );
    one(
        addresses("0.0.0.0:${1PORT}", "127.0.0.1:9090"),
        "4:8: `bind`: `${1PORT}` in \"0.0.0.0:${1PORT}\": a variable name is letters, digits and `_`",
    );
    one(
        addresses("0.0.0.0:${RW-PORT}", "127.0.0.1:9090"),
        "4:8: `bind`: `${RW-PORT}` in",
    );
    // `parse` knows no variable at all.
    one_err(
        &addresses("0.0.0.0:${RW_WEB_PORT}", "127.0.0.1:9090"),
        "4:8: `bind`: environment variable RW_WEB_PORT is not set",
    );
    // Only addresses expand: elsewhere `${…}` is text as written.
    let c = ok(&MINIMAL.replace("pool = \"app\"", "redirect = { to = \"https://x/${A}\" }"));
    assert_eq!(
        c.routes[0].action,
        RouteAction::Redirect {
            to: "https://x/${A}".into(),
            status: 301
        }
    );
}
