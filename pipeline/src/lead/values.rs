//! Reading lead values from text: tiers and timestamps.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// `3`, ` 3 `, `+3` and `3.0` are tier 3; `3.5` and `gold` are not tiers.
pub(super) fn parse_int(v: &str) -> Option<i32> {
    if let Ok(n) = v.parse::<i32>() {
        return Some(n);
    }
    let f: f64 = v.parse().ok()?;
    (f.fract() == 0.0 && f.abs() <= i32::MAX as f64).then_some(f as i32)
}

/// Microseconds since the epoch, UTC. Accepts RFC 3339 (with offset), and
/// `YYYY-MM-DD[ T]HH:MM:SS[.f]` or `YYYY-MM-DD` read as UTC.
pub fn parse_timestamp_us(v: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.timestamp_micros());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp_us("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_timestamp_us("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_timestamp_us("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_timestamp_us("1970-01-01 00:00:00.5"), Some(500_000));
        assert_eq!(parse_timestamp_us("yesterday"), None);
    }

    #[test]
    fn tiers() {
        assert_eq!(parse_int(" 3"), None, "callers trim");
        assert_eq!(parse_int("3"), Some(3));
        assert_eq!(parse_int("3.0"), Some(3));
        assert_eq!(parse_int("3.5"), None);
        assert_eq!(parse_int("gold"), None);
    }
}
