//! RabbitMQ for the freshness benchmark: a publisher stamping messages the way real publishers
//! do (`timestamp` property in seconds, `timestamp_in_ms` header), a consumer that reports each
//! delivery's timestamp to the sidecar over UDP and can be told to stall, and the two
//! non-destructive alternatives polled side by side: the management API's
//! `head_message_timestamp` and the `rabbitmq_prometheus` detailed endpoint.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::plainhttp;
use crate::reports::now_ms;

/// Connects to `url` (5 s deadline).
pub async fn connect(url: &str) -> anyhow::Result<Connection> {
    tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("RabbitMQ did not answer within 5 s"))?
    .map_err(|e| anyhow::anyhow!("cannot connect to RabbitMQ: {e}"))
}

/// Declares `queue` as a classic, non-durable queue (head_message_timestamp is classic-only).
pub async fn declare(ch: &Channel, queue: &str) -> anyhow::Result<()> {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// Deletes `queue`.
pub async fn delete(ch: &Channel, queue: &str) {
    let _ = ch
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
}

/// Publishes one message stamped `ts_ms` (property in seconds, header in milliseconds).
pub async fn publish(ch: &Channel, queue: &str, ts_ms: i64) -> anyhow::Result<()> {
    let mut headers = FieldTable::default();
    headers.insert("timestamp_in_ms".into(), AMQPValue::LongLongInt(ts_ms));
    let props = BasicProperties::default()
        .with_timestamp((ts_ms / 1000) as u64)
        .with_headers(headers);
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        b"bench",
        props,
    )
    .await?;
    Ok(())
}

/// Publishes fresh messages at `rate`/s until `stop` (the steady background traffic).
pub async fn steady_publisher(ch: Channel, queue: String, rate: f64, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = publish(&ch, &queue, now_ms()).await {
                    eprintln!("steady publisher stopped: {e} (was RabbitMQ restarted meanwhile?)");
                    return;
                }
            }
        }
    }
}

/// Controls the consumer.
#[derive(Debug, Default)]
pub struct ConsumerControl {
    /// While set, the consumer holds its current message and takes no more (a stalled worker).
    pub stalled: AtomicBool,
    /// Deliveries processed.
    pub delivered: AtomicU64,
    /// Timestamp (Unix ms) of the message the consumer is working on or holding.
    pub current_ts_ms: AtomicI64,
    /// Set while the consumer holds a message because it is stalled.
    pub holding: AtomicBool,
}

fn timestamp_ms(d: &lapin::message::Delivery) -> Option<i64> {
    let header = d
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("timestamp_in_ms").cloned());
    match header {
        Some(AMQPValue::LongLongInt(v)) => Some(v),
        _ => d.properties.timestamp().map(|s| s as i64 * 1000),
    }
}

/// A worker with prefetch 1 that spends `work` per message, reporting each delivery's timestamp
/// to the sidecar's UDP report source as the consumer app would.
pub async fn consumer(
    ch: Channel,
    queue: String,
    work: Duration,
    sidecar: SocketAddr,
    control: Arc<ConsumerControl>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    ch.basic_qos(1, BasicQosOptions::default()).await?;
    let mut deliveries = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let d = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            d = deliveries.next() => d,
        };
        let d = match d {
            Some(Ok(d)) => d,
            Some(Err(e)) => anyhow::bail!("consumer: {e}"),
            None => anyhow::bail!("consumer stream ended"),
        };
        let ts = timestamp_ms(&d);
        control
            .current_ts_ms
            .store(ts.unwrap_or_default(), Ordering::Relaxed);
        let line = match ts {
            Some(ts) => format!("{queue} {ts}ms {}", u8::from(d.redelivered)),
            None => format!("{queue} -"),
        };
        let _ = udp.send_to(line.as_bytes(), sidecar).await;
        tokio::time::sleep(work).await;
        while control.stalled.load(Ordering::Relaxed) && !stop.is_cancelled() {
            control.holding.store(true, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        control.holding.store(false, Ordering::Relaxed);
        d.ack(BasicAckOptions::default()).await?;
        control.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// `user:password` as an HTTP Basic credential.
pub fn basic_auth(user: &str, password: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The management API's `head_message_timestamp` of `queue` in vhost `/` (seconds), if shown.
pub async fn mgmt_head(addr: SocketAddr, auth: &str, queue: &str) -> Option<i64> {
    let path = format!("/api/queues/%2F/{queue}?columns=head_message_timestamp,messages_ready");
    let body = plainhttp::get_with(
        addr,
        &path,
        &[("Authorization", auth), ("Accept", "application/json")],
    )
    .await
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v.get("head_message_timestamp")?.as_i64()
}

/// The `rabbitmq_prometheus` detailed endpoint's head timestamp of `queue` (seconds), scraped
/// as Prometheus does (text exposition format).
pub async fn prom_head(addr: SocketAddr, queue: &str) -> Option<i64> {
    let accept =
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";
    let body = plainhttp::get(addr, "/metrics/detailed?family=queue_metrics", accept)
        .await
        .ok()?;
    let needle = format!("queue=\"{queue}\"");
    body.lines()
        .find(|l| {
            l.starts_with("rabbitmq_detailed_queue_head_message_timestamp{") && l.contains(&needle)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_matches_rfc_examples() {
        assert_eq!(basic_auth("guest", "guest"), "Basic Z3Vlc3Q6Z3Vlc3Q=");
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
