//! gRPC ingest (`dwell.v1.Ingest`): sidecars stream reports (one Ack per Report, in order),
//! scripts push single ones. Each report is validated (bad ones get `INVALID_ARGUMENT` with the
//! exact problem, and are counted by reason), deduplicated by `(source, instance, seq)`, and taken
//! into the window; a goodbye removes the source at once.
pub mod server;
pub mod telemetry;
pub mod validate;

use std::sync::Arc;

use dwell_proto::v1::ingest_server::{Ingest, IngestServer};
use dwell_proto::v1::{Ack, Report};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::window::{Taken, WindowStore};
use dwell_runtime::clock::SharedClock;

pub use telemetry::IngestMetrics;
pub use validate::Limits;
use validate::{Valid, validate};

/// Acks buffered per stream before the reader waits for the sidecar to read them.
const ACK_BUFFER: usize = 32;

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
    /// A service feeding `store`; each open stream is a task on `streams` and ends when
    /// `shutdown` is cancelled.
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
    pub fn into_server(self) -> IngestServer<Self> {
        let max = self.limits.max_message_bytes;
        IngestServer::new(self).max_decoding_message_size(max)
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

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = ReceiverStream<Result<Ack, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<Report>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let peer = peer_of(&request);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(ACK_BUFFER);
        let service = self.clone();
        self.streams.spawn(async move {
            loop {
                let next = tokio::select! {
                    // Shutdown ends the stream cleanly (OK): the sidecar reconnects elsewhere.
                    _ = service.shutdown.cancelled() => break,
                    next = inbound.message() => next,
                };
                let answer = match next {
                    Ok(Some(report)) => service.handle(report, &peer),
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%peer, %status, "ingest stream ended by the client");
                        break;
                    }
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    // The client went away, or the stream ends with the rejection's status.
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn push(&self, request: Request<Report>) -> Result<Response<Ack>, Status> {
        let peer = peer_of(&request);
        self.handle(request.into_inner(), &peer).map(Response::new)
    }
}

#[cfg(test)]
mod tests;
