//! Folds every age observed during the current interval into one [`AgeSummary`], so a report's
//! size depends on how spread the ages are, never on how many messages arrived.

use std::sync::{Arc, Mutex};

use dwell_proto::summary::AgeSummary;
use dwell_runtime::clock::SharedClock;

use crate::telemetry::Metrics;
use crate::timestamp::{Outcome, Policy, Unit};

/// Where an age came from (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The consumer app reported a delivery.
    Report,
    /// The peek source read the head message.
    Peek,
    /// The AMQP tap read a delivery off the wire.
    Tap,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Report => "report",
            Source::Peek => "peek",
            Source::Tap => "tap",
        }
    }
}

/// The current interval's ages, shared by every source.
pub struct Accumulator {
    policy: Policy,
    clock: SharedClock,
    current: Mutex<AgeSummary>,
    metrics: Arc<Metrics>,
}

impl Accumulator {
    /// An empty accumulator whose "now" is `clock`.
    pub fn new(policy: Policy, clock: SharedClock, metrics: Arc<Metrics>) -> Self {
        Self {
            policy,
            clock,
            current: Mutex::new(AgeSummary::new()),
            metrics,
        }
    }

    /// Records a delivery stamped `raw`, observed now by the clock; returns what became of it.
    pub fn observe(
        &self,
        raw: Option<u64>,
        unit: Option<Unit>,
        redelivered: bool,
        source: Source,
    ) -> Outcome {
        self.observe_at(raw, unit, redelivered, source, self.clock.now_ms())
    }

    /// Records a delivery stamped `raw`, observed at `now_ms`.
    pub fn observe_at(
        &self,
        raw: Option<u64>,
        unit: Option<Unit>,
        redelivered: bool,
        source: Source,
        now_ms: i64,
    ) -> Outcome {
        let outcome = self.policy.age(raw, unit, now_ms);
        match outcome {
            Outcome::Missing => {
                self.metrics.missing.inc();
            }
            Outcome::Age {
                age_ms,
                clamped,
                converted,
            } => {
                if clamped {
                    self.metrics.clamped.inc();
                }
                if converted {
                    self.metrics.unit_converted.inc();
                }
                Metrics::inc(&self.metrics.ages, source.label());
                self.lock().record(age_ms, now_ms, redelivered);
            }
        }
        outcome
    }

    /// Takes the interval's summary, leaving an empty one.
    pub fn take(&self) -> AgeSummary {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AgeSummary> {
        // A panic while holding the lock cannot leave a summary half-updated in a way that
        // matters more than losing the sidecar, so recover the data instead of propagating.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use dwell_runtime::clock::ManualClock;

    use super::*;

    const POLICY: Policy = Policy {
        default_unit: Unit::Auto,
        max_age_ms: 60_000,
    };

    #[test]
    fn summary_size_does_not_grow_with_rate() {
        let metrics = Metrics::new();
        let acc = Accumulator::new(POLICY, ManualClock::new(0), metrics.clone());
        let now = 1_800_000_000_000;
        for i in 0..100_000u64 {
            // Ages spread over 1..=5 s.
            let ts = now as u64 - 1_000 - (i % 4_000);
            acc.observe_at(Some(ts), Some(Unit::Ms), i % 10 == 0, Source::Report, now);
        }
        acc.observe_at(None, None, false, Source::Report, now);
        acc.observe_at(
            Some(now as u64 + 5_000),
            Some(Unit::Ms),
            false,
            Source::Report,
            now,
        );
        let s = acc.take();
        assert_eq!(s.count(), 100_001);
        assert_eq!(s.redelivered(), 10_000);
        assert_eq!(s.min_ms(), Some(0));
        assert_eq!(s.max_ms(), Some(4_999));
        assert!(s.buckets().len() < 100, "{} buckets", s.buckets().len());
        assert_eq!(metrics.missing.get(), 1);
        assert_eq!(metrics.clamped.get(), 1);
        assert_eq!(acc.take().count(), 0);
    }

    #[test]
    fn ages_are_measured_against_the_injected_clock() {
        let clock = ManualClock::new(1_800_000_000_000);
        let acc = Accumulator::new(POLICY, clock.clone(), Metrics::new());
        let stamped = 1_800_000_000_000 - 5_000;
        let age = |acc: &Accumulator| match acc.observe(Some(stamped), None, false, Source::Report)
        {
            Outcome::Age { age_ms, .. } => age_ms,
            Outcome::Missing => panic!("no age"),
        };
        assert_eq!(age(&acc), 5_000);
        clock.advance(1_500);
        assert_eq!(
            age(&acc),
            6_500,
            "the same stamp is older once the clock moved"
        );
        let s = acc.take();
        assert_eq!(
            (s.count(), s.min_ms(), s.max_ms()),
            (2, Some(5_000), Some(6_500))
        );
    }
}
