//! What the HPA sends and how it reads the answer (`k8s: pkg/controller/podautoscaler/metrics/
//! client.go` with `km: custom_metrics/versioned_client.go` and `external_metrics/client.go`;
//! metrics-api-contract.md §1.4): the request path for each metric source, and the answer parsed
//! with the same checks (exactly one item for Object; at least one for Pods and External).

use std::collections::BTreeMap;
use std::future::Future;

use serde::Deserialize;
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::quantity::milli_value;
use super::{MetricSource, MetricSpec};

/// Something that can `GET` a raw API path and hand back the body (kubectl `get --raw`, or an
/// HTTPS client trusting the aggregator's certificate).
pub trait RawGet {
    /// The body of a 2xx answer, or the error text.
    fn get_raw(&self, path: &str) -> impl Future<Output = Result<String, String>> + Send;
}

/// Why a metric could not be read (the HPA marks the metric invalid and, with no valid metric,
/// holds the replica count).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FetchError {
    /// The server answered an error (404 while data is missing, …).
    #[error("unable to fetch metrics from custom metrics API: {0}")]
    Server(String),
    /// "the custom metrics API server returned N results when we asked for exactly one"
    #[error("the custom metrics API server returned {0} results when we asked for exactly one")]
    NotExactlyOne(usize),
    /// "no metrics returned from custom metrics API" (or external)
    #[error("no metrics returned from {0} metrics API")]
    Empty(&'static str),
    /// The body was not the expected JSON, or a value not a quantity.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// One reading, with each item's `timestamp` kept so a test can check freshness.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// The single Object value.
    Object {
        /// The value (milli).
        value: i64,
        /// The item's `timestamp`.
        timestamp: OffsetDateTime,
    },
    /// Pods values by `describedObject.name`.
    Pods {
        /// Values (milli) by pod name.
        values: BTreeMap<String, i64>,
        /// Every item's `timestamp`.
        timestamps: Vec<OffsetDateTime>,
    },
    /// External items, summed by the HPA.
    External {
        /// Values (milli).
        values: Vec<i64>,
        /// Every item's `timestamp`.
        timestamps: Vec<OffsetDateTime>,
    },
}

impl Reading {
    /// Every item's timestamp.
    pub fn timestamps(&self) -> Vec<OffsetDateTime> {
        match self {
            Reading::Object { timestamp, .. } => vec![*timestamp],
            Reading::Pods { timestamps, .. } | Reading::External { timestamps, .. } => {
                timestamps.clone()
            }
        }
    }
}

/// Percent-encodes a query value (label selectors contain `=`, `,`, `!`, spaces).
fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The request the HPA sends for `spec` in `namespace` (`custom_version` is the preferred
/// custom.metrics.k8s.io version; `pod_selector` the scale target's selector, used for Pods).
pub fn request_path(
    spec: &MetricSpec,
    namespace: &str,
    custom_version: &str,
    pod_selector: &str,
) -> String {
    let metric_selector = |sel: &Option<String>| match sel {
        Some(s) => format!("metricLabelSelector={}", encode(s)),
        None => String::new(),
    };
    match &spec.source {
        MetricSource::Object { resource, .. } if resource == "namespaces" => {
            let q = metric_selector(&spec.selector);
            let q = if q.is_empty() { q } else { format!("?{q}") };
            format!(
                "/apis/custom.metrics.k8s.io/{custom_version}/namespaces/{namespace}/metrics/{}{q}",
                spec.metric
            )
        }
        MetricSource::Object { resource, name } => {
            let q = metric_selector(&spec.selector);
            let q = if q.is_empty() { q } else { format!("?{q}") };
            format!(
                "/apis/custom.metrics.k8s.io/{custom_version}/namespaces/{namespace}/{resource}/{name}/{}{q}",
                spec.metric
            )
        }
        MetricSource::Pods => {
            let mut q = format!("labelSelector={}", encode(pod_selector));
            let m = metric_selector(&spec.selector);
            if !m.is_empty() {
                q = format!("{q}&{m}");
            }
            format!(
                "/apis/custom.metrics.k8s.io/{custom_version}/namespaces/{namespace}/pods/%2A/{}?{q}",
                spec.metric
            )
        }
        MetricSource::External => {
            let q = match &spec.selector {
                Some(s) => format!("?labelSelector={}", encode(s)),
                None => String::new(),
            };
            format!(
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{}{q}",
                spec.metric.to_lowercase()
            )
        }
    }
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    #[serde(default)]
    described_object: Option<Described>,
    value: String,
    timestamp: String,
}

#[derive(Deserialize)]
struct Described {
    #[serde(default)]
    name: String,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, FetchError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| FetchError::Malformed(format!("{s:?}: {e}")))
}

/// Parses an answer to [`request_path`] the way the HPA's clients do.
pub fn parse_answer(source: &MetricSource, body: &str) -> Result<Reading, FetchError> {
    let list: List =
        serde_json::from_str(body).map_err(|e| FetchError::Malformed(e.to_string()))?;
    let value = |i: &Item| milli_value(&i.value).map_err(|e| FetchError::Malformed(e.to_string()));
    match source {
        MetricSource::Object { .. } => {
            let [item] = list.items.as_slice() else {
                return Err(FetchError::NotExactlyOne(list.items.len()));
            };
            Ok(Reading::Object {
                value: value(item)?,
                timestamp: parse_time(&item.timestamp)?,
            })
        }
        MetricSource::Pods => {
            if list.items.is_empty() {
                return Err(FetchError::Empty("custom"));
            }
            let mut values = BTreeMap::new();
            let mut timestamps = Vec::new();
            for item in &list.items {
                let name = item
                    .described_object
                    .as_ref()
                    .map(|d| d.name.clone())
                    .unwrap_or_default();
                values.insert(name, value(item)?);
                timestamps.push(parse_time(&item.timestamp)?);
            }
            Ok(Reading::Pods { values, timestamps })
        }
        MetricSource::External => {
            if list.items.is_empty() {
                return Err(FetchError::Empty("external"));
            }
            let values = list.items.iter().map(value).collect::<Result<_, _>>()?;
            let timestamps = list
                .items
                .iter()
                .map(|i| parse_time(&i.timestamp))
                .collect::<Result<_, _>>()?;
            Ok(Reading::External { values, timestamps })
        }
    }
}

/// The custom.metrics.k8s.io versions the HPA's client knows, best first.
const KNOWN_CUSTOM_VERSIONS: [&str; 2] = ["v1beta2", "v1beta1"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupList {
    #[serde(default)]
    groups: Vec<Group>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    name: String,
    #[serde(default)]
    versions: Vec<GroupVersion>,
    preferred_version: Option<GroupVersion>,
}

#[derive(Deserialize)]
struct GroupVersion {
    version: String,
}

/// Which custom.metrics.k8s.io version the HPA uses, from the `/apis` group list
/// (`km: pkg/client/custom_metrics/discovery.go` `PreferredVersion`): the preferred version when
/// the client knows it, else the first known one listed. The HPA re-discovers every sync period
/// (`periodicallyInvalidate`).
pub fn preferred_custom_version(apis_body: &str) -> Result<String, FetchError> {
    let list: GroupList =
        serde_json::from_str(apis_body).map_err(|e| FetchError::Malformed(e.to_string()))?;
    let group = list
        .groups
        .iter()
        .find(|g| g.name == "custom.metrics.k8s.io")
        .ok_or_else(|| {
            FetchError::Server("no custom metrics API (custom.metrics.k8s.io) registered".into())
        })?;
    let known = |v: &str| KNOWN_CUSTOM_VERSIONS.contains(&v);
    if let Some(p) = group
        .preferred_version
        .as_ref()
        .filter(|p| known(&p.version))
    {
        return Ok(p.version.clone());
    }
    group
        .versions
        .iter()
        .find(|v| known(&v.version))
        .map(|v| v.version.clone())
        .ok_or_else(|| FetchError::Server("no known available metric versions found".into()))
}

/// Reads one metric as the HPA would.
pub async fn fetch(
    getter: &impl RawGet,
    spec: &MetricSpec,
    namespace: &str,
    custom_version: &str,
    pod_selector: &str,
) -> Result<Reading, FetchError> {
    let path = request_path(spec, namespace, custom_version, pod_selector);
    let body = getter.get_raw(&path).await.map_err(FetchError::Server)?;
    parse_answer(&spec.source, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::Target;

    fn spec(source: MetricSource, selector: Option<&str>) -> MetricSpec {
        MetricSpec {
            metric: "Seconds".into(),
            selector: selector.map(Into::into),
            source,
            target: Target::Value(30_000),
        }
    }

    #[test]
    fn preferred_version_follows_discovery() {
        let apis = |preferred: &str, versions: &[&str]| {
            let vs: Vec<String> = versions
                .iter()
                .map(|v| {
                    format!(r#"{{"groupVersion":"custom.metrics.k8s.io/{v}","version":"{v}"}}"#)
                })
                .collect();
            format!(
                r#"{{"kind":"APIGroupList","groups":[{{"name":"custom.metrics.k8s.io","versions":[{}],"preferredVersion":{{"groupVersion":"x","version":"{preferred}"}}}}]}}"#,
                vs.join(",")
            )
        };
        assert_eq!(
            preferred_custom_version(&apis("v1beta2", &["v1beta2", "v1beta1"])),
            Ok("v1beta2".into())
        );
        assert_eq!(
            preferred_custom_version(&apis("v9", &["v9", "v1beta1"])),
            Ok("v1beta1".into())
        );
        assert!(preferred_custom_version(&apis("v9", &["v9"])).is_err());
        assert!(preferred_custom_version(r#"{"groups":[]}"#).is_err());
    }

    #[test]
    fn paths_match_what_the_hpa_sends() {
        let obj = spec(
            MetricSource::Object {
                resource: "deployments.apps".into(),
                name: "binder".into(),
            },
            Some("queue=a"),
        );
        assert_eq!(
            request_path(&obj, "jobs", "v1beta2", "app=binder"),
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jobs/deployments.apps/binder/Seconds?metricLabelSelector=queue%3Da"
        );
        let ns = spec(
            MetricSource::Object {
                resource: "namespaces".into(),
                name: "ignored".into(),
            },
            None,
        );
        assert_eq!(
            request_path(&ns, "jobs", "v1beta1", ""),
            "/apis/custom.metrics.k8s.io/v1beta1/namespaces/jobs/metrics/Seconds"
        );
        let pods = spec(MetricSource::Pods, None);
        assert_eq!(
            request_path(&pods, "jobs", "v1beta2", "app=binder"),
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/jobs/pods/%2A/Seconds?labelSelector=app%3Dbinder"
        );
        let ext = spec(MetricSource::External, Some("queue=a"));
        assert_eq!(
            request_path(&ext, "jobs", "v1beta2", ""),
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/jobs/seconds?labelSelector=queue%3Da"
        );
    }

    const TS: &str = "2026-01-02T03:04:05Z";

    #[test]
    fn object_needs_exactly_one_item() {
        let src = MetricSource::Object {
            resource: "deployments.apps".into(),
            name: "binder".into(),
        };
        let one = format!(r#"{{"items":[{{"value":"42","timestamp":"{TS}"}}]}}"#);
        assert!(matches!(
            parse_answer(&src, &one),
            Ok(Reading::Object { value: 42_000, .. })
        ));
        let two = format!(
            r#"{{"items":[{{"value":"1","timestamp":"{TS}"}},{{"value":"2","timestamp":"{TS}"}}]}}"#
        );
        assert_eq!(parse_answer(&src, &two), Err(FetchError::NotExactlyOne(2)));
        assert_eq!(
            parse_answer(&src, r#"{"items":[]}"#),
            Err(FetchError::NotExactlyOne(0))
        );
    }

    #[test]
    fn pods_are_keyed_by_described_object_name_and_external_needs_items() {
        let body = format!(
            r#"{{"items":[{{"describedObject":{{"name":"w-1"}},"value":"1500m","timestamp":"{TS}"}}]}}"#
        );
        let Ok(Reading::Pods { values, .. }) = parse_answer(&MetricSource::Pods, &body) else {
            panic!("pods answer not parsed");
        };
        assert_eq!(values.get("w-1"), Some(&1_500));
        assert_eq!(
            parse_answer(&MetricSource::External, r#"{"items":[]}"#),
            Err(FetchError::Empty("external"))
        );
        assert!(matches!(
            parse_answer(
                &MetricSource::External,
                r#"{"items":[{"value":"x","timestamp":"t"}]}"#
            ),
            Err(FetchError::Malformed(_))
        ));
    }
}
