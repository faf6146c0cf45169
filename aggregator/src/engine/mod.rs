//! The engine: the [`MetricsProvider`] the metrics API serves from, computed from the live window
//! state and the rules in force (swapped atomically on reload).
pub mod evaluate;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::clock::{Clock, to_system_time};
use crate::policy::RuleSet;
use crate::provider::{
    CustomQuery, ExternalQuery, MetricInfo, MetricValue, MetricsProvider, ObjectRef, ProviderError,
};
use crate::selector::Selector;
use crate::telemetry::Telemetry;
use crate::window::WindowStore;

pub use evaluate::{Evaluation, Kind, Outcome, Pods, Request, Step};

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
    clock: Arc<dyn Clock>,
    served: Served,
}

impl Engine {
    /// An engine over `store` with `rules`, reading time from `clock`.
    pub fn new(rules: RuleSet, store: Arc<WindowStore>, clock: Arc<dyn Clock>) -> Self {
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

    /// The window store.
    pub fn store(&self) -> &Arc<WindowStore> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
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
        let pods = q.resource == "pods";
        // `namespaces/{ns}` is root-scoped: the namespace is the object's name.
        let namespace = match (&q.namespace, &q.object) {
            (Some(ns), _) => ns.clone(),
            (None, ObjectRef::Named(name)) if q.resource == "namespaces" => name.clone(),
            (None, _) => {
                return Err(ProviderError::BadRequest(format!(
                    "{} is namespaced: ask under namespaces/{{namespace}}",
                    q.resource
                )));
            }
        };
        let (object_name, pod_filter) = match (&q.object, pods) {
            (ObjectRef::Named(n), true) => (n.clone(), Pods::Named(n.clone())),
            (ObjectRef::All(sel), true) => ("*".to_string(), Pods::Selected(sel.clone())),
            (ObjectRef::Named(n), false) => (n.clone(), Pods::Any),
            (ObjectRef::All(_), false) => ("*".to_string(), Pods::Any),
        };
        let req = Request {
            metric: q.metric.clone(),
            kind: if pods { Kind::Pods } else { Kind::Object },
            namespace: namespace.clone(),
            pods: pod_filter,
            metric_selector: q.metric_selector.clone(),
            object: format!("{} {namespace}/{object_name}", q.resource),
        };
        let mut values = self.answer(&req)?;
        if !pods {
            for v in &mut values {
                v.object_name = object_name.clone();
            }
        }
        Ok(values)
    }

    fn external(&self, q: &ExternalQuery) -> Result<Vec<MetricValue>, ProviderError> {
        let req = Request {
            metric: q.metric.clone(),
            kind: Kind::External,
            namespace: q.namespace.clone(),
            pods: Pods::Any,
            metric_selector: q.selector.clone(),
            object: format!("external metric in namespace {}", q.namespace),
        };
        self.answer(&req)
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

/// Builds the engine from the command line: the `--config` rules (or the built-in ones) over a
/// fresh window, on the system clock, its gauges registered. Also returns the config's bytes, so
/// the watcher reloads only when they change.
pub fn build(
    args: &crate::cli::Args,
    telemetry: &Telemetry,
) -> Result<(Arc<Engine>, Option<Vec<u8>>), crate::config::ConfigError> {
    let (rules, text) = match &args.config {
        None => (RuleSet::default(), None),
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| crate::config::ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let rules = crate::config::parse(&String::from_utf8_lossy(&bytes))?;
            (rules, Some(bytes))
        }
    };
    tracing::info!(rules = rules.rules.len(), config = ?args.config, "rules loaded");
    let store = Arc::new(WindowStore::new(rules.longest_window_ms()));
    let engine = Arc::new(Engine::new(
        rules,
        store,
        Arc::new(crate::clock::SystemClock),
    ));
    engine.register(telemetry);
    Ok((engine, text))
}

/// Parses selector text for the engine's callers (Explain), mapping errors to text.
pub fn parse_selector(text: &str) -> Result<Selector, String> {
    Selector::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
