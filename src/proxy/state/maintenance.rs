//! A route's maintenance at run time: its schedule, allow list and page (read when the snapshot
//! is built, never per request), and the switch the admin API turns, which outlives reloads.
//!
//! Owns: whether a route answers 503 now ([`Maintenance::answer`]) and the `Retry-After` it
//! gives; the switch's state and how a reload carries it over. The request path reads the switch
//! with one `ArcSwap` load and the clock only when the route could be in maintenance (a switch
//! on, or windows configured). Must not touch: the schedule arithmetic (`route::maintenance`),
//! sockets, the configuration file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use jiff::{SignedDuration, Timestamp};

use crate::config::MaintenanceConfig;
use crate::proxy::body::ResponseBody;
use crate::proxy::clock::Clock;
use crate::proxy::proxy_protocol::contains;
use crate::route::maintenance::Schedule;

/// Largest maintenance page read into memory.
pub const MAX_PAGE_BYTES: u64 = 1024 * 1024;

/// The body answered when a route in maintenance has no `page`.
const DEFAULT_BODY: &str = "503 Service Unavailable: down for maintenance\n";

/// The switch of a route's maintenance by hand: from the file's `enabled`, or the admin API's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchState {
    /// In maintenance by hand.
    pub enabled: bool,
    /// With `enabled`: the switch turns itself off at this time.
    pub until: Option<Timestamp>,
    /// With `enabled` and no `until`: the `Retry-After` to give (`None`: the file's
    /// `retry_after`).
    pub retry_after: Option<Duration>,
    /// Set through the admin API (`false`: as the file says).
    pub by_api: bool,
}

impl SwitchState {
    /// The state the file's `enabled` gives.
    pub fn from_file(enabled: bool) -> SwitchState {
        SwitchState {
            enabled,
            until: None,
            retry_after: None,
            by_api: false,
        }
    }

    /// Whether the switch holds the route in maintenance at `now` (on, `until` not passed).
    pub fn on_at(&self, now: Timestamp) -> bool {
        self.enabled && self.until.is_none_or(|until| now < until)
    }
}

/// Why and how long a route is in maintenance at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    /// Switched on by hand (file or API) and not expired.
    pub by_hand: bool,
    /// The end of the current window (adjoining windows merged), if inside one.
    pub window_end: Option<Timestamp>,
    /// When the maintenance ends, if that is known: `None` while switched on by hand without
    /// `until`.
    pub ends: Option<Timestamp>,
    /// The `Retry-After` seconds: to the latest end known, or `retry_after` by hand.
    pub retry_after_secs: u64,
}

/// A route's maintenance, ready for the request path.
#[derive(Debug)]
pub struct Maintenance {
    /// Scheduled windows.
    pub schedule: Schedule,
    /// Clients that still pass.
    pub allow: Vec<ipnet::IpNet>,
    /// The page's bytes, read when the snapshot was built.
    pub page: Option<Bytes>,
    /// Where the page was read from.
    pub page_path: Option<PathBuf>,
    /// The file's `retry_after`.
    pub retry_after: Duration,
    /// The file's `enabled`, to tell on a reload whether the file changed it.
    file_enabled: bool,
    /// The switch, shared with the previous snapshot's route while the file's `enabled` stays.
    pub switch: Arc<ArcSwap<SwitchState>>,
}

impl Maintenance {
    /// Builds a route's maintenance from its table, reading the page now. The switch of
    /// `previous` (the same route in the running snapshot) is kept, with what the admin API
    /// set on it, unless the file's `enabled` changed: then the file's new value wins.
    pub fn build(cfg: &MaintenanceConfig, previous: Option<&Maintenance>) -> Result<Maintenance, String> {
        let page = match &cfg.page {
            None => None,
            Some(path) => Some(read_page(path)?),
        };
        let switch = match previous {
            Some(old) if old.file_enabled == cfg.enabled => old.switch.clone(),
            _ => Arc::new(ArcSwap::from_pointee(SwitchState::from_file(cfg.enabled))),
        };
        Ok(Maintenance {
            schedule: Schedule::new(cfg.windows.clone()),
            allow: cfg.allow.clone(),
            page,
            page_path: cfg.page.clone(),
            retry_after: cfg.retry_after,
            file_enabled: cfg.enabled,
            switch,
        })
    }

    /// Whether and why the route is in maintenance at `now` with the switch in `state`.
    pub fn active_with(&self, state: &SwitchState, now: Timestamp) -> Option<Active> {
        let by_hand = state.on_at(now);
        let window_end = self.schedule.is_in_window(now);
        if !by_hand && window_end.is_none() {
            return None;
        }
        let hand_end = by_hand.then_some(state.until).flatten();
        let ends = if by_hand && hand_end.is_none() {
            None
        } else {
            hand_end.max(window_end)
        };
        let hand_hint = by_hand.then(|| match hand_end {
            Some(until) => until,
            None => {
                let wait = state.retry_after.unwrap_or(self.retry_after);
                SignedDuration::try_from(wait)
                    .ok()
                    .and_then(|d| now.checked_add(d).ok())
                    .unwrap_or(Timestamp::MAX)
            }
        });
        let retry_at = hand_hint.max(window_end).unwrap_or(now);
        Some(Active {
            by_hand,
            window_end,
            ends,
            retry_after_secs: seconds_until(now, retry_at),
        })
    }

    /// [`Maintenance::active_with`] the switch as it is now.
    pub fn active(&self, now: Timestamp) -> Option<Active> {
        self.active_with(&self.switch.load(), now)
    }

    /// The answer for a request of `client` if the route is in maintenance for it: 503 with
    /// the page and `Retry-After`; `None` to let the route act as usual.
    pub fn answer(&self, client: IpAddr, clock: &Clock) -> Option<Response<ResponseBody>> {
        let state = self.switch.load();
        // Neither switched on nor scheduled: no clock read.
        if !state.enabled && self.schedule.is_empty() {
            return None;
        }
        let active = self.active_with(&state, clock.now())?;
        if contains(&self.allow, client) {
            return None;
        }
        Some(self.response(active.retry_after_secs))
    }

    /// 503 with the page (or a short text) and `Retry-After: secs`.
    pub fn response(&self, secs: u64) -> Response<ResponseBody> {
        let (body, content_type) = match &self.page {
            Some(page) => (ResponseBody::full(page.clone()), "text/html; charset=utf-8"),
            None => (
                ResponseBody::full(Bytes::from_static(DEFAULT_BODY.as_bytes())),
                "text/plain; charset=utf-8",
            ),
        };
        let mut r = Response::new(body);
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        // A cache in front must not keep serving the page once maintenance is over.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// Whole seconds from `now` to `at`, rounded up, at least 1 (`Retry-After: 0` invites a storm).
fn seconds_until(now: Timestamp, at: Timestamp) -> u64 {
    let ms = at.duration_since(now).as_millis().max(0);
    u64::try_from((ms + 999) / 1000).unwrap_or(u64::MAX).max(1)
}

/// Reads a maintenance page whole, refusing one over [`MAX_PAGE_BYTES`].
fn read_page(path: &std::path::Path) -> Result<Bytes, String> {
    use std::io::Read;
    let shown = path.display();
    let file =
        std::fs::File::open(path).map_err(|e| format!("maintenance page {shown} cannot be read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_PAGE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("maintenance page {shown} cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_PAGE_BYTES {
        return Err(format!(
            "maintenance page {shown} is larger than {} KiB; a page that size belongs on a static route",
            MAX_PAGE_BYTES / 1024
        ));
    }
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests;
