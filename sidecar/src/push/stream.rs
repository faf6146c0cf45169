//! One long-lived `Ingest/Stream` to one aggregator address: on every (re)connect it resends the
//! whole backlog, then follows new reports, and records acks by seq. A failed stream is retried
//! with jittered exponential backoff until the address goes away or the goodbye report is acked.
//! With a token file, every (re)connect re-reads it and opens the stream with the token current
//! then; a new token while a stream is open ends that stream cleanly and opens the next one
//! with it at once, so no stream outlives the token it was opened with by more than a recheck.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dwell_proto::v1::ingest_client::IngestClient;
use dwell_proto::v1::{Ack, Report};
use dwell_runtime::backoff::Backoff;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use super::Target;
use super::backlog::Backlog;
use super::token::Bearer;
use crate::telemetry::Metrics;

/// Why a stream ended in error.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The endpoint could not be built or connected.
    #[error("connect")]
    Connect(#[from] tonic::transport::Error),
    /// The aggregator answered with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The aggregator ended the stream.
    #[error("the aggregator closed the stream")]
    Closed,
}

enum End {
    /// The goodbye report was acknowledged: nothing more to send.
    Goodbye,
    /// The address went away.
    Stopped,
    /// A new token was picked up: reopen with it.
    Rotated,
}

/// Streams reports to `addr` until it is stopped or the goodbye report is acknowledged.
pub async fn run(
    addr: SocketAddr,
    target: Arc<Target>,
    backlog: Arc<Backlog>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) {
    backlog.register(addr);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let mut acked = false;
        match session(addr, &target, &backlog, &stop, &metrics, &mut acked).await {
            Ok(End::Goodbye) => {
                tracing::info!(aggregator = %addr, "goodbye report acknowledged");
                break;
            }
            Ok(End::Stopped) => break,
            Ok(End::Rotated) => {
                tracing::info!(aggregator = %addr, "reopening the report stream with the new token");
                continue;
            }
            Err(e) => {
                metrics.stream_failures.inc();
                tracing::warn!(aggregator = %addr, error = %chain(&e), "report stream failed; reconnecting");
            }
        }
        if acked {
            backoff.reset();
        }
        // While shutting down there is no time for long waits.
        let delay = if backlog.goodbye_seq().is_some() {
            Duration::from_millis(100)
        } else {
            backoff.next_delay()
        };
        let pause = tokio::time::sleep(delay);
        if stop.run_until_cancelled(pause).await.is_none() {
            break;
        }
    }
    backlog.unregister(addr);
}

async fn session(
    addr: SocketAddr,
    target: &Target,
    backlog: &Backlog,
    stop: &CancellationToken,
    metrics: &Metrics,
    acked: &mut bool,
) -> Result<End, StreamError> {
    let scheme = if target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .origin(target.origin.clone())
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Some(tls) = &target.tls {
        endpoint = endpoint.tls_config(tls.clone().domain_name(target.host.clone()))?;
    }
    let channel = tokio::select! {
        _ = stop.cancelled() => return Ok(End::Stopped),
        c = endpoint.connect() => c?,
    };
    // The token current now (read again: a rotation may be newer than the last check), and
    // every later one as it comes.
    let mut rotated = match &target.token {
        Some(token) => {
            token.refresh(metrics);
            let mut rx = token.subscribe();
            rx.mark_unchanged();
            Some(rx)
        }
        None => None,
    };
    let mut client = IngestClient::with_interceptor(channel, Bearer(target.token.clone()));
    let (tx, rx) = mpsc::channel::<Report>(64);
    let mut cursor = 0u64;
    // Start the call with what fits in the channel; the loop below sends the rest.
    while let Some(r) = backlog.next_after(cursor) {
        let seq = r.seq;
        if tx.try_send(r).is_err() {
            break;
        }
        metrics.reports_sent.inc();
        cursor = seq;
    }
    let response = tokio::select! {
        _ = stop.cancelled() => return Ok(End::Stopped),
        r = client.stream(ReceiverStream::new(rx)) => r?,
    };
    let mut inbound = response.into_inner();
    metrics.streams_open.inc();
    let _open = scopeguard(metrics);
    tracing::info!(aggregator = %addr, backlog = backlog.len(), "report stream open; resending the backlog");
    let mut changes = backlog.subscribe();
    loop {
        while let Some(r) = backlog.next_after(cursor) {
            let seq = r.seq;
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(End::Stopped),
                () = token_changed(&mut rotated) => return Ok(End::Rotated),
                m = inbound.message() => {
                    if let Some(end) = on_ack(addr, m, backlog, metrics, acked)? {
                        return Ok(end);
                    }
                }
                permit = tx.reserve() => {
                    permit.map_err(|_| StreamError::Closed)?.send(r);
                    metrics.reports_sent.inc();
                    cursor = seq;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(End::Stopped),
            () = token_changed(&mut rotated) => return Ok(End::Rotated),
            m = inbound.message() => {
                if let Some(end) = on_ack(addr, m, backlog, metrics, acked)? {
                    return Ok(end);
                }
            }
            c = changes.changed() => {
                if c.is_err() {
                    return Ok(End::Stopped);
                }
            }
        }
    }
}

/// Resolves when a new token is picked up; never without a token file (or once its sender is
/// gone, which only happens at exit).
async fn token_changed(rotated: &mut Option<tokio::sync::watch::Receiver<super::token::Header>>) {
    if let Some(rx) = rotated
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

fn on_ack(
    addr: SocketAddr,
    message: Result<Option<Ack>, tonic::Status>,
    backlog: &Backlog,
    metrics: &Metrics,
    acked: &mut bool,
) -> Result<Option<End>, StreamError> {
    let ack = message?.ok_or(StreamError::Closed)?;
    metrics.acks.inc();
    *acked = true;
    backlog.ack(addr, ack.seq);
    Ok((backlog.goodbye_seq() == Some(ack.seq)).then_some(End::Goodbye))
}

/// An error with its causes, `a: b: c` (tonic's transport errors say little on their own).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Decrements the open-streams gauge when the session ends, however it ends.
struct OpenStream<'a>(&'a Metrics);

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.streams_open.dec();
    }
}

fn scopeguard(metrics: &Metrics) -> OpenStream<'_> {
    OpenStream(metrics)
}
