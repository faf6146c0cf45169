//! The engine: the [`MetricsProvider`] the metrics API serves from, computed from the live window
//! state and the rules in force (swapped atomically on reload). Requests are built by
//! [`request`] and evaluated step by step by [`evaluate`], for serving and `Explain` alike;
//! served answers are remembered by [`cache`] for exactly as long as they hold.
//!
//! A read over many sources (a Pods request over a big Deployment) runs with
//! `tokio::task::block_in_place`, so the other requests queued on its worker thread move to
//! another thread instead of waiting behind it.
pub mod cache;
pub mod evaluate;
pub mod request;
pub mod watched;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;

use crate::api::memo::{HeldAnswers, Holds, SharedValues};
use crate::clock::{SharedClock, to_system_time};
use crate::policy::RuleSet;
use crate::provider::{
    CustomQuery, ExternalQuery, MetricInfo, MetricValue, MetricsProvider, ProviderError,
};
use crate::telemetry::Telemetry;
use crate::window::WindowStore;

use cache::{Entry, Gauges, ResultCache, Validity};
pub use evaluate::{Evaluation, Kind, Mode, Outcome, Pods, Request, Scope, Step};

/// Reads over more sources than this leave their worker thread to the other requests.
const HEAVY_READ_SOURCES: usize = 256;

/// Labels of the served-value gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabel {
    metric: String,
}

/// Gauges of what was last served per metric.
#[derive(Debug, Clone, Default)]
struct Served {
    value: Family<MetricLabel, cache::FloatGauge>,
    age: Family<MetricLabel, cache::FloatGauge>,
}

/// Computes metric values from the window and the rules.
#[derive(Debug)]
pub struct Engine {
    store: Arc<WindowStore>,
    rules: ArcSwap<RuleSet>,
    /// Bumped after each swap of `rules` (read before them: see [`Engine::answer`]).
    epoch: Arc<AtomicU64>,
    clock: SharedClock,
    served: Served,
    cache: ResultCache,
}

impl Engine {
    /// An engine over `store` with `rules`, reading time from `clock`.
    pub fn new(rules: RuleSet, store: Arc<WindowStore>, clock: SharedClock) -> Self {
        store.set_longest_window(rules.longest_window_ms());
        Self {
            store,
            rules: ArcSwap::from_pointee(rules),
            epoch: Arc::new(AtomicU64::new(0)),
            clock,
            served: Served::default(),
            cache: ResultCache::default(),
        }
    }

    /// Registers the served-value gauges.
    pub fn register(&self, telemetry: &Telemetry) {
        telemetry.register(
            "served_value",
            "Last value served per metric",
            self.served.value.clone(),
        );
        telemetry.register(
            "served_data_age_seconds",
            "Age of the data behind the last value served per metric",
            self.served.age.clone(),
        );
        telemetry.register(
            "result_cache_hits",
            "Metric answers served from the result cache",
            self.cache.metrics().hits.clone(),
        );
        telemetry.register(
            "result_cache_misses",
            "Metric answers computed (not in the result cache, or no longer holding)",
            self.cache.metrics().misses.clone(),
        );
    }

    /// Puts a new rule set in force (atomically) and re-sizes the window ring.
    pub fn set_rules(&self, rules: RuleSet) {
        self.store.set_longest_window(rules.longest_window_ms());
        self.rules.store(Arc::new(rules));
        // After the swap: a reader that sees the new epoch sees the new rules.
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// Evaluates a request now, with every step (what `Explain` shows and serving uses).
    pub fn evaluate(&self, req: &Request) -> Evaluation {
        evaluate::evaluate(&self.rules.load(), &self.store, req, self.clock.now_ms())
    }

    /// The answer to `req` now: remembered while it holds, else evaluated (and remembered).
    fn answer(&self, req: Request) -> Result<Vec<MetricValue>, ProviderError> {
        self.entry(req, false)
            .0
            .answer
            .clone()
            .map(|values| values.to_vec())
    }

    /// The answer to `req` with a check of whether it still holds (for the API's memo).
    fn held(&self, req: Request) -> (cache::Answer, Option<Holds>) {
        let (entry, scope) = self.entry(req, true);
        let holds = entry.answer.is_ok().then(|| self.holds(&entry, scope));
        (entry.answer.clone(), holds)
    }

    /// Whether `entry`'s answer (for a read of `scope`) still holds, checked as [`Engine::entry`]
    /// checks its cache; when it does, it is served again, which sets the gauges as serving does.
    fn holds(&self, entry: &Entry, scope: Option<String>) -> Holds {
        let (epoch, store, clock) = (self.epoch.clone(), self.store.clone(), self.clock.clone());
        let (validity, gauges) = (entry.validity, entry.gauges.clone());
        Arc::new(move || {
            let epoch = epoch.load(Ordering::Acquire);
            let stamp = store.stamp(scope.as_deref());
            let now = clock.now_ms();
            let holds = validity.holds(&Validity {
                epoch,
                stamp,
                computed_at_ms: now,
                valid_until_ms: now,
            });
            if let (true, Some(g)) = (holds, &gauges) {
                g.serve(now);
            }
            holds
        })
    }

    /// The cache entry answering `req` now (found or computed), and (when `want_scope`) the
    /// namespace it read.
    fn entry(&self, req: Request, want_scope: bool) -> (Arc<Entry>, Option<String>) {
        // Epoch, then rules, then the store's stamp, then the clock: everything the evaluation
        // reads is at least as new as what the entry says it was computed from.
        let epoch = self.epoch.load(Ordering::Acquire);
        let rules = self.rules.load_full();
        let scope =
            evaluate::rule_for(&rules, &req).and_then(|rule| evaluate::scope_of(rule, &req));
        let stamp = self.store.stamp(scope);
        let walks = self.store.sources_in(scope);
        let scope = scope.filter(|_| want_scope).map(str::to_owned);
        let now = self.clock.now_ms();
        let mut validity = Validity {
            epoch,
            stamp,
            computed_at_ms: now,
            valid_until_ms: now,
        };
        let (req, hit) = self.cache.get(req, &validity);
        let entry = match hit {
            Some(entry) => entry,
            None => {
                let ev = off_the_worker_if(walks > HEAVY_READ_SOURCES, || {
                    evaluate::evaluate_as(Mode::Serve, &rules, &self.store, &req, now)
                });
                validity.valid_until_ms = ev.valid_until_ms;
                let entry = Arc::new(self.entry_of(&req, ev, validity));
                self.cache.put(req, entry.clone(), &validity);
                entry
            }
        };
        if let Some(g) = &entry.gauges {
            g.serve(now);
        }
        (entry, scope)
    }

    /// What serving `ev` answers, with the gauges it sets.
    fn entry_of(&self, req: &Request, ev: Evaluation, validity: Validity) -> Entry {
        let gauges = ev.outcomes.first().map(|o| {
            let label = MetricLabel {
                metric: req.metric.clone(),
            };
            Gauges {
                value: self.served.value.get_or_create(&label).clone(),
                age: self.served.age.get_or_create(&label).clone(),
                set_to: o.value,
                observed_at_ms: o.observed_at_ms,
            }
        });
        Entry {
            validity,
            answer: answer_of(req, ev),
            gauges,
        }
    }
}

/// What serving `ev` answers: its values, or the 404 saying why there are none.
fn answer_of(req: &Request, ev: Evaluation) -> cache::Answer {
    let window = ev.window_ms.map(|ms| Duration::from_millis(ms as u64));
    if ev.outcomes.is_empty() {
        return Err(ProviderError::NotFound {
            metric: req.metric.clone(),
            object: req.object.clone(),
            reason: ev.missing.unwrap_or_else(|| "no value".into()),
        });
    }
    Ok(ev
        .outcomes
        .into_iter()
        .map(|o| MetricValue {
            object_name: o.object_name,
            labels: o.labels,
            value: o.value,
            timestamp: to_system_time(o.observed_at_ms),
            window,
        })
        .collect::<Vec<_>>()
        .into())
}

/// Runs `f` with `tokio::task::block_in_place` when `heavy` and on a multi-threaded runtime
/// (elsewhere it must not, and need not).
fn off_the_worker_if<T>(heavy: bool, f: impl FnOnce() -> T) -> T {
    let multi_threaded = heavy
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

impl HeldAnswers for Engine {
    fn custom_held(&self, q: &CustomQuery) -> (SharedValues, Option<Holds>) {
        match request::custom(q) {
            Ok(req) => self.held(req),
            Err(e) => (Err(e), None),
        }
    }

    fn external_held(&self, q: &ExternalQuery) -> (SharedValues, Option<Holds>) {
        self.held(request::external(q))
    }
}

impl MetricsProvider for Engine {
    fn custom(&self, q: &CustomQuery) -> Result<Vec<MetricValue>, ProviderError> {
        self.answer(request::custom(q)?)
    }

    fn external(&self, q: &ExternalQuery) -> Result<Vec<MetricValue>, ProviderError> {
        self.answer(request::external(q))
    }

    fn metrics(&self) -> Vec<MetricInfo> {
        self.rules
            .load()
            .rules
            .iter()
            .map(|r| MetricInfo {
                name: r.name.clone(),
                resources: r.resources.clone(),
                external: r.external,
            })
            .collect()
    }
}

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod tests;
