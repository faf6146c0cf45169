//! `dwell.v1.Ingest` as a tonic service, written out instead of generated: `Push` goes through
//! tonic's unary path with the small-buffer codec ([`super::codec`]); `Stream` is framed by
//! [`super::stream`], so that an open stream costs no task, no ack queue and no codec buffers
//! of its own. Same paths, messages, status codes and limits as the generated `IngestServer`.
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use dwell_proto::v1::{Ack, Report};
use tonic::body::Body;
use tonic::codegen::http::HeaderValue;
use tonic::codegen::http::header::CONTENT_TYPE;
use tonic::codegen::{BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::IngestService;
use super::codec::SmallBuffers;
use super::stream::AckStream;

/// The tonic server for [`IngestService`].
#[derive(Debug, Clone)]
pub struct IngestServer {
    service: Arc<IngestService>,
}

impl IngestServer {
    /// Serves `service`, refusing messages over its `max_message_bytes` (`OUT_OF_RANGE`).
    pub fn new(service: IngestService) -> Self {
        Self {
            service: Arc::new(service),
        }
    }
}

impl NamedService for IngestServer {
    const NAME: &'static str = "dwell.v1.Ingest";
}

impl<B> tower::Service<http::Request<B>> for IngestServer
where
    B: tonic::codegen::Body + Send + Unpin + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let service = self.service.clone();
        match req.uri().path() {
            "/dwell.v1.Ingest/Stream" => Box::pin(std::future::ready(Ok(stream(service, req)))),
            "/dwell.v1.Ingest/Push" => {
                let max = service.limits.max_message_bytes;
                let mut grpc = Grpc::new(SmallBuffers::<Ack, Report>::default())
                    .max_decoding_message_size(max);
                Box::pin(async move { Ok(grpc.unary(Push(service), req).await) })
            }
            _ => Box::pin(std::future::ready(
                Ok(Status::unimplemented("").into_http()),
            )),
        }
    }
}

/// Starts an `Ingest/Stream`: its acks are the response body.
fn stream<B>(service: Arc<IngestService>, req: http::Request<B>) -> http::Response<Body>
where
    B: tonic::codegen::Body + Send + Unpin + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    // As tonic: a compressed request is refused, since no compression is accepted.
    if let Some(encoding) = req.headers().get("grpc-encoding")
        && encoding != "identity"
    {
        let name = String::from_utf8_lossy(encoding.as_bytes()).into_owned();
        return Status::unimplemented(format!(
            "Content is compressed with `{name}` which isn't supported"
        ))
        .into_http();
    }
    let req = Request::from_http(req);
    let peer = super::peer_of(&req);
    // Once per stream: every report on it is bound to this identity.
    let identity = match service.authenticate(&req, &peer) {
        Ok(identity) => identity,
        Err(status) => return status.into_http(),
    };
    let acks = AckStream::new(service, req.into_inner(), peer, identity);
    let mut response = http::Response::new(Body::new(acks));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// The unary method.
struct Push(Arc<IngestService>);

impl UnaryService<Report> for Push {
    type Response = Ack;
    type Future = std::future::Ready<Result<Response<Ack>, Status>>;

    fn call(&mut self, request: Request<Report>) -> Self::Future {
        let peer = super::peer_of(&request);
        let service = &self.0;
        let answer = service.authenticate(&request, &peer).and_then(|identity| {
            let now = service.clock.now_ms();
            if let Some(id) = &identity {
                service.check_expiry(id, now)?;
            }
            service.handle(request.into_inner(), &peer, identity.as_ref(), now)
        });
        std::future::ready(answer.map(Response::new))
    }
}
