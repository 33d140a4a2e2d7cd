//! Fuzzes the chunked body decoder (`h1::BodyDecoder`) with the input fed in arbitrary reads.
//! It must never panic, give the same answer however the input is split, never return more
//! body than it was given, never take a byte past the body's end, and never hold more than its
//! limits while waiting (a long chunk-size line or extension, endless trailers). A body it
//! accepts must be one the strict reading (ringway_fuzz::strict_chunked) accepts, with the
//! same data and the same end.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringway::proxy::h1::{BodyDecoder, BodyFraming, Chunk, Step};
use ringway_fuzz::{MAX_CHUNK_LINE, MAX_TRAILERS, cuts, every_byte, strict_chunked};

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The body ended after this many bytes of input.
    Done(usize),
    /// The input ran out first.
    NeedMore,
    /// The decoder refused the input.
    Failed,
}

/// Feeds `data` in the reads `ends` gives; the body bytes returned and how it ended.
fn decode(data: &[u8], ends: &[usize]) -> (Vec<u8>, End) {
    let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    for &end in ends {
        buf.extend_from_slice(&data[fed..end]);
        fed = end;
        loop {
            match decoder.step(&mut buf) {
                Ok(Step::Data(d)) => {
                    assert!(!d.is_empty(), "empty data step");
                    body.extend_from_slice(&d);
                }
                Ok(Step::NeedMore) => {
                    // What waits for more is bounded by the limits.
                    match decoder {
                        BodyDecoder::Chunked(Chunk::Size) => assert!(buf.len() <= MAX_CHUNK_LINE),
                        BodyDecoder::Chunked(Chunk::DataEnd) => assert!(buf.len() < 2),
                        BodyDecoder::Chunked(Chunk::Data(_)) => assert!(buf.is_empty()),
                        BodyDecoder::Chunked(Chunk::Trailers(seen)) => {
                            assert!(seen + buf.len() <= MAX_TRAILERS)
                        }
                        other => panic!("a chunked decoder became {other:?}"),
                    }
                    break;
                }
                Ok(Step::Done) => return (body, End::Done(fed - buf.len())),
                Err(_) => return (body, End::Failed),
            }
            assert!(body.len() <= fed, "more body than input");
        }
    }
    (body, End::NeedMore)
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(data, &[data.len()]);
    assert_eq!(decode(data, &cuts(data)), whole, "split reads");
    // A byte at a time for short inputs only: on each read the decoder looks again at the line
    // it holds (up to its 4 KiB and 16 KiB limits), and the fuzzer would crawl. The limits are
    // still crossed piecemeal by the split reads above.
    if data.len() <= 1024 {
        assert_eq!(decode(data, &every_byte(data)), whole, "byte reads");
    }
    assert!(whole.0.len() <= data.len());
    if let End::Done(end) = whole.1 {
        assert_eq!(
            strict_chunked(data),
            Some((whole.0, end)),
            "accepted, but not strictly"
        );
    }
});
