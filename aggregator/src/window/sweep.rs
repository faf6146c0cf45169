//! Periodic upkeep of the window: drops expired slots, evicts sources silent past
//! `stale_after + evict_after`, and publishes the live/stale source gauges.
use std::sync::Arc;
use std::time::Duration;

use dwell_runtime::clock::SharedClock;
use dwell_runtime::periodic::{First, Ticker};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio_util::sync::CancellationToken;

use super::{SweepCounts, WindowStore};
use crate::telemetry::Telemetry;

/// How long sources live: the rules' `stale_after` and `evict_after`, read at every sweep so a
/// reload applies at the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A source silent this long stops counting.
    pub stale_after_ms: i64,
    /// A stale source is forgotten this long after it went stale.
    pub evict_after_ms: i64,
}

/// The sweep's gauges and counter (cheap to clone: they share their atomics).
#[derive(Debug, Clone, Default)]
pub struct SweepMetrics {
    /// Sources reporting within stale_after.
    pub live: Gauge,
    /// Sources past stale_after, not yet evicted.
    pub stale: Gauge,
    /// Sources evicted.
    pub evicted: Counter,
}

impl SweepMetrics {
    /// Registers the families.
    pub fn register(&self, t: &Telemetry) {
        t.register(
            "sources_live",
            "Sources reporting within stale_after",
            self.live.clone(),
        );
        t.register(
            "sources_stale",
            "Sources past stale_after, not yet evicted",
            self.stale.clone(),
        );
        t.register(
            "sources_evicted",
            "Sources evicted after the grace period",
            self.evicted.clone(),
        );
    }
}

/// Sweeps `store` on a schedule.
pub struct Sweeper<R> {
    /// The window kept.
    pub store: Arc<WindowStore>,
    /// What "now" is.
    pub clock: SharedClock,
    /// The retention in force.
    pub retention: R,
    /// Where the counts go.
    pub metrics: SweepMetrics,
}

impl<R: Fn() -> Retention> Sweeper<R> {
    /// One sweep with the retention in force; updates the gauges.
    pub fn sweep_once(&self) -> SweepCounts {
        let Retention {
            stale_after_ms,
            evict_after_ms,
        } = (self.retention)();
        let counts = self
            .store
            .sweep(self.clock.now_ms(), stale_after_ms, evict_after_ms);
        self.metrics.live.set(counts.live as i64);
        self.metrics.stale.set(counts.stale as i64);
        self.metrics.evicted.inc_by(counts.evicted as u64);
        if counts.evicted > 0 {
            tracing::info!(
                evicted = counts.evicted,
                live = counts.live,
                stale = counts.stale,
                "evicted silent sources"
            );
        }
        counts
    }

    /// Sweeps every `every` until `shutdown`.
    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        let mut ticks = Ticker::new(every, First::Now, &shutdown);
        while ticks.tick().await {
            self.sweep_once();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{Ages, Observation, SourceKey};
    use dwell_proto::summary::AgeSummary;
    use dwell_runtime::clock::ManualClock;

    #[test]
    fn sweeps_with_the_retention_in_force_and_counts() {
        let clock = ManualClock::new(1_000_000);
        let store = Arc::new(WindowStore::new(30_000));
        for pod in ["a", "b"] {
            let mut summary = AgeSummary::new();
            summary.record(5, 1_000_000, false);
            store.ingest(
                Observation {
                    key: SourceKey {
                        namespace: "ns".into(),
                        pod: pod.into(),
                        queue: "q".into(),
                        vhost: "/".into(),
                    },
                    labels: Default::default(),
                    peer: "".into(),
                    instance: 0,
                    seq: 1,
                    ages: Ages::Summary {
                        summary: (&summary).into(),
                        at_ms: 1_000_000,
                    },
                    queue_state: None,
                    counters: None,
                },
                1_000_000,
            );
        }
        let retention = std::cell::Cell::new(Retention {
            stale_after_ms: 10_000,
            evict_after_ms: 20_000,
        });
        let sweeper = Sweeper {
            store: store.clone(),
            clock: clock.clone(),
            retention: || retention.get(),
            metrics: SweepMetrics::default(),
        };
        clock.advance(15_000);
        let counts = sweeper.sweep_once();
        assert_eq!((counts.live, counts.stale, counts.evicted), (0, 2, 0));
        assert_eq!(sweeper.metrics.stale.get(), 2);
        // A reload that shortens eviction applies at the next sweep.
        retention.set(Retention {
            stale_after_ms: 10_000,
            evict_after_ms: 1_000,
        });
        let counts = sweeper.sweep_once();
        assert_eq!((counts.live, counts.stale, counts.evicted), (0, 0, 2));
        assert_eq!(sweeper.metrics.evicted.get(), 2);
        assert!(store.is_empty());
    }
}
