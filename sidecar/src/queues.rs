//! The queues the sidecar reports on, one source per (queue, vhost): the `--queue` given on the
//! command line, and every queue the AMQP tap sees the app consume from or `basic.get`. Each holds
//! its interval's ages and the stats source's latest view of it. Bounded: past the limit a new
//! queue is refused (counted, logged once) instead of growing memory and report volume.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use dwell_proto::v1::QueueState;
use dwell_runtime::clock::SharedClock;
use prometheus_client::metrics::counter::Counter;

use crate::accumulator::{Accumulator, Source};
use crate::telemetry::{Metrics, QueueLabels};
use crate::timestamp::{Outcome, Policy, Unit};

/// Most queues reported by one sidecar (a consumer pod rarely reads more than a handful).
pub const DEFAULT_LIMIT: usize = 256;

/// Which queue a source is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    /// The queue name.
    pub queue: String,
    /// Its virtual host.
    pub vhost: String,
}

/// One reported queue: its interval's ages, its broker state, and its delivery counters.
pub struct Tracked {
    key: QueueKey,
    ages: Arc<Accumulator>,
    state: Mutex<Option<QueueState>>,
    deliveries: Counter,
    without_timestamp: Counter,
    redelivered: Counter,
}

impl Tracked {
    /// Which queue this is.
    pub fn key(&self) -> &QueueKey {
        &self.key
    }

    /// The current interval's ages.
    pub fn ages(&self) -> &Arc<Accumulator> {
        &self.ages
    }

    /// Records one delivery the tap read off the wire.
    pub fn delivered(&self, raw: Option<u64>, unit: Option<Unit>, redelivered: bool) -> Outcome {
        self.deliveries.inc();
        if redelivered {
            self.redelivered.inc();
        }
        let outcome = self.ages.observe(raw, unit, redelivered, Source::Tap);
        if outcome == Outcome::Missing {
            self.without_timestamp.inc();
        }
        outcome
    }

    /// Stores the stats source's latest view.
    pub fn set_state(&self, state: QueueState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
    }

    /// The stats source's latest view, if any.
    pub fn state(&self) -> Option<QueueState> {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every reported queue.
pub struct Queues {
    policy: Policy,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    limit: usize,
    list: RwLock<Vec<Arc<Tracked>>>,
    refused_logged: AtomicBool,
}

impl Queues {
    /// No queues yet; at most `limit` (at least 1) will be tracked.
    pub fn new(policy: Policy, clock: SharedClock, metrics: Arc<Metrics>, limit: usize) -> Self {
        Self {
            policy,
            clock,
            metrics,
            limit: limit.max(1),
            list: RwLock::new(Vec::new()),
            refused_logged: AtomicBool::new(false),
        }
    }

    /// The queue's entry, created on first sight; None when the limit is reached (counted).
    pub fn track(&self, queue: &str, vhost: &str) -> Option<Arc<Tracked>> {
        let find = |list: &[Arc<Tracked>]| {
            list.iter()
                .find(|t| t.key.queue == queue && t.key.vhost == vhost)
                .cloned()
        };
        if let Some(t) = find(&self.list.read().unwrap_or_else(|e| e.into_inner())) {
            return Some(t);
        }
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = find(&list) {
            return Some(t);
        }
        if list.len() >= self.limit {
            self.metrics.queues_refused.inc();
            if !self.refused_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    limit = self.limit,
                    queue,
                    vhost,
                    "queue limit reached: further queues are not reported"
                );
            }
            return None;
        }
        let labels = QueueLabels {
            queue: queue.to_owned(),
            vhost: vhost.to_owned(),
        };
        let m = &self.metrics;
        let tracked = Arc::new(Tracked {
            key: QueueKey {
                queue: queue.to_owned(),
                vhost: vhost.to_owned(),
            },
            ages: Arc::new(Accumulator::new(
                self.policy,
                self.clock.clone(),
                self.metrics.clone(),
            )),
            state: Mutex::new(None),
            deliveries: m.tap_deliveries.get_or_create(&labels).clone(),
            without_timestamp: m.tap_without_timestamp.get_or_create(&labels).clone(),
            redelivered: m.tap_redelivered.get_or_create(&labels).clone(),
        });
        list.push(tracked.clone());
        m.queues_tracked.set(list.len() as i64);
        tracing::info!(queue, vhost, "reporting a new queue");
        Some(tracked)
    }

    /// Every tracked queue, in the order first seen.
    pub fn all(&self) -> Vec<Arc<Tracked>> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use dwell_runtime::clock::ManualClock;

    use super::*;

    #[test]
    fn one_entry_per_queue_and_vhost_within_the_limit() {
        let metrics = Metrics::new();
        let policy = Policy {
            default_unit: Unit::Auto,
            max_age_ms: 60_000,
        };
        let queues = Queues::new(policy, ManualClock::new(10_000), metrics.clone(), 2);
        let a = queues.track("a", "/").unwrap();
        assert!(Arc::ptr_eq(&a, &queues.track("a", "/").unwrap()));
        let other_vhost = queues.track("a", "v").unwrap();
        assert!(!Arc::ptr_eq(&a, &other_vhost));
        assert!(queues.track("b", "/").is_none(), "over the limit");
        assert_eq!(metrics.queues_refused.get(), 1);
        assert_eq!(queues.all().len(), 2);
        a.delivered(Some(5), Some(Unit::S), true);
        a.delivered(None, None, false);
        assert_eq!(a.ages().take().count(), 1);
        let text = metrics.encode();
        assert!(
            text.contains(r#"dwell_sidecar_tap_deliveries_total{queue="a",vhost="/"} 2"#),
            "{text}"
        );
        assert!(text.contains(
            r#"dwell_sidecar_tap_deliveries_without_timestamp_total{queue="a",vhost="/"} 1"#
        ));
        assert!(text.contains(r#"dwell_sidecar_tap_redelivered_total{queue="a",vhost="/"} 1"#));
    }
}
