//! Route maintenance through the API: `GET` and `PUT /api/v1/routes/{route}/maintenance`, and
//! the `maintenance` view that `<route>` carries (status page included).
//!
//! Owns: validating a switch whole before applying it, applying it under `Shared::changes`,
//! and the JSON of a route's maintenance. Must not touch: the request path (the switch's
//! `ArcSwap` is its only interface), the schedule arithmetic (`route::maintenance`), the
//! configuration file.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::http::{ApiError, Resp, json_response, read_json};
use super::views::duration;
use super::{Admin, fleet};
use crate::cluster::keys::Key;
use crate::proxy::state::{Maintenance, Route, Snapshot, SwitchState};

/// `PUT …/maintenance`: the whole switch, replacing the one before (in cluster mode, also the
/// value of the route's key in etcd).
use crate::cluster::keys::MaintenanceValue as MaintenanceChange;

/// A jiff instant as the API writes times (RFC 3339, UTC, milliseconds, like `views::time`).
fn at(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The `maintenance` of `<route>` at `now`.
pub fn maintenance_view(m: &Maintenance, now: Timestamp) -> Value {
    let switch = m.switch.load();
    let active = m.active_with(&switch, now);
    let by_hand = switch.on_at(now);
    let next = m.schedule.next_window(now);
    json!({
        "active": active.is_some(),
        "enabled": by_hand,
        "in_window": active.is_some_and(|a| a.window_end.is_some()),
        "until": switch.until.filter(|_| by_hand).map(at),
        "retry_after": duration(switch.retry_after.unwrap_or(m.retry_after)),
        "set_by": if switch.by_api { "api" } else { "config" },
        "ends_at": active.and_then(|a| a.ends).map(at),
        "retry_after_s": active.map(|a| a.retry_after_secs),
        "windows": m.schedule.windows().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "next_window": next.map(|(start, end)| json!({"start": at(start), "end": at(end)})),
        "allow": m.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "page": m.page_path.as_ref().map(|p| p.display().to_string()),
    })
}

/// The route named `name` of `snapshot`, and its maintenance.
fn find<'a>(snapshot: &'a Snapshot, name: &str) -> Result<(&'a Route, &'a Maintenance), ApiError> {
    let route = snapshot.routes.iter().find(|r| r.name == name).ok_or_else(|| {
        let names: Vec<&str> = snapshot.routes.iter().map(|r| r.name.as_str()).collect();
        ApiError::not_found(format!("no route `{name}` (routes: {})", names.join(", ")))
    })?;
    let m = route.maintenance.as_deref().ok_or_else(|| {
        ApiError::conflict(format!(
            "route `{name}` has no [route.maintenance] table; add one to its configuration \
             (an empty table is enough) and reload"
        ))
    })?;
    Ok((route, m))
}

/// The answer with a route's maintenance.
fn answer(route: &Route, m: &Maintenance, now: Timestamp) -> Resp {
    let mut v = maintenance_view(m, now);
    v["route"] = json!(route.name);
    json_response(StatusCode::OK, &v)
}

/// `GET`: the route's maintenance now.
pub fn get(admin: &Admin, name: &str) -> Result<Resp, ApiError> {
    let snapshot = admin.engine.shared.snapshot.load();
    let (route, m) = find(&snapshot, name)?;
    Ok(answer(route, m, admin.engine.shared.clock.now()))
}

/// Checks a change against the clock; the switch it asks for.
fn switch_of(change: MaintenanceChange, now: Timestamp) -> Result<SwitchState, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let retry_after = change
        .retry_after
        .map(|s| {
            humantime::parse_duration(s.trim()).map_err(|e| {
                bad(format!(
                    "`retry_after` {s:?} is not a duration ({e}); write e.g. \"30m\" or \"2h\""
                ))
            })
        })
        .transpose()?;
    let until = change
        .until
        .map(|s| {
            s.trim().parse::<Timestamp>().map_err(|e| {
                bad(format!(
                    "`until` {s:?} is not an RFC 3339 time ({e}); write e.g. \"2026-12-01T06:00:00Z\""
                ))
            })
        })
        .transpose()?;
    if !change.enabled && (retry_after.is_some() || until.is_some()) {
        return Err(ApiError::invalid(
            "`retry_after` and `until` only go with \"enabled\": true",
        ));
    }
    if retry_after == Some(Duration::ZERO) {
        return Err(ApiError::invalid("`retry_after` must be longer than zero"));
    }
    if let Some(until) = until
        && until <= now
    {
        return Err(ApiError::invalid(format!(
            "`until` {} is not in the future (now: {})",
            at(until),
            at(now)
        )));
    }
    Ok(SwitchState {
        enabled: change.enabled,
        until,
        retry_after,
        by_api: true,
    })
}

/// `PUT`: switches the route's maintenance by hand; 200 with its maintenance as it is now.
pub async fn put(req: Request<Incoming>, admin: &Admin, name: &str) -> Result<Resp, ApiError> {
    let change: MaintenanceChange = read_json(req).await?;
    let shared = &admin.engine.shared;
    if let Some(cluster) = admin.engine.cluster.get() {
        // Checked here as standalone would, then written as asked: every instance parses it.
        switch_of(change.clone(), shared.clock.now())?;
        find(&shared.snapshot.load(), name)?;
        let key = Key::Maintenance {
            route: name.to_string(),
        };
        let (_, expected) = cluster.current::<MaintenanceChange>(&key);
        fleet::change(cluster, &key, &change, expected).await?;
        let snapshot = shared.snapshot.load();
        let (route, m) = find(&snapshot, name)?;
        return Ok(answer(route, m, shared.clock.now()));
    }
    let _changes = shared.changes.lock().unwrap_or_else(PoisonError::into_inner);
    let snapshot = shared.snapshot.load();
    let (route, m) = find(&snapshot, name)?;
    let now = shared.clock.now();
    let state = switch_of(change, now)?;
    let words = match (state.enabled, state.until) {
        (false, _) => "off".to_string(),
        (true, Some(until)) => format!("on until {}", at(until)),
        (true, None) => "on".to_string(),
    };
    m.switch.store(Arc::new(state));
    tracing::info!("route `{name}`: maintenance by hand {words} (admin API)");
    Ok(answer(route, m, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(enabled: bool, retry_after: Option<&str>, until: Option<&str>) -> MaintenanceChange {
        MaintenanceChange {
            enabled,
            retry_after: retry_after.map(str::to_string),
            until: until.map(str::to_string),
        }
    }

    #[test]
    fn switches_are_checked_whole() {
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap_or(Timestamp::UNIX_EPOCH);
        let s = switch_of(change(true, Some("30m"), Some("2026-11-30T14:00:00+01:00")), now)
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(s.retry_after, Some(Duration::from_secs(1800)));
        assert_eq!(
            s.until.map(|u| u.to_string()),
            Some("2026-11-30T13:00:00Z".into())
        );
        assert!(s.by_api && s.enabled);
        assert_eq!(at(now), "2026-11-30T12:00:00.000Z");
        let status = |c| switch_of(c, now).map(|_| ()).map_err(|e| e.status).err();
        assert_eq!(
            status(change(true, Some("soon"), None)),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(change(true, None, Some("tomorrow"))),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            status(change(true, None, Some("2026-11-30T11:00:00Z"))),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(
            status(change(false, Some("1h"), None)),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(
            status(change(true, Some("0s"), None)),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(status(change(false, None, None)), None);
    }
}
