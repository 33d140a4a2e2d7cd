//! Tests of the window syntax and the schedule: across midnight, across the week end, both DST
//! changes in Europe/Paris and in America/New_York, and properties over random windows.

use jiff::Timestamp;
use proptest::prelude::*;

use super::*;

fn w(s: &str) -> Window {
    Window::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn schedule(windows: &[&str]) -> Schedule {
    Schedule::new(windows.iter().map(|s| w(s)).collect())
}

#[test]
fn the_syntax() {
    for ok in [
        "sun 02:00-04:00 UTC",
        "mon-fri 01:00-01:30 Europe/Paris",
        "Sat 00:00-24:00 UTC",
        "sun 04:00-02:00 UTC",
        "fri-mon 23:00-01:00 America/New_York",
        "SUN 23:00-00:00 europe/paris",
    ] {
        assert!(Window::parse(ok).is_ok(), "{ok}: {:?}", Window::parse(ok));
    }
    for bad in [
        "sunday 02:00-04:00 UTC",
        "sun 02:00-04:00",
        "sun 2:00-04:00 UTC",
        "sun 02:00-24:30 UTC",
        "sun 02:60-03:00 UTC",
        "sun 02:00 UTC",
        "sun- 02:00-03:00 UTC",
        "sun 02:00-03:00 UTC extra",
        "",
    ] {
        assert!(Window::parse(bad).is_err(), "{bad}");
    }
    let err = |s: &str| Window::parse(s).err().unwrap_or_default();
    assert_eq!(
        err("sun 02:00-04:00 Mars/Olympus_Mons"),
        "invalid maintenance window \"sun 02:00-04:00 Mars/Olympus_Mons\": unknown time zone \
         `Mars/Olympus_Mons`; write an IANA name such as \"Europe/Paris\" or \"America/New_York\", or \"UTC\""
    );
    assert_eq!(
        err("sun 03:00-03:00 UTC"),
        "invalid maintenance window \"sun 03:00-03:00 UTC\": it starts and ends at the same time; \
         write 00:00-24:00 for a whole day"
    );
    assert!(err("sun 24:00-01:00 UTC").contains("cannot start at 24:00"));
    assert_eq!(
        err("Sunday 02:00-04:00 UTC"),
        "invalid maintenance window \"Sunday 02:00-04:00 UTC\": `sunday` is not a day (mon, tue, wed, thu, fri, sat, sun)"
    );
    assert_eq!(w("sun 02:00-04:00 UTC").to_string(), "sun 02:00-04:00 UTC");
    assert_eq!(w("sat 23:00-01:00 UTC").nominal_minutes(), 120);
    assert_eq!(w("sat 00:00-24:00 UTC").nominal_minutes(), 1440);
}

#[test]
fn the_built_in_zone_database_answers_without_the_system_one() {
    // Where the system has no /usr/share/zoneinfo, jiff falls back on the copy built in.
    let db = jiff::tz::TimeZoneDatabase::bundled();
    let paris = Window::parse_in("sun 02:00-04:00 Europe/Paris", &db).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        paris.next_window(ts("2026-03-28T12:00:00Z")),
        Some((ts("2026-03-29T01:00:00Z"), ts("2026-03-29T02:00:00Z")))
    );
    assert!(Window::parse_in("sun 02:00-04:00 Europe/Pariss", &db).is_err());
}

#[test]
fn day_ranges_wrap_around_the_week_end() {
    // 2026-11-23 is a Monday.
    let fri_mon = w("fri-mon 10:00-11:00 UTC");
    let on = |day: u8| {
        fri_mon
            .is_in_window(ts(&format!("2026-11-{day}T10:30:00Z")))
            .is_some()
    };
    assert_eq!(
        (23..=29).map(on).collect::<Vec<_>>(),
        [true, false, false, false, true, true, true],
        "Mon..Sun"
    );
    let mon_fri = w("mon-fri 10:00-11:00 UTC");
    let on = |day: u8| {
        mon_fri
            .is_in_window(ts(&format!("2026-11-{day}T10:30:00Z")))
            .is_some()
    };
    assert_eq!(
        (23..=29).map(on).collect::<Vec<_>>(),
        [true, true, true, true, true, false, false]
    );
    assert_eq!(day_range(4, 0), 0b111_0001);
    assert_eq!(day_range(2, 2), 0b100);
}

#[test]
fn a_window_across_midnight_starts_on_its_day() {
    // Saturday 2026-11-28 23:00 to Sunday 01:00.
    let sat = w("sat 23:00-01:00 UTC");
    assert_eq!(sat.is_in_window(ts("2026-11-28T22:59:59Z")), None);
    assert_eq!(
        sat.is_in_window(ts("2026-11-28T23:00:00Z")),
        Some(ts("2026-11-29T01:00:00Z"))
    );
    assert_eq!(
        sat.is_in_window(ts("2026-11-29T00:30:00Z")),
        Some(ts("2026-11-29T01:00:00Z"))
    );
    assert_eq!(sat.is_in_window(ts("2026-11-29T01:00:00Z")), None);
    // Friday night is not in it: the day names the start.
    assert_eq!(sat.is_in_window(ts("2026-11-28T00:30:00Z")), None);
    assert_eq!(
        sat.next_window(ts("2026-11-28T12:00:00Z")),
        Some((ts("2026-11-28T23:00:00Z"), ts("2026-11-29T01:00:00Z")))
    );
    // From inside an occurrence, the next one is a week later.
    assert_eq!(
        sat.next_window(ts("2026-11-29T00:30:00Z")),
        Some((ts("2026-12-05T23:00:00Z"), ts("2026-12-06T01:00:00Z")))
    );
}

#[test]
fn across_the_week_end() {
    // Sunday 2026-11-29 23:30 to Monday 00:30, and the merge of Sunday's and Monday's windows.
    let sun = w("sun 23:30-00:30 UTC");
    assert_eq!(
        sun.is_in_window(ts("2026-11-30T00:10:00Z")),
        Some(ts("2026-11-30T00:30:00Z"))
    );
    let s = schedule(&[
        "sun 22:00-24:00 UTC",
        "mon 00:00-02:00 UTC",
        "wed 10:00-11:00 UTC",
    ]);
    assert_eq!(
        s.is_in_window(ts("2026-11-29T23:00:00Z")),
        Some(ts("2026-11-30T02:00:00Z")),
        "adjoining windows are one maintenance"
    );
    assert_eq!(
        s.next_window(ts("2026-11-28T12:00:00Z")),
        Some((ts("2026-11-29T22:00:00Z"), ts("2026-11-30T02:00:00Z")))
    );
    assert_eq!(
        s.next_window(ts("2026-11-29T23:00:00Z")),
        Some((ts("2026-12-02T10:00:00Z"), ts("2026-12-02T11:00:00Z")))
    );
    assert_eq!(s.is_in_window(ts("2026-11-30T02:00:00Z")), None);
    // Overlapping windows that start together: the longer one's end.
    let s = schedule(&["tue 10:00-11:00 UTC", "tue 10:00-12:00 UTC"]);
    assert_eq!(
        s.next_window(ts("2026-11-30T00:00:00Z")),
        Some((ts("2026-12-01T10:00:00Z"), ts("2026-12-01T12:00:00Z")))
    );
    // A schedule that never ends is bounded.
    let always = schedule(&["mon-sun 00:00-24:00 UTC"]);
    let now = ts("2026-11-30T12:00:00Z");
    let end = always.is_in_window(now).unwrap_or(now);
    assert!(
        end > now && end.duration_since(now).as_hours() <= 24 * 17,
        "{end}"
    );
    assert_eq!(Schedule::default().is_in_window(now), None);
    assert_eq!(Schedule::default().next_window(now), None);
}

#[test]
fn paris_spring_forward() {
    // 2026-03-29: at 01:00Z the clocks in Paris go from 02:00 CET to 03:00 CEST.
    let two_to_four = w("sun 02:00-04:00 Europe/Paris");
    // A week earlier, two real hours (CET, +01:00).
    assert_eq!(
        two_to_four.next_window(ts("2026-03-21T12:00:00Z")),
        Some((ts("2026-03-22T01:00:00Z"), ts("2026-03-22T03:00:00Z")))
    );
    // That day, 02:00 does not exist: the window starts when the clocks jump, and lasts one hour.
    assert_eq!(
        two_to_four.next_window(ts("2026-03-28T12:00:00Z")),
        Some((ts("2026-03-29T01:00:00Z"), ts("2026-03-29T02:00:00Z")))
    );
    assert_eq!(two_to_four.is_in_window(ts("2026-03-29T00:59:59Z")), None);
    assert_eq!(
        two_to_four.is_in_window(ts("2026-03-29T01:00:00Z")),
        Some(ts("2026-03-29T02:00:00Z"))
    );
    // 02:30 does not exist either: the window runs from the jump (03:00 CEST) to 03:30 CEST.
    assert_eq!(
        w("sun 02:30-03:30 Europe/Paris").next_window(ts("2026-03-28T12:00:00Z")),
        Some((ts("2026-03-29T01:00:00Z"), ts("2026-03-29T01:30:00Z")))
    );
    // A window wholly in the skipped hour does not happen that day; the next is a week later.
    let skipped = w("sun 02:00-02:30 Europe/Paris");
    assert_eq!(skipped.occurrence(jiff::civil::date(2026, 3, 29)), None);
    assert_eq!(skipped.is_in_window(ts("2026-03-29T01:00:00Z")), None);
    assert_eq!(
        skipped.next_window(ts("2026-03-28T12:00:00Z")),
        Some((ts("2026-04-05T00:00:00Z"), ts("2026-04-05T00:30:00Z")))
    );
}

#[test]
fn paris_fall_back() {
    // 2026-10-25: at 01:00Z the clocks in Paris go from 03:00 CEST back to 02:00 CET, so the
    // hour 02:00-03:00 happens twice (00:00Z-01:00Z, then 01:00Z-02:00Z).
    let first_pass = w("sun 02:00-02:30 Europe/Paris");
    assert_eq!(
        first_pass.next_window(ts("2026-10-24T12:00:00Z")),
        Some((ts("2026-10-25T00:00:00Z"), ts("2026-10-25T00:30:00Z")))
    );
    // On the second pass through 02:15 the window is over.
    assert_eq!(first_pass.is_in_window(ts("2026-10-25T01:15:00Z")), None);
    // A window around the repeated hour lasts an hour longer: 01:00 CEST to 03:00 CET.
    let around = w("sun 01:00-03:00 Europe/Paris");
    assert_eq!(
        around.next_window(ts("2026-10-24T12:00:00Z")),
        Some((ts("2026-10-24T23:00:00Z"), ts("2026-10-25T02:00:00Z")))
    );
    assert_eq!(
        around.is_in_window(ts("2026-10-25T01:30:00Z")),
        Some(ts("2026-10-25T02:00:00Z"))
    );
    // The Sunday after, back to two hours in CET.
    assert_eq!(
        around.next_window(ts("2026-10-25T12:00:00Z")),
        Some((ts("2026-11-01T00:00:00Z"), ts("2026-11-01T02:00:00Z")))
    );
}

#[test]
fn new_york_both_changes() {
    // 2026-03-08: 02:00 EST (07:00Z) jumps to 03:00 EDT.
    let night = w("sun 01:30-03:00 America/New_York");
    assert_eq!(
        night.next_window(ts("2026-03-07T12:00:00Z")),
        Some((ts("2026-03-08T06:30:00Z"), ts("2026-03-08T07:00:00Z")))
    );
    assert_eq!(
        w("sun 02:15-02:45 America/New_York").occurrence(jiff::civil::date(2026, 3, 8)),
        None
    );
    // 2026-11-01: 02:00 EDT (06:00Z) goes back to 01:00 EST; 01:30 comes first at 05:30Z, and
    // 02:00 is read once, in EST (07:00Z).
    let fold = w("sun 01:30-02:00 America/New_York");
    assert_eq!(
        fold.next_window(ts("2026-10-31T12:00:00Z")),
        Some((ts("2026-11-01T05:30:00Z"), ts("2026-11-01T07:00:00Z")))
    );
    assert_eq!(
        fold.is_in_window(ts("2026-11-01T06:45:00Z")),
        Some(ts("2026-11-01T07:00:00Z"))
    );
    // A weekday window on a Friday across midnight, in EDT then EST.
    let fri = w("fri 23:00-01:00 America/New_York");
    assert_eq!(
        fri.next_window(ts("2026-10-30T12:00:00Z")),
        Some((ts("2026-10-31T03:00:00Z"), ts("2026-10-31T05:00:00Z")))
    );
    assert_eq!(
        fri.next_window(ts("2026-11-02T12:00:00Z")),
        Some((ts("2026-11-07T04:00:00Z"), ts("2026-11-07T06:00:00Z")))
    );
}

/// Minutes since Monday 00:00 of the week of a UTC instant.
fn minute_of_week(now: Timestamp) -> i64 {
    let dt = TimeZone::UTC.to_datetime(now);
    i64::from(dt.weekday().to_monday_zero_offset()) * 1440
        + i64::from(dt.hour()) * 60
        + i64::from(dt.minute())
}

const ZONES: [&str; 6] = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/Santiago",
];

fn window_text(first: usize, last: usize, start: u16, end: u16, zone: &str) -> String {
    format!(
        "{}-{} {:02}:{:02}-{:02}:{:02} {zone}",
        DAYS[first],
        DAYS[last],
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

fn any_window() -> impl Strategy<Value = String> {
    (0usize..7, 0usize..7, 0u16..1440, 1u16..=1440, 0usize..ZONES.len())
        .prop_filter("start and end differ", |(_, _, s, e, _)| s != e)
        .prop_map(|(a, b, s, e, z)| window_text(a, b, s, e, ZONES[z]))
}

/// Instants from 2020 to 2035, to the second.
fn any_instant() -> impl Strategy<Value = Timestamp> {
    (1_577_836_800i64..2_082_758_400).prop_map(|s| Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The end of the current occurrence is after now and at most the window's length (plus a
    /// DST hour) away; the next occurrence starts after now, lasts at most that long, holds
    /// its own start, and nothing holds the instants between now and it unless now is inside.
    #[test]
    fn ends_and_next_starts_are_consistent(text in any_window(), now in any_instant()) {
        let win = w(&text);
        let longest = i64::from(win.nominal_minutes()) * 60 + 3600;
        if let Some(end) = win.is_in_window(now) {
            prop_assert!(end > now);
            prop_assert!(end.duration_since(now).as_secs() <= longest, "{text} at {now}: {end}");
        }
        let next = win.next_window(now);
        prop_assert!(next.is_some(), "{text} at {now}: no next window");
        if let Some((start, end)) = next {
            prop_assert!(start > now && end > start);
            prop_assert!(end.duration_since(start).as_secs() <= longest);
            prop_assert_eq!(win.is_in_window(start), Some(end));
            if win.is_in_window(now).is_none() {
                let mid = Timestamp::from_second((now.as_second() + start.as_second()) / 2)
                    .unwrap_or(now);
                prop_assert_eq!(win.is_in_window(mid), None, "{} at {}", text, mid);
            }
        }
    }

    /// In UTC a window is plain arithmetic on the minute of the week: the schedule agrees.
    #[test]
    fn utc_windows_match_arithmetic(a in 0usize..7, b in 0usize..7, start in 0u16..1440,
                                   end in 1u16..=1440, now in any_instant()) {
        prop_assume!(start != end);
        let text = window_text(a, b, start, end, "UTC");
        let win = w(&text);
        let len = i64::from(win.nominal_minutes());
        let m = minute_of_week(now);
        let inside = (0..7usize)
            .filter(|d| day_range(a, b) & (1 << d) != 0)
            .any(|d| {
                let from = d as i64 * 1440 + i64::from(start);
                (m - from).rem_euclid(7 * 1440) < len
            });
        prop_assert_eq!(win.is_in_window(now).is_some(), inside, "{} at {}", text, now);
    }

    /// A schedule's end is where its maintenance really stops: inside just before, outside at
    /// it (unless the merge limit cut a run of windows that covers days on end).
    #[test]
    fn schedule_ends_where_nothing_holds(texts in proptest::collection::vec(any_window(), 1..4),
                                         now in any_instant()) {
        let s = Schedule::new(texts.iter().map(|t| w(t)).collect());
        if let Some(end) = s.is_in_window(now) {
            prop_assert!(end > now);
            let before = Timestamp::from_second(end.as_second() - 1).unwrap_or(now);
            prop_assert!(s.is_in_window(before).is_some());
            // Three windows end at most three times a day: the limit is only met after days.
            prop_assert!(s.is_in_window(end).is_none() || end.duration_since(now).as_hours() > 24 * 4,
                "{:?} at {}: {}", texts, now, end);
        }
        if let Some((start, end)) = s.next_window(now) {
            prop_assert!(start > now && end > start);
            prop_assert_eq!(s.is_in_window(start), Some(end));
        }
    }
}
