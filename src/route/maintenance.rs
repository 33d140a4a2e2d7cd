//! Maintenance windows: the syntax `DAY[-DAY] HH:MM-HH:MM ZONE` and, given a clock reading,
//! whether a route is inside one of its windows and when the next one starts.
//!
//! Owns: [`Window`] (one parsed window, the only parser of the syntax: config validation uses it
//! too) and [`Schedule`] (a route's windows, adjoining ones merged). Everything here is a pure
//! function of its arguments: the caller passes `now`. Zone names are looked up once, at parse
//! time, in a `jiff` time zone database (the system's `/usr/share/zoneinfo`, else the copy
//! built into the binary). Must not touch: clocks, sockets, the runtime switch of a route.
//!
//! Semantics, for the operator (docs/configuration.md repeats them):
//! - The day names the day the window **starts** on. `sat 23:00-01:00` runs from Saturday 23:00
//!   to Sunday 01:00; `fri-mon 22:00-02:00` starts on Friday, Saturday, Sunday and Monday
//!   (a day range may wrap around the week end). `00:00-24:00` is the whole day.
//! - Times are wall-clock times in the window's zone, daylight saving time included. Each end of
//!   a window is the first instant at which the zone's clock shows that time (or a later one)
//!   on that date. So a time skipped when the clocks go forward (02:30 on the spring-forward
//!   Sunday in Europe/Paris) means the moment the clocks jump (03:00 CEST): `sun 02:00-04:00`
//!   lasts one real hour that day, and a window that lies wholly in the skipped hour (`sun
//!   02:00-02:30`) does not happen that day. A time that happens twice when the clocks go back
//!   (02:30 on the autumn Sunday) means its first occurrence (02:30 CEST): `sun 01:00-03:00`
//!   lasts three real hours that day, and `sun 02:00-02:30` runs once, on the first pass.
//! - A window is `[start, end)`: at the end instant the route is out of maintenance.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};
use jiff::{Timestamp, ToSpan};

/// The day names of the syntax, Monday first (jiff's Monday-zero offsets).
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Minutes in a day: `24:00` as an end time.
const DAY_MINUTES: u16 = 24 * 60;

/// How the syntax is written, for the error of a malformed window.
const SHAPE: &str = "write \"DAY[-DAY] HH:MM-HH:MM ZONE\", e.g. \"sun 02:00-04:00 UTC\" or \
                     \"mon-fri 01:00-01:30 Europe/Paris\"";

/// One maintenance window, as parsed from `"sun 02:00-04:00 UTC"`.
#[derive(Clone, PartialEq, Eq)]
pub struct Window {
    /// As written, for messages and views.
    text: String,
    /// Start days: bit `i` is the day `DAYS[i]`.
    days: u8,
    /// Start, in minutes after midnight (0..1440).
    start: u16,
    /// End, in minutes after midnight (0..=1440); before `start` means the next day.
    end: u16,
    /// The zone whose wall clock the times are read on.
    zone: TimeZone,
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Window({:?})", self.text)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Window {
    type Err = String;

    /// [`Window::parse`].
    fn from_str(s: &str) -> Result<Window, String> {
        Window::parse(s)
    }
}

impl Window {
    /// Parses a window, looking its zone up in jiff's default database; the error is in the
    /// words an operator reads (the caller adds the position).
    pub fn parse(s: &str) -> Result<Window, String> {
        Window::parse_in(s, jiff::tz::db())
    }

    /// [`Window::parse`] with the zone looked up in `db`.
    pub fn parse_in(s: &str, db: &TimeZoneDatabase) -> Result<Window, String> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        let [days, times, zone] = fields.as_slice() else {
            return Err(format!("invalid maintenance window \"{s}\"; {SHAPE}"));
        };
        let day = |d: &str| {
            let d = d.to_ascii_lowercase();
            DAYS.iter().position(|n| *n == d).ok_or_else(|| {
                format!(
                    "invalid maintenance window \"{s}\": `{d}` is not a day (mon, tue, wed, thu, fri, sat, sun)"
                )
            })
        };
        let days = match days.split_once('-') {
            Some((a, b)) => day_range(day(a)?, day(b)?),
            None => 1 << day(days)?,
        };
        let Some((from, to)) = times.split_once('-') else {
            return Err(format!("invalid maintenance window \"{s}\"; {SHAPE}"));
        };
        let minutes = |t: &str| -> Result<u16, String> {
            let bad = || {
                format!(
                    "invalid maintenance window \"{s}\": `{t}` is not a time HH:MM between 00:00 and 24:00"
                )
            };
            let (h, m) = t.split_once(':').ok_or_else(bad)?;
            if h.len() != 2 || m.len() != 2 {
                return Err(bad());
            }
            let h: u16 = h.parse().map_err(|_| bad())?;
            let m: u16 = m.parse().map_err(|_| bad())?;
            if m > 59 || h > 24 || (h == 24 && m != 0) {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        let (start, end) = (minutes(from)?, minutes(to)?);
        if start == DAY_MINUTES {
            return Err(format!(
                "invalid maintenance window \"{s}\": a window cannot start at 24:00; \
                 write 00:00 and the next day"
            ));
        }
        if start == end {
            return Err(format!(
                "invalid maintenance window \"{s}\": it starts and ends at the same time; \
                 write 00:00-24:00 for a whole day"
            ));
        }
        if zone.chars().any(|c| c.is_control()) {
            return Err(format!("invalid maintenance window \"{s}\"; {SHAPE}"));
        }
        let zone = db.get(zone).map_err(|_| {
            format!(
                "invalid maintenance window \"{s}\": unknown time zone `{zone}`; write an IANA \
                 name such as \"Europe/Paris\" or \"America/New_York\", or \"UTC\""
            )
        })?;
        Ok(Window {
            text: s.to_string(),
            days,
            start,
            end,
            zone,
        })
    }

    /// Its nominal length in minutes (wall clock; a DST change makes a real one differ by the
    /// change).
    pub fn nominal_minutes(&self) -> u32 {
        if self.end > self.start {
            u32::from(self.end - self.start)
        } else {
            u32::from(DAY_MINUTES - self.start + self.end)
        }
    }

    /// The zone the window is read in.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// Whether the window starts on the day `date` (a date of its zone).
    fn starts_on(&self, date: Date) -> bool {
        let i = date.weekday().to_monday_zero_offset();
        self.days & (1 << i) != 0
    }

    /// The occurrence that starts on `date`, as `[start, end)` instants; `None` if the window
    /// does not start that day, or happens not at all that day (it lies wholly in the hour a
    /// DST change skips).
    pub fn occurrence(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.starts_on(date) {
            return None;
        }
        let at = |d: Date, minutes: u16| -> Option<DateTime> {
            if minutes == DAY_MINUTES {
                Some(d.tomorrow().ok()?.at(0, 0, 0, 0))
            } else {
                let (h, m) = (minutes / 60, minutes % 60);
                Some(d.at(i8::try_from(h).ok()?, i8::try_from(m).ok()?, 0, 0))
            }
        };
        let start = at(date, self.start)?;
        let end_day = if self.end > self.start {
            date
        } else {
            date.tomorrow().ok()?
        };
        let end = at(end_day, self.end)?;
        let (start, end) = (first_instant(&self.zone, start)?, first_instant(&self.zone, end)?);
        (start < end).then_some((start, end))
    }

    /// Occurrences starting on the dates `from..=to` days away from `now`'s date in the
    /// window's zone, in order.
    fn occurrences(
        &self,
        now: Timestamp,
        from: i32,
        to: i32,
    ) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let today = self.zone.to_datetime(now).date();
        (from..=to).filter_map(move |k| {
            let date = today.checked_add(k.days()).ok()?;
            self.occurrence(date)
        })
    }

    /// If `now` is inside this window, the end of the occurrence it is in.
    pub fn is_in_window(&self, now: Timestamp) -> Option<Timestamp> {
        // An occurrence lasts at most a day and a DST hour, so one that holds `now` started
        // today or yesterday (dates of the window's zone).
        self.occurrences(now, -1, 0)
            .filter(|&(start, end)| start <= now && now < end)
            .map(|(_, end)| end)
            .max()
    }

    /// The first occurrence that starts after `now`.
    pub fn next_window(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        // Every start day comes back within a week; a day lost to a DST gap, within two.
        self.occurrences(now, -1, 14).find(|&(start, _)| start > now)
    }
}

/// The days from `a` to `b` inclusive, wrapping around the end of the week (`fri-mon`).
fn day_range(a: usize, b: usize) -> u8 {
    let mut days = 0u8;
    let mut d = a;
    loop {
        days |= 1 << d;
        if d == b {
            return days;
        }
        d = (d + 1) % 7;
    }
}

/// The first instant at which `zone`'s wall clock shows `dt` or a later time (see the module
/// doc): the only instant for most times, the first of two in a fold, the jump itself in a gap.
fn first_instant(zone: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    match zone.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        // The offset in force before the clocks went back gives the first pass.
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { before, after } => {
            // `dt` read with the later (larger) offset is an instant before the jump; the
            // jump is the zone's next transition from there.
            let ahead = after.to_timestamp(dt).ok()?;
            zone.following(ahead)
                .next()
                .map(|t| t.timestamp())
                .or_else(|| before.to_timestamp(dt).ok())
        }
    }
}

/// A route's windows; overlapping or adjoining occurrences count as one maintenance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    windows: Vec<Window>,
}

/// How many adjoining occurrences [`Schedule`] merges at most: enough for a fortnight of daily
/// windows, and a bound for a schedule that never ends (`mon-sun 00:00-24:00`).
const MERGE_LIMIT: usize = 16;

impl Schedule {
    /// A schedule of `windows`.
    pub fn new(windows: Vec<Window>) -> Schedule {
        Schedule { windows }
    }

    /// The windows, as configured.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Whether there is no window.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// If `now` is inside a window, when the maintenance ends: the end of that occurrence, or
    /// of the last occurrence that overlaps or adjoins it (`sat 22:00-24:00` followed by
    /// `sun 00:00-02:00` ends on Sunday at 02:00).
    pub fn is_in_window(&self, now: Timestamp) -> Option<Timestamp> {
        let end = self.windows.iter().filter_map(|w| w.is_in_window(now)).max()?;
        Some(self.extend(end))
    }

    /// The next maintenance that starts after `now` (after the current one, if `now` is in
    /// one: a window that adjoins it is part of it): the start of its first occurrence and the
    /// end of the run of occurrences that overlap or adjoin it.
    pub fn next_window(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let after = self.is_in_window(now).unwrap_or(now);
        let (start, end) = self
            .windows
            .iter()
            .filter_map(|w| w.next_window(after))
            .min_by_key(|&(start, end)| (start, std::cmp::Reverse(end)))?;
        // Another window starting at the same instant may end later.
        let end = self
            .windows
            .iter()
            .filter_map(|w| w.is_in_window(start))
            .fold(end, Timestamp::max);
        Some((start, self.extend(end)))
    }

    /// `end`, pushed on while an occurrence holds it (bounded by [`MERGE_LIMIT`]).
    fn extend(&self, mut end: Timestamp) -> Timestamp {
        for _ in 0..MERGE_LIMIT {
            match self.windows.iter().filter_map(|w| w.is_in_window(end)).max() {
                Some(later) if later > end => end = later,
                _ => break,
            }
        }
        end
    }
}

#[cfg(test)]
mod tests;
