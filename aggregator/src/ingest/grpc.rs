//! `dwell.v1.Ingest` as a tonic service, written out instead of generated so that it can use
//! the small-buffer codec ([`super::codec`]), and so that a stream's acks are produced by the
//! stream itself ([`Acks`]): a report is read, taken and answered when the sidecar is ready for
//! the next ack, with no task and no ack queue of its own per stream. Same paths, messages,
//! status codes and limits as the generated `IngestServer`.
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use dwell_proto::v1::{Ack, Report};
use tokio_stream::Stream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};

use super::IngestService;
use super::codec::SmallBuffers;

/// The tonic server for [`IngestService`].
#[derive(Debug, Clone)]
pub struct IngestServer {
    service: Arc<IngestService>,
    max_decoding_bytes: usize,
}

impl IngestServer {
    /// Serves `service`, refusing messages over `max_decoding_bytes` (`OUT_OF_RANGE`).
    pub fn new(service: IngestService, max_decoding_bytes: usize) -> Self {
        Self {
            service: Arc::new(service),
            max_decoding_bytes,
        }
    }

    fn grpc(&self) -> Grpc<SmallBuffers<Ack, Report>> {
        Grpc::new(SmallBuffers::default()).max_decoding_message_size(self.max_decoding_bytes)
    }
}

impl NamedService for IngestServer {
    const NAME: &'static str = "dwell.v1.Ingest";
}

impl<B> tower::Service<http::Request<B>> for IngestServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let mut grpc = self.grpc();
        let method = Method(self.service.clone());
        match req.uri().path() {
            "/dwell.v1.Ingest/Stream" => {
                Box::pin(async move { Ok(grpc.streaming(method, req).await) })
            }
            "/dwell.v1.Ingest/Push" => Box::pin(async move { Ok(grpc.unary(method, req).await) }),
            _ => Box::pin(std::future::ready(
                Ok(Status::unimplemented("").into_http()),
            )),
        }
    }
}

/// Both methods of the service.
struct Method(Arc<IngestService>);

impl StreamingService<Report> for Method {
    type Response = Ack;
    type ResponseStream = Acks;
    type Future = std::future::Ready<Result<Response<Acks>, Status>>;

    fn call(&mut self, request: Request<Streaming<Report>>) -> Self::Future {
        let peer = super::peer_of(&request);
        let service = self.0.clone();
        let shutdown = Box::pin(service.shutdown.clone().cancelled_owned());
        let tracked = service.streams.token();
        std::future::ready(Ok(Response::new(Acks {
            service,
            inbound: request.into_inner(),
            peer,
            shutdown,
            done: false,
            _tracked: tracked,
        })))
    }
}

impl UnaryService<Report> for Method {
    type Response = Ack;
    type Future = std::future::Ready<Result<Response<Ack>, Status>>;

    fn call(&mut self, request: Request<Report>) -> Self::Future {
        let peer = super::peer_of(&request);
        std::future::ready(
            self.0
                .handle(request.into_inner(), &peer)
                .map(Response::new),
        )
    }
}

/// The acks of one `Ingest/Stream`, one per report, in order. Ends after a rejected report (with
/// its `INVALID_ARGUMENT`), when the client ends or breaks its side, and at shutdown (OK: the
/// sidecar reconnects elsewhere). Holds the ingest tracker open while it lives, so shutdown
/// waits for it as for a task.
pub struct Acks {
    service: Arc<IngestService>,
    inbound: Streaming<Report>,
    peer: Arc<str>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
    _tracked: TaskTrackerToken,
}

impl Stream for Acks {
    type Item = Result<Ack, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done || self.shutdown.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(None);
        }
        let next = ready!(Pin::new(&mut self.inbound).poll_next(cx));
        match next {
            Some(Ok(report)) => {
                let answer = self.service.handle(report, &self.peer);
                // The stream ends with the rejection's status.
                self.done = answer.is_err();
                Poll::Ready(Some(answer))
            }
            Some(Err(status)) => {
                tracing::debug!(peer = %self.peer, %status, "ingest stream ended by the client");
                self.done = true;
                Poll::Ready(None)
            }
            None => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}
