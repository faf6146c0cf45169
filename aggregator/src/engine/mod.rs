//! The engine: the [`MetricsProvider`] the metrics API serves from, computed from the live window
//! state and the rules in force (swapped atomically on reload). Requests are built by
//! [`request`] and evaluated step by step by [`evaluate`], for serving and `Explain` alike.
pub mod evaluate;
pub mod request;
pub mod watched;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::clock::{SharedClock, to_system_time};
use crate::policy::RuleSet;
use crate::provider::{
    CustomQuery, ExternalQuery, MetricInfo, MetricValue, MetricsProvider, ProviderError,
};
use crate::telemetry::Telemetry;
use crate::window::WindowStore;

pub use evaluate::{Evaluation, Kind, Outcome, Pods, Request, Scope, Step};

/// Labels of the served-value gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabel {
    metric: String,
}

/// Gauges of what was last served per metric.
#[derive(Debug, Clone, Default)]
struct Served {
    value: Family<MetricLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    age: Family<MetricLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

/// Computes metric values from the window and the rules.
#[derive(Debug)]
pub struct Engine {
    store: Arc<WindowStore>,
    rules: ArcSwap<RuleSet>,
    clock: SharedClock,
    served: Served,
}

impl Engine {
    /// An engine over `store` with `rules`, reading time from `clock`.
    pub fn new(rules: RuleSet, store: Arc<WindowStore>, clock: SharedClock) -> Self {
        store.set_longest_window(rules.longest_window_ms());
        Self {
            store,
            rules: ArcSwap::from_pointee(rules),
            clock,
            served: Served::default(),
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
    }

    /// Puts a new rule set in force (atomically) and re-sizes the window ring.
    pub fn set_rules(&self, rules: RuleSet) {
        self.store.set_longest_window(rules.longest_window_ms());
        self.rules.store(Arc::new(rules));
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// Evaluates a request now, with every step (what `Explain` shows and serving uses).
    pub fn evaluate(&self, req: &Request) -> Evaluation {
        evaluate::evaluate(&self.rules.load(), &self.store, req, self.clock.now_ms())
    }

    /// Evaluates and turns the result into provider values or a provider error.
    fn answer(&self, req: &Request) -> Result<Vec<MetricValue>, ProviderError> {
        let now = self.clock.now_ms();
        let ev = evaluate::evaluate(&self.rules.load(), &self.store, req, now);
        let window = ev
            .rule
            .as_ref()
            .map(|r| Duration::from_millis(r.window_ms as u64));
        if ev.outcomes.is_empty() {
            return Err(ProviderError::NotFound {
                metric: req.metric.clone(),
                object: req.object.clone(),
                reason: ev.missing.unwrap_or_else(|| "no value".into()),
            });
        }
        let label = MetricLabel {
            metric: req.metric.clone(),
        };
        if let Some(o) = ev.outcomes.first() {
            self.served.value.get_or_create(&label).set(o.value);
            let age = (now - o.observed_at_ms).max(0) as f64 / 1000.0;
            self.served.age.get_or_create(&label).set(age);
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
            .collect())
    }
}

impl MetricsProvider for Engine {
    fn custom(&self, q: &CustomQuery) -> Result<Vec<MetricValue>, ProviderError> {
        self.answer(&request::custom(q)?)
    }

    fn external(&self, q: &ExternalQuery) -> Result<Vec<MetricValue>, ProviderError> {
        self.answer(&request::external(q))
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
mod tests;
