//! Go's text forms of `metav1.Time`, `metav1.MicroTime` and `metav1.Duration`, without a date
//! library: RFC 3339 in UTC (`2026-01-02T03:04:05Z`, or `.000000Z` for micro time) and
//! `time.Duration.String()` / `time.ParseDuration`.
//!
//! Years are limited to 0000–9999, the range RFC 3339 can write; everything else is rejected
//! rather than printed in a form Go would not parse back.

const SECONDS_PER_DAY: i64 = 86_400;
/// 0000-01-01T00:00:00Z as Unix seconds.
const MIN_SECONDS: i64 = -62_167_219_200;
/// 9999-12-31T23:59:59Z as Unix seconds.
const MAX_SECONDS: i64 = 253_402_300_799;

/// Formats Unix `seconds` (+ `micros` when `Some`) as Kubernetes does: `2006-01-02T15:04:05Z`, or
/// `2006-01-02T15:04:05.000000Z` with micros. `None` when the year is outside 0000–9999.
pub(crate) fn format_rfc3339(seconds: i64, micros: Option<u32>) -> Option<String> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
        return None;
    }
    let days = seconds.div_euclid(SECONDS_PER_DAY);
    let rem = seconds.rem_euclid(SECONDS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    Some(match micros {
        None => format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
        Some(us) => format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{us:06}Z"),
    })
}

/// Parses an RFC 3339 timestamp (`Z` or `±hh:mm` offset, optional fraction of up to 9 digits)
/// into Unix seconds and nanoseconds. `None` if malformed or outside years 0000–9999.
pub(crate) fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos: u32 = 0;
    if let Some((b'.', frac)) = rest.split_first() {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        for (i, c) in frac[..digits].iter().enumerate() {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if h > 23 || m > 59 {
                return None;
            }
            let magnitude = h * 3600 + m * 60;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second
            - offset;
    (MIN_SECONDS..=MAX_SECONDS)
        .contains(&seconds)
        .then_some((seconds, nanos))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01, the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Go's `time.Duration(nanos).String()`: `0s`, `1.5µs`, `2ms`, `1h2m3.5s`, `-4m0s`.
pub(crate) fn format_go_duration(nanos: i64) -> String {
    let mut u = nanos.unsigned_abs();
    let sign = if nanos < 0 { "-" } else { "" };
    if u == 0 {
        return "0s".to_owned();
    }
    if u < 1_000_000_000 {
        let (unit, prec) = match u {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let (int, frac) = split_fraction(u, prec);
        return format!("{sign}{int}{frac}{unit}");
    }
    let (secs, frac) = split_fraction(u, 9);
    u = secs;
    let mut out = format!("{}{frac}s", u % 60);
    u /= 60;
    if u > 0 {
        out = format!("{}m{out}", u % 60);
        u /= 60;
        if u > 0 {
            out = format!("{u}h{out}");
        }
    }
    format!("{sign}{out}")
}

/// Splits `v` into `v / 10^prec` and `.fraction` without trailing zeros (empty if zero).
fn split_fraction(v: u64, prec: u32) -> (u64, String) {
    let scale = 10u64.pow(prec);
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return (int, String::new());
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (int, format!(".{}", digits.trim_end_matches('0')))
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, units `ns us µs μs ms s m h`,
/// or a bare `0`. `None` if malformed or beyond ±2^63 ns. Ported step by step from Go, including
/// its float arithmetic for fractions, so both sides agree on every value.
pub(crate) fn parse_go_duration(s: &str) -> Option<i64> {
    const LIMIT: u64 = 1 << 63;
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        // Consume [0-9]*.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut v: u64 = 0;
        for c in rest[..int_len].bytes() {
            if v > LIMIT / 10 {
                return None;
            }
            v = v * 10 + u64::from(c - b'0');
            if v > LIMIT {
                return None;
            }
        }
        rest = &rest[int_len..];
        // Consume (\.[0-9]*)?; digits past u64 precision are ignored, as in Go.
        let (mut f, mut scale, mut has_fraction) = (0u64, 1f64, false);
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for c in after_dot[..frac_len].bytes() {
                if overflow || f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(c - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            has_fraction = frac_len > 0;
            rest = &after_dot[frac_len..];
        }
        if int_len == 0 && !has_fraction {
            return None;
        }
        // Consume the unit: everything up to the next digit or '.'.
        let unit_len = rest
            .bytes()
            .position(|c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: u64 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        if v > LIMIT / unit {
            return None;
        }
        v *= unit;
        if f > 0 {
            // Go: v += uint64(float64(f) * (float64(unit) / scale))
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return None;
            }
        }
        total = total.checked_add(v)?;
        if total > LIMIT {
            return None;
        }
    }
    if negative {
        Some(0i64.wrapping_sub_unsigned(total))
    } else {
        i64::try_from(total).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(
            format_rfc3339(0, None).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            format_rfc3339(1_767_323_045, None).as_deref(),
            Some("2026-01-02T03:04:05Z")
        );
        assert_eq!(
            format_rfc3339(1_767_323_045, Some(42)).as_deref(),
            Some("2026-01-02T03:04:05.000042Z")
        );
        assert_eq!(
            format_rfc3339(951_782_400, None).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(
            format_rfc3339(-1, None).as_deref(),
            Some("1969-12-31T23:59:59Z")
        );
        assert_eq!(
            format_rfc3339(MIN_SECONDS, None).as_deref(),
            Some("0000-01-01T00:00:00Z")
        );
        assert_eq!(
            format_rfc3339(MAX_SECONDS, None).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(format_rfc3339(MAX_SECONDS + 1, None), None);
        assert_eq!(format_rfc3339(i64::MIN, None), None);

        assert_eq!(
            parse_rfc3339("2026-01-02T03:04:05Z"),
            Some((1_767_323_045, 0))
        );
        assert_eq!(
            parse_rfc3339("2026-01-02T03:04:05.000042Z"),
            Some((1_767_323_045, 42_000))
        );
        assert_eq!(
            parse_rfc3339("2026-01-02T04:04:05+01:00"),
            Some((1_767_323_045, 0))
        );
        assert_eq!(parse_rfc3339("2026-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-01-02 03:04:05Z"), None);
        assert_eq!(parse_rfc3339("2026-01-02T03:04:05"), None);
        assert_eq!(parse_rfc3339("2026-01-02T03:04:05.Z"), None);
        assert_eq!(parse_rfc3339("2026-01-02T03:04:05Zjunk"), None);
        for secs in [
            MIN_SECONDS,
            -86_401,
            0,
            1,
            951_782_400,
            4_102_444_800,
            MAX_SECONDS,
        ] {
            let text = format_rfc3339(secs, None).expect("in range");
            assert_eq!(parse_rfc3339(&text), Some((secs, 0)), "{text}");
        }
    }

    #[test]
    fn go_durations() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_000_000_000, "1s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-240_000_000_000, "-4m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(format_go_duration(nanos), text);
            assert_eq!(parse_go_duration(text), Some(nanos), "{text}");
        }
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_go_duration("2h45m"), Some(9_900_000_000_000));
        assert_eq!(parse_go_duration("1us"), Some(1_000));
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("1"), None);
        assert_eq!(parse_go_duration("1d"), None);
        assert_eq!(parse_go_duration("."), None);
        assert_eq!(parse_go_duration("9999999999h"), None);
    }
}
