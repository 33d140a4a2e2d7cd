//! Tests of a route's run-time maintenance: when it is on, the `Retry-After` it gives, the
//! allow list, the page, and how a reload carries the switch over.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn config(enabled: bool, windows: &[&str]) -> MaintenanceConfig {
    MaintenanceConfig {
        enabled,
        allow: vec!["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))],
        windows: windows
            .iter()
            .map(|w| w.parse().unwrap_or_else(|e| panic!("{e}")))
            .collect(),
        page: None,
        retry_after: Duration::from_secs(600),
    }
}

fn built(cfg: &MaintenanceConfig) -> Maintenance {
    Maintenance::build(cfg, None).unwrap_or_else(|e| panic!("{e}"))
}

fn by_api(enabled: bool, until: Option<Timestamp>, retry_after: Option<Duration>) -> SwitchState {
    SwitchState {
        enabled,
        until,
        retry_after,
        by_api: true,
    }
}

#[test]
fn off_costs_no_clock_and_answers_nothing() {
    let m = built(&config(false, &[]));
    let clock = Clock::system();
    assert!(
        m.answer("192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])), &clock)
            .is_none()
    );
    assert_eq!(m.active(ts("2026-11-30T12:00:00Z")), None);
}

#[test]
fn retry_after_by_hand_by_window_and_both() {
    let now = ts("2026-11-29T02:30:00Z"); // a Sunday
    // By hand (the file's `enabled`): the file's retry_after.
    let m = built(&config(true, &[]));
    let a = m.active(now).unwrap_or_else(|| panic!("on"));
    assert!(a.by_hand && a.window_end.is_none() && a.ends.is_none());
    assert_eq!(a.retry_after_secs, 600);
    // The API's retry_after, then its `until` (rounded up to whole seconds).
    m.switch
        .store(Arc::new(by_api(true, None, Some(Duration::from_secs(90)))));
    assert_eq!(m.active(now).map(|a| a.retry_after_secs), Some(90));
    m.switch
        .store(Arc::new(by_api(true, Some(ts("2026-11-29T02:31:00.200Z")), None)));
    let a = m.active(now).unwrap_or_else(|| panic!("on"));
    assert_eq!(
        (a.retry_after_secs, a.ends),
        (61, Some(ts("2026-11-29T02:31:00.200Z")))
    );
    // Once `until` has passed, the switch is off.
    assert_eq!(m.active(ts("2026-11-29T02:31:00.200Z")), None);

    // In a window: seconds to its end.
    let m = built(&config(false, &["sun 02:00-04:00 UTC"]));
    let a = m.active(now).unwrap_or_else(|| panic!("in the window"));
    assert!(!a.by_hand);
    assert_eq!(a.ends, Some(ts("2026-11-29T04:00:00Z")));
    assert_eq!(a.retry_after_secs, 90 * 60);
    assert_eq!(m.active(ts("2026-11-29T04:00:00Z")), None);
    // By hand and in a window: the later end.
    m.switch
        .store(Arc::new(by_api(true, None, Some(Duration::from_secs(60)))));
    let a = m.active(now).unwrap_or_else(|| panic!("on"));
    assert_eq!((a.retry_after_secs, a.ends), (90 * 60, None));
    m.switch
        .store(Arc::new(by_api(true, Some(ts("2026-11-29T05:00:00Z")), None)));
    let a = m.active(now).unwrap_or_else(|| panic!("on"));
    assert_eq!(
        (a.retry_after_secs, a.ends),
        (150 * 60, Some(ts("2026-11-29T05:00:00Z")))
    );
    // Switched off by hand, the window still holds.
    m.switch.store(Arc::new(by_api(false, None, None)));
    assert_eq!(m.active(now).map(|a| a.retry_after_secs), Some(90 * 60));
}

#[test]
fn the_answer_and_the_allow_list() {
    let m = built(&config(false, &["sun 02:00-04:00 UTC"]));
    let clock = Clock::system();
    clock.set(ts("2026-11-29T03:59:59.500Z"));
    let outside: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let r = m.answer(outside, &clock).unwrap_or_else(|| panic!("503"));
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    for inside in ["10.1.2.3", "::ffff:10.1.2.3"] {
        let ip: IpAddr = inside.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(m.answer(ip, &clock).is_none(), "{inside} is allowed");
    }
    clock.set(ts("2026-11-29T04:00:00Z"));
    assert!(m.answer(outside, &clock).is_none());
}

#[test]
fn a_reload_keeps_the_switch_unless_the_file_changes_it() {
    let old = built(&config(false, &[]));
    old.switch
        .store(Arc::new(by_api(true, None, Some(Duration::from_secs(60)))));
    // The same `enabled` in the file: the API's switch stays, shared by both snapshots.
    let kept = Maintenance::build(&config(false, &["sun 02:00-04:00 UTC"]), Some(&old))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(Arc::ptr_eq(&kept.switch, &old.switch));
    assert!(kept.switch.load().by_api);
    // The file now says `enabled = true`: its word is the latest, on a switch of its own.
    let changed = Maintenance::build(&config(true, &[]), Some(&kept)).unwrap_or_else(|e| panic!("{e}"));
    assert!(!Arc::ptr_eq(&changed.switch, &kept.switch));
    assert_eq!(**changed.switch.load(), SwitchState::from_file(true));
    assert!(kept.switch.load().enabled, "the running snapshot is not touched");
}

#[test]
fn the_page_is_read_once_and_bounded() {
    let dir = std::env::temp_dir().join(format!("ringway-maint-page-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
    let page = dir.join("down.html");
    std::fs::write(&page, "<h1>Back soon</h1>").unwrap_or_else(|e| panic!("write: {e}"));
    let mut cfg = config(true, &[]);
    cfg.page = Some(page.clone());
    let m = built(&cfg);
    // Changing the file afterwards changes nothing until the next load.
    std::fs::write(&page, "changed").unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(m.page.as_deref(), Some(&b"<h1>Back soon</h1>"[..]));
    let r = m.response(30);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(r.headers()[header::RETRY_AFTER], "30");

    cfg.page = Some(dir.join("missing.html"));
    let e = Maintenance::build(&cfg, None).err().unwrap_or_default();
    assert!(e.contains("missing.html cannot be read"), "{e}");
    let big = dir.join("big.html");
    std::fs::write(&big, vec![b'x'; MAX_PAGE_BYTES as usize + 1]).unwrap_or_else(|e| panic!("write: {e}"));
    cfg.page = Some(big);
    let e = Maintenance::build(&cfg, None).err().unwrap_or_default();
    assert!(e.contains("larger than 1024 KiB"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn seconds_round_up_and_never_reach_zero() {
    let now = ts("2026-11-29T00:00:00Z");
    assert_eq!(seconds_until(now, ts("2026-11-29T00:00:00.001Z")), 1);
    assert_eq!(seconds_until(now, ts("2026-11-29T00:00:01Z")), 1);
    assert_eq!(seconds_until(now, ts("2026-11-29T00:00:01.001Z")), 2);
    assert_eq!(seconds_until(now, now), 1);
    assert_eq!(seconds_until(now, ts("2026-11-28T00:00:00Z")), 1);
}
