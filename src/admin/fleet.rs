//! The admin API in cluster mode: changes go to etcd first and are answered once this
//! instance's watch has applied them; `GET /api/v1/cluster` lists the fleet.
//!
//! Owns: the mapping of a change that etcd did not take to its answer (409 for a concurrent
//! change of the same key, 503 when etcd is down, has no quorum or is slower than
//! `[cluster] timeout`). Must not touch: how values are applied (`cluster::apply`), etcd itself.

use http::StatusCode;
use serde::Serialize;

use super::http::ApiError;
use crate::cluster::keys::Key;
use crate::cluster::{ChangeError, Cluster};

/// Writes `value` at `key` (if still at `expected`) and waits until this instance applied it.
pub async fn change<T: Serialize>(
    cluster: &Cluster,
    key: &Key,
    value: &T,
    expected: i64,
) -> Result<(), ApiError> {
    cluster
        .change(key, value, expected)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            ChangeError::Conflict => ApiError::conflict(
                "changed at the same moment through another instance; read it again and retry",
            ),
            ChangeError::Unavailable(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("etcd did not take the change ({e}); nothing was applied"),
            ),
            ChangeError::NoAnswer(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "etcd did not take the change in time ({e}); nothing was applied here, but \
                     should etcd still commit it late, every instance applies it: read it back \
                     before trying again"
                ),
            ),
        })
}
