//! A fake [`MetricsProvider`] for testing the API plumbing, not the values: a test stores the
//! exact values it wants served (per metric, resource, namespace, object and series, with their
//! observation time and window, plus the labels of described objects for `*` + `labelSelector`
//! requests), and the real router answers from them. That lets the `api_values` and
//! `api_discovery` tests check paths, JSON shapes, Quantity strings and `Status` errors against
//! the fixtures, as the Go custom-metrics-apiserver's fake provider does for its own tests. It
//! lives in the test tree only; nothing in the aggregator depends on it.
//!
//! It is not the engine, and nothing about computed values can be learnt from it
//! (`api_engine` tests the router over the real engine where the two differ):
//! - Values are served as stored: no rules, window, statistic, combine, unit, rounding or clamps.
//!   Any metric can be stored under any resource, cluster-scoped ones (`nodes`) included; the
//!   engine serves only its rules' metrics, from the sidecars' sources of the request's namespace.
//! - Discovery lists what has been stored (nothing: the placeholder); the engine lists its rules'
//!   metrics under their `resources` (and `external`), whether or not any source has reported.
//! - An Object request answers every stored series of the object (two make the router's 500);
//!   the engine combines its sources into one value. An external request answers one item per
//!   stored series; the engine, one combined item.
//! - A stored value never goes stale and there is no `on_missing` fallback; the engine answers a
//!   404 "stale since …" for sources silent past `stale_after`, or the rule's fallback value.
//! - `*` requests select objects on labels set with [`MemStore::set_object_labels`] and answer
//!   an empty list when none match; the engine selects pods on the labels their sidecars
//!   reported, and answers a 404 when no pod has data.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use dwell_aggregator::provider::{
    CustomQuery, ExternalQuery, MetricInfo, MetricValue, MetricsProvider, ObjectRef, ProviderError,
};

/// One stored series value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels (what `metricLabelSelector` / external `labelSelector` select on).
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
    /// When it was observed.
    pub timestamp: SystemTime,
    /// The window it was computed over.
    pub window: Option<Duration>,
}

impl Sample {
    /// A sample without series labels.
    pub fn new(value: f64, timestamp: SystemTime, window: Option<Duration>) -> Self {
        Self {
            labels: BTreeMap::new(),
            value,
            timestamp,
            window,
        }
    }

    /// Adds a series label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }
}

/// (metric, resource, namespace or None for cluster-scoped objects).
type CustomKey = (String, String, Option<String>);
/// (resource, namespace, object name).
type ObjectKey = (String, Option<String>, String);

#[derive(Debug, Default)]
struct State {
    /// Custom values: per key, per object name, its series.
    custom: BTreeMap<CustomKey, BTreeMap<String, Vec<Sample>>>,
    /// Labels of described objects, for `*` requests.
    object_labels: BTreeMap<ObjectKey, BTreeMap<String, String>>,
    /// External values: per (namespace, lower-case metric), its series.
    external: BTreeMap<(String, String), Vec<Sample>>,
}

/// The in-memory store. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct MemStore {
    state: RwLock<State>,
}

impl MemStore {
    /// An empty store: every request answers "not found".
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a series value of `metric` for one object. `namespace` is `None` for cluster-scoped
    /// objects, including the namespace itself (`resource = "namespaces"`, `object = ns`).
    pub fn push_custom(
        &self,
        metric: &str,
        resource: &str,
        namespace: Option<&str>,
        object: &str,
        sample: Sample,
    ) {
        let key = (
            metric.to_string(),
            resource.to_string(),
            namespace.map(str::to_string),
        );
        self.write()
            .custom
            .entry(key)
            .or_default()
            .entry(object.to_string())
            .or_default()
            .push(sample);
    }

    /// Sets the labels of a described object (what a `*` request's `labelSelector` selects on).
    pub fn set_object_labels(
        &self,
        resource: &str,
        namespace: Option<&str>,
        object: &str,
        labels: &[(&str, &str)],
    ) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.write().object_labels.insert(
            (
                resource.to_string(),
                namespace.map(str::to_string),
                object.to_string(),
            ),
            labels,
        );
    }

    /// Adds a series value of an external metric (stored under its lower-case name).
    pub fn push_external(&self, namespace: &str, metric: &str, sample: Sample) {
        self.write()
            .external
            .entry((namespace.to_string(), metric.to_lowercase()))
            .or_default()
            .push(sample);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        *self.write() = State::default();
    }
}

fn value_of(object: &str, sample: &Sample) -> MetricValue {
    MetricValue {
        object_name: object.to_string(),
        labels: sample.labels.clone(),
        value: sample.value,
        timestamp: sample.timestamp,
        window: sample.window,
    }
}

fn describe(query: &CustomQuery) -> String {
    let ns = query
        .namespace
        .as_deref()
        .map(|n| format!("{n}/"))
        .unwrap_or_default();
    match &query.object {
        ObjectRef::Named(name) => format!("{} {ns}{name}", query.resource),
        ObjectRef::All(sel) if sel.is_empty() => format!("{} {ns}*", query.resource),
        ObjectRef::All(sel) => format!("{} {ns}* with selector {sel}", query.resource),
    }
}

impl MetricsProvider for MemStore {
    fn custom(&self, query: &CustomQuery) -> Result<Vec<MetricValue>, ProviderError> {
        let state = self.read();
        let key = (
            query.metric.clone(),
            query.resource.clone(),
            query.namespace.clone(),
        );
        let not_found = |reason: &str| ProviderError::NotFound {
            metric: query.metric.clone(),
            object: describe(query),
            reason: reason.to_string(),
        };
        let objects = state
            .custom
            .get(&key)
            .ok_or_else(|| not_found("no value has been stored for it"))?;
        let selected = |object: &str, samples: &Vec<Sample>| -> Vec<MetricValue> {
            samples
                .iter()
                .filter(|s| query.metric_selector.matches(&s.labels))
                .map(|s| value_of(object, s))
                .collect()
        };
        match &query.object {
            ObjectRef::Named(name) => {
                let samples = objects
                    .get(name)
                    .ok_or_else(|| not_found("no value has been stored for this object"))?;
                let values = selected(name, samples);
                if values.is_empty() {
                    return Err(not_found("no series matches the metric label selector"));
                }
                Ok(values)
            }
            ObjectRef::All(selector) => {
                let empty = BTreeMap::new();
                Ok(objects
                    .iter()
                    .filter(|(name, _)| {
                        let labels = state
                            .object_labels
                            .get(&(
                                query.resource.clone(),
                                query.namespace.clone(),
                                name.to_string(),
                            ))
                            .unwrap_or(&empty);
                        selector.matches(labels)
                    })
                    .flat_map(|(name, samples)| selected(name, samples))
                    .collect())
            }
        }
    }

    fn external(&self, query: &ExternalQuery) -> Result<Vec<MetricValue>, ProviderError> {
        let state = self.read();
        let samples = state
            .external
            .get(&(query.namespace.clone(), query.metric.to_lowercase()))
            .ok_or_else(|| ProviderError::NotFound {
                metric: query.metric.clone(),
                object: format!("namespace {}", query.namespace),
                reason: "no value has been stored for it".to_string(),
            })?;
        Ok(samples
            .iter()
            .filter(|s| query.selector.matches(&s.labels))
            .map(|s| value_of(&query.metric, s))
            .collect())
    }

    fn metrics(&self) -> Vec<MetricInfo> {
        let state = self.read();
        let mut resources: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (metric, resource, _) in state.custom.keys() {
            resources
                .entry(metric.clone())
                .or_default()
                .insert(resource.clone());
        }
        let external: BTreeSet<&String> = state.external.keys().map(|(_, m)| m).collect();
        let mut names: BTreeSet<&String> = resources.keys().collect();
        names.extend(external.iter().copied());
        names
            .into_iter()
            .map(|name| MetricInfo {
                name: name.clone(),
                resources: resources
                    .get(name)
                    .map(|r| r.iter().cloned().collect())
                    .unwrap_or_default(),
                external: external.contains(name),
            })
            .collect()
    }
}
