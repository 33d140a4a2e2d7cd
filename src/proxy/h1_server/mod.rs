//! Ringway's own HTTP/1.1 server side of client connections (plain and TLS alike): reads request
//! heads with `httparse` into buffers that exist only while a request is read or its response
//! written, so that an idle keep-alive connection parks in a few hundred bytes.
//!
//! Owns: the life of one HTTP/1.x client connection after its prelude (framing, pipelining,
//! `Expect: 100-continue`, keep-alive, handing upgrades to the tunnel).
//! Must not touch: routing and forwarding (forward.rs), timeouts' bookkeeping (conn_state.rs).

pub mod head;
