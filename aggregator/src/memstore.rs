//! An in-memory [`MetricsProvider`] that tests (and the aggregator before the engine is wired in)
//! write to directly: values per metric, object and series, with their observation time and
//! window, plus the labels of described objects so `*` + `labelSelector` requests can select them.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use crate::provider::{
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Selector;

    fn query(object: ObjectRef, metric_selector: &str) -> CustomQuery {
        CustomQuery::new(
            "dwell".into(),
            "pods".into(),
            Some("default".into()),
            object,
            Selector::parse(metric_selector).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn selects_objects_and_series() {
        let store = MemStore::new();
        let t = SystemTime::UNIX_EPOCH;
        store.push_custom(
            "dwell",
            "pods",
            Some("default"),
            "a",
            Sample::new(1.0, t, None).label("q", "x"),
        );
        store.push_custom(
            "dwell",
            "pods",
            Some("default"),
            "b",
            Sample::new(2.0, t, None).label("q", "y"),
        );
        store.set_object_labels("pods", Some("default"), "a", &[("app", "binder")]);
        let all = store
            .custom(&query(
                ObjectRef::All(Selector::parse("app=binder").unwrap()),
                "",
            ))
            .unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].object_name, "a");
        let named = store
            .custom(&query(ObjectRef::Named("b".into()), "q=y"))
            .unwrap();
        assert_eq!(named[0].value, 2.0);
        let miss = store.custom(&query(ObjectRef::Named("b".into()), "q=x"));
        assert!(matches!(miss, Err(ProviderError::NotFound { .. })));
        let infos = store.metrics();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].resources, vec!["pods".to_string()]);
    }

    #[test]
    fn external_names_are_case_insensitive() {
        let store = MemStore::new();
        store.push_external(
            "default",
            "Queue_Dwell",
            Sample::new(3.0, SystemTime::UNIX_EPOCH, None),
        );
        let q = ExternalQuery {
            namespace: "default".into(),
            metric: "queue_dwell".into(),
            selector: Selector::default(),
        };
        assert_eq!(store.external(&q).unwrap().len(), 1);
        assert!(store.metrics()[0].external);
    }
}
