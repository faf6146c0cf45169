//! One `Ingest/Stream` on the wire, without tonic's per-RPC codec state: the request body's
//! gRPC messages (a flag byte, a big-endian u32 length, the protobuf) are cut out of the HTTP/2
//! DATA frames as they come (no copy when a message lies within one frame) and each is taken
//! and answered at once; the response body is the acks, then the status in the trailers.
//!
//! Why by hand: an open stream lives as long as its sidecar, and tonic keeps a decode buffer per
//! stream sized by doubling past the largest message (~2 KiB each, 20 MiB at 10 000 sidecars in
//! heaptrack, BENCHMARKS.md). Here an idle stream holds no buffer at all, and nothing but a
//! report spanning two frames is ever copied.
//!
//! Behaviour as tonic's: messages over the size bound end the stream with `OUT_OF_RANGE`,
//! compressed messages (none is negotiated) and undecodable ones with `INTERNAL`, a rejected
//! report with its `INVALID_ARGUMENT` after the acks before it; the client closing its side
//! ends the stream with OK, and so does shutdown (the sidecar reconnects elsewhere).
//!
//! The stream's identity was verified when it opened; each report is bound to it, and once
//! its token's `exp` passes the next report ends the stream `UNAUTHENTICATED` (the sidecar
//! reconnects with the token the kubelet rotated in). A report over the stream's rate is
//! refused and ends it `RESOURCE_EXHAUSTED`.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use dwell_proto::v1::Report;
use hyper::body::{Body, Buf, Bytes, Frame};
use prost::Message;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tonic::Status;
use tonic::codegen::StdError;
use tonic::codegen::http::HeaderMap;

use super::IngestService;
use super::limits::Bucket;
use crate::identity::Identity;

/// The gRPC message prefix: compression flag and length.
const PREFIX: usize = 5;

/// Where the stream is.
enum State {
    /// Reading reports and answering them.
    Open,
    /// Done reading; the trailers with this status go next.
    Ending(Status),
    /// Trailers sent.
    Done,
}

/// The response body of one `Ingest/Stream`, reading its request body as it goes.
pub struct AckStream<B> {
    service: Arc<IngestService>,
    inbound: B,
    /// Received bytes not yet taken: empty (no allocation) between reports.
    pending: Bytes,
    peer: Arc<str>,
    max_message_bytes: usize,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    state: State,
    /// Who may be reported for (`None`: unbound).
    identity: Option<Box<Identity>>,
    /// Report tokens (`--ingest-max-reports-per-second`).
    bucket: Bucket,
    /// Shutdown waits for the stream as for a task.
    _tracked: TaskTrackerToken,
}

impl<B> AckStream<B> {
    /// Serves `inbound` (the request body) for `peer`, authenticated as `identity`.
    pub fn new(
        service: Arc<IngestService>,
        inbound: B,
        peer: Arc<str>,
        identity: Option<Identity>,
    ) -> Self {
        let shutdown = Box::pin(service.shutdown.clone().cancelled_owned());
        let tracked = service.streams.token();
        let max_message_bytes = service.limits.max_message_bytes;
        let bucket = service.caller_limits.bucket(service.clock.now_ms());
        Self {
            service,
            inbound,
            pending: Bytes::new(),
            peer,
            max_message_bytes,
            shutdown,
            state: State::Open,
            identity: identity.map(Box::new),
            bucket,
            _tracked: tracked,
        }
    }

    /// The next whole message in `pending`, if one has arrived.
    fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        let Some(prefix) = self.pending.get(..PREFIX) else {
            return Ok(None);
        };
        match prefix[0] {
            0 => {}
            1 => {
                return Err(Status::internal(
                    "protocol error: received a compressed message, but no compression is accepted",
                ));
            }
            flag => {
                return Err(Status::internal(format!(
                    "protocol error: received message with invalid compression flag: {flag}"
                )));
            }
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > self.max_message_bytes {
            return Err(Status::out_of_range(format!(
                "Error, decoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_message_bytes
            )));
        }
        if self.pending.len() < PREFIX + len {
            return Ok(None);
        }
        let mut message = self.pending.split_to(PREFIX + len);
        if self.pending.is_empty() {
            // An empty slice still holds the frame's buffer (often the connection's): let go.
            self.pending = Bytes::new();
        }
        message.advance(PREFIX);
        Ok(Some(message))
    }

    /// Appends a DATA frame's bytes (kept as they are when nothing is pending).
    fn receive(&mut self, mut data: impl Buf) {
        let data = data.copy_to_bytes(data.remaining());
        if self.pending.is_empty() {
            self.pending = data;
        } else {
            let mut joined = Vec::with_capacity(self.pending.len() + data.len());
            joined.extend_from_slice(&self.pending);
            joined.extend_from_slice(&data);
            self.pending = Bytes::from(joined);
        }
    }
}

impl<B> AckStream<B> {
    /// Checks the stream's credential and rate, then decodes and handles one report.
    fn answer(&mut self, message: Bytes) -> Result<dwell_proto::v1::Ack, Status> {
        let now = self.service.clock.now_ms();
        if let Some(identity) = &self.identity {
            self.service.check_expiry(identity, now)?;
        }
        let service = &self.service;
        service
            .caller_limits
            .take(&mut self.bucket, now)
            .map_err(|refused| service.limited(refused, &self.peer))?;
        let report = Report::decode(message).map_err(|e| Status::internal(e.to_string()))?;
        service.handle(report, &self.peer, self.identity.as_deref(), now)
    }
}

/// One ack as a gRPC message.
fn frame_of(ack: &dwell_proto::v1::Ack) -> Bytes {
    let len = ack.encoded_len();
    let mut out = Vec::with_capacity(PREFIX + len);
    out.push(0);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    // A Vec grows as needed, so encoding cannot run out of room.
    let _ = ack.encode(&mut out);
    Bytes::from(out)
}

impl<B> Body for AckStream<B>
where
    B: Body + Unpin,
    B::Error: Into<StdError>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            match std::mem::replace(&mut self.state, State::Open) {
                State::Done => {
                    self.state = State::Done;
                    return Poll::Ready(None);
                }
                State::Ending(status) => {
                    self.state = State::Done;
                    let mut trailers = HeaderMap::new();
                    return Poll::Ready(match status.add_header(&mut trailers) {
                        Ok(()) => Some(Ok(Frame::trailers(trailers))),
                        Err(e) => Some(Err(e)),
                    });
                }
                State::Open => {}
            }
            if self.shutdown.as_mut().poll(cx).is_ready() {
                self.state = State::Ending(Status::ok(""));
                continue;
            }
            match self.next_message() {
                Err(status) => {
                    self.state = State::Ending(status);
                    continue;
                }
                Ok(Some(message)) => {
                    let answer = self.answer(message);
                    match answer {
                        Ok(ack) => return Poll::Ready(Some(Ok(Frame::data(frame_of(&ack))))),
                        // The stream ends with the rejection's status.
                        Err(status) => self.state = State::Ending(status),
                    }
                    continue;
                }
                Ok(None) => {}
            }
            let polled = Pin::new(&mut self.inbound).poll_frame(cx);
            match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.receive(data);
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    let error: StdError = error.into();
                    tracing::debug!(peer = %self.peer, %error, "ingest stream ended by the client");
                    self.state = State::Ending(Status::ok(""));
                }
                // The client closed its side (a partial message left over is dropped with it).
                Poll::Ready(None) => self.state = State::Ending(Status::ok("")),
            }
        }
    }
}

#[cfg(test)]
mod tests;
