//! `POST /mutate/pods`, the sidecar injection webhook, on the metrics API's TLS listener (the
//! `dwell-aggregator` Service the APIServices use, so the same certificate and caBundle serve
//! it). Outside the authentication layer on purpose: kube-apiserver calls admission webhooks
//! without a client certificate, and the answer holds nothing a pod's author could not compute
//! with `dwell-aggregator inject`. The body is read up to [`webhook::MAX_REVIEW_BYTES`]; every
//! answer is a 200 `AdmissionReview` that allows the pod ([`webhook::review`]), and every review
//! is counted by result in `dwell_webhook_reviews_total{result}` and logged.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::inject::InjectSettings;
use crate::inject::webhook::{self, Decision, MAX_REVIEW_BYTES};
use crate::telemetry::Telemetry;

use super::labelled;

/// The `result` label of one review.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    result: &'static str,
}

/// The webhook's settings and counters.
#[derive(Debug, Clone)]
pub struct Webhook {
    settings: InjectSettings,
    reviews: Family<ReviewLabels, Counter>,
}

impl Webhook {
    /// Injects with the default settings; registers `dwell_webhook_reviews_total`.
    pub fn new(telemetry: &Telemetry) -> Self {
        let reviews = Family::<ReviewLabels, Counter>::default();
        telemetry.register(
            "webhook_reviews",
            "Admission reviews answered by POST /mutate/pods, by result",
            reviews.clone(),
        );
        Self {
            settings: InjectSettings::default(),
            reviews,
        }
    }

    /// The same counters, injecting with `settings`.
    pub fn with_settings(&self, settings: InjectSettings) -> Self {
        Self {
            settings,
            reviews: self.reviews.clone(),
        }
    }
}

/// The handler.
pub async fn mutate(State(webhook): State<Arc<Webhook>>, request: Request) -> Response {
    let answer = match read_bounded(request.into_body()).await {
        Ok(body) => webhook::review(&body, &webhook.settings),
        Err(Bounded::TooLarge(prefix)) => webhook::oversized(&prefix),
        Err(Bounded::Failed(e)) => {
            let mut answer = webhook::oversized(&[]);
            answer.decision = Decision::Malformed(format!("reading the body: {e}"));
            answer
        }
    };
    webhook
        .reviews
        .get_or_create(&ReviewLabels {
            result: answer.decision.label(),
        })
        .inc();
    match &answer.decision {
        Decision::Injected => {
            tracing::info!(uid = %answer.uid, "webhook: dwell-sidecar injected")
        }
        Decision::Skipped(skip) => {
            tracing::debug!(uid = %answer.uid, reason = skip.as_str(), "webhook: pod left as it is")
        }
        Decision::Refused(reason) => {
            tracing::warn!(uid = %answer.uid, %reason, "webhook: pod asked for dwell but cannot get it; allowed without it")
        }
        Decision::Malformed(reason) => {
            tracing::warn!(uid = %answer.uid, %reason, "webhook: malformed AdmissionReview; allowed without a patch")
        }
        Decision::NotPodCreate => {
            tracing::warn!(uid = %answer.uid, "webhook: review is not a Pod CREATE; allowed without a patch")
        }
        Decision::Oversized => {
            tracing::warn!(uid = %answer.uid, limit = MAX_REVIEW_BYTES, "webhook: AdmissionReview too large; allowed without a patch")
        }
    }
    let mut response = Body::from(answer.body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    labelled("mutate", response)
}

enum Bounded {
    /// Over the limit: what was read.
    TooLarge(Vec<u8>),
    /// The connection failed mid-body.
    Failed(String),
}

async fn read_bounded(mut body: Body) -> Result<Vec<u8>, Bounded> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Bounded::Failed(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            if bytes.len() + data.len() > MAX_REVIEW_BYTES {
                // Keep what fits: the uid is near the start.
                bytes.extend_from_slice(&data[..MAX_REVIEW_BYTES - bytes.len()]);
                return Err(Bounded::TooLarge(bytes));
            }
            bytes.extend_from_slice(data);
        }
    }
    Ok(bytes)
}
