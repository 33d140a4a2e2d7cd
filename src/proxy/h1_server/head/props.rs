//! Property tests of the request-head rules: a head fed in any reads gives the answer it gives
//! whole, and an accepted head is forwarded with one unambiguous framing.

use super::tests::parse;
use super::*;
use crate::proxy::{h1, headers};
use proptest::prelude::*;

const MAX: usize = 8192;

/// Feeds `input` in the pieces `cuts` makes, as the connection does, and returns what the
/// first call that was not `Partial` said.
fn accumulate(input: &[u8], cuts: &[usize], max: usize) -> HeadEnd {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    ends.push(input.len());
    ends.sort_unstable();
    let mut scanned = 0;
    for end in ends {
        let got = find_head_end(&input[..end], scanned, max);
        if got != HeadEnd::Partial {
            return got;
        }
        scanned = end;
    }
    HeadEnd::Partial
}

/// What a head's parse says, comparable across runs.
fn outcome(input: &[u8], end: HeadEnd) -> String {
    match end {
        HeadEnd::Complete(n) => format!("{:?}", parse(&input[..n])),
        other => format!("{other:?}"),
    }
}

/// Requests built from the fields the rules care about, about half of them accepted.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let lead = prop_oneof![6 => Just(""), 1 => Just("\r\n"), 1 => Just("\n\r\n")];
    let method = prop_oneof![
        4 => Just("GET"),
        4 => Just("POST"),
        1 => Just("PUT"),
        1 => Just("HEAD"),
        1 => Just("OPTIONS"),
        1 => Just("PURGE"),
        1 => Just("CONNECT"),
    ];
    let target = prop_oneof![
        4 => Just("/"),
        4 => Just("/a?b=c"),
        2 => Just("http://b.example/x"),
        1 => Just("HTTPS://b.example:8443"),
        1 => Just("*"),
        1 => Just("http://u@b/"),
        1 => Just("b.example:80"),
    ];
    let version = prop_oneof![8 => Just("HTTP/1.1"), 3 => Just("HTTP/1.0"), 1 => Just("HTTP/2.0")];
    let host = prop_oneof![
        8 => Just(vec!["Host: a.example"]),
        1 => Just(vec!["Host: a.example:8080"]),
        1 => Just(vec!["host: u@a"]),
        1 => Just(vec![]),
        1 => Just(vec!["Host: a.example", "Host: a.example"]),
    ];
    let framing = prop_oneof![
        Just("Content-Length: 5"),
        Just("Content-Length: 0"),
        Just("content-length: 5, 5"),
        Just("Content-Length: 6"),
        Just("Content-Length: x"),
        Just("Transfer-Encoding: chunked"),
        Just("transfer-encoding: Chunked"),
        Just("transfer-encoding: gzip, chunked"),
        Just("Transfer-Encoding: chunked, chunked"),
        Just("Expect: 100-continue"),
        Just("Expect: other"),
    ];
    let other = prop_oneof![
        Just("Connection: close"),
        Just("Connection: keep-alive, x-a"),
        Just("Connection: Upgrade, content-length, transfer-encoding, host"),
        Just("Upgrade: websocket"),
        Just("Keep-Alive: timeout=5"),
        Just("TE: trailers"),
        Just("Proxy-Connection: keep-alive"),
        Just("X-A: 1"),
        Just("X-Sp:  padded\t"),
    ];
    let fields = (
        host,
        proptest::collection::vec(framing, 0..3),
        proptest::collection::vec(other, 0..5),
    )
        .prop_map(|(mut all, framing, other)| {
            all.extend(framing);
            all.extend(other);
            all
        })
        .prop_shuffle();
    let eol = prop_oneof![4 => Just("\r\n"), 1 => Just("\n")];
    let eols = proptest::collection::vec(eol, 12);
    let body = proptest::collection::vec(any::<u8>(), 0..8);
    (lead, method, target, version, fields, eols, body).prop_map(
        |(lead, method, target, version, fields, eols, body)| {
            let mut out = format!("{lead}{method} {target} {version}{}", eols[0]).into_bytes();
            for (f, e) in fields.iter().zip(&eols[1..]) {
                out.extend_from_slice(f.as_bytes());
                out.extend_from_slice(e.as_bytes());
            }
            out.extend_from_slice(eols[11].as_bytes());
            out.extend_from_slice(&body);
            out
        },
    )
}

/// Bytes that look enough like a head to reach its rules, with a few bytes changed.
fn mangled() -> impl Strategy<Value = Vec<u8>> {
    let alphabet = prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b' '),
        Just(b'\t'),
        Just(b':'),
        Just(b','),
        Just(0u8),
        any::<u8>()
    ];
    (
        request(),
        proptest::collection::vec((any::<usize>(), alphabet), 0..4),
    )
        .prop_map(|(mut r, edits)| {
            for (at, b) in edits {
                if !r.is_empty() {
                    let i = at % r.len();
                    r[i] = b;
                }
            }
            r
        })
}

/// The forwarded head of an accepted request, as forward.rs writes it (forwarding fields
/// empty), checked for one unambiguous framing that says what the client's did.
fn check_forwarded_framing(head: &RequestHead) -> Result<(), TestCaseError> {
    let mut fields = head.headers.clone();
    if let Some(a) = head.uri.authority() {
        fields.insert(http::header::HOST, HeaderValue::from_str(a.as_str()).unwrap());
    }
    headers::remove_hop_by_hop(&mut fields, head.upgrade);
    let has_body = head.body != RequestBodyFraming::None;
    let framing = h1::RequestFraming::of(&head.method, &fields, has_body);
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let out = h1::encode_request_head(&head.method, target, &fields, &[], framing);
    let mut lines = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut lines);
    prop_assert_eq!(parsed.parse(&out), Ok(httparse::Status::Complete(out.len())));
    let named = |n: &str| {
        parsed
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(n))
            .count()
    };
    let lengths: Vec<&[u8]> = parsed
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| h.value)
        .collect();
    let chunked = named("transfer-encoding");
    prop_assert!(named("host") <= 1);
    match head.body {
        RequestBodyFraming::None => {
            prop_assert_eq!(chunked, 0);
            prop_assert!(lengths.len() <= 1);
            prop_assert!(lengths.iter().all(|v| v.iter().all(|&d| d == b'0')));
        }
        RequestBodyFraming::Length(n) => {
            prop_assert_eq!(chunked, 0);
            prop_assert_eq!(lengths.len(), 1);
            prop_assert_eq!(
                std::str::from_utf8(lengths[0]).ok().and_then(|v| v.parse().ok()),
                Some(n)
            );
        }
        RequestBodyFraming::Chunked => {
            prop_assert_eq!(lengths.len(), 0);
            prop_assert_eq!(chunked, 1);
            let te = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
            prop_assert_eq!(te.map(|h| h.value), Some(&b"chunked"[..]));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_split_gives_the_whole_answer(
        input in prop_oneof![request(), mangled(), proptest::collection::vec(any::<u8>(), 0..64)],
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        max in prop_oneof![Just(MAX), 16usize..200],
    ) {
        let whole = find_head_end(&input, 0, max);
        let split = accumulate(&input, &cuts, max);
        prop_assert_eq!(split, whole);
        let byte_by_byte: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(accumulate(&input, &byte_by_byte, max), whole);
        prop_assert_eq!(outcome(&input, split), outcome(&input, whole));
    }

    #[test]
    fn accepted_heads_are_forwarded_with_one_framing(input in prop_oneof![request(), mangled()]) {
        if let HeadEnd::Complete(n) = find_head_end(&input, 0, MAX)
            && let Ok(head) = parse(&input[..n])
        {
            // The head ends where httparse says it does: nothing of it is left as body.
            let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
            prop_assert_eq!(
                httparse::Request::new(&mut lines).parse(&input),
                Ok(httparse::Status::Complete(n))
            );
            prop_assert!(head.method != Method::CONNECT);
            prop_assert!(head.version == Version::HTTP_11 || head.version == Version::HTTP_10);
            let hosts = head.headers.get_all(http::header::HOST).iter().count();
            prop_assert!(hosts <= 1 && (hosts == 1 || head.version == Version::HTTP_10));
            check_forwarded_framing(&head)?;
        }
    }
}

/// The `Host` check as it was: an `http::uri::Authority` built from the value, then its text
/// checked for a plain `host[:port]`.
fn host_by_authority(value: &[u8]) -> bool {
    !value.contains(&b'@')
        && http::uri::Authority::try_from(value).is_ok_and(|a| authority_is_host_and_port(a.as_str()))
}

/// Host values from the bytes that matter to the grammar, and a few that must never pass.
fn host_value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        8 => proptest::sample::select(b"ab9-._~%F".to_vec()),
        2 => proptest::sample::select(b":[]".to_vec()),
        1 => proptest::sample::select(b"%!$&'()*+,;=@/?# \"<>{}|^`\t\x7f\x80".to_vec()),
    ];
    proptest::collection::vec(byte, 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn host_check_is_no_looser_than_the_authority_parse(value in host_value()) {
        if fields::is_valid_host(&value) {
            prop_assert!(host_by_authority(&value), "{:?}", String::from_utf8_lossy(&value));
        }
    }
}

#[test]
fn host_check_accepts_what_clients_send() {
    for ok in [
        "a",
        "a.example",
        "a.example:8080",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:443",
        "xn--bcher-kva.example",
        "a:",
    ] {
        assert!(fields::is_valid_host(ok.as_bytes()), "{ok}");
        assert!(host_by_authority(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "", "a b", "u@a", "a:b", "a:1:2", "[::1", "[zz::1]", "a/b", "a?b", "[::1]x", "a%4", "a%zz", "a%41b",
    ] {
        assert!(!fields::is_valid_host(bad.as_bytes()), "{bad}");
    }
}
