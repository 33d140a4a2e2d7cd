//! Unit and property tests of the pure parts: path mapping, conditions and ranges, codings.

use std::path::{Component, Path, PathBuf};

use proptest::prelude::*;

use super::conditional::{self, Answer, ByteRange, Conditions, RangeAsk, Validators, parse_range};
use super::encoding::{Encoding, Siblings, choose};
use super::path::{Mapped, Refusal, map, slash_redirect};

// ---------------------------------------------------------------------------------------------
// Path mapping
// ---------------------------------------------------------------------------------------------

fn mapped(relative: &str, trailing_slash: bool) -> Result<Mapped, Refusal> {
    Ok(Mapped {
        relative: PathBuf::from(relative),
        trailing_slash,
    })
}

#[test]
fn maps_names_under_the_prefix() {
    assert_eq!(map("/assets/a/b.css", "/assets/"), mapped("a/b.css", false));
    assert_eq!(map("/assets/", "/assets/"), mapped("", true));
    assert_eq!(map("/assets/a/", "/assets/"), mapped("a", true));
    assert_eq!(map("/", "/"), mapped("", true));
    assert_eq!(map("/a", "/a"), mapped("", false));
    // Repeated slashes are one.
    assert_eq!(map("/assets//a///b", "/assets/"), mapped("a/b", false));
    assert_eq!(map("/other/x", "/assets/"), Err(Refusal::OutsidePrefix));
}

#[test]
fn decodes_each_segment_once() {
    assert_eq!(map("/hello%20world.txt", "/"), mapped("hello world.txt", false));
    assert_eq!(map("/%E2%82%AC.txt", "/"), mapped("€.txt", false));
    // A name that is not UTF-8 is still a name.
    let m = map("/%FF", "/").expect("mapped");
    assert_eq!(m.relative.as_os_str().len(), 1);
    // `%25` is `%`: a doubly encoded dot segment is a (missing) name, never `..`.
    assert_eq!(map("/%252e%252e/x", "/"), mapped("%2e%2e/x", false));
    assert_eq!(map("/%252e%252e%252f", "/"), mapped("%2e%2e%2f", false));
    // A malformed escape is left as it is.
    assert_eq!(map("/a%zz", "/"), mapped("a%zz", false));
}

#[test]
fn refuses_every_way_out() {
    for (path, why) in [
        ("/s/../etc/passwd", Refusal::DotSegment),
        ("/s/a/..", Refusal::DotSegment),
        ("/s/./a", Refusal::DotSegment),
        ("/s/%2e%2e/etc/passwd", Refusal::DotSegment),
        ("/s/%2E%2e/etc/passwd", Refusal::DotSegment),
        ("/s/.%2e/etc", Refusal::DotSegment),
        ("/s/%2e/a", Refusal::DotSegment),
        ("/s/%2e%2e%2fetc%2fpasswd", Refusal::Separator),
        ("/s/a%2fb", Refusal::Separator),
        ("/s/..%5cetc", Refusal::Separator),
        ("/s/..\\etc", Refusal::Separator),
        ("/s/a\\b", Refusal::Separator),
        ("/s/%5c", Refusal::Separator),
        ("/s/a%00.txt", Refusal::Nul),
        ("/s/%00", Refusal::Nul),
    ] {
        assert_eq!(map(path, "/s/"), Err(why), "{path}");
    }
}

#[test]
fn redirect_adds_the_slash_and_keeps_the_query() {
    assert_eq!(slash_redirect("/assets/sub", None), "/assets/sub/");
    assert_eq!(slash_redirect("/assets/sub", Some("a=1&b")), "/assets/sub/?a=1&b");
    assert_eq!(slash_redirect("/a%20b", None), "/a%20b/");
    // Never a protocol-relative URL to another host.
    assert_eq!(slash_redirect("//evil.example/x", None), "/evil.example/x/");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the path, a mapping has only plain names: nothing that climbs, roots or holds
    /// a NUL.
    #[test]
    fn a_mapping_never_leaves_the_directory(
        segments in prop::collection::vec(
            prop_oneof![
                Just(".".to_string()), Just("..".to_string()), Just("%2e".to_string()),
                Just("%2e%2e".to_string()), Just("%2f".to_string()), Just("%5c".to_string()),
                Just("%00".to_string()), Just("%25".to_string()), Just("\\".to_string()),
                Just(String::new()), "[a-z.%0-9A-F]{1,6}", any::<String>(),
            ],
            0..8,
        ),
    ) {
        let path = format!("/p/{}", segments.join("/"));
        if let Ok(m) = map(&path, "/p/") {
            for c in m.relative.components() {
                let Component::Normal(name) = c else {
                    panic!("{path:?} maps to {:?}", m.relative);
                };
                let bytes = name.as_encoded_bytes();
                prop_assert!(!bytes.contains(&0) && !bytes.contains(&b'\\'), "{path:?}");
            }
            prop_assert!(Path::new("/srv").join(&m.relative).starts_with("/srv"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ranges
// ---------------------------------------------------------------------------------------------

fn one(start: u64, len: u64) -> RangeAsk {
    RangeAsk::One(ByteRange { start, len })
}

#[test]
fn parses_single_byte_ranges() {
    assert_eq!(parse_range("bytes=0-99", 1000), one(0, 100));
    assert_eq!(parse_range("bytes=0-0", 1000), one(0, 1));
    assert_eq!(parse_range("bytes=0-99", 50), one(0, 50));
    assert_eq!(parse_range("bytes=100-", 1000), one(100, 900));
    assert_eq!(parse_range("bytes=999-", 1000), one(999, 1));
    assert_eq!(parse_range("bytes=-500", 1000), one(500, 500));
    assert_eq!(parse_range("bytes=-5000", 1000), one(0, 1000));
    assert_eq!(parse_range("BYTES=1-2", 10), one(1, 2));
    assert_eq!(parse_range("bytes= 1-2 ", 10), one(1, 2));
    // A `#` list may hold empty elements.
    assert_eq!(parse_range("bytes=1-2, ,", 10), one(1, 2));
    // Positions past u64 are past the end.
    assert_eq!(parse_range("bytes=0-99999999999999999999999", 10), one(0, 10));
}

#[test]
fn unsatisfiable_ranges() {
    assert_eq!(parse_range("bytes=1000-", 1000), RangeAsk::Unsatisfiable);
    assert_eq!(parse_range("bytes=1000-2000", 1000), RangeAsk::Unsatisfiable);
    assert_eq!(parse_range("bytes=-0", 1000), RangeAsk::Unsatisfiable);
    assert_eq!(parse_range("bytes=0-", 0), RangeAsk::Unsatisfiable);
    assert_eq!(parse_range("bytes=-1", 0), RangeAsk::Unsatisfiable);
    assert_eq!(
        parse_range("bytes=99999999999999999999999-", 10),
        RangeAsk::Unsatisfiable
    );
}

#[test]
fn ranges_that_are_ignored() {
    for field in [
        "bytes=5-4",
        "bytes=0-1,3-4",
        "bytes=0-1, -3",
        "items=0-1",
        "bytes=abc",
        "bytes=+1-2",
        "bytes=1-+2",
        "bytes=-",
        "bytes=",
        "bytes",
        "",
        "bytes=1",
        "bytes=0x1-2",
        "bytes=1 -2",
    ] {
        assert_eq!(parse_range(field, 1000), RangeAsk::Ignored, "{field:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// A range answer is never empty and always within the file; an unsatisfiable one truly
    /// has no byte in the file.
    #[test]
    fn a_range_is_within_the_file(
        len in prop_oneof![Just(0u64), 1u64..5000, Just(u64::MAX)],
        first in prop::option::of(prop_oneof![0u64..6000, any::<u64>()]),
        last in prop::option::of(prop_oneof![0u64..6000, any::<u64>()]),
    ) {
        let field = format!(
            "bytes={}-{}",
            first.map(|n| n.to_string()).unwrap_or_default(),
            last.map(|n| n.to_string()).unwrap_or_default()
        );
        match parse_range(&field, len) {
            RangeAsk::One(r) => {
                prop_assert!(r.len >= 1);
                prop_assert!(r.start.checked_add(r.len).is_some_and(|end| end <= len), "{field} of {len}: {r:?}");
                if let (Some(f), Some(l)) = (first, last) {
                    prop_assert_eq!(r.start, f);
                    prop_assert!(r.last() <= l);
                }
            }
            RangeAsk::Unsatisfiable => match (first, last) {
                (Some(f), _) => prop_assert!(f >= len),
                (None, Some(suffix)) => prop_assert!(suffix == 0 || len == 0),
                (None, None) => prop_assert!(false, "bytes=- is not a range"),
            },
            RangeAsk::Ignored => prop_assert!(
                matches!((first, last), (None, None) | (Some(_), Some(_))),
                "{field} ignored"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

/// A file of 1000 bytes modified at Sun, 06 Nov 1994 08:49:37 GMT.
fn file() -> Validators {
    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
    Validators::of(1000, Some(modified))
}

const MTIME: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const EARLIER: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
const LATER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

fn get() -> Conditions<'static> {
    Conditions {
        get: true,
        ..Conditions::default()
    }
}

#[test]
fn entity_tags_are_nginx_s() {
    assert_eq!(file().etag, "\"2ebc98a1-3e8\"");
    assert_eq!(conditional::entity_tag(0, 0), "\"0-0\"");
    assert_eq!(Validators::of(5, None).etag, "\"0-5\"");
}

#[test]
fn if_none_match_answers_304() {
    let v = file();
    let etag = v.etag.clone();
    let ask = |list: &str| {
        conditional::decide(
            &v,
            &Conditions {
                if_none_match: Some(list),
                ..get()
            },
        )
    };
    assert_eq!(ask(&etag), Answer::NotModified);
    assert_eq!(ask(&format!("W/{etag}")), Answer::NotModified, "weak comparison");
    assert_eq!(ask(&format!("\"x\", {etag}")), Answer::NotModified);
    assert_eq!(
        ask(&format!("\"a,b\",{etag}")),
        Answer::NotModified,
        "a comma inside a tag"
    );
    assert_eq!(ask("*"), Answer::NotModified);
    assert_eq!(ask("\"other\""), Answer::Whole);
    assert_eq!(ask("garbage"), Answer::Whole);
    assert_eq!(ask(""), Answer::Whole);
}

#[test]
fn if_modified_since_answers_304() {
    let v = file();
    let ask = |date: &str| {
        conditional::decide(
            &v,
            &Conditions {
                if_modified_since: Some(date),
                ..get()
            },
        )
    };
    assert_eq!(ask(MTIME), Answer::NotModified);
    assert_eq!(ask(LATER), Answer::NotModified);
    assert_eq!(
        ask("Sunday, 06-Nov-94 08:49:37 GMT"),
        Answer::NotModified,
        "RFC 850 form"
    );
    assert_eq!(ask(EARLIER), Answer::Whole);
    assert_eq!(ask("yesterday"), Answer::Whole);
    // No modification time: nothing to compare.
    let no_time = Validators::of(1000, None);
    let c = Conditions {
        if_modified_since: Some(LATER),
        ..get()
    };
    assert_eq!(conditional::decide(&no_time, &c), Answer::Whole);
}

#[test]
fn if_none_match_wins_over_if_modified_since() {
    let v = file();
    // The tag does not match: the date is not looked at (RFC 9110 13.1.3).
    let c = Conditions {
        if_none_match: Some("\"other\""),
        if_modified_since: Some(LATER),
        ..get()
    };
    assert_eq!(conditional::decide(&v, &c), Answer::Whole);
    let c = Conditions {
        if_none_match: Some(&v.etag),
        if_modified_since: Some(EARLIER),
        ..get()
    };
    assert_eq!(conditional::decide(&v, &c), Answer::NotModified);
}

#[test]
fn if_match_and_if_unmodified_since_answer_412() {
    let v = file();
    let etag = v.etag.clone();
    let decide = |c: Conditions<'_>| conditional::decide(&v, &c);
    let if_match = |list| Conditions {
        if_match: Some(list),
        ..get()
    };
    assert_eq!(decide(if_match(&etag)), Answer::Whole);
    assert_eq!(decide(if_match("*")), Answer::Whole);
    assert_eq!(decide(if_match("\"other\"")), Answer::PreconditionFailed);
    assert_eq!(
        decide(if_match(&format!("W/{etag}"))),
        Answer::PreconditionFailed,
        "strong comparison"
    );
    let ius = |date| Conditions {
        if_unmodified_since: Some(date),
        ..get()
    };
    assert_eq!(decide(ius(MTIME)), Answer::Whole);
    assert_eq!(decide(ius(EARLIER)), Answer::PreconditionFailed);
    assert_eq!(decide(ius("not a date")), Answer::Whole);
    // If-Match present: If-Unmodified-Since is not looked at.
    let both = Conditions {
        if_match: Some(&etag),
        if_unmodified_since: Some(EARLIER),
        ..get()
    };
    assert_eq!(decide(both), Answer::Whole);
}

#[test]
fn range_with_and_without_if_range() {
    let v = file();
    let etag = v.etag.clone();
    let decide = |c: Conditions<'_>| conditional::decide(&v, &c);
    let part = Answer::Part(ByteRange { start: 0, len: 100 });
    let range = |if_range| Conditions {
        range: Some("bytes=0-99"),
        if_range,
        ..get()
    };
    assert_eq!(decide(range(None)), part);
    assert_eq!(decide(range(Some(&etag))), part);
    assert_eq!(decide(range(Some(MTIME))), part);
    assert_eq!(decide(range(Some("\"other\""))), Answer::Whole);
    let weak = format!("W/{etag}");
    assert_eq!(decide(range(Some(&weak))), Answer::Whole, "weak tags never match");
    assert_eq!(decide(range(Some(EARLIER))), Answer::Whole);
    assert_eq!(decide(range(Some(LATER))), Answer::Whole, "a date must be exact");
    assert_eq!(decide(range(Some("bogus"))), Answer::Whole);
    // HEAD ignores Range (RFC 9110 14.2: ranges are defined for GET only).
    let head = Conditions {
        get: false,
        ..range(None)
    };
    assert_eq!(decide(head), Answer::Whole);
    let beyond = Conditions {
        range: Some("bytes=1000-"),
        ..get()
    };
    assert_eq!(decide(beyond), Answer::Unsatisfiable);
    // A current copy is a 304 before any range is looked at.
    let cached = Conditions {
        if_none_match: Some(&etag),
        ..range(None)
    };
    assert_eq!(decide(cached), Answer::NotModified);
}

// ---------------------------------------------------------------------------------------------
// Precompressed siblings
// ---------------------------------------------------------------------------------------------

const BOTH: Siblings = Siblings { br: true, gzip: true };
const GZ_ONLY: Siblings = Siblings {
    br: false,
    gzip: true,
};
const BR_ONLY: Siblings = Siblings {
    br: true,
    gzip: false,
};

#[test]
fn chooses_the_sibling_the_client_accepts() {
    let br = Some(Encoding::Br);
    let gz = Some(Encoding::Gzip);
    for (field, siblings, want) in [
        (None, BOTH, None),
        (Some("gzip, deflate, br"), BOTH, br),
        (Some("gzip, deflate, br"), GZ_ONLY, gz),
        (Some("gzip, deflate, br"), Siblings::default(), None),
        (Some("gzip"), BOTH, gz),
        (Some("br"), GZ_ONLY, None),
        (Some("br;q=0, gzip"), BOTH, gz),
        (Some("br;q=0"), BR_ONLY, None),
        (Some("gzip;q=0, br;q=0"), BOTH, None),
        (Some("*"), BOTH, br),
        (Some("*;q=0, gzip"), BOTH, gz),
        (Some("*, br;q=0"), BOTH, gz),
        (Some("gzip;q=1, br;q=0.5"), BOTH, gz),
        (Some("gzip;q=0.5, br;q=0.5"), BOTH, br),
        (Some("gzip;q=0.8, br;q=0.801"), BOTH, br),
        (Some("x-gzip"), BOTH, gz),
        (Some("BR, GZIP"), BOTH, br),
        (Some("gzip ; q=0.8 , br ; Q=0.9"), BOTH, br),
        (Some("br;q=0.001"), BR_ONLY, br),
        (Some("identity"), BOTH, None),
        (Some(""), BOTH, None),
        // Weights that do not parse leave their entry out.
        (Some("br;q=2"), BR_ONLY, None),
        (Some("br;q=0.0000"), BR_ONLY, None),
        (Some("br;q=1.5, gzip"), BOTH, gz),
        (Some("br;q=, gzip"), BOTH, gz),
    ] {
        assert_eq!(choose(field, siblings), want, "{field:?} with {siblings:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The file stream (adapter): both ways of reading give the file's bytes
// ---------------------------------------------------------------------------------------------

/// A file whose pages were dropped from the page cache is read in the blocking pool; one in
/// the cache at once; the stream hands out exactly the range asked for, either way.
#[tokio::test]
async fn a_file_streams_its_range_from_the_cache_or_the_disk() {
    use std::future::poll_fn;
    use std::io::Write;

    use super::stream::{CHUNK, FileStream, read_now};

    let path = std::env::temp_dir().join(format!("ringway-stream-{}", std::process::id()));
    let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(&data).expect("write");
    f.sync_all().expect("sync");
    drop(f);
    for (start, len) in [
        (0, data.len()),
        (5, CHUNK),
        (CHUNK - 1, 2 * CHUNK + 3),
        (data.len() - 1, 1),
    ] {
        for cold in [true, false] {
            let file = std::fs::File::open(&path).expect("open");
            if cold {
                // Clean pages only (synced above): the kernel drops them.
                rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
                let mut probe = vec![0; 16];
                // A file system without RWF_NOWAIT answers `None` as well; a cache that keeps
                // the pages anyway (tmpfs) answers at once: both ways are still checked below.
                let _ = read_now(&file, start as u64, &mut probe).expect("probe");
            }
            let mut stream = FileStream::new(file, start as u64, len as u64);
            let mut got = Vec::new();
            while let Some(chunk) = poll_fn(|cx| stream.poll_chunk(cx)).await {
                let chunk = chunk.expect("chunk");
                assert!(chunk.len() <= CHUNK);
                got.extend_from_slice(&chunk);
            }
            assert_eq!(stream.remaining(), 0);
            assert!(
                got == data[start..start + len],
                "range {start}+{len}, cold {cold}"
            );
        }
    }
    // A file that ends before the range does is an error, not a short answer.
    let file = std::fs::File::open(&path).expect("open");
    let mut stream = FileStream::new(file, 0, data.len() as u64 + 10);
    let mut last = None;
    while let Some(chunk) = poll_fn(|cx| stream.poll_chunk(cx)).await {
        last = Some(chunk.map(|c| c.len()));
    }
    assert!(
        matches!(last, Some(Err(ref e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{last:?}"
    );
    assert_eq!(stream.remaining(), 10, "what was never sent");
    let _ = std::fs::remove_file(&path);
}

/// `sendfile` sends a range, from its offset, as far as the page cache holds it; what it leaves
/// (a cold piece) is read through the chunks, and the two together are the range.
#[tokio::test]
async fn a_cached_range_is_sent_with_sendfile_and_a_cold_one_falls_back_to_reads() {
    use std::future::poll_fn;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    use super::stream::FileStream;

    let path = std::env::temp_dir().join(format!("ringway-sendfile-{}", std::process::id()));
    let data: Vec<u8> = (0..700_000).map(|i| (i % 253) as u8).collect();
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(&data).expect("write");
    f.sync_all().expect("sync");
    drop(f);
    for (start, len, cold) in [
        (0, data.len(), false),
        (12_345, 400_000, false),
        (3, 600_000, true),
    ] {
        let file = std::fs::File::open(&path).expect("open");
        if cold {
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        }
        let (out, mut peer) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).expect("read");
            got
        });
        let mut stream = FileStream::new(file, start as u64, len as u64);
        let mut sendfile_bytes = 0;
        loop {
            match stream.send_to(out.as_fd()) {
                Ok(0) => break,
                Ok(n) => sendfile_bytes += n,
                Err(e) => panic!("sendfile: {e}"),
            }
        }
        let mut rest = Vec::new();
        while let Some(chunk) = poll_fn(|cx| stream.poll_chunk(cx)).await {
            rest.extend_from_slice(&chunk.expect("chunk"));
        }
        (&out).write_all(&rest).expect("write the rest");
        drop(out);
        let got = reader.join().expect("reader");
        assert_eq!(stream.remaining(), 0);
        assert!(
            got == data[start..start + len],
            "range {start}+{len}, cold {cold}"
        );
        if !cold {
            assert_eq!(sendfile_bytes, len, "a cached range goes all by sendfile");
        }
    }
    let _ = std::fs::remove_file(&path);
}
