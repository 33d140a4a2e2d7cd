use super::*;
use proptest::prelude::*;

fn normal(path: &str) -> String {
    match normalize(path) {
        Ok(p) => p.into_owned(),
        Err(e) => panic!("{path:?}: {e}"),
    }
}

fn borrowed(path: &str) -> bool {
    matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path)
}

#[test]
fn each_spelling_of_the_issue_is_the_admin_path() {
    for spelling in [
        "/pub/../admin/x",
        "/./admin/x",
        "/%61dmin/x",
        "//admin/x",
        "/pub/%2e%2e/admin/x",
        "/pub/%2E%2E/admin/x",
        "/pub/%2E./admin/x",
        "/pub/.%2e/admin/x",
        "/admin/./x",
        "/admin//x",
        "/adm%69n/x",
        "/pub/a/../../admin/x",
    ] {
        assert_eq!(normal(spelling), "/admin/x", "{spelling}");
    }
}

#[test]
fn climbing_above_the_root_is_an_error() {
    for path in [
        "/%2e%2e/x",
        "/..",
        "/../",
        "/../x",
        "/a/../..",
        "/a/%2E%2E/../b",
        "/%2E.",
        "//..",
    ] {
        assert_eq!(normalize(path), Err(PathError::AboveRoot), "{path}");
    }
}

#[test]
fn malformed_percent_encodings_are_errors() {
    for path in [
        "/%zz", "/%4", "/a%4/b", "/%", "/a/%g0", "/%%41", "/..%2", "/a/./%z",
    ] {
        assert_eq!(normalize(path), Err(PathError::BadPercent), "{path}");
    }
    // A path with both faults is reported for the malformed encoding, wherever it is.
    assert_eq!(normalize("/../%"), Err(PathError::BadPercent));
    assert_eq!(normalize("/%zz/.."), Err(PathError::BadPercent));
}

#[test]
fn encodings_other_than_unreserved_stay_with_upper_case_hex() {
    assert!(borrowed("/a%2Fb"));
    assert_eq!(normal("/a%2fb"), "/a%2Fb");
    // An encoded slash is not a separator: `..` next to it is a plain name.
    assert!(borrowed("/pub/..%2Fadmin/x"));
    assert_eq!(normal("/pub/a%2F../x"), "/pub/a%2F../x");
    assert_eq!(normal("/pub/a%2f%2e%2e/x"), "/pub/a%2F../x");
    assert_eq!(normal("/%7euser"), "/~user");
    assert_eq!(normal("/%7Euser/%5F%2D%2e%30"), "/~user/_-.0");
    assert!(borrowed("/a%20b%C3%A9"));
    assert_eq!(normal("/a%20b%c3%a9"), "/a%20b%C3%A9");
    assert_eq!(normal("/%25%32%65"), "/%252e");
}

#[test]
fn dot_segments_and_slashes() {
    let cases = [
        ("/a/b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/..", "/"),
        ("/a/../", "/"),
        ("/.", "/"),
        ("/./", "/"),
        ("//", "/"),
        ("///a///b///", "/a/b/"),
        ("/a//", "/a/"),
        ("/a/./b/../c/.", "/a/c/"),
        ("/a/b/c/../../d", "/a/d"),
        ("/a/%2e/b", "/a/b"),
    ];
    for (input, expected) in cases {
        assert_eq!(normal(input), expected, "{input}");
    }
}

#[test]
fn normal_paths_are_borrowed() {
    for path in [
        "/",
        "/api/v1/users/123",
        "/admin/",
        "/.well-known/acme-challenge/x",
        "/..a/b./.c/c..",
        "/a%20b",
        "/a~b_c-d.e",
        // Not a path on a server's tree: left as they are.
        "*",
        "",
    ] {
        assert!(borrowed(path), "{path}");
    }
}

#[test]
fn encoded_slashes_are_found_in_normal_paths() {
    assert!(has_encoded_slash("/a%2Fb"));
    assert!(has_encoded_slash(&normal("/a%2fb")));
    assert!(!has_encoded_slash("/a/b%2E"));
    assert!(!has_encoded_slash("/a%252Fb"));
}

#[test]
fn the_query_is_kept_as_received() {
    let uri: http::Uri = "/pub/../admin/x?next=/pub/../%2e%2e/&a=%61".parse().expect("uri");
    let path = normal(uri.path());
    let with = with_path(&uri, &path).expect("uri");
    assert_eq!(with.to_string(), "/admin/x?next=/pub/../%2e%2e/&a=%61");
    // HTTP/2 and absolute-form targets keep their scheme and authority.
    let uri: http::Uri = "https://example.com:8443/%61dmin//x?q".parse().expect("uri");
    let with = with_path(&uri, &normal(uri.path())).expect("uri");
    assert_eq!(with.to_string(), "https://example.com:8443/admin/x?q");
    let with = with_path(&"/a/./b".parse().expect("uri"), "/a/b").expect("uri");
    assert_eq!(with.path_and_query().map(|p| p.as_str()), Some("/a/b"));
}

/// An independent model of the rules: the whole path decoded first (unreserved characters
/// only, other hex upper-cased), then split on `/` and resolved with a stack.
fn reference(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut decoded = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or(PathError::BadPercent)?;
            let value = u8::from_str_radix(hex, 16).map_err(|_| PathError::BadPercent)?;
            if hex.starts_with(['+', '-']) {
                return Err(PathError::BadPercent);
            }
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                decoded.push(char::from(value));
            } else {
                decoded.push('%');
                decoded.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            decoded.push(char::from(bytes[i]));
            i += 1;
        }
    }
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let mut stack: Vec<&str> = Vec::new();
    for s in &segments {
        match *s {
            "" | "." => {}
            ".." => {
                stack.pop().ok_or(PathError::AboveRoot)?;
            }
            name => stack.push(name),
        }
    }
    let directory = matches!(segments.last(), Some(&("" | "." | "..")));
    let mut out = format!("/{}", stack.join("/"));
    if directory && !stack.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// What a server behind reads: every percent-encoding decoded once except `%2F` (a server that
/// split on a decoded `%2F` is what `reject_encoded_slash` is for), dot segments resolved
/// leniently (a `..` at the root stays at the root), slashes merged.
fn server_reads(path: &str) -> Vec<u8> {
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let parts: Vec<&str> = path[1..].split('/').collect();
    for part in &parts {
        let mut seg = Vec::new();
        let b = part.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match (b[i], part.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))) {
                (b'%', Some(Ok(b'/'))) => {
                    seg.extend_from_slice(b"%2F");
                    i += 3;
                }
                (b'%', Some(Ok(v))) => {
                    seg.push(v);
                    i += 3;
                }
                (c, _) => {
                    seg.push(c);
                    i += 1;
                }
            }
        }
        match seg.as_slice() {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            _ => segments.push(seg),
        }
    }
    let mut out = Vec::new();
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    let directory = matches!(parts.last().map(|p| server_dot(p)), Some(true));
    if out.is_empty() || directory {
        out.push(b'/');
    }
    out
}

/// Whether a raw segment reads as empty, `.` or `..` once decoded.
fn server_dot(raw: &str) -> bool {
    let lower = raw.to_ascii_lowercase().replace("%2e", ".");
    matches!(lower.as_str(), "" | "." | "..")
}

/// Segments as clients spell them, odd spellings included.
fn spelling() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "admin",
        "pub",
        "x",
        "a~b",
        "",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2e%2e",
        "%2E.",
        ".%2e",
        "%2E%2E",
        "%61dmin",
        "adm%69n",
        "%61",
        "%41dmin",
        "a%2Fb",
        "a%2fb",
        "..%2F",
        "%2F..",
        "%7e",
        "a%7Eb",
        "%20",
        "%2561dmin",
        ".well-known",
        "..a",
        "a.",
        "%5F",
    ])
}

fn spelled_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(spelling(), 0..8), any::<bool>()).prop_map(|(segments, trailing)| {
        let mut p = format!("/{}", segments.join("/"));
        if trailing {
            p.push('/');
        }
        p
    })
}

/// Paths of any bytes a request target may hold, malformed encodings included.
fn any_path() -> impl Strategy<Value = String> {
    "/[a-zA-Z0-9/.%~_!;=:@-]{0,40}"
}

/// Route prefixes in normal form, ending in `/`, made of unreserved characters.
const PREFIXES: &[&str] = &[
    "/",
    "/admin/",
    "/pub/",
    "/admin/x/",
    "/a~b/",
    "/x/admin/",
    "/.well-known/",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn normalisation_is_idempotent_and_normal(path in prop_oneof![spelled_path(), any_path()]) {
        if let Ok(n) = normalize(&path) {
            let again = normalize(&n);
            prop_assert!(matches!(again, Ok(Cow::Borrowed(p)) if p == n.as_ref()), "{path:?} -> {n:?} -> {again:?}");
            prop_assert!(n.starts_with('/'));
            prop_assert!(!n.contains("//"), "{n}");
            for segment in n[1..].split('/') {
                prop_assert!(segment != "." && segment != "..", "{n}");
            }
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_rewrite(path in prop_oneof![spelled_path(), any_path()]) {
        // Borrowed exactly when the rewrite would change nothing; the same errors either way.
        match (normalize(&path), rewrite(&path)) {
            (Ok(Cow::Borrowed(p)), Ok(r)) => prop_assert_eq!(p, r.as_str()),
            (Ok(Cow::Owned(p)), Ok(r)) => {
                prop_assert_eq!(&p, &r);
                prop_assert_ne!(&p, &path);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "{path:?}: {a:?} vs {b:?}"),
        }
    }

    #[test]
    fn agrees_with_the_reference_resolver(path in prop_oneof![spelled_path(), any_path()]) {
        prop_assert_eq!(normalize(&path).map(Cow::into_owned), reference(&path), "{}", path);
    }

    /// No input normalises to a path outside the one a route's prefix names: a prefix matches
    /// the normal path exactly when the server behind reads a path under that prefix, and the
    /// server reads the same from the normal path as from the path the client sent.
    #[test]
    fn no_spelling_escapes_the_prefix_the_server_reads(path in spelled_path()) {
        if let Ok(n) = normalize(&path) {
            let read = server_reads(&path);
            prop_assert_eq!(server_reads(&n), read.clone(), "{} -> {}", path, n);
            for prefix in PREFIXES {
                prop_assert_eq!(
                    n.starts_with(prefix),
                    read.starts_with(prefix.as_bytes()),
                    "{} -> {} under {}", path, n, prefix
                );
            }
        }
    }
}
