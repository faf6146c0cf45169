//! The HTTPS metrics API as an axum `Router`: custom metrics (v1beta1, v1beta2), external
//! metrics (v1beta1), discovery (legacy and aggregated), OpenAPI, health and `/metrics`; and the
//! sidecar injection webhook (`POST /mutate/pods`, [`mutate`]).
//!
//! Paths under `/apis` are parsed from the raw URI by [`path`] (so `%2A` and `deployments.apps`
//! work); every error is a Kubernetes `Status`; every request is counted under a bounded route
//! label. With an engine behind it ([`ApiState::with_held_answers`]), value answers are
//! remembered rendered ([`memo`]) and repeated requests are served before routing ([`Api`]):
//! GET value answers only, so the webhook's POST and every refused caller (401, 403) always
//! reach the router; the memo authenticates and authorizes as the router does ([`authz`]).
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

mod aggregated;
pub mod auth;
pub mod authz;
mod discovery;
pub mod memo;
mod metrics;
pub mod mutate;
mod openapi;
pub mod path;
mod status;
mod types;

pub use aggregated::{V2_CONTENT_TYPE, V2BETA1_CONTENT_TYPE};
pub use status::ApiError;

use crate::provider::MetricsProvider;
use crate::telemetry::Telemetry;
use path::ApiPath;
use types::{APPLICATION_JSON, json_response};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    provider: Arc<dyn MetricsProvider>,
    telemetry: Arc<Telemetry>,
    openapi_v2: Arc<Vec<u8>>,
    auth: Option<Arc<auth::Authenticator>>,
    authz: Option<Arc<authz::Authorizer>>,
    webhook: Arc<mutate::Webhook>,
    held: Option<Arc<dyn memo::HeldAnswers>>,
    memo: Arc<memo::ResponseMemo>,
}

impl ApiState {
    /// Serves values from `provider` and records requests in `telemetry`.
    pub fn new(provider: Arc<dyn MetricsProvider>, telemetry: Arc<Telemetry>) -> Self {
        let openapi_v2 = serde_json::to_vec(&openapi::v2()).unwrap_or_default();
        Self {
            webhook: Arc::new(mutate::Webhook::new(&telemetry)),
            provider,
            telemetry,
            openapi_v2: Arc::new(openapi_v2),
            auth: None,
            authz: None,
            held: None,
            memo: Arc::default(),
        }
    }

    /// The injection webhook injects with `settings` (default: `InjectSettings::default()`).
    pub fn with_inject(mut self, settings: crate::inject::InjectSettings) -> Self {
        self.webhook = Arc::new(self.webhook.with_settings(settings));
        self
    }

    /// Asks `held` (the engine, which is also the provider) for value answers, so that their
    /// rendered bodies are remembered while they hold and served before routing.
    pub fn with_held_answers(mut self, held: Arc<dyn memo::HeldAnswers>) -> Self {
        self.held = Some(held);
        self
    }

    /// Requires every caller but the health probes to be allowed by `authz` (after
    /// authentication, when configured).
    pub fn with_authorizer(mut self, authz: Option<Arc<authz::Authorizer>>) -> Self {
        self.authz = authz;
        self
    }

    /// Requires every caller but the health probes to authenticate through `auth`.
    pub fn with_authenticator(mut self, auth: Option<Arc<auth::Authenticator>>) -> Self {
        self.auth = auth;
        self
    }
}

/// The route label a handler attaches to its response for request metrics.
#[derive(Debug, Clone, Copy)]
struct RouteLabel(&'static str);

fn labelled(route: &'static str, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(RouteLabel(route));
    response
}

/// The metrics API as served: the router, and the response memo in front of it.
#[derive(Clone)]
pub struct Api {
    router: Router,
    state: ApiState,
}

impl Api {
    /// The remembered response to `req`, when the memo holds one that still holds (and the
    /// caller is authenticated); else `req` goes to [`Api::router`].
    pub fn remembered<B>(&self, req: &axum::http::Request<B>) -> Option<Response> {
        self.state.held.as_ref()?;
        self.state.memo.serve(&self.state, req)
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }
}

/// Builds the API. Serve it only through [`crate::tls::serve`]: never over plain HTTP.
pub fn router(state: ApiState) -> Api {
    let router = Router::new()
        .route("/apis", get(apis))
        .route("/apis/", get(apis))
        .route("/apis/{*rest}", get(apis_path))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3_index))
        .route("/openapi/v3/{*rest}", get(openapi_v3_group_version))
        .route("/healthz", get(|| async { labelled("health", "ok") }))
        .route("/livez", get(|| async { labelled("health", "ok") }))
        .route("/readyz", get(|| async { labelled("health", "ok") }))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require))
        // After the auth layer, so outside it: kube-apiserver calls webhooks without a certificate.
        .route(
            "/mutate/pods",
            post(mutate::mutate).with_state(state.webhook.clone()),
        )
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state.clone());
    Api { router, state }
}

async fn observe(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map_or("unmatched", |r| r.0);
    state.telemetry.observe_http(
        route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

async fn not_found(uri: Uri) -> Response {
    labelled(
        "unmatched",
        ApiError::NotFound(format!(
            "the server could not find the requested resource: no route for {}",
            uri.path()
        )),
    )
}

async fn method_not_allowed() -> Response {
    labelled(
        "unmatched",
        ApiError::MethodNotAllowed("only GET is supported on the metrics API".into()),
    )
}

async fn apis(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let served = discovery::Served::new(&state.provider.metrics());
    labelled("apis", aggregated::apis(&headers, &served))
}

async fn apis_path(State(state): State<ApiState>, uri: Uri) -> Response {
    let parsed = match path::parse(uri.path()) {
        Ok(p) => p,
        Err(e) => return labelled("apis_invalid", e),
    };
    match parsed {
        ApiPath::Group(group) => labelled(
            "api_group",
            json_response(&discovery::api_group(group, true), APPLICATION_JSON),
        ),
        ApiPath::Resources(group, version) => {
            let served = discovery::Served::new(&state.provider.metrics());
            let list = discovery::api_resource_list(group, version, &served);
            labelled("api_resources", json_response(&list, APPLICATION_JSON))
        }
        ApiPath::Custom(version, custom) => {
            let route = match (&custom.resource, &custom.object) {
                (_, path::ObjectName::All) => "custom_selector",
                (r, _) if r == "namespaces" && custom.namespace.is_none() => "custom_namespace",
                _ => "custom_object",
            };
            labelled(
                route,
                metrics::custom(&metrics::Ask::new(&state, route, &uri), version, custom),
            )
        }
        ApiPath::External { namespace, metric } => labelled(
            "external",
            metrics::external(
                &metrics::Ask::new(&state, "external", &uri),
                namespace,
                metric,
            ),
        ),
    }
}

async fn openapi_v2(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let body = state.openapi_v2.as_ref().clone();
    labelled(
        "openapi",
        aggregated::cached(&headers, body, APPLICATION_JSON),
    )
}

async fn openapi_v3_index(headers: HeaderMap) -> Response {
    let body = serde_json::to_vec(&openapi::v3_index()).unwrap_or_default();
    labelled(
        "openapi",
        aggregated::cached(&headers, body, APPLICATION_JSON),
    )
}

async fn openapi_v3_group_version(uri: Uri, headers: HeaderMap) -> Response {
    let rest = uri.path().trim_start_matches("/openapi/v3/");
    let doc = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["apis", group, version] => openapi::v3_group_version(group, version),
        _ => None,
    };
    match doc {
        Some(doc) => labelled(
            "openapi",
            aggregated::cached(
                &headers,
                serde_json::to_vec(&doc).unwrap_or_default(),
                APPLICATION_JSON,
            ),
        ),
        None => labelled(
            "openapi",
            ApiError::NotFound(format!("no OpenAPI document at {}", uri.path())),
        ),
    }
}

async fn metrics_text(State(state): State<ApiState>) -> Response {
    let mut response = state.telemetry.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    labelled("metrics", response)
}
