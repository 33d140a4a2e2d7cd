//! The real client's address behind trusted HTTP proxies (`trusted_proxies`, nginx's
//! `set_real_ip_from`).

use std::net::IpAddr;

use http::HeaderMap;

/// The client a request is from: `peer` itself, unless `peer` is in `trusted`, in which case
/// the right-most untrusted entry of `X-Forwarded-For` (or `Forwarded`).
pub fn real_client(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let _ = (headers, trusted);
    peer
}
