//! Unit tests of the HTTP/1.1 message rules, framing and reuse decisions.

use super::*;
use proptest::prelude::*;

fn head(text: &str) -> Result<Option<ResponseHead>, ResponseError> {
    let mut buf = BytesMut::from(text.as_bytes());
    parse_response_head(&mut buf, false)
}

#[test]
fn encodes_a_request_head() {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("a.example"));
    h.append("x-a", HeaderValue::from_static("1"));
    h.append("x-a", HeaderValue::from_static("2"));
    let out = encode_request_head(&Method::POST, "/p?q=1", &h, &[], RequestFraming::Zero);
    assert_eq!(
        &out[..],
        b"POST /p?q=1 HTTP/1.1\r\nhost: a.example\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 0\r\n\r\n"
    );
    let set = HeaderName::from_static("x-a");
    let out = encode_request_head(
        &Method::GET,
        "/",
        &h,
        &[(&set, HeaderValue::from_static("3"))],
        RequestFraming::None,
    );
    assert_eq!(
        &out[..],
        b"GET / HTTP/1.1\r\nhost: a.example\r\nx-a: 3\r\n\r\n",
        "replaced, not added"
    );
    let out = encode_request_head(&Method::GET, "", &HeaderMap::new(), &[], RequestFraming::Chunked);
    assert_eq!(&out[..], b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
}

#[test]
fn request_framing_follows_the_request() {
    let mut h = HeaderMap::new();
    assert_eq!(RequestFraming::of(&Method::GET, &h, false), RequestFraming::None);
    assert_eq!(RequestFraming::of(&Method::POST, &h, false), RequestFraming::Zero);
    assert_eq!(
        RequestFraming::of(&Method::POST, &h, true),
        RequestFraming::Chunked
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
    assert_eq!(
        RequestFraming::of(&Method::POST, &h, true),
        RequestFraming::Length
    );
}

#[test]
fn parses_a_head_and_leaves_the_body() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"[..]);
    let h = parse_response_head(&mut buf, false).unwrap().unwrap();
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.framing, BodyFraming::Length(5));
    assert!(h.keep_alive);
    assert_eq!(h.headers.get("x-a").unwrap(), "b");
    assert_eq!(&buf[..], b"hello");
}

#[test]
fn partial_head_asks_for_more() {
    assert!(head("HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
    assert!(head("").unwrap().is_none());
}

#[test]
fn malformed_and_oversized_heads_are_errors() {
    assert_eq!(
        head("HTTP/1.1 abc OK\r\n\r\n").unwrap_err(),
        ResponseError::Malformed
    );
    assert_eq!(head("garbage\r\n\r\n").unwrap_err(), ResponseError::Malformed);
    let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES + 1));
    assert_eq!(head(&big).unwrap_err(), ResponseError::TooLarge);
    let many: String = (0..200).map(|i| format!("x{i}: 1\r\n")).collect();
    assert_eq!(
        head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).unwrap_err(),
        ResponseError::TooLarge
    );
}

#[test]
fn interim_responses_are_skipped() {
    let h = head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.status, StatusCode::CREATED);
    assert_eq!(h.framing, BodyFraming::Length(0));
    let h = head("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(h.framing, BodyFraming::Empty);
}

#[test]
fn framing_per_rfc_9112() {
    let f = |t: &str| head(t).unwrap().unwrap();
    assert_eq!(
        f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").framing,
        BodyFraming::Chunked
    );
    let h = f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(h.framing, BodyFraming::Chunked);
    assert!(h.headers.get(header::CONTENT_LENGTH).is_none());
    assert!(!h.keep_alive);
    let h = f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert_eq!(h.framing, BodyFraming::UntilClose);
    assert!(!h.keep_alive);
    let h = f("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(h.framing, BodyFraming::UntilClose);
    assert!(!h.keep_alive);
    assert_eq!(f("HTTP/1.1 204 No Content\r\n\r\n").framing, BodyFraming::Empty);
    assert_eq!(
        f("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n").framing,
        BodyFraming::Empty
    );
    assert_eq!(
        f("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").framing,
        BodyFraming::Length(3)
    );
    assert_eq!(
        head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n").unwrap_err(),
        ResponseError::BadLength
    );
    assert_eq!(
        head("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").unwrap_err(),
        ResponseError::BadLength
    );
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"[..]);
    let h = parse_response_head(&mut buf, true).unwrap().unwrap();
    assert_eq!(h.framing, BodyFraming::Empty);
}

#[test]
fn hop_by_hop_fields_are_not_kept() {
    let h = head(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, x-secret\r\nKeep-Alive: timeout=5\r\nX-Secret: 1\r\nUpgrade: h2c\r\nX-Kept: 1\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap()
    .unwrap();
    let mut names: Vec<&str> = h.headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["content-length", "x-kept"]);
    assert!(h.keep_alive);
    let h = head("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nKeep-Alive: 1\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.headers.get(header::UPGRADE).unwrap(), "websocket");
    assert_eq!(h.headers.get(header::CONNECTION).unwrap(), "upgrade");
    assert!(h.headers.get("keep-alive").is_none());
}

#[test]
fn keep_alive_per_version_and_connection() {
    let ka = |t: &str| head(t).unwrap().unwrap().keep_alive;
    assert!(ka("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(!ka(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(!ka("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(ka(
        "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
    ));
}

#[test]
fn http10_with_transfer_encoding_is_read_then_closed() {
    let h = head("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        h.framing,
        BodyFraming::Chunked,
        "the coding still decides the end"
    );
    assert!(!h.keep_alive, "RFC 9112 6.1: close after it");
    let h = head("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!h.keep_alive);
    assert!(h.headers.get(header::CONTENT_LENGTH).is_none());
}

#[test]
fn no_content_announcing_a_body_is_not_reused() {
    let ka = |t: &str, head_req: bool| {
        let mut buf = BytesMut::from(t.as_bytes());
        let h = parse_response_head(&mut buf, head_req).unwrap().unwrap();
        assert_eq!(h.framing, BodyFraming::Empty);
        h.keep_alive
    };
    assert!(ka("HTTP/1.1 204 No Content\r\n\r\n", false));
    assert!(ka("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false));
    assert!(!ka("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false));
    assert!(!ka(
        "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
        false
    ));
    assert!(ka(
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        false
    ));
    assert!(ka("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true), "HEAD");
    assert!(
        ka("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true),
        "HEAD"
    );
}

#[test]
fn connection_cannot_remove_response_framing() {
    let h = head(
        "HTTP/1.1 200 OK\r\nConnection: content-length, x-gone\r\nContent-Length: 2\r\nX-Gone: 1\r\n\r\n",
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.headers.get(header::CONTENT_LENGTH).unwrap(), "2");
    assert!(h.headers.get("x-gone").is_none());
}

#[test]
fn reuse_after_the_exchange() {
    let clean = ExchangeEnd {
        body_done: true,
        head_allows: true,
        failed: false,
        request_sent: true,
        leftover: false,
    };
    assert!(reusable_after_exchange(clean));
    for spoiled in [
        ExchangeEnd {
            body_done: false,
            ..clean
        },
        ExchangeEnd {
            head_allows: false,
            ..clean
        },
        ExchangeEnd {
            failed: true,
            ..clean
        },
        ExchangeEnd {
            request_sent: false,
            ..clean
        },
        ExchangeEnd {
            leftover: true,
            ..clean
        },
    ] {
        assert!(!reusable_after_exchange(spoiled), "{spoiled:?}");
    }
}

proptest! {
    /// The head rules only ever take reuse away: `Connection: close`, HTTP/1.0 without
    /// keep-alive, a close-delimited body each forbid it whatever else is set.
    #[test]
    fn head_rules_are_restrictive(
        http10 in any::<bool>(), close in any::<bool>(), keep_alive in any::<bool>(),
        te in any::<bool>(), cl in any::<bool>(), nonzero in any::<bool>(),
        head_request in any::<bool>(), status in prop_oneof![Just(200u16), Just(204), Just(304)],
        framing in prop_oneof![Just(BodyFraming::Empty), Just(BodyFraming::Length(3)), Just(BodyFraming::Chunked), Just(BodyFraming::UntilClose)],
    ) {
        let f = HeadFacts { http10, close, keep_alive, transfer_encoding: te, content_length: cl || nonzero, nonzero_length: nonzero };
        let status = StatusCode::from_u16(status).unwrap();
        let reused = reusable_after_head(status, head_request, f, framing);
        if close || (http10 && !keep_alive) || (http10 && te) || (te && (cl || nonzero)) || framing == BodyFraming::UntilClose {
            prop_assert!(!reused);
        }
        if !close && !http10 && !te && !cl && !nonzero && framing != BodyFraming::UntilClose {
            prop_assert!(reused);
        }
    }
}

fn decode_all(decoder: &mut BodyDecoder, pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), ResponseError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for p in pieces {
        buf.extend_from_slice(p);
        loop {
            match decoder.step(&mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::NeedMore => break,
                Step::Done => return Ok((out, buf.is_empty())),
            }
        }
    }
    Ok((out, false))
}

#[test]
fn decodes_chunked_with_extensions_and_trailers() {
    let mut d = BodyDecoder::new(BodyFraming::Chunked);
    let (out, done) = decode_all(
        &mut d,
        &[b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"],
    )
    .unwrap();
    assert_eq!(out, b"hello world");
    assert!(done && d.is_done());
}

#[test]
fn rejects_bad_chunks() {
    let bad: [&[u8]; 3] = [b"zz\r\n", b"3\r\nabcX\r\n", b"ffffffffffffffffffff\r\n"];
    for b in bad {
        let mut d = BodyDecoder::new(BodyFraming::Chunked);
        assert_eq!(
            decode_all(&mut d, &[b]).unwrap_err(),
            ResponseError::BadChunk,
            "{b:?}"
        );
    }
    let mut d = BodyDecoder::new(BodyFraming::Chunked);
    let long = vec![b'1'; MAX_CHUNK_LINE + 1];
    assert_eq!(decode_all(&mut d, &[&long]).unwrap_err(), ResponseError::BadChunk);
}

/// Decodes `wire` whole and one byte at a time; both must agree.
fn decode_both_ways(wire: &[u8]) -> Result<(Vec<u8>, bool), ResponseError> {
    let whole = decode_all(&mut BodyDecoder::new(BodyFraming::Chunked), &[wire]);
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    let byte_by_byte = decode_all(&mut BodyDecoder::new(BodyFraming::Chunked), &bytes);
    assert_eq!(whole, byte_by_byte, "{:?}", String::from_utf8_lossy(wire));
    whole
}

/// Regressions found by fuzzing (docs/fuzzing.md): httparse's leniencies in chunk-size lines,
/// trailer lines read up to a bare LF, and limits that held only for bytes arriving piecemeal.
#[test]
fn chunk_lines_end_in_crlf_and_have_a_size() {
    for bad in [
        // No digits: httparse reads size 0, which would end the body here.
        &b"\r\nGET /smuggled HTTP/1.1\r\n\r\n"[..],
        b";ext\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        // A bare LF in an extension, which a front proxy may take as the line's end.
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        b"5;a\n",
        // Trailer lines and the final empty line end in CR LF, with no bare CR.
        b"0\r\nX: a\n\r\n",
        b"0\r\nX: a\r\n\n",
        b"0\r\n\n",
        b"0\r\nX: a\rb\r\n\r\n",
    ] {
        assert_eq!(decode_both_ways(bad), Err(ResponseError::BadChunk), "{bad:?}");
    }
    let good = b"5 ;a=b\r\nhello\r\n0;x\r\nX-T: 1\r\n\r\n";
    assert_eq!(decode_both_ways(good), Ok((b"hello".to_vec(), true)));
}

#[test]
fn chunk_limits_hold_however_the_bytes_arrive() {
    // A 100-digit size, and an endless extension.
    let digits = [b'1'; 100];
    assert_eq!(decode_both_ways(&digits), Err(ResponseError::BadChunk));
    let endless = [&b"5;"[..], &[b'x'; MAX_CHUNK_LINE]].concat();
    assert_eq!(decode_both_ways(&endless), Err(ResponseError::BadChunk));
    // A chunk-size line over the limit that arrives whole was taken before.
    let line = |len: usize| {
        let mut w = b"5;".to_vec();
        w.resize(len - 2, b'x');
        w.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        w
    };
    assert_eq!(
        decode_both_ways(&line(MAX_CHUNK_LINE)),
        Ok((b"hello".to_vec(), true))
    );
    assert_eq!(
        decode_both_ways(&line(MAX_CHUNK_LINE + 1)),
        Err(ResponseError::BadChunk)
    );
    // The trailer section, its final empty line included.
    let trailers = |len: usize| {
        let mut w = b"0\r\nX: ".to_vec();
        w.resize(3 + len - 4, b't');
        w.extend_from_slice(b"\r\n\r\n");
        w
    };
    assert_eq!(decode_both_ways(&trailers(MAX_TRAILERS)), Ok((Vec::new(), true)));
    assert_eq!(
        decode_both_ways(&trailers(MAX_TRAILERS + 1)),
        Err(ResponseError::BadChunk)
    );
}

#[test]
fn length_body_stops_at_its_length() {
    let mut d = BodyDecoder::new(BodyFraming::Length(4));
    let mut buf = BytesMut::from(&b"abcdEXTRA"[..]);
    assert_eq!(d.step(&mut buf).unwrap(), Step::Data(Bytes::from_static(b"abcd")));
    assert_eq!(d.step(&mut buf).unwrap(), Step::Done);
    assert_eq!(&buf[..], b"EXTRA");
}

proptest! {
    /// However a chunked body is split across reads, the decoder yields the same bytes.
    #[test]
    fn chunked_decoding_ignores_read_boundaries(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut wire = Vec::new();
        let mut body = Vec::new();
        for c in &chunks {
            wire.extend_from_slice(&chunk_size_line(c.len()));
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
            body.extend_from_slice(c);
        }
        wire.extend_from_slice(LAST_CHUNK);
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        at.push(0);
        at.push(wire.len());
        at.sort_unstable();
        let pieces: Vec<&[u8]> = at.windows(2).map(|w| &wire[w[0]..w[1]]).collect();
        let mut d = BodyDecoder::new(BodyFraming::Chunked);
        let (out, clean) = decode_all(&mut d, &pieces).unwrap();
        prop_assert_eq!(out, body);
        prop_assert!(clean && d.is_done());
    }
}
