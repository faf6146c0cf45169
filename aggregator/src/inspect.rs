//! gRPC `dwell.v1.Inspect`, read-only, for operators: `ListSources` (who reported what, when,
//! from where) and `Explain` (a metric's inputs, each step, the result and its observation time;
//! computed by the very code that serves the HPA, so it matches the served value).
use std::sync::Arc;

use dwell_proto::v1::inspect_server::{Inspect, InspectServer};
use dwell_proto::v1::{
    ExplainRequest, ExplainResponse, ExplainStep, ListSourcesRequest, ListSourcesResponse,
    SourceInfo,
};
use tonic::{Request, Response, Status};

use crate::clock::SharedClock;
use crate::engine::{Engine, request};
use crate::provider::{CustomQuery, ExternalQuery, ObjectRef, QueryError};
use crate::selector::Selector;
use crate::window::{SourceSnapshot, WindowStore};

/// The group-resource an `object` Explain describes when it names none.
const DEFAULT_RESOURCE: &str = "deployments.apps";

/// The `Inspect` service.
#[derive(Debug, Clone)]
pub struct InspectService {
    engine: Arc<Engine>,
    store: Arc<WindowStore>,
    clock: SharedClock,
}

impl InspectService {
    /// Inspects `engine`'s evaluations and `store`'s sources.
    pub fn new(engine: Arc<Engine>, store: Arc<WindowStore>, clock: SharedClock) -> Self {
        Self {
            engine,
            store,
            clock,
        }
    }

    /// The tonic server.
    pub fn into_server(self) -> InspectServer<Self> {
        InspectServer::new(self)
    }

    fn info(&self, s: &SourceSnapshot, now_ms: i64, stale_after_ms: i64) -> SourceInfo {
        let q = s.queue_state.unwrap_or_default();
        SourceInfo {
            namespace: s.key.namespace.clone(),
            pod: s.key.pod.clone(),
            labels: s.labels.clone().into_iter().collect(),
            queue: s.key.queue.clone(),
            vhost: s.key.vhost.clone(),
            peer: s.peer.clone(),
            last_report_ms: s.last_report_ms,
            reports: s.reports,
            samples: s.samples,
            stale: now_ms - s.last_report_ms > stale_after_ms,
            messages_ready: q.messages_ready,
            consumers: q.consumers,
            clamped: s.counters.clamped,
            missing: s.counters.missing,
            backlog_dropped: s.counters.backlog_dropped,
        }
    }
}

#[tonic::async_trait]
impl Inspect for InspectService {
    async fn list_sources(
        &self,
        request: Request<ListSourcesRequest>,
    ) -> Result<Response<ListSourcesResponse>, Status> {
        let req = request.into_inner();
        let now = self.clock.now_ms();
        let stale_after = self.engine.rules().stale_after_ms;
        let sources = self
            .store
            .list(|k, _| {
                (req.namespace.is_empty() || k.namespace == req.namespace)
                    && (req.queue.is_empty() || k.queue == req.queue)
            })
            .iter()
            .map(|s| self.info(s, now, stale_after))
            .collect();
        Ok(Response::new(ListSourcesResponse { sources }))
    }

    async fn explain(
        &self,
        request: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        let req = request.into_inner();
        let engine_request = engine_request(req)?;
        let ev = self.engine.evaluate(&engine_request);
        let now = self.clock.now_ms();
        let stale_after = self.engine.rules().stale_after_ms;
        let (value, observed_at_ms, error) = match ev.outcomes.as_slice() {
            [one] => (
                crate::quantity::format(one.value).unwrap_or_default(),
                one.observed_at_ms,
                String::new(),
            ),
            [] => (String::new(), 0, ev.missing.clone().unwrap_or_default()),
            many => (
                String::new(),
                many.iter().map(|o| o.observed_at_ms).max().unwrap_or(0),
                format!(
                    "{} values (one per pod, see the steps); name a pod for one",
                    many.len()
                ),
            ),
        };
        Ok(Response::new(ExplainResponse {
            rule: ev.rule.map(|r| r.name).unwrap_or_default(),
            inputs: ev
                .inputs
                .iter()
                .map(|s| self.info(s, now, stale_after))
                .collect(),
            steps: ev
                .steps
                .into_iter()
                .map(|s| ExplainStep {
                    description: s.description,
                    value: s.value,
                })
                .collect(),
            value,
            observed_at_ms,
            error,
            object: engine_request.object,
        }))
    }
}

/// The request Explain evaluates: the API query it stands for, scoped by the same
/// [`CustomQuery::new`] and turned into the engine's request by the same [`request`] functions
/// as serving, so Explain evaluates exactly what the HPA is served.
fn engine_request(req: ExplainRequest) -> Result<crate::engine::Request, Status> {
    let bad =
        |field: &str, e: &dyn std::fmt::Display| Status::invalid_argument(format!("{field}: {e}"));
    if req.metric.is_empty() {
        return Err(Status::invalid_argument("metric is required"));
    }
    let metric_selector = Selector::parse(&req.metric_label_selector)
        .map_err(|e| bad("metric_label_selector", &e))?;
    let namespace = Some(req.namespace).filter(|ns| !ns.is_empty());
    let (resource, object) = match req.kind.as_str() {
        "external" => {
            let namespace =
                namespace.ok_or_else(|| Status::invalid_argument("namespace is required"))?;
            return Ok(request::external(&ExternalQuery {
                namespace,
                metric: req.metric.to_ascii_lowercase(),
                selector: metric_selector,
            }));
        }
        "" | "object" => {
            let resource = Some(req.resource)
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| DEFAULT_RESOURCE.into());
            (resource, ObjectRef::Named(req.name))
        }
        "pods" if req.name.is_empty() || req.name == "*" => {
            let pods =
                Selector::parse(&req.label_selector).map_err(|e| bad("label_selector", &e))?;
            ("pods".into(), ObjectRef::All(pods))
        }
        "pods" => ("pods".into(), ObjectRef::Named(req.name)),
        other => {
            return Err(bad(
                "kind",
                &format!("{other:?}: expected object, pods or external"),
            ));
        }
    };
    let query = CustomQuery::new(req.metric, resource, namespace, object, metric_selector)
        .map_err(|e| match e {
            QueryError::NeedsNamespace { resource } => {
                Status::invalid_argument(format!("namespace is required for {resource}"))
            }
            other => Status::invalid_argument(other.to_string()),
        })?;
    request::custom(&query).map_err(|e| Status::invalid_argument(e.to_string()))
}
