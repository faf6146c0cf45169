//! The boundary between the metrics API plumbing (`api`) and what computes values (`engine`), in
//! the spirit of the Go custom-metrics-apiserver's "provider": the API layer parses and validates
//! a request into a query, asks a [`MetricsProvider`], and renders what comes back.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::kinds::{self, Kind};
use crate::selector::Selector;

/// Which objects a custom-metrics request describes.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectRef {
    /// One named object (`…/{resource}/{name}/{metric}`).
    Named(String),
    /// Every object of the resource matching `labelSelector` (`…/{resource}/*/{metric}`).
    All(Selector),
}

/// A parsed `custom.metrics.k8s.io` request, its scope decided (see [`CustomQuery::new`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomQuery {
    /// The metric name, case kept.
    pub metric: String,
    /// The request's namespace; `None` for root-scoped kinds (`namespaces/{ns}`, `nodes`).
    pub namespace: Option<String>,
    /// The group-resource as sent: `pods`, `services`, `deployments.apps`, `namespaces`.
    pub resource: String,
    /// What the resource is: kind, apiVersion, scope.
    pub kind: Kind,
    /// The object(s) described.
    pub object: ObjectRef,
    /// `metricLabelSelector`: narrows the metric's series.
    pub metric_selector: Selector,
}

/// Why a request cannot become a [`CustomQuery`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The resource is not a kind the API knows. Rendered as 404.
    #[error(
        "the server could not find the metric {metric} for {resource}: unknown resource \
         {resource:?} (served: {known})"
    )]
    UnknownResource {
        /// The metric asked for.
        metric: String,
        /// The resource as sent.
        resource: String,
        /// Every resource served, comma-separated.
        known: String,
    },
    /// A namespaced kind asked for outside a namespace. Rendered as 400.
    #[error("{resource} are namespaced: ask under /namespaces/{{namespace}}/{resource}/…")]
    NeedsNamespace {
        /// The resource as sent.
        resource: String,
    },
}

impl CustomQuery {
    /// The one place a request's scope is decided (serving and Explain both come through here):
    /// a namespaced kind needs `namespace`; a root-scoped one (`nodes`, `namespaces`) ignores it,
    /// since the HPA asks for those under its own namespace.
    pub fn new(
        metric: String,
        resource: String,
        namespace: Option<String>,
        object: ObjectRef,
        metric_selector: Selector,
    ) -> Result<Self, QueryError> {
        let Some(kind) = kinds::lookup(&resource) else {
            return Err(QueryError::UnknownResource {
                metric,
                resource,
                known: kinds::known().collect::<Vec<_>>().join(", "),
            });
        };
        let namespace = match (kind.namespaced, namespace) {
            (true, Some(ns)) => Some(ns),
            (true, None) => return Err(QueryError::NeedsNamespace { resource }),
            (false, _) => None,
        };
        Ok(Self {
            metric,
            namespace,
            resource,
            kind,
            object,
            metric_selector,
        })
    }
}

/// A parsed `external.metrics.k8s.io` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalQuery {
    /// The request's namespace.
    pub namespace: String,
    /// The metric name, lower-cased (the HPA always sends it lower-cased).
    pub metric: String,
    /// `labelSelector`: selects among the metric's series.
    pub selector: Selector,
}

/// One value the provider answers with.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// Name of the described object (for Pods requests, the pod's name).
    pub object_name: String,
    /// The series' labels (rendered as `metricLabels` for external metrics).
    pub labels: BTreeMap<String, String>,
    /// The value; the API renders it as a canonical Quantity.
    pub value: f64,
    /// When the underlying data was observed (not when the request came).
    pub timestamp: SystemTime,
    /// The window the value was computed over, if any.
    pub window: Option<Duration>,
}

/// Why a provider has no value to give.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// No data for the metric on the object: never seen, or stale since a time. Rendered as 404.
    #[error("the server could not find the metric {metric} for {object}: {reason}")]
    NotFound {
        /// The metric asked for.
        metric: String,
        /// The object, e.g. `deployments.apps default/binder` or `pods default/*`.
        object: String,
        /// Why: "no source has reported it", "stale since 2026-…", "no rule named …".
        reason: String,
    },
    /// The request is well-formed but cannot be answered as asked. Rendered as 400.
    #[error("{0}")]
    BadRequest(String),
}

/// What a metric is served for, for discovery documents.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInfo {
    /// The metric name.
    pub name: String,
    /// Namespaced group-resources it is listed under in custom-metrics discovery (e.g. `pods`,
    /// `deployments.apps`, `services`); `namespaces` is listed root-scoped by the API layer.
    pub resources: Vec<String>,
    /// Whether it is also served as an external metric.
    pub external: bool,
}

/// Computes metric values; implemented by the engine (live state) and, in the API tests, by a
/// fake that returns stored values.
pub trait MetricsProvider: Send + Sync + 'static {
    /// Answers a custom-metrics request. An Object request must answer exactly one value.
    fn custom(&self, query: &CustomQuery) -> Result<Vec<MetricValue>, ProviderError>;
    /// Answers an external-metrics request.
    fn external(&self, query: &ExternalQuery) -> Result<Vec<MetricValue>, ProviderError>;
    /// The metrics served, for discovery. May be empty; the API layer never serves an empty list.
    fn metrics(&self) -> Vec<MetricInfo>;
}
