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

use crate::engine::{Engine, Kind, Pods, Request as EngineRequest, parse_selector};
use crate::window::SourceSnapshot;

/// The `Inspect` service.
#[derive(Debug, Clone)]
pub struct InspectService {
    engine: Arc<Engine>,
}

impl InspectService {
    /// Inspects `engine`'s state.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
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
        let now = self.engine.clock().now_ms();
        let stale_after = self.engine.rules().stale_after_ms;
        let sources = self
            .engine
            .store()
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
        if req.metric.is_empty() || req.namespace.is_empty() {
            return Err(Status::invalid_argument(
                "metric and namespace are required",
            ));
        }
        let bad = |field: &str, e: String| Status::invalid_argument(format!("{field}: {e}"));
        let metric_selector = parse_selector(&req.metric_label_selector)
            .map_err(|e| bad("metric_label_selector", e))?;
        let (kind, pods, object) = match req.kind.as_str() {
            "" | "object" => (
                Kind::Object,
                Pods::Any,
                format!("object {}/{}", req.namespace, req.name),
            ),
            "external" => (
                Kind::External,
                Pods::Any,
                format!("external metric in namespace {}", req.namespace),
            ),
            "pods" if req.name.is_empty() || req.name == "*" => {
                let sel =
                    parse_selector(&req.label_selector).map_err(|e| bad("label_selector", e))?;
                (
                    Kind::Pods,
                    Pods::Selected(sel),
                    format!("pods {}/*", req.namespace),
                )
            }
            "pods" => (
                Kind::Pods,
                Pods::Named(req.name.clone()),
                format!("pods {}/{}", req.namespace, req.name),
            ),
            other => {
                return Err(bad(
                    "kind",
                    format!("{other:?}: expected object, pods or external"),
                ));
            }
        };
        let ev = self.engine.evaluate(&EngineRequest {
            metric: req.metric.clone(),
            kind,
            namespace: req.namespace.clone(),
            pods,
            metric_selector,
            object,
        });
        let now = self.engine.clock().now_ms();
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
        }))
    }
}
