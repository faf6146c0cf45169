//! Arrival traces: when each message of a test run is published. A trace is a list of offsets from
//! the start, generated from piecewise-constant rates with Poisson arrivals from a fixed seed, so
//! the closed-loop test and the comparison binary replay exactly the same load.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A stretch of constant arrival rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// How long it lasts.
    pub duration: Duration,
    /// Mean arrivals per second (0 for silence).
    pub rate: f64,
}

/// Publish times, as offsets from the start of the run, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Offsets of each arrival; the index is the message's sequence number.
    pub arrivals: Vec<Duration>,
    /// Total length of the trace (the end of its last phase).
    pub length: Duration,
}

impl Trace {
    /// Poisson arrivals through `phases`, drawn from `seed`.
    pub fn poisson(phases: &[Phase], seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut arrivals = Vec::new();
        let mut start = 0.0_f64;
        for phase in phases {
            let end = start + phase.duration.as_secs_f64();
            if phase.rate > 0.0 {
                let mut t = start;
                loop {
                    // Exponential gaps: −ln(U) / rate, with U in (0, 1].
                    let u: f64 = 1.0 - rng.random::<f64>();
                    t += -u.ln() / phase.rate;
                    if t >= end {
                        break;
                    }
                    arrivals.push(Duration::from_secs_f64(t));
                }
            }
            start = end;
        }
        Self {
            arrivals,
            length: Duration::from_secs_f64(start),
        }
    }

    /// The closed-loop test's load: a quiet baseline, a burst well above one worker's capacity,
    /// then quiet again so replicas can come back down. Rates are in messages per second and
    /// scale with `capacity` (what one worker processes per second).
    pub fn bursty(capacity: f64, seed: u64) -> Self {
        let secs = Duration::from_secs;
        Self::poisson(
            &[
                Phase {
                    duration: secs(8),
                    rate: 0.5 * capacity,
                },
                Phase {
                    duration: secs(10),
                    rate: 4.0 * capacity,
                },
                Phase {
                    duration: secs(22),
                    rate: 0.3 * capacity,
                },
            ],
            seed,
        )
    }

    /// How many messages arrive in `[from, to)`.
    pub fn count_between(&self, from: Duration, to: Duration) -> usize {
        self.arrivals
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_trace_and_rates_roughly_hold() {
        let phases = [
            Phase {
                duration: Duration::from_secs(100),
                rate: 10.0,
            },
            Phase {
                duration: Duration::from_secs(100),
                rate: 0.0,
            },
        ];
        let a = Trace::poisson(&phases, 7);
        assert_eq!(a, Trace::poisson(&phases, 7));
        assert_ne!(a, Trace::poisson(&phases, 8));
        // 1000 expected; a Poisson count is within ±15 % with overwhelming probability.
        assert!(
            (850..1150).contains(&a.arrivals.len()),
            "{}",
            a.arrivals.len()
        );
        assert_eq!(
            a.count_between(Duration::from_secs(100), Duration::from_secs(200)),
            0
        );
        assert!(a.arrivals.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(a.length, Duration::from_secs(200));
    }

    #[test]
    fn bursty_trace_has_its_burst_in_the_middle() {
        let t = Trace::bursty(10.0, 1);
        let s = Duration::from_secs;
        let before = t.count_between(s(0), s(8)) as f64 / 8.0;
        let burst = t.count_between(s(8), s(18)) as f64 / 10.0;
        let after = t.count_between(s(18), s(40)) as f64 / 22.0;
        assert!(
            burst > 3.0 * before && burst > 3.0 * after,
            "{before} {burst} {after}"
        );
    }
}
