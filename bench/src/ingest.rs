//! Simulated sidecars: gRPC `Ingest/Stream` streams that each send a report at a fixed rate and
//! count the acks, spread over a few HTTP/2 connections.
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dwell_proto::v1;
use dwell_proto::v1::ingest_client::IngestClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::reports;

/// What a simulated sidecar sends each tick.
#[derive(Clone)]
pub enum Payload {
    /// Pre-built summaries sent in rotation.
    Summaries(Arc<Vec<v1::Summary>>),
    /// A raw-sample batch, re-stamped per send.
    Samples(v1::Samples),
}

/// Running totals across every stream.
#[derive(Debug, Default)]
pub struct Counters {
    /// Reports handed to gRPC.
    pub sent: AtomicU64,
    /// Acks received.
    pub acked: AtomicU64,
    /// Ages the aggregator said it took (sum of `Ack.accepted`).
    pub accepted: AtomicU64,
    /// Ticks skipped because the stream's send buffer was full (the server is behind).
    pub behind: AtomicU64,
    /// Streams that ended with an error.
    pub errors: AtomicU64,
    /// The first error seen, for the report.
    pub first_error: Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.first_error.lock() {
            f.get_or_insert(e);
        }
    }
}

/// Opens `n` gRPC connections to `uri`.
pub async fn connect(uri: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let ch = Channel::from_shared(uri.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        out.push(ch);
    }
    Ok(out)
}

/// Who a simulated sidecar is: its source, and the token it sends (`--tokens`).
#[derive(Clone)]
pub struct Sender {
    /// The source it reports.
    pub source: v1::Source,
    /// `Bearer <token>` for its pod, on every call.
    pub token: Option<tonic::metadata::AsciiMetadataValue>,
}

impl Sender {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Some(token) = &self.token {
            req.metadata_mut().insert("authorization", token.clone());
        }
        req
    }
}

/// One simulated sidecar: waits `delay` (to spread the fleet over one period), then sends one
/// report every `period` until `stop`.
pub async fn sidecar(
    channel: Channel,
    sender: Sender,
    period: Duration,
    delay: Duration,
    mut payload: Payload,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(delay) => {}
    }
    let mut client = IngestClient::new(channel)
        .max_decoding_message_size(1 << 20)
        .max_encoding_message_size(4 << 20);
    let (tx, rx) = mpsc::channel::<v1::Report>(4);
    let source = &sender.source;
    let mut acks = match client.stream(sender.request(ReceiverStream::new(rx))).await {
        Ok(r) => r.into_inner(),
        Err(e) => return counters.error(format!("open stream: {e}")),
    };
    let instance: u64 = rand::random();
    let interval_ms = period.as_millis() as i64;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                seq += 1;
                let report = next_report(&mut payload, source, instance, seq, interval_ms);
                match tx.try_send(report) {
                    Ok(()) => { counters.sent.fetch_add(1, Ordering::Relaxed); }
                    Err(_) => { counters.behind.fetch_add(1, Ordering::Relaxed); }
                }
            }
            ack = acks.message() => match ack {
                Ok(Some(a)) => {
                    counters.acked.fetch_add(1, Ordering::Relaxed);
                    counters.accepted.fetch_add(a.accepted, Ordering::Relaxed);
                }
                Ok(None) => return counters.error("stream closed by the aggregator".into()),
                Err(e) => return counters.error(format!("{}: {}", e.code(), e.message())),
            }
        }
    }
}

fn next_report(
    payload: &mut Payload,
    source: &v1::Source,
    instance: u64,
    seq: u64,
    interval_ms: i64,
) -> v1::Report {
    match payload {
        Payload::Summaries(pool) => {
            let s = &pool[(seq as usize + instance as usize) % pool.len()];
            reports::summary_report(source, instance, seq, interval_ms, s)
        }
        Payload::Samples(batch) => {
            reports::stamp(batch, reports::now_ms(), interval_ms);
            reports::samples_report(source, instance, seq, interval_ms, batch.clone())
        }
    }
}

/// Like [`sidecar`], but each report is a unary `Ingest/Push` (no long-lived stream): isolates
/// what the window costs from what an open HTTP/2 stream costs.
pub async fn pusher(
    channel: Channel,
    sender: Sender,
    period: Duration,
    delay: Duration,
    mut payload: Payload,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    tokio::select! {
        _ = stop.cancelled() => return,
        _ = tokio::time::sleep(delay) => {}
    }
    let mut client = IngestClient::new(channel).max_encoding_message_size(4 << 20);
    let instance: u64 = rand::random();
    let interval_ms = period.as_millis() as i64;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        seq += 1;
        let report = next_report(&mut payload, &sender.source, instance, seq, interval_ms);
        counters.sent.fetch_add(1, Ordering::Relaxed);
        match client.push(sender.request(report)).await {
            Ok(a) => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
                counters
                    .accepted
                    .fetch_add(a.into_inner().accepted, Ordering::Relaxed);
            }
            Err(e) => counters.error(format!("{}: {}", e.code(), e.message())),
        }
    }
}
