//! `POST /api/v1/reload`: re-read the configuration file and answer what happened.
//!
//! Owns: the reload answer's JSON. Must not touch: how a reload is done (`proxy::Engine`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::json_response;
use crate::proxy::Engine;

/// Reloads from the file; 200 with a summary (counts, listener changes, and `notes` on what the
/// reload did not apply), or 422 with every error (the old config serves on).
pub fn answer(engine: &Engine) -> Response<Full<Bytes>> {
    match engine.reload_from_file("api") {
        Ok(s) => json_response(
            StatusCode::OK,
            &json!({
                "result": "reloaded",
                "routes": s.routes,
                "pools": s.pools,
                "listeners": s.listeners,
                "notes": s.notes,
            }),
        ),
        Err(errors) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"error": {"status": 422, "message": "configuration refused; the running one keeps serving", "errors": errors}}),
        ),
    }
}
