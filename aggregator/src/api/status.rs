//! Errors as Kubernetes `Status` objects (`kind: Status`, `status: Failure`), the only error body
//! client-go turns into a typed error with its message intact.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::provider::ProviderError;
use crate::selector::SelectorError;

/// A request that could not be answered, rendered as a `Status` with the matching HTTP code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 404: unknown route, resource or metric.
    #[error("{0}")]
    NotFound(String),
    /// 400: malformed path, query or selector.
    #[error("{0}")]
    BadRequest(String),
    /// 405: anything but GET.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 406: the Accept header lists nothing we can produce.
    #[error("{0}")]
    NotAcceptable(String),
    /// 500: a bug behind the API (details are logged, not sent).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &str) {
        match self {
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "NotFound", m),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "BadRequest", m),
            ApiError::MethodNotAllowed(m) => {
                (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", m)
            }
            ApiError::NotAcceptable(m) => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable", m),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError", m),
        }
    }
}

impl From<SelectorError> for ApiError {
    fn from(e: SelectorError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            ProviderError::BadRequest(m) => ApiError::BadRequest(m),
        }
    }
}

/// `metav1.Status` as JSON.
#[derive(Debug, Serialize)]
struct Status<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: super::types::Empty,
    status: &'static str,
    message: &'a str,
    reason: &'static str,
    code: u16,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, reason, message) = self.parts();
        let body = Status {
            kind: "Status",
            api_version: "v1",
            metadata: super::types::Empty {},
            status: "Failure",
            message,
            reason,
            code: code.as_u16(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (code, json).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
