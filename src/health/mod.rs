//! Health: active checks, passive ejection and slow start, off the request path.
//!
//! Owns: the checker thread and the decisions that move a server's health, ejection and
//! slow-start ramp, and the logging of upstream failures. Must not touch the request path beyond
//! the atomics of `proxy::state::Server` (the request path calls [`upstream_failed`] and
//! [`upstream_answered`], which cost one relaxed atomic in the common case).
//!
//! Pure parts, without tokio, sockets or clock: [`rise_fall`] (the counter), [`ramp`] (slow
//! start), [`eject`] (the ejection rule), [`expect`] (judging an answer). Adapters: [`check`]
//! (one check over the network), [`supervisor`] (the thread), [`passive`] and [`failure_log`]
//! (the request path's side), [`events`] (applying and logging changes).

use std::fmt::Display;
use std::sync::Arc;

use crate::proxy::server::Shared;
use crate::proxy::state::{Pool, Server};

pub mod check;
pub mod eject;
pub mod events;
pub mod expect;
pub mod failure_log;
pub mod passive;
pub mod ramp;
pub mod rise_fall;
pub mod supervisor;

/// Starts the health thread: active checks, ejection timers and slow-start ramps of every pool.
pub fn start(shared: Arc<Shared>) -> std::io::Result<()> {
    supervisor::start(shared)
}

/// The request path: an attempt on `server` failed before a usable answer (connect refused or
/// timed out, reset, no or bad response, response timeout). Logs it (rate-limited) and counts it
/// towards passive ejection.
#[cold]
pub fn upstream_failed(pool: &Pool, server: &Server, what: &dyn Display) {
    failure_log::upstream_failure(pool, server, what);
    passive::on_failure(pool, server);
}

/// The request path: `server` answered with `status` (a 5xx counts towards passive ejection,
/// anything else ends a run of failures).
#[inline]
pub fn upstream_answered(pool: &Pool, server: &Server, status: u16) {
    passive::on_answer(pool, server, status);
}
