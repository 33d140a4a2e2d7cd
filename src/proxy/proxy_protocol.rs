//! The PROXY protocol (v1 and v2) on client connections: the header an outer load balancer
//! sends first, naming the client it accepted.
//!
//! Owns: reading and checking the header on a listener with `proxy_protocol = true`, the trust
//! list `proxy_protocol_from`, and the rate-limited log of refused connections. Must not touch:
//! TLS or HTTP; the caller goes on with the stream positioned just after the header.
//!
//! The header's format is parsed by the `ppp` crate. What is decided here is only where the
//! header ends in the bytes read so far ([`frame`]), so that exactly its bytes are taken from
//! the socket and whatever follows (a TLS ClientHello, an HTTP request sent in the same
//! segment) stays unread for the next layer.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ppp::v2;
use tokio::net::TcpStream;

/// The addresses a PROXY header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client, as the balancer in front saw it.
    pub source: SocketAddr,
    /// The address the client connected to.
    pub destination: SocketAddr,
}

/// Longest v1 header, CRLF included (the specification's own bound).
pub const V1_MAX: usize = 107;

/// The fixed part of a v2 header: signature, version and command, family, length.
const V2_FIXED: usize = 16;

/// Longest v2 header accepted: the fixed part and 1 KiB of addresses and TLVs. UNIX addresses
/// take 216 bytes; the TLVs cloud balancers add (AWS VPC endpoint id, Azure link id, GCP PSC
/// id, ALPN, authority) take tens. HAProxy's own limit is its buffer size; a header claiming
/// more than this is refused as oversized rather than buffered.
pub const V2_MAX: usize = V2_FIXED + 1024;

/// The v2 signature (12 bytes).
const V2_SIGNATURE: &[u8] = v2::PROTOCOL_PREFIX;

/// The start of every v1 header.
const V1_START: &[u8] = b"PROXY ";

/// Where a PROXY header ends in the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Every byte so far can still be the start of a header: read more.
    NeedMore,
    /// The header is the first `n` bytes.
    Complete(usize),
    /// The bytes do not start with a PROXY signature (plain HTTP, TLS, garbage).
    NotProxy,
    /// A v1 header without its CRLF within [`V1_MAX`] bytes, or a v2 header claiming more
    /// than [`V2_MAX`].
    Oversized,
    /// A v1 header whose CR is not followed by LF.
    BadEnd,
}

/// Decides where the PROXY header at the start of `bytes` ends. Pure, so that any split of a
/// header across reads gives the same answer once all of it is there.
pub fn frame(bytes: &[u8]) -> Frame {
    let Some(&first) = bytes.first() else {
        return Frame::NeedMore;
    };
    if first == V2_SIGNATURE[0] {
        let seen = bytes.len().min(V2_SIGNATURE.len());
        if bytes[..seen] != V2_SIGNATURE[..seen] {
            return Frame::NotProxy;
        }
        if bytes.len() < V2_FIXED {
            return Frame::NeedMore;
        }
        let total = V2_FIXED + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
        if total > V2_MAX {
            return Frame::Oversized;
        }
        return if bytes.len() < total {
            Frame::NeedMore
        } else {
            Frame::Complete(total)
        };
    }
    let seen = bytes.len().min(V1_START.len());
    if bytes[..seen] != V1_START[..seen] {
        return Frame::NotProxy;
    }
    let window = &bytes[..bytes.len().min(V1_MAX)];
    match memchr::memchr(b'\r', window) {
        // The CR must leave room for its LF within the bound.
        Some(cr) if cr + 2 > V1_MAX => Frame::Oversized,
        Some(cr) => match bytes.get(cr + 1) {
            None => Frame::NeedMore,
            Some(b'\n') => Frame::Complete(cr + 2),
            Some(_) => Frame::BadEnd,
        },
        None if bytes.len() >= V1_MAX - 1 => Frame::Oversized,
        None => Frame::NeedMore,
    }
}

/// Why a connection's PROXY header was refused.
#[derive(Debug)]
pub enum HeaderError {
    /// The peer is not in `proxy_protocol_from`.
    NotAllowed,
    /// The connection closed before sending anything (a TCP health check of the balancer in
    /// front, a port scan): not worth a warning.
    Empty,
    /// The connection does not start with a PROXY header.
    Missing,
    /// The connection closed in the middle of the header.
    Truncated,
    /// The header is longer than allowed.
    Oversized,
    /// The header is malformed (the parser's words).
    Invalid(String),
    /// The header names a family or transport Ringway cannot use (UNIX sockets, datagrams).
    Unsupported(&'static str),
    /// Reading the socket failed.
    Io(io::Error),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::NotAllowed => f.write_str("PROXY protocol peer not in proxy_protocol_from"),
            HeaderError::Empty => f.write_str("closed before a PROXY header"),
            HeaderError::Missing => f.write_str("no PROXY protocol header"),
            HeaderError::Truncated => f.write_str("PROXY header cut short"),
            HeaderError::Oversized => f.write_str("PROXY header too long"),
            HeaderError::Invalid(why) => write!(f, "invalid PROXY header: {why}"),
            HeaderError::Unsupported(what) => write!(f, "PROXY header for {what}, not supported"),
            HeaderError::Io(e) => write!(f, "reading the PROXY header: {e}"),
        }
    }
}

/// Whether `ip` is in `nets`, an IPv4-mapped IPv6 address (a dual-stack listener's view of an
/// IPv4 peer) counting as the IPv4 one.
pub fn contains(nets: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let canonical = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip) || n.contains(&canonical))
}

/// Reads the PROXY header at the start of `stream`, leaving the stream just after it.
/// `Ok(None)` for a LOCAL command (the balancer's own health check) or a v1 UNKNOWN / v2 UNSPEC
/// family: the socket's addresses apply. v2 TLVs are ignored.
///
/// The caller bounds the time (the listener's `header_timeout`).
pub async fn read_header(
    stream: &TcpStream,
    peer: SocketAddr,
    from: &[ipnet::IpNet],
) -> Result<Option<Addresses>, HeaderError> {
    if !from.is_empty() && !contains(from, peer.ip()) {
        return Err(HeaderError::NotAllowed);
    }
    // Header bytes are peeked, framed, and only then read: what follows the header stays in the
    // socket. Bytes that are known to belong to an unfinished header are taken out as they come,
    // so that the next peek waits for new bytes instead of returning the same ones at once.
    let mut buf = vec![0u8; V2_MAX];
    let mut have = 0;
    loop {
        let n = stream.peek(&mut buf[have..]).await.map_err(HeaderError::Io)?;
        if n == 0 {
            return Err(if have == 0 {
                HeaderError::Empty
            } else {
                HeaderError::Truncated
            });
        }
        match frame(&buf[..have + n]) {
            Frame::Complete(total) => {
                read_exact(stream, &mut buf[have..total]).await?;
                return parse(&buf[..total]);
            }
            Frame::NeedMore => {
                read_exact(stream, &mut buf[have..have + n]).await?;
                have += n;
            }
            Frame::NotProxy => return Err(HeaderError::Missing),
            Frame::Oversized => return Err(HeaderError::Oversized),
            Frame::BadEnd => return Err(HeaderError::Invalid("CR not followed by LF".into())),
        }
    }
}

/// Reads exactly `buf.len()` bytes that a peek has shown to be there.
async fn read_exact(stream: &TcpStream, buf: &mut [u8]) -> Result<(), HeaderError> {
    let mut done = 0;
    while done < buf.len() {
        stream.readable().await.map_err(HeaderError::Io)?;
        match stream.try_read(&mut buf[done..]) {
            Ok(0) => return Err(HeaderError::Truncated),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(HeaderError::Io(e)),
        }
    }
    Ok(())
}

/// The addresses of a complete header (exactly its bytes).
pub fn parse(header: &[u8]) -> Result<Option<Addresses>, HeaderError> {
    let pair = |s: IpAddr, sp: u16, d: IpAddr, dp: u16| {
        Some(Addresses {
            source: SocketAddr::new(s, sp),
            destination: SocketAddr::new(d, dp),
        })
    };
    if header.first() == Some(&V2_SIGNATURE[0]) {
        let h = v2::Header::try_from(header).map_err(|e| HeaderError::Invalid(e.to_string()))?;
        if h.command == v2::Command::Local {
            return Ok(None);
        }
        if h.protocol == v2::Protocol::Datagram {
            return Err(HeaderError::Unsupported("datagrams"));
        }
        return match h.addresses {
            v2::Addresses::Unspecified => Ok(None),
            v2::Addresses::IPv4(a) => Ok(pair(
                a.source_address.into(),
                a.source_port,
                a.destination_address.into(),
                a.destination_port,
            )),
            v2::Addresses::IPv6(a) => Ok(pair(
                a.source_address.into(),
                a.source_port,
                a.destination_address.into(),
                a.destination_port,
            )),
            v2::Addresses::Unix(_) => Err(HeaderError::Unsupported("UNIX sockets")),
        };
    }
    let h = ppp::v1::Header::try_from(header).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    match h.addresses {
        ppp::v1::Addresses::Unknown => Ok(None),
        ppp::v1::Addresses::Tcp4(a) => Ok(pair(
            a.source_address.into(),
            a.source_port,
            a.destination_address.into(),
            a.destination_port,
        )),
        ppp::v1::Addresses::Tcp6(a) => Ok(pair(
            a.source_address.into(),
            a.source_port,
            a.destination_address.into(),
            a.destination_port,
        )),
    }
}

/// At most one refused connection per listener is logged at `warn` in this time.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The rate limit of one listener's refusal log, shared by its workers (atomics, no lock).
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// When the last line was written, in ms since the process's first refusal + 1; 0 = never.
    logged_at: AtomicU64,
    /// Refusals since then that went to `debug` only.
    unlogged: AtomicU64,
}

impl RefusalLog {
    /// The refusal log of the listener named `name`: the same one for every worker and across
    /// reloads, so the limit holds per listener, not per worker.
    pub fn of(name: &str) -> std::sync::Arc<RefusalLog> {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};
        static ALL: OnceLock<Mutex<HashMap<String, Arc<RefusalLog>>>> = OnceLock::new();
        // Taken when a listener's context is built (start, reload), never per connection.
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.entry(name.to_owned()).or_default().clone()
    }

    /// Counts a refusal at `now` (ms, > 0); `Some(n)` if it is to be logged at `warn`, `n` being
    /// the refusals not logged since the last line.
    pub fn admit(&self, now: u64) -> Option<u64> {
        // The same window rule as upstream failures (`health::failure_log`).
        let last = self.logged_at.load(Ordering::Relaxed);
        if crate::health::failure_log::due(last, now, LOG_EVERY)
            && self
                .logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.unlogged.swap(0, Ordering::Relaxed))
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Milliseconds since the first call, plus one (so that 0 can mean "never").
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
}

/// Logs a refused connection: at `warn` at most once per listener every [`LOG_EVERY`], with
/// the number of refusals not logged meanwhile; the others at `debug`. A connection closed
/// before sending anything is only ever logged at `debug`.
pub fn log_refused(peer: SocketAddr, listener: &str, log: &RefusalLog, e: &HeaderError) {
    if matches!(e, HeaderError::Empty) {
        tracing::debug!("listener `{listener}`: connection from {peer} closed: {e}");
        return;
    }
    // A clock read per refused connection only: refusals are the slow path.
    match log.admit(now_ms()) {
        Some(0) => tracing::warn!("listener `{listener}`: connection from {peer} closed: {e}"),
        Some(more) => tracing::warn!(
            "listener `{listener}`: connection from {peer} closed: {e} ({more} more refused since the last report)"
        ),
        None => tracing::debug!("listener `{listener}`: connection from {peer} closed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v2_header(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    fn v2_tcp4() -> Vec<u8> {
        v2_header(1, 0x11, &[192, 0, 2, 1, 10, 0, 0, 1, 0x30, 0x39, 0, 80], &[])
    }

    fn v2_tcp6_with_tlv() -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&"2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap().octets());
        a.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        a.extend_from_slice(&[0x12, 0x34, 0x01, 0xbb]);
        // An AWS-style custom TLV (type 0xEA) and a NOOP.
        v2_header(
            1,
            0x21,
            &a,
            &[0xea, 0x00, 0x03, b'v', b'p', b'c', 0x04, 0x00, 0x00],
        )
    }

    const V1: &[u8] = b"PROXY TCP4 192.0.2.1 10.0.0.1 12345 80\r\n";

    #[test]
    fn frames_v1() {
        assert_eq!(frame(b""), Frame::NeedMore);
        assert_eq!(frame(b"PRO"), Frame::NeedMore);
        assert_eq!(frame(V1), Frame::Complete(V1.len()));
        let mut more = V1.to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(frame(&more), Frame::Complete(V1.len()));
        assert_eq!(
            frame(&V1[..V1.len() - 1]),
            Frame::NeedMore,
            "CR without its LF yet"
        );
        assert_eq!(frame(b"PROXY TCP4 1.2.3.4\rX"), Frame::BadEnd);
        assert_eq!(frame(b"GET / HTTP/1.1\r\n"), Frame::NotProxy);
        assert_eq!(frame(b"POST / HTTP/1.1\r\n"), Frame::NotProxy);
        assert_eq!(frame(b"PROXYTCP4"), Frame::NotProxy);
        assert_eq!(frame(&[0x16, 0x03, 0x01]), Frame::NotProxy, "a TLS ClientHello");
        let long = [b"PROXY ".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(frame(&long), Frame::Oversized);
        let mut at_limit = [b"PROXY ".as_slice(), &[b'a'; V1_MAX - 8]].concat();
        at_limit.extend_from_slice(b"\r\n");
        assert_eq!(
            frame(&at_limit),
            Frame::Complete(V1_MAX),
            "107 bytes is the most allowed"
        );
        let mut over = [b"PROXY ".as_slice(), &[b'a'; V1_MAX - 7]].concat();
        over.extend_from_slice(b"\r\n");
        assert_eq!(frame(&over), Frame::Oversized);
    }

    #[test]
    fn frames_v2() {
        let h = v2_tcp4();
        assert_eq!(frame(&h[..5]), Frame::NeedMore);
        assert_eq!(frame(&h[..15]), Frame::NeedMore);
        assert_eq!(frame(&h[..16]), Frame::NeedMore);
        assert_eq!(frame(&h), Frame::Complete(28));
        let mut bad = h.clone();
        bad[3] = b'X';
        assert_eq!(frame(&bad), Frame::NotProxy);
        assert_eq!(frame(b"\r\nGET"), Frame::NotProxy);
        let big = v2_header(1, 0x11, &[0; 12], &vec![0; V2_MAX]);
        assert_eq!(
            frame(&big[..16]),
            Frame::Oversized,
            "refused from the length alone"
        );
        let max = v2_header(1, 0x11, &[0; 12], &vec![0; V2_MAX - 28]);
        assert_eq!(frame(&max), Frame::Complete(V2_MAX));
    }

    #[test]
    fn parses_addresses() {
        let a = parse(V1).unwrap().unwrap();
        assert_eq!(a.source, "192.0.2.1:12345".parse().unwrap());
        assert_eq!(a.destination, "10.0.0.1:80".parse().unwrap());
        let a = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 4660 443\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(a.source, "[2001:db8::7]:4660".parse().unwrap());
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert_eq!(parse(b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n").unwrap(), None);
        let a = parse(&v2_tcp4()).unwrap().unwrap();
        assert_eq!(a.source, "192.0.2.1:12345".parse().unwrap());
        assert_eq!(a.destination, "10.0.0.1:80".parse().unwrap());
        let a = parse(&v2_tcp6_with_tlv()).unwrap().unwrap();
        assert_eq!(a.source, "[2001:db8::7]:4660".parse().unwrap());
        assert_eq!(a.destination, "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(parse(&v2_header(0, 0x00, &[], &[])).unwrap(), None, "LOCAL");
        assert_eq!(parse(&v2_header(1, 0x00, &[], &[])).unwrap(), None, "UNSPEC");
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n".as_slice(),
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HeaderError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            parse(&v2_header(1, 0x31, &[0; 216], &[])),
            Err(HeaderError::Unsupported(_))
        ));
        assert!(matches!(
            parse(&v2_header(1, 0x12, &[0; 12], &[])),
            Err(HeaderError::Unsupported(_))
        ));
        // Too short for its family.
        assert!(matches!(
            parse(&v2_header(1, 0x21, &[0; 12], &[])),
            Err(HeaderError::Invalid(_))
        ));
        // Version 1 in the binary form.
        let mut v = v2_tcp4();
        v[12] = 0x11;
        assert!(matches!(parse(&v), Err(HeaderError::Invalid(_))));
    }

    #[test]
    fn peers_and_mapped_addresses() {
        let nets: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(contains(&nets, "10.1.2.3".parse().unwrap()));
        assert!(contains(&nets, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!contains(&nets, "127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn one_warning_per_window() {
        let log = RefusalLog::default();
        assert_eq!(log.admit(1), Some(0));
        assert_eq!(log.admit(5), None);
        assert_eq!(log.admit(9_000), None);
        assert_eq!(log.admit(10_001), Some(2), "the two suppressed ones are counted");
        assert_eq!(log.admit(10_002), None);
        assert!(std::sync::Arc::ptr_eq(
            &RefusalLog::of("l1"),
            &RefusalLog::of("l1")
        ));
        assert!(!std::sync::Arc::ptr_eq(
            &RefusalLog::of("l1"),
            &RefusalLog::of("l2")
        ));
    }

    fn valid_header() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<[u8; 4]>(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| {
                format!(
                    "PROXY TCP4 {} {} {sp} {dp}\r\n",
                    std::net::Ipv4Addr::from(s),
                    std::net::Ipv4Addr::from(d)
                )
                .into_bytes()
            }),
            (any::<[u8; 16]>(), any::<[u8; 16]>(), any::<u16>(), any::<u16>()).prop_map(|(s, d, sp, dp)| {
                format!(
                    "PROXY TCP6 {} {} {sp} {dp}\r\n",
                    std::net::Ipv6Addr::from(s),
                    std::net::Ipv6Addr::from(d)
                )
                .into_bytes()
            }),
            (any::<[u8; 12]>(), proptest::collection::vec(any::<u8>(), 0..200))
                .prop_map(|(a, tlvs)| v2_header(1, 0x11, &a, &tlvs)),
            (any::<[u8; 36]>(), proptest::collection::vec(any::<u8>(), 0..200))
                .prop_map(|(a, tlvs)| v2_header(1, 0x21, &a, &tlvs)),
            Just(v2_header(0, 0x00, &[], &[])),
            Just(b"PROXY UNKNOWN\r\n".to_vec()),
        ]
    }

    proptest! {
        /// However a valid header is split across reads, and whatever follows it, the framing
        /// asks for more until all of it is there and then ends exactly at its end.
        #[test]
        fn any_split_of_a_valid_header_frames_the_same(
            header in valid_header(),
            rest in proptest::collection::vec(any::<u8>(), 0..64),
            cut in any::<usize>(),
        ) {
            let n = header.len();
            for len in 0..n {
                prop_assert_eq!(frame(&header[..len]), Frame::NeedMore);
            }
            let mut wire = header.clone();
            wire.extend_from_slice(&rest);
            let cut = n + cut % (rest.len() + 1);
            prop_assert_eq!(frame(&wire[..cut]), Frame::Complete(n));
            prop_assert_eq!(frame(&wire), Frame::Complete(n));
            prop_assert!(parse(&wire[..n]).is_ok());
        }

        /// Framing never panics, and a decision other than "need more" stays the same however
        /// many more bytes arrive.
        #[test]
        fn decisions_are_final(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            more in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let first = frame(&bytes);
            let mut longer = bytes.clone();
            longer.extend_from_slice(&more);
            if first != Frame::NeedMore {
                prop_assert_eq!(frame(&longer), first);
            }
            if let Frame::Complete(n) = first {
                let _ = parse(&bytes[..n]);
            }
        }
    }
}
