//! Custom and external metric value requests: build the provider query from the parsed path and
//! the query string, ask the provider, and render the version's list document (remembered by
//! the response memo while the answer holds, when the engine says how long that is).
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Bytes;
use serde::Serialize;

use super::ApiState;
use super::memo::{Holds, SharedValues};
use super::path::{CustomPath, CustomVersion, EXTERNAL_GROUP, ObjectName};
use super::status::ApiError;
use super::types::{
    APPLICATION_JSON, Empty, ExternalMetricValue, LabelSelector, List, MetricIdentifier,
    MetricValueV1Beta1, MetricValueV1Beta2, ObjectReference, timestamp,
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

/// One value request: who answers it, and where its rendered answer is remembered.
pub struct Ask<'a> {
    state: &'a ApiState,
    route: &'static str,
    uri: &'a Uri,
}

impl<'a> Ask<'a> {
    /// The request to `uri`, counted under `route`.
    pub fn new(state: &'a ApiState, route: &'static str, uri: &'a Uri) -> Self {
        Self { state, route, uri }
    }

    /// Calls the engine (with how long its answer holds) or else the provider, turning a panic
    /// behind the boundary into a 500 instead of a dropped connection.
    fn call(
        &self,
        what: &str,
        held: impl FnOnce(&dyn super::memo::HeldAnswers) -> (SharedValues, Option<Holds>),
        plain: impl FnOnce(&dyn MetricsProvider) -> Result<Vec<MetricValue>, ProviderError>,
    ) -> Result<(Arc<[MetricValue]>, Option<Holds>), ApiError> {
        let call = || match &self.state.held {
            Some(engine) => held(engine.as_ref()),
            None => (plain(self.state.provider.as_ref()).map(Arc::from), None),
        };
        match std::panic::catch_unwind(AssertUnwindSafe(call)) {
            Ok((result, holds)) => result.map(|v| (v, holds)).map_err(ApiError::from),
            Err(_) => {
                tracing::error!(request = what, "metrics provider panicked");
                Err(ApiError::Internal(
                    "internal error while computing the metric".into(),
                ))
            }
        }
    }

    /// The JSON response of `body`, remembered while `holds`.
    fn respond<T: Serialize>(&self, body: &T, holds: Option<Holds>) -> Response {
        let bytes = match serde_json::to_vec(body) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => {
                tracing::error!(%error, "cannot serialize a response");
                return ApiError::Internal("cannot serialize the response".into()).into_response();
            }
        };
        if let (Some(holds), Some(pq)) = (holds, self.uri.path_and_query()) {
            self.state
                .memo
                .put(pq.as_str(), self.route, bytes.clone(), holds);
        }
        let mut response = bytes.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(APPLICATION_JSON),
        );
        response
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
    ask: &Ask<'_>,
    version: CustomVersion,
    path: CustomPath,
) -> Result<Response, ApiError> {
    let params = params(ask.uri)?;
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
    let (values, holds) = ask.call(
        "custom",
        |engine| engine.custom_held(&query),
        |provider| provider.custom(&query),
    )?;
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
    let selector = selector.as_ref();
    let mut timestamps = Timestamps::default();
    let window = |v: &MetricValue| v.window.map(|w| w.as_secs());
    let api_version = format!("{}/{}", super::path::CUSTOM_GROUP, version.as_str());
    Ok(match version {
        CustomVersion::V1Beta1 => {
            let items = values
                .iter()
                .map(|v| {
                    Ok(MetricValueV1Beta1 {
                        described_object: described(&query, v),
                        metric_name: &query.metric,
                        timestamp: timestamps.format(v.timestamp)?,
                        window: window(v),
                        value: quantity(v.value, &query.metric)?,
                        selector,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            ask.respond(&list("MetricValueList", api_version, items), holds)
        }
        CustomVersion::V1Beta2 => {
            let items = values
                .iter()
                .map(|v| {
                    Ok(MetricValueV1Beta2 {
                        described_object: described(&query, v),
                        metric: MetricIdentifier {
                            name: &query.metric,
                            selector,
                        },
                        timestamp: timestamps.format(v.timestamp)?,
                        window_seconds: window(v),
                        value: quantity(v.value, &query.metric)?,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            ask.respond(&list("MetricValueList", api_version, items), holds)
        }
    })
}

/// Answers an external-metrics request (metric name already lower-cased).
pub fn external(ask: &Ask<'_>, namespace: String, metric: String) -> Result<Response, ApiError> {
    let params = params(ask.uri)?;
    let query = ExternalQuery {
        namespace,
        metric,
        selector: params.label_selector,
    };
    let mut timestamps = Timestamps::default();
    let (values, holds) = ask.call(
        "external",
        |engine| engine.external_held(&query),
        |provider| provider.external(&query),
    )?;
    let items = values
        .iter()
        .map(|v| {
            Ok(ExternalMetricValue {
                metric_name: &query.metric,
                metric_labels: &v.labels,
                timestamp: timestamps.format(v.timestamp)?,
                window: v.window.map(|w| w.as_secs()),
                value: quantity(v.value, &query.metric)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(ask.respond(
        &list(
            "ExternalMetricValueList",
            format!("{EXTERNAL_GROUP}/v1beta1"),
            items,
        ),
        holds,
    ))
}

/// The object `v` describes, for `query`.
fn described<'a>(query: &'a CustomQuery, v: &'a MetricValue) -> ObjectReference<'a> {
    ObjectReference {
        kind: query.kind.kind,
        namespace: query.namespace.as_deref(),
        name: &v.object_name,
        api_version: query.kind.api_version,
    }
}

/// Formats observation times, reusing the last text while the second is the same (the items of
/// a list are mostly observed within the same few seconds).
#[derive(Default)]
struct Timestamps {
    last: Option<(u64, String)>,
}

impl Timestamps {
    fn format(&mut self, time: SystemTime) -> Result<String, ApiError> {
        let second = time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
        if let (Some(s), Some((held, text))) = (second, &self.last)
            && s == *held
        {
            return Ok(text.clone());
        }
        let text = timestamp(time)?;
        if let Some(s) = second {
            self.last = Some((s, text.clone()));
        }
        Ok(text)
    }
}

fn list<T>(kind: &'static str, api_version: String, items: Vec<T>) -> List<T> {
    List {
        kind,
        api_version,
        metadata: Empty {},
        items,
    }
}
