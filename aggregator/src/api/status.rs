//! Errors as Kubernetes `Status` objects (`kind: Status`, `status: Failure`), the only error body
//! client-go turns into a typed error with its message intact.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::provider::{ProviderError, QueryError};
use crate::selector::SelectorError;

/// A request that could not be answered, rendered as a `Status` with the matching HTTP code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 401: the caller is not authenticated (the message says why).
    #[error("Unauthorized: {0}")]
    Unauthorized(String),
    /// 403: the caller may not do this (the message in kube-apiserver's words, and the
    /// `details` naming what was refused).
    #[error("{message}")]
    Forbidden {
        /// The message.
        message: String,
        /// `details`: the resource's name, group and resource (kube's `kind` slot).
        details: StatusDetails,
    },
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
    fn parts(&self) -> (StatusCode, &'static str, String) {
        let message = self.to_string();
        let (code, reason) = match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        (code, reason, message)
    }
}

impl From<SelectorError> for ApiError {
    fn from(e: SelectorError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::UnknownResource { .. } => ApiError::NotFound(e.to_string()),
            QueryError::NeedsNamespace { .. } => ApiError::BadRequest(e.to_string()),
        }
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

/// `metav1.StatusDetails` as kube-apiserver fills it for a 403 (every field `omitempty`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    /// The object's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The API group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The resource (kube puts the resource in `kind` here).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a StatusDetails>,
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
            message: &message,
            reason,
            details: match &self {
                ApiError::Forbidden { details, .. } => Some(details),
                _ => None,
            },
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
