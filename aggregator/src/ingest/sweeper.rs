//! Periodic upkeep of the window: drops expired slots, evicts sources silent past
//! `stale_after + evict_after`, and publishes the live/stale source gauges.
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::window::SweepCounts;

use super::IngestMetrics;

/// One sweep with the rules in force; updates the gauges.
pub fn sweep_once(engine: &Engine, metrics: &IngestMetrics) -> SweepCounts {
    let rules = engine.rules();
    let now = engine.clock().now_ms();
    let counts = engine
        .store()
        .sweep(now, rules.stale_after_ms, rules.evict_after_ms);
    metrics.sources_live.set(counts.live as i64);
    metrics.sources_stale.set(counts.stale as i64);
    metrics.evicted.inc_by(counts.evicted as u64);
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
pub async fn run(
    engine: Arc<Engine>,
    metrics: IngestMetrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => { sweep_once(&engine, &metrics); }
        }
    }
}
