//! Turning a message timestamp into an age against a given "now" (the sidecar's clock): unit
//! rules (seconds per the AMQP spec, milliseconds from `timestamp_in_ms` or from clients that
//! write `Date.now()`), clamping into `[0, max_age]`, and saying what was done so it can be
//! counted.

/// Values at or above this cannot be seconds (year 5138): read as milliseconds under `auto`.
const AUTO_MS_FROM: u64 = 100_000_000_000;
/// Values at or above this are microseconds under `auto`.
const AUTO_US_FROM: u64 = 100_000_000_000_000;

/// The unit of a raw timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Unit {
    /// Seconds unless the magnitude says milliseconds (>= 1e11) or microseconds (>= 1e14).
    Auto,
    /// Seconds (the AMQP spec).
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
}

impl Unit {
    /// Parses `s`, `ms`, `us` or `auto`.
    pub fn parse(s: &str) -> Option<Unit> {
        match s {
            "auto" => Some(Unit::Auto),
            "s" => Some(Unit::S),
            "ms" => Some(Unit::Ms),
            "us" => Some(Unit::Us),
            _ => None,
        }
    }
}

/// How raw timestamps become ages.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Unit for timestamps that do not say theirs.
    pub default_unit: Unit,
    /// Ages are clamped into `[0, max_age_ms]`.
    pub max_age_ms: i64,
}

/// What became of one raw timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A usable age.
    Age {
        /// The age in milliseconds, within `[0, max_age_ms]`.
        age_ms: i64,
        /// The age was outside `[0, max_age_ms]` and was clamped.
        clamped: bool,
        /// The unit was inferred from the magnitude (not seconds).
        converted: bool,
    },
    /// No timestamp (absent or zero): no age.
    Missing,
}

impl Policy {
    /// The age of a message stamped `raw` (in `unit`, or the default unit) observed at `now_ms`.
    pub fn age(&self, raw: Option<u64>, unit: Option<Unit>, now_ms: i64) -> Outcome {
        let raw = match raw {
            None | Some(0) => return Outcome::Missing,
            Some(v) => v,
        };
        let (ts_ms, converted) = match unit.unwrap_or(self.default_unit) {
            Unit::S => (i128::from(raw) * 1000, false),
            Unit::Ms => (i128::from(raw), false),
            Unit::Us => (i128::from(raw) / 1000, false),
            Unit::Auto if raw >= AUTO_US_FROM => (i128::from(raw) / 1000, true),
            Unit::Auto if raw >= AUTO_MS_FROM => (i128::from(raw), true),
            Unit::Auto => (i128::from(raw) * 1000, false),
        };
        let age = i128::from(now_ms) - ts_ms;
        let max = i128::from(self.max_age_ms);
        let clamped_age = age.clamp(0, max);
        Outcome::Age {
            age_ms: clamped_age as i64,
            clamped: clamped_age != age,
            converted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_817_979_177;
    const POLICY: Policy = Policy {
        default_unit: Unit::Auto,
        max_age_ms: 3_600_000,
    };

    fn age(raw: u64, unit: Option<Unit>) -> Outcome {
        POLICY.age(Some(raw), unit, NOW)
    }

    #[test]
    fn seconds_and_auto_units() {
        let ok = |age_ms, converted| Outcome::Age {
            age_ms,
            clamped: false,
            converted,
        };
        assert_eq!(age(1_795_817_969, None), ok(10_177, false));
        assert_eq!(age(1_795_817_969_000, None), ok(10_177, true));
        assert_eq!(age(1_795_817_969_000_000, None), ok(10_177, true));
        assert_eq!(age(1_795_817_969_000, Some(Unit::Ms)), ok(10_177, false));
        assert_eq!(age(1_795_817_969, Some(Unit::S)), ok(10_177, false));
        assert_eq!(
            age(1_795_817_969_000_000, Some(Unit::Us)),
            ok(10_177, false)
        );
    }

    #[test]
    fn missing_and_clamped() {
        assert_eq!(POLICY.age(None, None, NOW), Outcome::Missing);
        assert_eq!(POLICY.age(Some(0), None, NOW), Outcome::Missing);
        // From the future: clamped to 0.
        let future = POLICY.age(Some(1_795_817_999), None, NOW);
        assert_eq!(
            future,
            Outcome::Age {
                age_ms: 0,
                clamped: true,
                converted: false
            }
        );
        // Too old: clamped to max_age.
        let old = POLICY.age(Some(1), Some(Unit::S), NOW);
        assert_eq!(
            old,
            Outcome::Age {
                age_ms: 3_600_000,
                clamped: true,
                converted: false
            }
        );
        // Milliseconds mistakenly declared as seconds: far future, clamped, no overflow.
        let huge = POLICY.age(Some(u64::MAX), Some(Unit::S), NOW);
        assert!(matches!(
            huge,
            Outcome::Age {
                age_ms: 0,
                clamped: true,
                ..
            }
        ));
    }
}
