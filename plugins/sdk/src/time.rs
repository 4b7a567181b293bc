//! Event-time parsing for cleaners: RFC 3339 / ISO 8601 text or epoch milliseconds to UTC
//! milliseconds, without a date library (plugins stay small).

use crate::Timestamp;

/// Parse `2026-11-22T10:15:30Z`, `2026-11-22T10:15:30.250+01:00`, `2026-11-22 10:15:30` (UTC
/// assumed) into UTC milliseconds since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Result<Timestamp, String> {
    let b = crate::clean::trim(text).as_bytes();
    let bad = || format!("not an RFC 3339 timestamp: {text:?}");
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |from: usize, to: usize| decimal(&b[from..to]).ok_or_else(bad);
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(format!("timestamp out of range: {text:?}"));
    }
    let mut i = 19;
    let mut millis = 0;
    if i < b.len() && b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let digits = &b[start..i.min(start + 3)];
        millis = num(start, start + digits.len())? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_min = match &b[i..] {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h @ .., b':', m1, m2] if h.len() == 2 => {
            let (h, m) = (
                decimal(h).ok_or_else(bad)?,
                decimal(&[*m1, *m2]).ok_or_else(bad)?,
            );
            if h > 23 || m > 59 {
                return Err(bad());
            }
            if *sign == b'+' {
                h * 60 + m
            } else {
                -(h * 60 + m)
            }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1_000 + millis)
}

/// A short run of ASCII digits (at most four here) as a number; `None` if any byte is not one.
fn decimal(digits: &[u8]) -> Option<i64> {
    (digits.iter()).try_fold(0, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
    })
}

/// Format UTC milliseconds as `2026-11-22T10:15:30.250Z`.
pub fn format_rfc3339_ms(ts: Timestamp) -> String {
    let days = ts.div_euclid(86_400_000);
    let rem = ts.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1_000 % 60,
        rem % 1_000
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_rfc3339_ms("2000-03-01T00:00:00Z").unwrap(),
            951_868_800_000
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T10:15:30.25Z").unwrap() % 1000,
            250
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-22T11:15:30+01:00").unwrap(),
            parse_rfc3339_ms("2026-11-22 10:15:30").unwrap()
        );
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z").unwrap(), -1);
        for (fraction, ms) in [(".5", 500), (".05", 50), (".123", 123), (".1239", 123)] {
            let text = format!("1970-01-01T00:00:00{fraction}Z");
            assert_eq!(parse_rfc3339_ms(&text).unwrap(), ms, "{text}");
        }
        assert_eq!(
            parse_rfc3339_ms("\u{a0} 1970-01-01T00:00:01.5678-00:30\u{b}").unwrap(),
            1_567 + 30 * 60_000,
            "Unicode whitespace trimmed, digits past milliseconds dropped"
        );
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-22T10:15:30Q",
            "2026-11-22T10:15:30+I6:00",
            "2026-11-22T10:15:30+01:0x",
            "2026-11-22T10:15:30.Z",
            "2026-1a-22T10:15:30Z",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_round_trips() {
        for ts in [0, 1_763_800_000_123, -86_400_001, 951_868_800_000] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ts)).unwrap(), ts);
        }
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
