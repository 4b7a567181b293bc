//! Durations and sizes as config files write them.

use std::time::Duration;

/// `500ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{text:?}: {e}"))
}

/// `65536`, `512KiB`, `64MiB`, `1GiB` (also `KB`/`MB`/`GB` as powers of 1000).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: usize = n
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 64MiB)"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A time as a command line writes it: RFC 3339 in UTC (`2026-11-22T09:30:00Z`), or a
/// date (`2026-11-22`, its midnight UTC). Milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let full = if t.len() == 10 {
        format!("{t}T00:00:00Z")
    } else {
        t.to_string()
    };
    let parsed = humantime::parse_rfc3339_weak(&full)
        .map_err(|e| format!("{text:?} is not a date or an RFC 3339 time: {e}"))?;
    let ms = parsed
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{text:?} is before 1970"))?
        .as_millis();
    Ok(ms as i64)
}

/// `YYYY-MM-DD hh:mm:ss` in UTC, the DateTime text every ClickHouse version reads.
pub fn datetime(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.clamp(0, 4_102_444_800_000) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.trim_end_matches('Z').replace('T', " ")
}

pub fn date(ms: i64) -> String {
    datetime(ms)[..10].to_string()
}
