//! The HTTP/2 settings of a listener's client connections (with Ringway's limits, see
//! `h2_server::settings`), and the executor that runs hyper's client tasks on the worker's own
//! thread.
//!
//! Must not touch: serving a connection (server.rs, h2_server.rs).

use std::future::Future;

use crate::config::Limits;

/// Runs hyper's tasks (upstream HTTP/2 connections) on the worker's own thread.
#[derive(Clone, Copy, Debug)]
pub(super) struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// The HTTP connection settings of one listener, shared by its connections.
pub(super) struct Protocols {
    pub(super) http2: h2::server::Builder,
}

impl Protocols {
    pub(super) fn new(limits: &Limits) -> Protocols {
        Protocols {
            http2: super::h2_server::settings(limits),
        }
    }
}
