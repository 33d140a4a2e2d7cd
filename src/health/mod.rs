//! Health: active checks, passive ejection and slow start, off the request path.
//!
//! Owns: the checker thread and the decisions that move a server's health, ejection and
//! slow-start ramp. Must not touch the request path beyond the atomics of `proxy::state::Server`.

use std::sync::Arc;

use crate::proxy::server::Shared;

/// Starts the health thread: active checks, ejection timers and slow-start ramps of every pool.
pub fn start(_shared: Arc<Shared>) -> std::io::Result<()> {
    Ok(())
}
