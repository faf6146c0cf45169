//! Medians, percentiles and ratios over measurements.
use std::time::Duration;

/// The median of `values` (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// The `p`-th percentile (nearest rank) of `values` (0 when empty).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Latencies recorded in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    micros: Vec<f64>,
    /// Requests that failed (non-2xx or transport error).
    pub errors: u64,
}

impl Latencies {
    /// Records one successful request.
    pub fn record(&mut self, d: Duration) {
        self.micros.push(d.as_secs_f64() * 1e6);
    }
    /// Number of successful requests.
    pub fn len(&self) -> usize {
        self.micros.len()
    }
    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }
    /// The `p`-th percentile in milliseconds.
    pub fn ms(&self, p: f64) -> f64 {
        percentile(&self.micros, p) / 1000.0
    }
    /// Adds another recorder's values.
    pub fn extend(&mut self, other: &Latencies) {
        self.micros.extend_from_slice(&other.micros);
        self.errors += other.errors;
    }
}

/// `a / b` formatted as a ratio (`n/a` when `b` is 0).
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "n/a".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }
}
