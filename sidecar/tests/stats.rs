//! The stats source and the consumer-side report path against the real RabbitMQ: a consumer
//! that reports each delivery's stamp gets true ages, and stats rides out a missing queue.

mod common;

use common::amqp::{delete, fresh_queue, publish};
use common::{Peer, Running, ages, amqp_url, broker, eventually, metric, now_ms, settings};
use dwell_sidecar::Sidecar;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldTable};

#[tokio::test]
async fn a_consumer_reporting_deliveries_gives_true_ages() {
    let Some(conn) = broker("consumer_reports").await else {
        return;
    };
    let q = "dwell.test.sidecar.consumer-reports";
    let ch = fresh_queue(&conn, q, false).await;
    // Publisher: 10 messages stamped 20 s ago, property in seconds and header in ms.
    let stamp_ms = now_ms() - 20_000;
    for i in 0..10 {
        let mut headers = FieldTable::default();
        headers.insert("timestamp_in_ms".into(), AMQPValue::LongLongInt(stamp_ms));
        let props = BasicProperties::default()
            .with_timestamp((stamp_ms / 1000) as u64)
            .with_headers(headers);
        publish(&ch, q, &i.to_string(), props).await;
    }
    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let running = Running::start(Sidecar::bind(settings(peer.addr, q, &[])).await.unwrap()).await;
    // Consumer: like the README one-liners, report each delivery's stamp over UDP, then ack.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let started = now_ms();
    for n in 0..10 {
        let m = ch
            .basic_get(q.into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .unwrap();
        let p = &m.delivery.properties;
        let line = if n % 2 == 0 {
            format!(
                "{q} {} {}",
                p.timestamp().unwrap(),
                u8::from(m.delivery.redelivered)
            )
        } else {
            let headers = p.headers().as_ref().unwrap();
            let (_, v) = headers
                .inner()
                .iter()
                .find(|(k, _)| k.as_str() == "timestamp_in_ms")
                .unwrap();
            let AMQPValue::LongLongInt(ms) = v else {
                panic!("header type {v:?}")
            };
            format!("{q} {ms}ms")
        };
        sock.send_to(line.as_bytes(), running.udp).await.unwrap();
        m.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
    let (mut n, mut lo, mut hi, mut end) = (0, i64::MAX, 0, 0);
    peer.until("ten ages", |r| {
        let (c, min, max) = ages(r);
        if c > 0 {
            (n, lo, hi, end) = (n + c, lo.min(min), hi.max(max), r.interval_end_ms);
        }
        n >= 10
    })
    .await;
    assert_eq!(n, 10);
    // ms header: exact; seconds property: floored, so up to 1 s older than the truth.
    let floor_ms = stamp_ms / 1000 * 1000;
    assert!(
        lo >= started - stamp_ms,
        "min age {lo} < {}",
        started - stamp_ms
    );
    assert!(hi <= end - floor_ms, "max age {hi} > {}", end - floor_ms);
    running.stop().await;
    delete(&ch, q).await;
}

#[tokio::test]
async fn stats_survive_a_missing_queue_and_pick_it_up_when_declared() {
    let Some(conn) = broker("stats_missing_queue").await else {
        return;
    };
    let q = "dwell.test.sidecar.appears-later";
    let ch = conn.create_channel().await.unwrap();
    delete(&ch, q).await;
    let url = amqp_url();
    let flags = ["--amqp-url", url.as_str(), "--stats-interval", "100ms"];
    let running = Running::start(
        Sidecar::bind(settings("127.0.0.1:9".parse().unwrap(), q, &flags))
            .await
            .unwrap(),
    )
    .await;
    let t = running.telemetry;
    eventually("404s counted", || async {
        metric(t, "dwell_sidecar_stats_polls_total{kind=\"error\"}")
            .await
            .filter(|v| *v >= 2.0)
    })
    .await;
    let ch = fresh_queue(&conn, q, false).await;
    publish(&ch, q, "x", BasicProperties::default()).await;
    eventually("the queue seen once declared", || async {
        metric(
            t,
            r#"dwell_sidecar_queue_messages_ready{queue="dwell.test.sidecar.appears-later",vhost="/"}"#,
        )
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    assert_eq!(metric(t, "dwell_sidecar_stats_connected").await, Some(1.0));
    running.stop().await;
    delete(&ch, q).await;
}
