//! Fuzzes the request-head parser: `find_head_end` over any reads of the input, then
//! `parse_request_head`. It must never panic, every split must give the same answer as the
//! whole, and a head it accepts must hold the framing invariants (ringway_fuzz::check_accepted),
//! including one unambiguous framing once forwarded.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringway::proxy::h1_server::head::{HeadEnd, find_head_end, parse_request_head};
use ringway_fuzz::{check_accepted, cuts, every_byte, feed_head};

fuzz_target!(|data: &[u8]| {
    // The usual limit, and a small one that the fuzzer's short inputs reach (414 and 431).
    let small = 16 + data.first().map_or(0, |&b| usize::from(b));
    for max in [8192, small] {
        let whole = find_head_end(data, 0, max);
        assert_eq!(feed_head(data, &cuts(data), max), whole, "split reads, max {max}");
        assert_eq!(
            feed_head(data, &every_byte(data), max),
            whole,
            "byte reads, max {max}"
        );
        match whole {
            HeadEnd::Complete(n) => {
                assert!(n <= max && n <= data.len());
                assert!(data[..n].ends_with(b"\n\n") || data[..n].ends_with(b"\n\r\n"));
                match parse_request_head(Bytes::copy_from_slice(&data[..n])) {
                    Ok(head) => {
                        // The head ends where httparse says: nothing of it is taken as body.
                        let mut lines = [httparse::EMPTY_HEADER; 100];
                        let mut req = httparse::Request::new(&mut lines);
                        assert_eq!(req.parse(data), Ok(httparse::Status::Complete(n)));
                        check_accepted(&head);
                    }
                    Err(r) => assert!(
                        matches!(r.status.as_u16(), 400 | 405 | 414 | 417 | 431 | 501),
                        "{r:?}"
                    ),
                }
            }
            HeadEnd::TooLarge(r) => assert!(matches!(r.status.as_u16(), 400 | 414 | 431), "{r:?}"),
            HeadEnd::Partial => assert!(data.len() < max),
        }
    }
    // The parser alone, on bytes no delimiter chose.
    if let Ok(head) = parse_request_head(Bytes::copy_from_slice(data)) {
        check_accepted(&head);
    }
});
