//! The JSON documents of the metrics APIs, field for field as the Go types in `k8s.io/metrics`
//! marshal them (`omitempty` where Go has it, `null` where Go emits it), and the JSON response.
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::status::ApiError;
use crate::selector::{Operator, Selector};

/// `{}`: `metadata` of lists and Status, which Go always emits.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Empty {}

/// A list document (`MetricValueList`, `ExternalMetricValueList`).
#[derive(Debug, Serialize)]
pub struct List<T> {
    /// The list kind.
    pub kind: &'static str,
    /// `group/version`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Always `{}`.
    pub metadata: Empty,
    /// The items; `[]`, never `null`.
    pub items: Vec<T>,
}

/// `describedObject`: an ObjectReference with the fields we know. The documents below borrow
/// what they show from the query and the answer: a list of 1 000 pods is rendered without
/// copying a string per item.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReference<'a> {
    /// e.g. `Pod`, `Deployment`.
    pub kind: &'static str,
    /// Absent for cluster-scoped objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
    /// `v1` for core, `apps/v1` otherwise.
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
}

/// `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LabelSelector {
    /// `k=v` / `k==v` requirements.
    #[serde(rename = "matchLabels", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Everything else.
    #[serde(rename = "matchExpressions", skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Expression>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Expression {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist` (and `Gt`/`Lt`, which have no LabelSelector form).
    pub operator: &'static str,
    /// The values; omitted for `Exists`/`DoesNotExist`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// The object form of a parsed selector; `None` (JSON `null`) when it is empty.
    pub fn from_selector(selector: &Selector) -> Option<Self> {
        if selector.is_empty() {
            return None;
        }
        let mut out = LabelSelector::default();
        for req in selector.requirements() {
            let values: Vec<String> = req.values().map(str::to_string).collect();
            let operator = match req.operator() {
                Operator::Equals | Operator::DoubleEquals => {
                    let value = values.first().cloned().unwrap_or_default();
                    match out.match_labels.get(req.key()) {
                        None => {
                            out.match_labels.insert(req.key().to_string(), value);
                            continue;
                        }
                        Some(existing) if *existing == value => continue,
                        Some(_) => "In",
                    }
                }
                Operator::In => "In",
                Operator::NotEquals | Operator::NotIn => "NotIn",
                Operator::Exists => "Exists",
                Operator::DoesNotExist => "DoesNotExist",
                Operator::GreaterThan => "Gt",
                Operator::LessThan => "Lt",
            };
            out.match_expressions.push(Expression {
                key: req.key().to_string(),
                operator,
                values,
            });
        }
        Some(out)
    }
}

/// A `custom.metrics.k8s.io/v1beta1` `MetricValue`.
#[derive(Debug, Serialize)]
pub struct MetricValueV1Beta1<'a> {
    /// The object described.
    #[serde(rename = "describedObject")]
    pub described_object: ObjectReference<'a>,
    /// The metric name.
    #[serde(rename = "metricName")]
    pub metric_name: &'a str,
    /// RFC 3339, seconds, `Z`: when the data was observed.
    pub timestamp: String,
    /// Whole seconds; omitted when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    /// Canonical Quantity.
    pub value: String,
    /// The metric label selector, `null` when none (Go has no `omitempty` here).
    pub selector: Option<&'a LabelSelector>,
}

/// `metric` of a v1beta2 `MetricValue`.
#[derive(Debug, Serialize)]
pub struct MetricIdentifier<'a> {
    /// The metric name.
    pub name: &'a str,
    /// The metric label selector, `null` when none.
    pub selector: Option<&'a LabelSelector>,
}

/// A `custom.metrics.k8s.io/v1beta2` `MetricValue`.
#[derive(Debug, Serialize)]
pub struct MetricValueV1Beta2<'a> {
    /// The object described.
    #[serde(rename = "describedObject")]
    pub described_object: ObjectReference<'a>,
    /// Name and selector.
    pub metric: MetricIdentifier<'a>,
    /// RFC 3339, seconds, `Z`.
    pub timestamp: String,
    /// Whole seconds; omitted when unknown.
    #[serde(rename = "windowSeconds", skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    /// Canonical Quantity.
    pub value: String,
}

/// An `external.metrics.k8s.io/v1beta1` `ExternalMetricValue`.
#[derive(Debug, Serialize)]
pub struct ExternalMetricValue<'a> {
    /// The metric name (lower-case, as asked).
    #[serde(rename = "metricName")]
    pub metric_name: &'a str,
    /// The series' labels; `{}` when none (no `omitempty`).
    #[serde(rename = "metricLabels")]
    pub metric_labels: &'a BTreeMap<String, String>,
    /// RFC 3339, seconds, `Z`.
    pub timestamp: String,
    /// Whole seconds; omitted when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    /// Canonical Quantity.
    pub value: String,
}

/// Formats an observation time as `metav1.Time` does: UTC, RFC 3339, whole seconds, `Z`.
pub fn timestamp(time: SystemTime) -> Result<String, ApiError> {
    let secs = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => i64::try_from(e.duration().as_secs_f64().ceil() as u64)
            .ok()
            .map(|s| -s),
    };
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&format).ok())
        .ok_or_else(|| ApiError::Internal("metric timestamp out of range".into()))
}

/// Serializes `body` as `application/json` (or the given media type).
pub fn json_response<T: Serialize>(body: &T, content_type: &'static str) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = bytes.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        Err(error) => {
            tracing::error!(%error, "cannot serialize a response");
            ApiError::Internal("cannot serialize the response".into()).into_response()
        }
    }
}

/// The JSON media type used everywhere except aggregated discovery.
pub const APPLICATION_JSON: &str = "application/json";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_seconds_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_768_471_445_900);
        assert_eq!(timestamp(t).unwrap(), "2026-01-15T10:04:05Z");
        assert_eq!(timestamp(UNIX_EPOCH).unwrap(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn selectors_render_as_label_selector_objects() {
        let s = Selector::parse("queue=a,tier in (x,y),!gone,n>3,q!=b").unwrap();
        let json = serde_json::to_value(LabelSelector::from_selector(&s)).unwrap();
        assert_eq!(json["matchLabels"], serde_json::json!({"queue": "a"}));
        let ops: Vec<&str> = json["matchExpressions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["operator"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["DoesNotExist", "Gt", "NotIn", "In"]);
        assert!(LabelSelector::from_selector(&Selector::default()).is_none());
    }
}
