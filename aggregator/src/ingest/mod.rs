//! gRPC ingest (`dwell.v1.Ingest`): sidecars stream reports (one Ack per Report, in order),
//! scripts push single ones. Each report is validated (bad ones get `INVALID_ARGUMENT` with the
//! exact problem, and are counted by reason), deduplicated by `(source, instance, seq)`, and taken
//! into the window; a goodbye removes the source at once. The service itself ([`grpc`]) is
//! written out so that an open stream costs little memory ([`stream`]: no task, ack queue or
//! codec buffer per stream; [`codec`]: small buffers for `Push`).
//!
//! Who may report what: a stream is authenticated once when it opens (`crate::identity`; a
//! refusal is `UNAUTHENTICATED`) and each report bound to that identity before anything else
//! (another namespace or pod: `PERMISSION_DENIED`, counted by reason); [`limits`] bounds the
//! sources a caller may add and the reports a stream may send (`RESOURCE_EXHAUSTED`).
pub mod codec;
pub mod grpc;
pub mod limits;
pub mod server;
pub mod stream;
pub mod telemetry;
pub mod validate;

use std::sync::Arc;

use dwell_proto::v1::{Ack, Report};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Status};

use crate::identity::{AuthError, Identity, IngestAuth};
use crate::window::{Taken, WindowStore};
use dwell_runtime::clock::SharedClock;

pub use limits::IngestLimits;
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
    auth: IngestAuth,
    caller_limits: IngestLimits,
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
            auth: IngestAuth::default(),
            caller_limits: IngestLimits::default(),
        }
    }

    /// Authenticates streams with `auth` and binds their reports (default: nobody, unbound).
    pub fn with_auth(mut self, auth: IngestAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Bounds sources, report rates and connections by `limits` (default: [`IngestLimits`]'s).
    pub fn with_limits(mut self, limits: IngestLimits) -> Self {
        self.caller_limits = limits;
        self
    }

    /// The per-caller limits, for the server's HTTP/2 settings.
    pub fn caller_limits(&self) -> &IngestLimits {
        &self.caller_limits
    }

    /// Who opened a stream (see `IngestAuth::authenticate`); a refusal is counted and
    /// answered `UNAUTHENTICATED` with what failed (never the token).
    fn authenticate<T>(
        &self,
        req: &Request<T>,
        peer: &Arc<str>,
    ) -> Result<Option<Identity>, Status> {
        let authorization = req
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        let certs = req.peer_certs();
        self.auth
            .authenticate(
                authorization,
                certs.as_deref().map(Vec::as_slice),
                self.clock.now_ms(),
            )
            .map_err(|error: AuthError| {
                self.metrics
                    .unauthenticated
                    .get_or_create(&telemetry::ReasonLabel {
                        reason: error.reason(),
                    })
                    .inc();
                tracing::info!(%peer, reason = error.reason(), %error, "ingest stream refused");
                Status::unauthenticated(error.to_string())
            })
    }

    /// Refuses reports once the stream's token has expired (it was valid when the stream
    /// opened).
    fn check_expiry(&self, identity: &Identity, now: i64) -> Result<(), Status> {
        match identity.expires_at_ms {
            Some(at) if now > at => {
                self.metrics
                    .unauthenticated
                    .get_or_create(&telemetry::ReasonLabel { reason: "expired" })
                    .inc();
                Err(Status::unauthenticated(
                    "token expired during the stream; reconnect with the current token",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a report over a limit (counted by limit).
    fn limited(&self, (limit, status): (limits::Limit, Status), peer: &Arc<str>) -> Status {
        self.metrics
            .limited
            .get_or_create(&telemetry::LimitLabel {
                limit: limit.label(),
            })
            .inc();
        tracing::debug!(%peer, limit = limit.label(), "report over a limit");
        status
    }

    /// The tonic server, with the message size bound applied.
    pub fn into_server(self) -> grpc::IngestServer {
        grpc::IngestServer::new(self)
    }

    /// Handles one report from `identity` (`None`: unbound): bind, validate, admit, dedup,
    /// take (or forget on goodbye), answer.
    fn handle(
        &self,
        report: Report,
        peer: &Arc<str>,
        identity: Option<&Identity>,
        now: i64,
    ) -> Result<Ack, Status> {
        let seq = report.seq;
        if let (Some(identity), Some(source)) = (identity, &report.source)
            && let Err(denial) = identity.permits(&source.namespace, &source.pod)
        {
            self.metrics
                .denied
                .get_or_create(&telemetry::ReasonLabel {
                    reason: denial.reason(),
                })
                .inc();
            tracing::debug!(%peer, reason = denial.reason(), "report denied for its sender");
            return Err(Status::permission_denied(denial.to_string()));
        }
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
            Ok(Valid::Observe(obs)) => {
                if let Err(refused) = self.caller_limits.admit(&self.store, &obs.key) {
                    return Err(self.limited(refused, peer));
                }
                self.take(*obs, seq, now)
            }
        }
    }

    /// Takes a valid, admitted observation into the window.
    fn take(&self, obs: crate::window::Observation, seq: u64, now: i64) -> Result<Ack, Status> {
        match self.store.ingest(obs, now) {
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
        }
    }
}

fn peer_of<T>(req: &Request<T>) -> Arc<str> {
    req.remote_addr()
        .map_or_else(|| "unknown".into(), |a| a.to_string().into())
}

#[cfg(test)]
mod tests;
