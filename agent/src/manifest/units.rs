//! Human units: sizes (`64Mi`, `1g`, `512m`) and durations (`10s`, `1m30s`).
//!
//! # Sizes ([`ByteSize`])
//!
//! A size is a non-negative integer number of bytes or a string `<number>[<unit>]`. The number may
//! have a fraction (`1.5Gi`); the result is rounded down to whole bytes. **Every unit is a power of
//! 1024**, as in Docker (`docker run -m 1g` is 1 GiB):
//!
//! | unit (any case)        | factor   |
//! |------------------------|----------|
//! | none, `b`              | 1        |
//! | `k`, `kb`, `ki`, `kib` | 1024     |
//! | `m`, `mb`, `mi`, `mib` | 1024²    |
//! | `g`, `gb`, `gi`, `gib` | 1024³    |
//! | `t`, `tb`, `ti`, `tib` | 1024⁴    |
//!
//! So `512m`, `512M`, `512Mi` and `512MiB` are all 536 870 912 bytes. Kubernetes users should note
//! that `1G` here is 1 GiB, not 10⁹ bytes: the agent follows Docker, and one meaning per letter
//! avoids surprises. Negative numbers, exponents and unknown units are errors.
//!
//! # Durations ([`Duration`])
//!
//! Go/Docker style: one or more `<number><unit>` parts with units `ns`, `us` (or `µs`), `ms`, `s`,
//! `m`, `h`, e.g. `10s`, `1m30s`, `1.5s`, `250ms`. A bare number is refused (`10` could mean
//! seconds or nanoseconds), as is a negative duration. `0s` is allowed.
//!
//! Every duration field of a manifest (`stopGracePeriod`, `healthcheck.interval`, `.timeout`,
//! `.startPeriod`) is at most [`MAX_DURATION`] (24h); validation refuses longer ones at their line
//! and column. A bound keeps deadline arithmetic (`Instant + Duration`) far from overflow, and a
//! day is longer than any sensible grace period or probe interval.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What went wrong parsing a size or a duration; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(String);

/// The allowed forms of a size, used in error messages.
pub const SIZE_HELP: &str = "a size is a number of bytes or a number with a unit: b, k/Ki, m/Mi, g/Gi, t/Ti (all powers of 1024, any case), e.g. 64Mi, 512m, 1g";
/// The allowed forms of a duration, used in error messages.
pub const DURATION_HELP: &str = "a duration is a number with a unit: ns, us, ms, s, m, h, possibly combined, e.g. 10s, 1m30s, 500ms";

/// Deserialises a string and parses it with `FromStr`, inside the deserializer's visitor so
/// that a parse error is reported at the string's own line and column.
pub(crate) fn parse_string<'de, D, T>(d: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    struct V<T>(&'static str, std::marker::PhantomData<T>);
    impl<T: FromStr<Err = String>> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }
    d.deserialize_str(V(expecting, std::marker::PhantomData))
}

/// A number of bytes written with a human unit. See the module docs for the exact units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnitError(format!("invalid size {s:?}: {SIZE_HELP}"));
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty()
            || num.starts_with('.')
            || num.ends_with('.')
            || num.matches('.').count() > 1
        {
            return Err(bad());
        }
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "ki" | "kib" => 1 << 10,
            "m" | "mb" | "mi" | "mib" => 1 << 20,
            "g" | "gb" | "gi" | "gib" => 1 << 30,
            "t" | "tb" | "ti" | "tib" => 1 << 40,
            _ => return Err(bad()),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let int: u64 = int_part.parse().map_err(|_| bad())?;
        let whole = int
            .checked_mul(factor)
            .ok_or_else(|| UnitError(format!("size {s:?} is too large")))?;
        // Fraction: exact integer arithmetic on up to 18 digits, rounded down.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        let frac = if frac_digits.is_empty() {
            0
        } else {
            let n: u128 = frac_digits.parse().map_err(|_| bad())?;
            let scale = 10u128.pow(frac_digits.len() as u32);
            (n * u128::from(factor) / scale) as u64
        };
        whole
            .checked_add(frac)
            .map(ByteSize)
            .ok_or_else(|| UnitError(format!("size {s:?} is too large")))
    }
}

impl fmt::Display for ByteSize {
    /// The shortest exact form: `64Mi`, `1Gi`, `1500` (bytes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "Ti"),
            (1 << 30, "Gi"),
            (1 << 20, "Mi"),
            (1 << 10, "Ki"),
        ];
        for (factor, unit) in UNITS {
            if self.0 != 0 && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(SIZE_HELP)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| {
                    E::custom(format!(
                        "invalid size {v}: must not be negative; {SIZE_HELP}"
                    ))
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!("invalid size {v}: {SIZE_HELP}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: a number of bytes, or a number with a unit b, k/Ki, m/Mi, g/Gi, t/Ti (all powers of 1024, any case), e.g. 64Mi, 512m, 1g.",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?([bB]|[kKmMgGtT]([iI]?[bB]?))?$"}
            ]
        })
    }
}

/// The longest value any duration field of a manifest accepts: 24 hours.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A length of time written Go/Docker style (`10s`, `1m30s`). See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The duration as a standard library value.
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnitError(format!("invalid duration {s:?}: {DURATION_HELP}"));
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total: u128 = 0; // nanoseconds
        while !rest.is_empty() {
            let n = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let (num, tail) = rest.split_at(n);
            let u = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(u);
            let nanos_per: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(bad()),
            };
            if num.is_empty()
                || num.starts_with('.')
                || num.ends_with('.')
                || num.matches('.').count() > 1
            {
                return Err(bad());
            }
            let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
            let int: u128 = int_part.parse().map_err(|_| bad())?;
            let frac_digits = &frac_part[..frac_part.len().min(18)];
            let frac = if frac_digits.is_empty() {
                0
            } else {
                let f: u128 = frac_digits.parse().map_err(|_| bad())?;
                f * nanos_per / 10u128.pow(frac_digits.len() as u32)
            };
            total = int
                .checked_mul(nanos_per)
                .and_then(|v| v.checked_add(frac))
                .and_then(|v| v.checked_add(total))
                .ok_or_else(|| UnitError(format!("duration {s:?} is too long")))?;
            rest = tail;
        }
        let secs = u64::try_from(total / 1_000_000_000)
            .map_err(|_| UnitError(format!("duration {s:?} is too long")))?;
        Ok(Duration(std::time::Duration::new(
            secs,
            (total % 1_000_000_000) as u32,
        )))
    }
}

impl fmt::Display for Duration {
    /// Go style: `1h2m3s`, `1m30s`, `1.5s`, `250ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let total = d.as_nanos();
        if total == 0 {
            return f.write_str("0s");
        }
        if total < 1_000_000_000 {
            return if total.is_multiple_of(1_000_000) {
                write!(f, "{}ms", total / 1_000_000)
            } else if total.is_multiple_of(1_000) {
                write!(f, "{}us", total / 1_000)
            } else {
                write!(f, "{total}ns")
            };
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        let nanos = d.subsec_nanos();
        if nanos > 0 {
            let frac = format!("{nanos:09}");
            write!(f, "{s}.{}s", frac.trim_end_matches('0'))
        } else if s > 0 {
            write!(f, "{s}s")
        } else {
            Ok(())
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(DURATION_HELP)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a unit is required (e.g. {v}s); {DURATION_HELP}"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("invalid duration {v}: {DURATION_HELP}"))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a unit is required; {DURATION_HELP}"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: numbers with units ns, us, ms, s, m, h, e.g. 10s, 1m30s, 500ms.",
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> u64 {
        s.parse::<ByteSize>().map(|b| b.0).unwrap_or(u64::MAX)
    }

    #[test]
    fn sizes_follow_docker_binary_units() {
        assert_eq!(size("0"), 0);
        assert_eq!(size("1500"), 1500);
        assert_eq!(size("10b"), 10);
        assert_eq!(size("1k"), 1024);
        assert_eq!(size("1Ki"), 1024);
        assert_eq!(size("1KiB"), 1024);
        assert_eq!(size("512m"), 512 << 20);
        assert_eq!(size("512M"), 512 << 20);
        assert_eq!(size("64Mi"), 64 << 20);
        assert_eq!(size("1G"), 1 << 30);
        assert_eq!(size("1gb"), 1 << 30);
        assert_eq!(size("2T"), 2 << 40);
        assert_eq!(size("1.5Gi"), 3 << 29);
        assert_eq!(size("0.5k"), 512);
    }

    #[test]
    fn bad_sizes_say_what_is_allowed() {
        for bad in [
            "",
            "m",
            "-1m",
            "1x",
            "1.2.3m",
            "1e6",
            ".5m",
            "5.m",
            "1 G B",
            "99999999999999T",
        ] {
            let err = bad.parse::<ByteSize>().expect_err(bad);
            assert!(err.0.contains("size"), "{bad}: {err}");
        }
        let err = "12q".parse::<ByteSize>().expect_err("12q");
        assert!(err.0.contains("64Mi"), "{err}");
    }

    #[test]
    fn size_display_round_trips() {
        for s in ["64Mi", "1Gi", "1500", "0", "3Ki", "2Ti"] {
            let b: ByteSize = s.parse().expect(s);
            assert_eq!(b.to_string(), s);
        }
    }

    fn dur(s: &str) -> std::time::Duration {
        s.parse::<Duration>()
            .map(|d| d.0)
            .unwrap_or(std::time::Duration::MAX)
    }

    #[test]
    fn durations_parse_go_style() {
        use std::time::Duration as D;
        assert_eq!(dur("10s"), D::from_secs(10));
        assert_eq!(dur("1m30s"), D::from_secs(90));
        assert_eq!(dur("1h"), D::from_secs(3600));
        assert_eq!(dur("1.5s"), D::from_millis(1500));
        assert_eq!(dur("250ms"), D::from_millis(250));
        assert_eq!(dur("3us"), D::from_micros(3));
        assert_eq!(dur("3µs"), D::from_micros(3));
        assert_eq!(dur("7ns"), D::from_nanos(7));
        assert_eq!(dur("0s"), D::ZERO);
        assert_eq!(dur("2h45m"), D::from_secs(2 * 3600 + 45 * 60));
    }

    #[test]
    fn bad_durations_are_refused() {
        for bad in ["", "10", "s", "-1s", "1d", "1.s", "10 s", "1m30", "5sec"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn duration_display_round_trips() {
        for s in [
            "10s", "1m30s", "1h", "1.5s", "250ms", "0s", "2h45m", "7ns", "3us",
        ] {
            let d: Duration = s.parse().expect(s);
            assert_eq!(d.to_string(), s);
        }
    }
}
