//! The statistics a rule can take over a window of ages: `max`, `min`, `mean`, `count`, `rate`,
//! `last` and any percentile `pNN` (`p50`, `p90`, `p99.9`).
use std::fmt;
use std::str::FromStr;

use dwell_proto::summary::AgeSummary;

/// One statistic over the ages in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// Largest age.
    Max,
    /// Smallest age.
    Min,
    /// Mean age.
    Mean,
    /// Number of ages (unitless).
    Count,
    /// Ages per second over the window (unitless).
    Rate,
    /// The most recently observed age.
    Last,
    /// A percentile, `0 < p <= 100`.
    Percentile(f64),
}

/// Why a statistic name is not one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "unknown statistic {0:?}: expected max, min, mean, count, rate, last or pNN (0 < NN <= 100)"
)]
pub struct UnknownStatistic(pub String);

impl Statistic {
    /// Whether the statistic is an age (converted by `unit`, raised by stall detection).
    pub fn is_age(self) -> bool {
        !matches!(self, Self::Count | Self::Rate)
    }

    /// Its name as a CEL variable (`p99.9` → `p99_9`).
    pub fn variable(self) -> String {
        self.to_string().replace('.', "_")
    }

    /// Parses a CEL variable name (`p99_9`), or None when it names no statistic.
    pub fn from_variable(name: &str) -> Option<Self> {
        name.replace('_', ".").parse().ok()
    }

    /// The statistic over `ages` (milliseconds for ages; per second for `rate` over `window_ms`).
    /// None when there is no age to take it over (`count` and `rate` are then 0).
    pub fn compute(self, ages: &AgeSummary, window_ms: i64) -> Option<f64> {
        match self {
            Self::Count => Some(ages.count() as f64),
            Self::Rate => Some(ages.count() as f64 * 1000.0 / window_ms.max(1) as f64),
            Self::Max => ages.max_ms().map(|v| v as f64),
            Self::Min => ages.min_ms().map(|v| v as f64),
            Self::Mean => ages.mean_ms(),
            Self::Last => ages.last().map(|(age, _)| age as f64),
            Self::Percentile(p) => ages.quantile_ms(p / 100.0),
        }
    }
}

impl FromStr for Statistic {
    type Err = UnknownStatistic;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "max" => Self::Max,
            "min" => Self::Min,
            "mean" => Self::Mean,
            "count" => Self::Count,
            "rate" => Self::Rate,
            "last" => Self::Last,
            _ => {
                let digits = s
                    .strip_prefix('p')
                    .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit() || c == '.'))
                    .ok_or_else(|| UnknownStatistic(s.to_string()))?;
                let p: f64 = digits
                    .parse()
                    .map_err(|_| UnknownStatistic(s.to_string()))?;
                if !(p > 0.0 && p <= 100.0) {
                    return Err(UnknownStatistic(s.to_string()));
                }
                Self::Percentile(p)
            }
        })
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Max => f.write_str("max"),
            Self::Min => f.write_str("min"),
            Self::Mean => f.write_str("mean"),
            Self::Count => f.write_str("count"),
            Self::Rate => f.write_str("rate"),
            Self::Last => f.write_str("last"),
            Self::Percentile(p) => write!(f, "p{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for name in [
            "max", "min", "mean", "count", "rate", "last", "p50", "p99.9", "p100",
        ] {
            let s: Statistic = name.parse().expect(name);
            assert_eq!(s.to_string(), name);
        }
        for bad in ["p0", "p101", "p", "p9x", "median", "p-1", "p1.2.3"] {
            assert!(bad.parse::<Statistic>().is_err(), "{bad}");
        }
        assert_eq!(Statistic::Percentile(99.9).variable(), "p99_9");
        assert_eq!(
            Statistic::from_variable("p99_9"),
            Some(Statistic::Percentile(99.9))
        );
        assert_eq!(Statistic::from_variable("messages_ready"), None);
    }

    #[test]
    fn computes_over_ages() {
        let mut ages = AgeSummary::new();
        for (i, age) in [1_000, 2_000, 3_000, 4_000].into_iter().enumerate() {
            ages.record(age, i as i64, false);
        }
        ages.record(500, 0, false);
        assert_eq!(Statistic::Max.compute(&ages, 10_000), Some(4_000.0));
        assert_eq!(Statistic::Min.compute(&ages, 10_000), Some(500.0));
        assert_eq!(Statistic::Mean.compute(&ages, 10_000), Some(2_100.0));
        assert_eq!(Statistic::Count.compute(&ages, 10_000), Some(5.0));
        assert_eq!(Statistic::Rate.compute(&ages, 10_000), Some(0.5));
        assert_eq!(Statistic::Last.compute(&ages, 10_000), Some(4_000.0));
        let p50 = Statistic::Percentile(50.0).compute(&ages, 10_000);
        assert!(p50.is_some_and(|v| (v - 2_000.0).abs() <= 20.0), "{p50:?}");
        let empty = AgeSummary::new();
        assert_eq!(Statistic::Max.compute(&empty, 10_000), None);
        assert_eq!(Statistic::Count.compute(&empty, 10_000), Some(0.0));
    }
}
