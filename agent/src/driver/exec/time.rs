//! RFC 3339 timestamps (UTC, nanoseconds) for logs and state, and `--since`/`--until` parsing,
//! with chrono (already compiled in through libcontainer and oci-client). Durations use the one
//! grammar of manifests and config.toml, [`crate::manifest::units::Duration`] (Go's/Docker's:
//! `10m`, `1h30m`, `500ms`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};

/// `2024-05-01T12:00:00.123456789Z`.
pub fn format(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// `2024-05-01T12:00:00Z` (whole seconds, for tables).
pub fn format_seconds(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses RFC 3339 (`Z` or `+hh:mm` offsets, optional fraction); times before 1970 are refused.
pub fn parse(s: &str) -> Option<SystemTime> {
    let t = DateTime::parse_from_rfc3339(s.trim()).ok()?;
    if t.timestamp() < 0 {
        return None;
    }
    Some(SystemTime::from(t))
}

/// `--since`/`--until` (as Docker's): an RFC 3339 time, Unix seconds (`1714550000` or with a
/// fraction), or a duration before `now` (`10m`, `1h30m`).
pub fn parse_since(s: &str, now: SystemTime) -> Option<SystemTime> {
    if let Some(t) = parse(s) {
        return Some(t);
    }
    if let Ok(secs) = s.trim().parse::<f64>() {
        return UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?);
    }
    let d: crate::manifest::units::Duration = s.parse().ok()?;
    now.checked_sub(d.get())
}

/// What `--since`/`--until` accept, for error messages.
pub const SINCE_HELP: &str = "use an RFC 3339 time (2024-05-01T12:00:00Z), Unix seconds, or a duration before now such as 10m or 1h30m";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse_round_trip() {
        let t = UNIX_EPOCH + Duration::new(1_714_564_800, 123_456_789);
        let s = format(t);
        assert_eq!(s, "2024-05-01T12:00:00.123456789Z");
        assert_eq!(parse(&s), Some(t));
        assert_eq!(format(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            parse("2024-05-01T14:00:00+02:00"),
            Some(UNIX_EPOCH + Duration::from_secs(1_714_564_800))
        );
        assert_eq!(
            parse("2000-02-29T00:00:00.5Z").map(format).as_deref(),
            Some("2000-02-29T00:00:00.500000000Z")
        );
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("2024-13-01T00:00:00Z"), None);
    }

    /// The hand-written parser took any day up to 31 and any hour (Feb 30 became Mar 1);
    /// chrono checks the calendar and the clock.
    #[test]
    fn impossible_dates_and_clocks_are_refused() {
        assert_eq!(parse("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse("2024-02-30T00:00:00Z"), None);
        assert_eq!(parse("2024-04-31T00:00:00Z"), None);
        assert_eq!(parse("2024-05-01T25:00:00Z"), None);
        assert_eq!(parse("2024-05-01T12:61:00Z"), None);
        assert_eq!(parse("2024-05-01T12:00:00+24:00"), None);
        assert_eq!(
            parse("2024-05-01T06:30:00-05:30"),
            Some(UNIX_EPOCH + Duration::from_secs(1_714_564_800))
        );
        assert_eq!(
            format_seconds(UNIX_EPOCH + Duration::new(1_714_564_800, 999_999_999)),
            "2024-05-01T12:00:00Z"
        );
    }

    /// `--since` durations are Go's grammar, the manifests' and config.toml's: `us` and
    /// fractions of any unit are accepted, days (`2d`, not Docker's) are not.
    #[test]
    fn since_durations_are_the_manifest_grammar() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            parse_since("1h30m", now),
            Some(UNIX_EPOCH + Duration::from_secs(4_600))
        );
        assert_eq!(
            parse_since("1.5h", now),
            Some(UNIX_EPOCH + Duration::from_secs(4_600))
        );
        assert_eq!(
            parse_since("500us", now),
            Some(UNIX_EPOCH + Duration::from_secs(10_000) - Duration::from_micros(500))
        );
        assert_eq!(parse_since("2d", now), None);
        assert_eq!(parse_since("5min", now), None);
        assert_eq!(parse_since("10 m", now), None);
    }

    #[test]
    fn durations_and_since() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            parse_since("10m", now),
            Some(UNIX_EPOCH + Duration::from_secs(9_400))
        );
        assert_eq!(
            parse_since("1000", now),
            Some(UNIX_EPOCH + Duration::from_secs(1000))
        );
        assert_eq!(
            parse_since("1970-01-01T00:00:05Z", now),
            Some(UNIX_EPOCH + Duration::from_secs(5))
        );
    }

    #[test]
    fn huge_values_are_refused_not_a_panic() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(parse_since("1e19", now), None);
        assert_eq!(parse_since("1e300", now), None);
        assert_eq!(
            parse_since("18446744073709551615s18446744073709551615s", now),
            None
        );
    }
}
