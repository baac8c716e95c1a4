//! Cron schedules as CronJobs use them: five fields (minute, hour, day of month, month, day of
//! week) with `*`, `?`, lists, ranges, steps and month/day names, the macros `@yearly`
//! (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`, and `@every <dur>`.
//!
//! Like cron (and upstream's parser): when both day of month and day of week are restricted a day
//! matches either; 7 is Sunday too. Times are computed in a time zone on the wall clock: a time
//! skipped by a DST jump does not fire, a repeated one fires once.

use std::collections::BTreeSet;

use k8s_openapi::jiff::civil::{Date, DateTime};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Span, Timestamp};

/// A schedule that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schedule {schedule:?}: {reason}")]
pub struct ParseError {
    /// The schedule as written.
    pub schedule: String,
    /// What is wrong.
    pub reason: String,
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Fixed fields.
    Fields {
        /// 0-59.
        minutes: BTreeSet<u8>,
        /// 0-23.
        hours: BTreeSet<u8>,
        /// 1-31.
        days: BTreeSet<u8>,
        /// 1-12.
        months: BTreeSet<u8>,
        /// 0-6, Sunday 0.
        weekdays: BTreeSet<u8>,
        /// Day of month was `*` or `?`.
        any_day: bool,
        /// Day of week was `*` or `?`.
        any_weekday: bool,
    },
    /// `@every <duration>`: a fixed interval from the previous time.
    Every(SignedDuration),
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn field(
    text: &str,
    min: u8,
    max: u8,
    names: &[&str],
    name_base: u8,
) -> Result<(BTreeSet<u8>, bool), String> {
    let value = |s: &str| -> Result<u8, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(u8::try_from(i).unwrap_or(0) + name_base);
        }
        s.parse::<u8>()
            .map_err(|_| format!("{s:?} is not a number"))
    };
    let mut set = BTreeSet::new();
    let mut any = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u8 = s.parse().map_err(|_| format!("bad step {s:?}"))?;
                if step == 0 {
                    return Err("step 0".into());
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            if step.is_none() && text.split(',').count() == 1 {
                any = true;
            }
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // "5/15" means from 5 to the end, every 15.
            (v, if step.is_some() { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{range:?} is outside {min}-{max}"));
        }
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            set.insert(v);
            match v.checked_add(step) {
                Some(n) => v = n,
                None => break,
            }
        }
    }
    Ok((set, any))
}

/// Parses a Go-style duration (`1h30m`, `90s`, `5m`).
fn go_duration(s: &str) -> Result<SignedDuration, String> {
    let mut total = 0i64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
        num.clear();
        let unit = match (c, chars.peek()) {
            ('h', _) => 3600,
            ('m', Some('s')) => {
                chars.next();
                return Err(format!("durations below a second are not supported: {s:?}"));
            }
            ('m', _) => 60,
            ('s', _) => 1,
            _ => return Err(format!("bad duration {s:?}")),
        };
        total += n * unit;
    }
    if !num.is_empty() {
        return Err(format!("duration {s:?} lacks a unit"));
    }
    if total <= 0 {
        return Err(format!("duration {s:?} is not positive"));
    }
    Ok(SignedDuration::from_secs(total))
}

impl Schedule {
    /// Parses a CronJob's `spec.schedule`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let err = |reason: String| ParseError {
            schedule: s.to_owned(),
            reason,
        };
        let trimmed = s.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 * * *".to_owned(),
            "@hourly" => "0 * * * *".to_owned(),
            other if other.starts_with("@every ") => {
                let d = go_duration(trimmed["@every ".len()..].trim()).map_err(err)?;
                return Ok(Self::Every(d));
            }
            other if other.starts_with('@') => {
                return Err(err(format!("unknown descriptor {trimmed:?}")));
            }
            _ => trimmed.to_owned(),
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(err(format!("expected 5 fields, found {}", parts.len())));
        }
        let (minutes, _) = field(parts[0], 0, 59, &[], 0).map_err(&err)?;
        let (hours, _) = field(parts[1], 0, 23, &[], 0).map_err(&err)?;
        let (days, any_day) = field(parts[2], 1, 31, &[], 0).map_err(&err)?;
        let (months, _) = field(parts[3], 1, 12, &MONTHS, 1).map_err(&err)?;
        let (mut weekdays, any_weekday) = field(parts[4], 0, 7, &DAYS, 0).map_err(&err)?;
        if weekdays.remove(&7) {
            weekdays.insert(0);
        }
        Ok(Self::Fields {
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day,
            any_weekday,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let Self::Fields {
            days,
            weekdays,
            any_day,
            any_weekday,
            months,
            ..
        } = self
        else {
            return true;
        };
        if !months.contains(&u8::try_from(d.month()).unwrap_or(0)) {
            return false;
        }
        let dom = days.contains(&u8::try_from(d.day()).unwrap_or(0));
        let dow =
            weekdays.contains(&u8::try_from(d.weekday().to_sunday_zero_offset()).unwrap_or(9));
        match (any_day, any_weekday) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first scheduled time strictly after `after`, in `tz`; None within the next 5 years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (minutes, hours) = match self {
            Self::Every(d) => {
                // Whole seconds, like upstream's parser rounds.
                return after.checked_add(*d).ok();
            }
            Self::Fields { minutes, hours, .. } => (minutes, hours),
        };
        let local = tz.to_datetime(after);
        let start = DateTime::new(
            local.year(),
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            0,
            0,
        )
        .ok()?;
        let limit = start.checked_add(Span::new().years(5)).ok()?;
        let mut date = start.date();
        // Candidate minutes on the first day start after `start`; later days at midnight.
        let mut first_day = true;
        while date.to_datetime(k8s_openapi::jiff::civil::Time::midnight()) <= limit {
            if self.day_matches(date) {
                for &h in hours {
                    for &m in minutes {
                        let dt = date.at(i8::try_from(h).ok()?, i8::try_from(m).ok()?, 0, 0);
                        if first_day && dt <= start {
                            continue;
                        }
                        // Skipped by a DST gap: not fired. Repeated: the earlier one.
                        let amb = tz.to_ambiguous_timestamp(dt);
                        if matches!(
                            amb.offset(),
                            k8s_openapi::jiff::tz::AmbiguousOffset::Gap { .. }
                        ) {
                            continue;
                        }
                        let Ok(ts) = amb.earlier() else { continue };
                        if ts > after {
                            return Some(ts);
                        }
                    }
                }
            }
            first_day = false;
            date = date.tomorrow().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        Schedule::parse(schedule)
            .unwrap()
            .next_after(ts(after), &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn fields_and_macros() {
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:00Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:30Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T10:07:00Z"),
            "2024-01-01T10:15:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2024-01-01T10:26:00Z"),
            "2024-01-01T10:45:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2024-01-01T13:00:00Z"),
            "2024-01-01T17:00:00Z"
        );
        assert_eq!(
            next("30 2 * * *", "2024-01-01T03:00:00Z"),
            "2024-01-02T02:30:00Z"
        );
        assert_eq!(
            next("0 0 1,15 * *", "2024-01-02T00:00:00Z"),
            "2024-01-15T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * MON", "2024-01-01T00:00:00Z"),
            "2024-01-08T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2024-01-01T00:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * sun", "2024-01-01T00:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("0 0 1 FEB-MAR *", "2024-01-01T00:00:00Z"),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("@hourly", "2024-01-01T10:59:59Z"),
            "2024-01-01T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "2024-01-01T10:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@midnight", "2024-01-01T10:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2024-01-01T10:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2024-01-31T10:00:00Z"),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2024-06-01T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@annually", "2024-06-01T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@every 1h30m", "2024-01-01T10:00:00Z"),
            "2024-01-01T11:30:00Z"
        );
        assert_eq!(
            next("0 12 ? * *", "2024-01-01T10:00:00Z"),
            "2024-01-01T12:00:00Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: either matches (the 13th or any Friday).
        assert_eq!(
            next("0 0 13 * 5", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "2024-01-12T00:00:00Z"),
            "2024-01-13T00:00:00Z"
        );
        // Day of week with a step restricts too.
        assert_eq!(
            next("0 0 * * */3", "2024-01-01T00:00:00Z"),
            "2024-01-03T00:00:00Z"
        );
    }

    #[test]
    fn time_zones_and_dst() {
        let ny = TimeZone::get("America/New_York").unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        // 09:00 EST is 14:00 UTC.
        assert_eq!(
            s.next_after(ts("2024-01-01T15:00:00Z"), &ny)
                .unwrap()
                .to_string(),
            "2024-01-02T14:00:00Z"
        );
        // 02:30 does not exist on 2024-03-10 in New York: the next run is the day after.
        let gap = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            gap.next_after(ts("2024-03-09T12:00:00Z"), &ny)
                .unwrap()
                .to_string(),
            "2024-03-11T06:30:00Z"
        );
        // 01:30 happens twice on 2024-11-03: fires once, at the first.
        let twice = Schedule::parse("30 1 * * *").unwrap();
        let first = twice.next_after(ts("2024-11-03T04:00:00Z"), &ny).unwrap();
        assert_eq!(first.to_string(), "2024-11-03T05:30:00Z");
        assert_eq!(
            twice.next_after(first, &ny).unwrap().to_string(),
            "2024-11-04T06:30:00Z"
        );
    }

    #[test]
    fn rejects_bad_schedules() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "@sometimes",
            "@every 0s",
            "@every 10",
            "x * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
