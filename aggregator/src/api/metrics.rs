//! Custom and external metric value requests: build the provider query from the parsed path and
//! the query string, ask the provider, and render the version's list document.
use std::panic::AssertUnwindSafe;

use axum::http::Uri;
use axum::response::Response;

use super::path::{CustomPath, CustomVersion, EXTERNAL_GROUP, ObjectName};
use super::status::ApiError;
use super::types::{
    APPLICATION_JSON, Empty, ExternalMetricValue, LabelSelector, List, MetricIdentifier,
    MetricValueV1Beta1, MetricValueV1Beta2, ObjectReference, json_response, timestamp,
};
use crate::provider::{
    CustomQuery, ExternalQuery, MetricValue, MetricsProvider, ObjectRef, ProviderError,
};
use crate::quantity;
use crate::selector::Selector;

/// The selectors a request carries; other parameters (`pretty`, …) are ignored.
#[derive(Debug, Default)]
struct Params {
    label_selector: Selector,
    metric_label_selector: Selector,
}

fn params(uri: &Uri) -> Result<Params, ApiError> {
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    let mut out = Params::default();
    for (key, value) in pairs.0 {
        match key.as_str() {
            "labelSelector" => out.label_selector = Selector::parse(&value)?,
            "metricLabelSelector" => out.metric_label_selector = Selector::parse(&value)?,
            _ => {}
        }
    }
    Ok(out)
}

/// Calls the provider, turning a panic behind the boundary into a 500 instead of a dropped
/// connection.
fn ask<T>(what: &str, call: impl FnOnce() -> Result<T, ProviderError>) -> Result<T, ApiError> {
    match std::panic::catch_unwind(AssertUnwindSafe(call)) {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => {
            tracing::error!(request = what, "metrics provider panicked");
            Err(ApiError::Internal(
                "internal error while computing the metric".into(),
            ))
        }
    }
}

fn quantity(value: f64, metric: &str) -> Result<String, ApiError> {
    quantity::format(value).map_err(|error| {
        tracing::error!(metric, %error, "metrics provider returned an unrenderable value");
        ApiError::Internal(format!("the value of metric {metric} cannot be rendered"))
    })
}

/// Answers a custom-metrics value request.
pub fn custom(
    provider: &dyn MetricsProvider,
    version: CustomVersion,
    path: CustomPath,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let params = params(uri)?;
    let named = matches!(path.object, ObjectName::Named(_));
    let query = CustomQuery::new(
        path.metric,
        path.resource,
        path.namespace,
        match path.object {
            ObjectName::Named(name) => ObjectRef::Named(name),
            ObjectName::All => ObjectRef::All(params.label_selector),
        },
        params.metric_label_selector,
    )?;
    let values = ask("custom", || provider.custom(&query))?;
    if named && values.len() != 1 {
        tracing::error!(
            metric = %query.metric,
            resource = %query.resource,
            count = values.len(),
            "metrics provider returned {} values for a single object; expected exactly one",
            values.len()
        );
        return Err(ApiError::Internal(format!(
            "internal error: {} values computed for one object's metric {}",
            values.len(),
            query.metric
        )));
    }
    let selector = LabelSelector::from_selector(&query.metric_selector);
    let object = |v: &MetricValue| ObjectReference {
        kind: query.kind.kind,
        namespace: query.namespace.clone(),
        name: v.object_name.clone(),
        api_version: query.kind.api_version,
    };
    let window = |v: &MetricValue| v.window.map(|w| w.as_secs());
    let api_version = format!("{}/{}", super::path::CUSTOM_GROUP, version.as_str());
    Ok(match version {
        CustomVersion::V1Beta1 => {
            let items = values
                .iter()
                .map(|v| {
                    Ok(MetricValueV1Beta1 {
                        described_object: object(v),
                        metric_name: query.metric.clone(),
                        timestamp: timestamp(v.timestamp)?,
                        window: window(v),
                        value: quantity(v.value, &query.metric)?,
                        selector: selector.clone(),
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            json_response(
                &list("MetricValueList", api_version, items),
                APPLICATION_JSON,
            )
        }
        CustomVersion::V1Beta2 => {
            let items = values
                .iter()
                .map(|v| {
                    Ok(MetricValueV1Beta2 {
                        described_object: object(v),
                        metric: MetricIdentifier {
                            name: query.metric.clone(),
                            selector: selector.clone(),
                        },
                        timestamp: timestamp(v.timestamp)?,
                        window_seconds: window(v),
                        value: quantity(v.value, &query.metric)?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            json_response(
                &list("MetricValueList", api_version, items),
                APPLICATION_JSON,
            )
        }
    })
}

/// Answers an external-metrics request (metric name already lower-cased).
pub fn external(
    provider: &dyn MetricsProvider,
    namespace: String,
    metric: String,
    uri: &Uri,
) -> Result<Response, ApiError> {
    let params = params(uri)?;
    let query = ExternalQuery {
        namespace,
        metric,
        selector: params.label_selector,
    };
    let values = ask("external", || provider.external(&query))?;
    let items = values
        .iter()
        .map(|v| {
            Ok(ExternalMetricValue {
                metric_name: query.metric.clone(),
                metric_labels: v.labels.clone(),
                timestamp: timestamp(v.timestamp)?,
                window: v.window.map(|w| w.as_secs()),
                value: quantity(v.value, &query.metric)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(json_response(
        &list(
            "ExternalMetricValueList",
            format!("{EXTERNAL_GROUP}/v1beta1"),
            items,
        ),
        APPLICATION_JSON,
    ))
}

fn list<T>(kind: &'static str, api_version: String, items: Vec<T>) -> List<T> {
    List {
        kind,
        api_version,
        metadata: Empty {},
        items,
    }
}
