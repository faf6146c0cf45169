//! gRPC ingest (`dwell.v1.Ingest`): sidecars stream reports (one Ack per Report, in order),
//! scripts push single ones. Each report is validated (bad ones get `INVALID_ARGUMENT` with the
//! exact problem, and are counted by reason), deduplicated by `(source, instance, seq)`, and taken
//! into the window; a goodbye removes the source at once. The service itself ([`grpc`]) is
//! written out so that an open stream costs little memory ([`stream`]: no task, ack queue or
//! codec buffer per stream; [`codec`]: small buffers for `Push`).
pub mod codec;
pub mod grpc;
pub mod server;
pub mod stream;
pub mod telemetry;
pub mod validate;

use std::sync::Arc;

use dwell_proto::v1::{Ack, Report};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Status};

use crate::window::{Taken, WindowStore};
use dwell_runtime::clock::SharedClock;

pub use telemetry::IngestMetrics;
pub use validate::Limits;
use validate::{Valid, validate};

/// The `Ingest` service.
#[derive(Debug, Clone)]
pub struct IngestService {
    store: Arc<WindowStore>,
    clock: SharedClock,
    limits: Limits,
    metrics: IngestMetrics,
    streams: TaskTracker,
    shutdown: CancellationToken,
}

impl IngestService {
    /// A service feeding `store`; each open stream is tracked by `streams` (shutdown waits for
    /// it) and ends when `shutdown` is cancelled.
    pub fn new(
        store: Arc<WindowStore>,
        clock: SharedClock,
        limits: Limits,
        metrics: IngestMetrics,
        streams: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            clock,
            limits,
            metrics,
            streams,
            shutdown,
        }
    }

    /// The tonic server, with the message size bound applied.
    pub fn into_server(self) -> grpc::IngestServer {
        grpc::IngestServer::new(self)
    }

    /// Handles one report: validate, dedup, take (or forget on goodbye), answer.
    fn handle(&self, report: Report, peer: &Arc<str>) -> Result<Ack, Status> {
        let seq = report.seq;
        let now = self.clock.now_ms();
        match validate(report, peer, now, &self.limits) {
            Err(rejection) => {
                self.metrics
                    .rejected
                    .get_or_create(&telemetry::ReasonLabel {
                        reason: rejection.reason,
                    })
                    .inc();
                tracing::debug!(%peer, reason = rejection.reason, error = %rejection, "report rejected");
                Err(Status::invalid_argument(rejection.message))
            }
            Ok(Valid::Goodbye(key)) => {
                if self.store.remove(&key) {
                    self.metrics.goodbyes.inc();
                    tracing::info!(namespace = %key.namespace, pod = %key.pod, queue = %key.queue,
                        "source said goodbye; removed");
                }
                Ok(Ack {
                    seq,
                    accepted: 0,
                    duplicate: false,
                })
            }
            Ok(Valid::Observe(obs)) => match self.store.ingest(*obs, now) {
                Taken::Accepted(n) => {
                    self.metrics.reports.inc();
                    self.metrics.samples.inc_by(n);
                    Ok(Ack {
                        seq,
                        accepted: n,
                        duplicate: false,
                    })
                }
                Taken::Duplicate => {
                    self.metrics.duplicates.inc();
                    Ok(Ack {
                        seq,
                        accepted: 0,
                        duplicate: true,
                    })
                }
            },
        }
    }
}

fn peer_of<T>(req: &Request<T>) -> Arc<str> {
    req.remote_addr()
        .map_or_else(|| "unknown".into(), |a| a.to_string().into())
}

#[cfg(test)]
mod tests;
