//! The HTTP/2 settings of a listener's client connections: hyper's HTTP/2 builder with Ringway's
//! limits (the HTTP/2 ones that keep one client from costing the others), and the
//! executor that runs hyper's tasks on the worker's own thread.
//!
//! Must not touch: serving a connection (server.rs).

use std::future::Future;

use crate::config::Limits;

/// Runs hyper's tasks (HTTP/2 streams, upstream connections) on the worker's own thread.
#[derive(Clone, Copy, Debug)]
pub(super) struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// The HTTP connection settings of one listener, shared by its connections.
pub(super) struct Protocols {
    pub(super) http2: hyper::server::conn::http2::Builder<LocalExec>,
}

impl Protocols {
    pub(super) fn new(limits: &Limits) -> Protocols {
        let mut http2 = hyper::server::conn::http2::Builder::new(LocalExec);
        h2_limits(&mut http2, limits);
        Protocols { http2 }
    }
}

/// Streams a client may have open at once on one HTTP/2 connection (nginx: 128, HAProxy: 100).
pub const H2_MAX_STREAMS: u32 = 256;

/// The limits that keep one HTTP/2 client from costing the others (see docs/operations.md).
fn h2_limits<B: H2Limits>(b: &mut B, limits: &Limits) {
    b.set_limits(
        H2_MAX_STREAMS,
        // Streams the client resets before they are served: over 20 is the rapid reset attack
        // (CVE-2023-44487), answered with GOAWAY ENHANCE_YOUR_CALM.
        20,
        // Streams Ringway had to reset for the client's errors.
        1024,
        u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX),
    );
}

/// The HTTP/2 limits as one call.
trait H2Limits {
    fn set_limits(&mut self, streams: u32, client_resets: usize, local_resets: usize, header_list: u32);
}

impl H2Limits for hyper::server::conn::http2::Builder<LocalExec> {
    fn set_limits(&mut self, streams: u32, client_resets: usize, local_resets: usize, header_list: u32) {
        self.max_concurrent_streams(streams)
            .max_pending_accept_reset_streams(client_resets)
            .max_local_error_reset_streams(local_resets)
            .max_header_list_size(header_list);
    }
}
