//! The result cache: the last answer per request (rule, namespace, selectors, object), kept
//! while it is exactly what a fresh evaluation would give. An entry holds only while
//! - the rules in force are the ones it was computed with (a reload changes the epoch),
//! - the store's stamp for the namespace it read is unchanged (any report, goodbye or eviction
//!   there changes it), and
//! - the clock is within the time the evaluation said its answer holds (the next slot boundary,
//!   a source going stale, a stall starting; the same millisecond for a growing stall, a rate
//!   over a moving span, or a fallback stamped now).
//!
//! So a hit is never staler than a miss would be: the HPA's 15 s reads, many HPAs asking for
//! the same metric and a kube-apiserver retry storm cost one evaluation per change, not per
//! request. Bounded in entries and in values held.
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::evaluate::{Pods, Request, Scope};
use crate::provider::{MetricValue, ProviderError};
use crate::selector::Selector;
use crate::window::Stamp;

/// Most requests remembered.
const MAX_ENTRIES: usize = 1024;
/// Most values held in all entries together (a Pods answer holds one per pod).
const MAX_VALUES: usize = 50_000;

/// What an answer was computed from, and until when it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// The rules' epoch.
    pub epoch: u64,
    /// The store's stamp for what the evaluation read, taken before it.
    pub stamp: Stamp,
    /// The evaluation's time.
    pub computed_at_ms: i64,
    /// The last time the answer holds.
    pub valid_until_ms: i64,
}

impl Validity {
    /// Whether an answer computed under `self` is the answer under `now`.
    pub fn holds(&self, now: &Validity) -> bool {
        self.epoch == now.epoch
            && self.stamp == now.stamp
            && (self.computed_at_ms..=self.valid_until_ms).contains(&now.computed_at_ms)
    }
}

/// An answer: values (shared: a hit hands out the same ones), or why there are none.
pub type Answer = Result<Arc<[MetricValue]>, ProviderError>;

/// A served-value gauge.
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// The served-value gauges of a metric, and what serving an answer sets them to.
#[derive(Debug, Clone)]
pub struct Gauges {
    /// Last value served.
    pub value: FloatGauge,
    /// Age of the data behind it.
    pub age: FloatGauge,
    /// The answer's first value.
    pub set_to: f64,
    /// Its observation time (the age is taken at each serving).
    pub observed_at_ms: i64,
}

impl Gauges {
    /// Sets the gauges for serving the answer at `now_ms`.
    pub fn serve(&self, now_ms: i64) {
        self.value.set(self.set_to);
        // Saturating: an outcome without ages may carry no observation time (i64::MIN).
        let age = now_ms.saturating_sub(self.observed_at_ms).max(0) as f64 / 1000.0;
        self.age.set(age);
    }
}

/// One remembered answer.
#[derive(Debug)]
pub struct Entry {
    /// When it holds.
    pub validity: Validity,
    /// The answer.
    pub answer: Answer,
    /// The gauges serving it sets (None when there is no value).
    pub gauges: Option<Gauges>,
}

impl Entry {
    fn weight(&self) -> usize {
        self.answer.as_ref().map_or(1, |values| values.len().max(1))
    }
}

/// A request as a map key. `object` is derived from the other fields, so it is left out of the
/// hash (equality still compares every field).
#[derive(Debug, Clone, PartialEq)]
struct Key(Request);

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let r = &self.0;
        r.metric.hash(h);
        std::mem::discriminant(&r.kind).hash(h);
        match &r.scope {
            Scope::Namespace(ns) => ns.hash(h),
            Scope::Cluster => 0u8.hash(h),
        }
        r.resource.hash(h);
        match &r.pods {
            Pods::Any => 0u8.hash(h),
            Pods::Named(pod) => pod.hash(h),
            Pods::Selected(sel) => hash_selector(sel, h),
        }
        hash_selector(&r.metric_selector, h);
        r.object_name.hash(h);
    }
}

/// Hashes what a selector's equality compares: its requirements in order.
fn hash_selector<H: Hasher>(sel: &Selector, h: &mut H) {
    for req in sel.requirements() {
        req.key().hash(h);
        req.operator().hash(h);
        for v in req.values() {
            v.hash(h);
        }
    }
    sel.requirements().len().hash(h);
}

/// Hit and miss counters.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    /// Answers served from the cache.
    pub hits: Counter,
    /// Answers computed.
    pub misses: Counter,
}

/// The cache itself.
#[derive(Debug, Default)]
pub struct ResultCache {
    entries: DashMap<Key, Arc<Entry>>,
    values: AtomicUsize,
    metrics: CacheMetrics,
}

impl ResultCache {
    /// The counters (shared with the registry).
    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }

    /// The remembered answer for `req` if it holds under `now`.
    pub fn get(&self, req: Request, now: &Validity) -> (Request, Option<Arc<Entry>>) {
        let key = Key(req);
        let hit = self
            .entries
            .get(&key)
            .filter(|e| e.validity.holds(now))
            .map(|e| e.value().clone());
        match &hit {
            Some(_) => self.metrics.hits.inc(),
            None => self.metrics.misses.inc(),
        };
        (key.0, hit)
    }

    /// Remembers `entry` for `req`, making room when full: first by dropping what no longer
    /// holds at `now`, then everything.
    pub fn put(&self, req: Request, entry: Arc<Entry>, now: &Validity) {
        let weight = entry.weight();
        if weight > MAX_VALUES {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES
            || self.values.load(Ordering::Relaxed) + weight > MAX_VALUES
        {
            self.entries.retain(|_, e| e.validity.holds(now));
            if self.entries.len() >= MAX_ENTRIES || self.weight_held() + weight > MAX_VALUES {
                self.entries.clear();
            }
            self.values.store(self.weight_held(), Ordering::Relaxed);
        }
        let old = self.entries.insert(Key(req), entry);
        // Approximate under concurrent puts; recounted whenever it says the cache is full.
        let _ = self
            .values
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some((v + weight).saturating_sub(old.as_ref().map_or(0, |o| o.weight())))
            });
    }

    fn weight_held(&self) -> usize {
        self.entries.iter().map(|e| e.weight()).sum()
    }

    /// Number of requests remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
