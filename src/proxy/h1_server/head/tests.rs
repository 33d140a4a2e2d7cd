//! Unit tests of the request-head rules: where a head ends, and what is refused with which
//! status (the property tests are in props.rs).

use super::*;

const MAX: usize = 8192;

pub(super) fn parse(text: &[u8]) -> Result<RequestHead, Refusal> {
    parse_request_head(Bytes::copy_from_slice(text))
}

fn ok(text: &[u8]) -> RequestHead {
    parse(text).unwrap_or_else(|r| panic!("refused {:?}: {r:?}", String::from_utf8_lossy(text)))
}

#[track_caller]
fn refused(text: &[u8], status: u16) {
    match parse(text) {
        Ok(h) => panic!("accepted {:?}: {h:?}", String::from_utf8_lossy(text)),
        Err(r) => assert_eq!(
            r.status.as_u16(),
            status,
            "{:?}: {}",
            String::from_utf8_lossy(text),
            r.reason
        ),
    }
}

/// A GET with `Host: a` and the given extra lines.
fn with(lines: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: a\r\n{lines}\r\n").into_bytes()
}

fn post(lines: &str) -> Vec<u8> {
    format!("POST /up HTTP/1.1\r\nHost: a\r\n{lines}\r\n").into_bytes()
}

fn too_large_status(end: HeadEnd) -> u16 {
    match end {
        HeadEnd::TooLarge(r) => r.status.as_u16(),
        other => panic!("not refused: {other:?}"),
    }
}

// ---- find_head_end ----

#[test]
fn finds_the_end_and_leaves_the_body() {
    let req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(find_head_end(req, 0, MAX), HeadEnd::Complete(req.len() - 2));
    assert_eq!(find_head_end(b"", 0, MAX), HeadEnd::Partial);
    assert_eq!(
        find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0, MAX),
        HeadEnd::Partial
    );
    assert_eq!(
        find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0, MAX),
        HeadEnd::Partial
    );
}

#[test]
fn bare_lf_line_endings_end_a_head() {
    for req in [
        &b"GET / HTTP/1.1\nHost: a\n\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.1\nHost: a\r\n\n",
    ] {
        assert_eq!(find_head_end(req, 0, MAX), HeadEnd::Complete(req.len()));
        assert_eq!(ok(req).headers["host"], "a");
    }
}

#[test]
fn leading_empty_lines_are_skipped_not_an_end() {
    for lead in ["\r\n", "\n", "\r\n\r\n", "\n\r\n\n"] {
        let req = format!("{lead}GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            find_head_end(lead.as_bytes(), 0, MAX),
            HeadEnd::Partial,
            "{lead:?}"
        );
        assert_eq!(
            find_head_end(req.as_bytes(), 0, MAX),
            HeadEnd::Complete(req.len())
        );
        assert_eq!(ok(req.as_bytes()).uri, "/");
    }
    let mut req = "\r\n".repeat(MAX_LEADING_EMPTY_LINES / 2).into_bytes();
    req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(find_head_end(&req, 0, MAX), HeadEnd::Complete(req.len()));
    let endless = "\r\n".repeat(MAX_LEADING_EMPTY_LINES);
    assert_eq!(too_large_status(find_head_end(endless.as_bytes(), 0, MAX)), 400);
    // Below that many bytes, the size limit is met first, as a client feeding bytes would.
    assert_eq!(too_large_status(find_head_end(endless.as_bytes(), 0, 32)), 414);
}

#[test]
fn only_new_bytes_are_searched_again() {
    // An end wholly before the last three searched bytes is not looked for again: the caller
    // was told about it the first time.
    let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
    assert_eq!(find_head_end(req, req.len(), MAX), HeadEnd::Partial);
    // An end that straddles old and new bytes is found.
    let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for scanned in head.len() - 3..head.len() {
        assert_eq!(find_head_end(head, scanned, MAX), HeadEnd::Complete(head.len()));
    }
}

#[test]
fn byte_by_byte_is_the_same_as_whole() {
    let req = b"\r\nPOST /x HTTP/1.1\nHost: a\r\nX-A: 1\r\n\nbody";
    let whole = find_head_end(req, 0, MAX);
    let mut scanned = 0;
    let mut got = HeadEnd::Partial;
    for len in 1..=req.len() {
        got = find_head_end(&req[..len], scanned, MAX);
        scanned = len;
        if got != HeadEnd::Partial {
            break;
        }
    }
    assert_eq!(got, whole);
    assert_eq!(whole, HeadEnd::Complete(req.len() - 4));
}

#[test]
fn over_the_limit_is_414_for_the_request_line_431_after() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(200));
    assert_eq!(
        too_large_status(find_head_end(long_target.as_bytes(), 0, 100)),
        414
    );
    assert_eq!(
        too_large_status(find_head_end(&long_target.as_bytes()[..150], 0, 100)),
        414
    );
    let long_field = format!("GET / HTTP/1.1\r\nHost: a\r\nX-A: {}\r\n\r\n", "a".repeat(200));
    assert_eq!(
        too_large_status(find_head_end(long_field.as_bytes(), 0, 100)),
        431
    );
    assert_eq!(
        too_large_status(find_head_end(&long_field.as_bytes()[..100], 0, 100)),
        431
    );
    // Exactly the limit is accepted; the limit filled without an end is not.
    let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(find_head_end(head, 0, head.len()), HeadEnd::Complete(head.len()));
    assert_eq!(too_large_status(find_head_end(head, 0, head.len() - 1)), 431);
    assert_eq!(too_large_status(find_head_end(&head[..10], 0, 10)), 414);
}

// ---- request line ----

#[test]
fn parses_a_request() {
    let text =
        b"POST /a/b?c=d HTTP/1.1\r\nHost: a.example:8080\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\n\r\n";
    let head = Bytes::copy_from_slice(text);
    let h = parse_request_head(head.clone()).unwrap();
    assert_eq!(h.method, Method::POST);
    assert_eq!(h.version, Version::HTTP_11);
    assert_eq!(h.uri.path(), "/a/b");
    assert_eq!(h.uri.query(), Some("c=d"));
    assert_eq!(h.headers["host"], "a.example:8080");
    let xa: Vec<_> = h.headers.get_all("x-a").iter().collect();
    assert_eq!(xa, ["1", "2"]);
    assert_eq!(h.body, RequestBodyFraming::Length(3));
    assert!(h.keep_alive && !h.expect_continue && !h.upgrade);
    // Values and the target share the head's bytes.
    let range = head.as_ptr_range();
    assert!(range.contains(&h.headers["x-a"].as_bytes().as_ptr()));
    assert!(range.contains(&h.headers["host"].as_bytes().as_ptr()));
    assert!(range.contains(&h.uri.path().as_ptr()));
}

#[test]
fn any_method_token_but_connect() {
    assert_eq!(
        ok(b"PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n").method.as_str(),
        "PURGE"
    );
    refused(
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        405,
    );
    refused(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 405);
    refused(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

#[test]
fn only_http_10_and_11() {
    assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n").version, Version::HTTP_10);
    for v in [
        "HTTP/1.2",
        "HTTP/2.0",
        "HTTP/0.9",
        "HTTP/1",
        "http/1.1",
        "HTTP/1.1 ",
    ] {
        refused(format!("GET / {v}\r\nHost: a\r\n\r\n").as_bytes(), 400);
    }
    refused(b"GET /\r\nHost: a\r\n\r\n", 400);
}

#[test]
fn request_target_forms() {
    let absolute = ok(b"GET http://b.example:81/p?q HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(absolute.uri.authority().map(|a| a.as_str()), Some("b.example:81"));
    assert_eq!(absolute.uri.path_and_query().map(|p| p.as_str()), Some("/p?q"));
    assert_eq!(
        ok(b"GET HTTPS://b.example HTTP/1.1\r\nHost: a\r\n\r\n")
            .uri
            .path(),
        "/"
    );
    assert_eq!(
        ok(b"GET http://[::1]:80/ HTTP/1.1\r\nHost: a\r\n\r\n").uri.host(),
        Some("[::1]")
    );
    assert_eq!(ok(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").uri, "*");
    for target in [
        "*",
        "a.example:80",
        "a.example",
        "ftp://a.example/",
        "http:/a",
        "http:///a",
        "http://user:pw@a.example/",
        "http://@a.example/",
        "http://a.example:8x/",
        "http://a:1:2/",
        "/a<b",
        "%2F",
    ] {
        refused(
            format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
            400,
        );
    }
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(URI_MAX_LEN));
    refused(long.as_bytes(), 414);
}

// ---- Host ----

#[test]
fn host_is_one_valid_authority() {
    refused(b"GET / HTTP/1.1\r\n\r\n", 400);
    refused(&with("Host: b\r\n"), 400);
    refused(&with("host: a\r\n"), 400);
    refused(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").headers.contains_key("host"));
    for host in ["a.example:8080", "[::1]:80", "127.0.0.1", "a:"] {
        ok(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    }
    for host in ["", "u@a", "a b", "a/b", "a:x", "a:1:2", "[::1", "a?b"] {
        refused(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(), 400);
    }
}

// ---- Content-Length ----

#[test]
fn content_length_values() {
    let cases: [(&str, u64); 5] = [
        ("5", 5),
        (" 5 ", 5),
        ("007", 7),
        ("5, 5", 5),
        ("18446744073709551615", u64::MAX),
    ];
    for (v, n) in cases {
        let h = ok(&post(&format!("Content-Length: {v}\r\n")));
        assert_eq!(h.body, RequestBodyFraming::Length(n), "{v}");
        let kept: Vec<_> = h.headers.get_all("content-length").iter().collect();
        assert_eq!(kept.len(), 1, "{v}");
        assert_eq!(kept[0].to_str().unwrap().parse::<u64>().unwrap(), n);
    }
    let two_lines = ok(&post("Content-Length: 5\r\ncontent-length: 05\r\n"));
    assert_eq!(two_lines.body, RequestBodyFraming::Length(5));
    assert_eq!(two_lines.headers.get_all("content-length").iter().count(), 1);
    let zero = ok(&post("Content-Length: 0\r\n"));
    assert_eq!(zero.body, RequestBodyFraming::None);
    assert_eq!(ok(&with("")).body, RequestBodyFraming::None);
    for v in [
        "",
        "+5",
        "-1",
        "5 5",
        "0x5",
        "5,",
        ",5",
        "5, 6",
        "1e3",
        "٣",
        "18446744073709551616",
        "5;",
    ] {
        refused(&post(&format!("Content-Length: {v}\r\n")), 400);
    }
    refused(&post("Content-Length: 5\r\nContent-Length: 6\r\n"), 400);
}

// ---- Transfer-Encoding ----

#[test]
fn chunked_is_the_only_and_last_coding() {
    for v in ["chunked", "Chunked", " CHUNKED "] {
        assert_eq!(
            ok(&post(&format!("Transfer-Encoding: {v}\r\n"))).body,
            RequestBodyFraming::Chunked
        );
    }
    for v in ["gzip, chunked", "identity, chunked", "x ,chunked"] {
        refused(&post(&format!("Transfer-Encoding: {v}\r\n")), 501);
    }
    refused(
        &post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
        501,
    );
    for v in [
        "gzip",
        "chunked, gzip",
        "chunked, chunked",
        "",
        "chunked,",
        ", chunked",
        "chunked;x=1",
    ] {
        refused(&post(&format!("Transfer-Encoding: {v}\r\n")), 400);
    }
    refused(
        &post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
        400,
    );
    refused(
        &post("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"),
        400,
    );
}

#[test]
fn transfer_encoding_with_content_length_or_in_http10_is_400() {
    refused(&post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400);
    refused(&post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400);
    refused(&post("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"), 400);
    refused(
        &post("Transfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n"),
        400,
    );
    refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

// ---- bytes httparse must refuse ----

#[test]
fn obs_fold_bare_cr_and_nul_are_400() {
    for req in [
        // obs-fold, with SP and with HT
        &b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        // bare CR: in a value, in the target, ending the request line, ending a field, in the
        // final empty line, before the request line
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n",
        b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\rHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
        b"\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        // NUL: in a value, a name, the target, the method
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-\x00A: 1\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\nHost: a\r\n\r\n",
        // other control bytes and DEL, space before the colon, no colon, two spaces
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \x7f\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        refused(req, 400);
    }
    // A tab inside a value and obs-text are field content.
    assert_eq!(ok(&with("X-A: a\tb\r\n")).headers["x-a"], "a\tb");
    assert_eq!(
        ok(&with("X-A: caf\u{e9}\r\n")).headers["x-a"].as_bytes(),
        "caf\u{e9}".as_bytes()
    );
}

#[test]
fn a_head_is_exactly_the_delimited_bytes() {
    refused(b"GET / HTTP/1.1\r\nHost: a\r\n", 400);
    refused(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET", 400);
    refused(b"", 400);
}

#[test]
fn more_than_100_lines_is_431() {
    let lines: String = (0..MAX_HEADERS - 1).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(ok(&with(&lines)).headers.len(), MAX_HEADERS);
    refused(&with(&format!("{lines}X-Last: v\r\n")), 431);
}

// ---- Expect, Connection, Upgrade ----

#[test]
fn expect_100_continue() {
    let h = ok(&post("Content-Length: 5\r\nExpect: 100-Continue\r\n"));
    assert!(h.expect_continue);
    assert!(ok(&post("Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n")).expect_continue);
    // Nothing to wait for without a body, and HTTP/1.0 must ignore it (RFC 9110 10.1.1).
    assert!(!ok(&with("Expect: 100-continue\r\n")).expect_continue);
    assert!(!ok(b"POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    assert!(!ok(&post("Content-Length: 5\r\nExpect:\r\n")).expect_continue);
    refused(&post("Content-Length: 5\r\nExpect: something\r\n"), 417);
    refused(&post("Content-Length: 5\r\nExpect: 100-continue, x\r\n"), 417);
    refused(b"GET / HTTP/1.0\r\nExpect: 100-continue=1\r\n\r\n", 417);
}

#[test]
fn keep_alive_by_version_and_connection_tokens() {
    let keep = |req: &[u8]| ok(req).keep_alive;
    assert!(keep(&with("")));
    assert!(!keep(&with("Connection: close\r\n")));
    assert!(!keep(&with("Connection: Keep-Alive, CLOSE\r\n")));
    assert!(!keep(&with("Connection: x-a\r\nConnection: close\r\n")));
    assert!(keep(&with("Connection: x-close\r\n")));
    assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(keep(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    assert!(keep(b"GET / HTTP/1.0\r\nConnection: x ,Keep-Alive\r\n\r\n"));
    assert!(!keep(
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
    ));
}

#[test]
fn upgrade_needs_the_token_the_field_and_http11() {
    let up = |req: &[u8]| ok(req).upgrade;
    assert!(up(&with(
        "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
    )));
    assert!(up(&with("Upgrade: h2c\r\nConnection: upgrade\r\n")));
    assert!(!up(&with("Connection: upgrade\r\n")));
    assert!(!up(&with("Connection: upgrade\r\nUpgrade:\r\n")));
    assert!(!up(&with("Upgrade: websocket\r\n")));
    assert!(!up(
        b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    ));
}
