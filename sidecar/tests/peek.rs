//! The peek source against the real RabbitMQ (with stats beside it): peek reads the head message's timestamp
//! (property in seconds, header in milliseconds) without losing, duplicating or reordering
//! anything, and peek refuses quorum queues and queues with consumers.

mod common;

use common::amqp::{delete, drain, fresh_queue, publish, publish_now};
use common::{Peer, Running, ages, amqp_url, broker, eventually, metric, now_ms, settings};
use dwell_sidecar::Sidecar;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};

fn peek_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--amqp-url",
        url,
        "--stats-interval",
        "200ms",
        "--peek",
        "--peek-interval",
        "10s",
    ];
    v.extend_from_slice(extra);
    v
}

/// A sidecar with stats and peek on `queue` (asserted `queue_type`), pushing to a fresh test peer.
async fn start_peeking(queue: &str, queue_type: &str) -> (Peer, Running) {
    let url = amqp_url();
    let peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let flags = peek_args(&url, &["--queue-type", queue_type]);
    let sidecar = Sidecar::bind(settings(peer.addr, queue, &flags))
        .await
        .unwrap();
    (peer, Running::start(sidecar).await)
}

#[tokio::test]
async fn nothing_lost_peek_and_stats_on_a_classic_queue_with_header_ages() {
    let Some(conn) = broker("nothing_lost").await else {
        return;
    };
    let q = "dwell.test.sidecar.nothing-lost";
    let ch = fresh_queue(&conn, q, false).await;
    // The head message: property 100 s old (seconds), header 50.5 s old (ms): the header wins.
    let head_ms = now_ms() - 50_500;
    let mut headers = FieldTable::default();
    headers.insert("timestamp_in_ms".into(), AMQPValue::LongLongInt(head_ms));
    let props = BasicProperties::default()
        .with_timestamp((now_ms() / 1000 - 100) as u64)
        .with_headers(headers);
    publish(&ch, q, "0", props).await;
    publish_now(&ch, q, (1..50).map(|i| i.to_string())).await;
    let url = amqp_url();
    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let extra = peek_args(
        &url,
        &[
            "--queue-type",
            "classic",
            "--timestamp-header",
            "timestamp_in_ms",
        ],
    );
    let started = now_ms();
    let running =
        Running::start(Sidecar::bind(settings(peer.addr, q, &extra)).await.unwrap()).await;
    let reports = peer.until("a peeked age", |r| ages(r).0 > 0).await;
    let (count, age, _) = ages(reports.last().unwrap());
    assert_eq!(count, 1);
    let end = reports.last().unwrap().interval_end_ms;
    assert!(
        (started - head_ms..=end - head_ms).contains(&age),
        "age {age} not in [{}, {}]",
        started - head_ms,
        end - head_ms
    );
    // Stats saw the queue as it is: 50 ready, no consumers.
    let r = peer.until("queue state", |r| r.queue_state.is_some()).await;
    let qs = r.last().unwrap().queue_state.unwrap();
    assert_eq!((qs.messages_ready, qs.consumers), (50, 0));
    let t = running.telemetry;
    eventually("several stats polls", || async {
        metric(t, "dwell_sidecar_stats_polls_total{kind=\"ok\"}")
            .await
            .filter(|v| *v >= 3.0)
    })
    .await;
    assert_eq!(
        metric(t, "dwell_sidecar_peeks_total{kind=\"peeked\"}").await,
        Some(1.0)
    );
    running.stop().await;

    // Every message is still there, exactly once, in order; only the peeked head is redelivered.
    let got = drain(&ch, q).await;
    let bodies: Vec<String> = got.iter().map(|(b, _)| b.clone()).collect();
    let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(bodies, want);
    assert!(
        got[0].1,
        "the peeked head comes back redelivered (documented side effect)"
    );
    assert!(got[1..].iter().all(|(_, r)| !r));
    delete(&ch, q).await;
}

#[tokio::test]
async fn peek_reads_the_timestamp_property_in_seconds() {
    let Some(conn) = broker("peek_property").await else {
        return;
    };
    let q = "dwell.test.sidecar.peek-seconds";
    let ch = fresh_queue(&conn, q, false).await;
    let ts_s = (now_ms() / 1000 - 42) as u64;
    publish(
        &ch,
        q,
        "only",
        BasicProperties::default().with_timestamp(ts_s),
    )
    .await;
    let url = amqp_url();
    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let started = now_ms();
    let running = Running::start(
        Sidecar::bind(settings(
            peer.addr,
            q,
            &peek_args(&url, &["--queue-type", "classic"]),
        ))
        .await
        .unwrap(),
    )
    .await;
    let reports = peer.until("a peeked age", |r| ages(r).0 > 0).await;
    let (_, age, _) = ages(reports.last().unwrap());
    let ts_ms = ts_s as i64 * 1000;
    let end = reports.last().unwrap().interval_end_ms;
    assert!(
        (started - ts_ms..=end - ts_ms).contains(&age),
        "age {age} not in [{}, {}]",
        started - ts_ms,
        end - ts_ms
    );
    running.stop().await;
    assert_eq!(drain(&ch, q).await.len(), 1);
    delete(&ch, q).await;
}

#[tokio::test]
async fn peek_refuses_a_quorum_queue() {
    let Some(conn) = broker("peek_quorum").await else {
        return;
    };
    let q = "dwell.test.sidecar.quorum";
    let ch = fresh_queue(&conn, q, true).await;
    publish_now(&ch, q, (0..3).map(|i| i.to_string())).await;
    let (_peer, running) = start_peeking(q, "quorum").await;
    let t = running.telemetry;
    eventually("a refused peek", || async {
        metric(t, "dwell_sidecar_peeks_total{kind=\"refused_queue_type\"}")
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    // Stats works on quorum queues too.
    eventually("quorum stats", || async {
        metric(
            t,
            r#"dwell_sidecar_queue_messages_ready{queue="dwell.test.sidecar.quorum",vhost="/"}"#,
        )
        .await
        .filter(|v| *v == 3.0)
    })
    .await;
    assert_eq!(
        metric(t, "dwell_sidecar_peeks_total{kind=\"peeked\"}")
            .await
            .unwrap_or(0.0),
        0.0
    );
    running.stop().await;
    let got = drain(&ch, q).await;
    assert_eq!(
        got,
        vec![
            ("0".into(), false),
            ("1".into(), false),
            ("2".into(), false)
        ]
    );
    delete(&ch, q).await;
}

#[tokio::test]
async fn peek_refuses_a_queue_with_consumers() {
    let Some(conn) = broker("peek_consumers").await else {
        return;
    };
    let q = "dwell.test.sidecar.consumed";
    let ch = fresh_queue(&conn, q, false).await;
    publish_now(&ch, q, (0..5).map(|i| i.to_string())).await;
    // A consumer that takes one message and holds it: consumer_count is 1, 4 are ready.
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let _consumer = cch
        .basic_consume(
            q.into(),
            "holder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (_peer, running) = start_peeking(q, "classic").await;
    let t = running.telemetry;
    eventually("a refused peek", || async {
        metric(t, "dwell_sidecar_peeks_total{kind=\"refused_consumers\"}")
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(
        metric(t, "dwell_sidecar_peeks_total{kind=\"peeked\"}")
            .await
            .unwrap_or(0.0),
        0.0
    );
    running.stop().await;
    cch.close(200, "done".into()).await.unwrap();
    // The held message went back on close (redelivered by the consumer's doing); nothing else was touched.
    let got = drain(&ch, q).await;
    let bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(bodies, ["0", "1", "2", "3", "4"]);
    assert!(got[1..].iter().all(|(_, r)| !r), "{got:?}");
    delete(&ch, q).await;
}

#[tokio::test]
async fn a_quorum_queue_wrongly_asserted_classic_disables_peek_for_good() {
    let Some(conn) = broker("peek_quorum_guard").await else {
        return;
    };
    let q = "dwell.test.sidecar.quorum-guard";
    let ch = fresh_queue(&conn, q, true).await;
    publish_now(&ch, q, ["only".to_string()]).await;
    let (_peer, running) = start_peeking(q, "classic").await;
    let t = running.telemetry;
    // A peek sees x-delivery-count (the broker counts every give-back).
    eventually("peek disabled", || async {
        metric(t, "dwell_sidecar_peek_disabled")
            .await
            .filter(|v| *v == 1.0)
    })
    .await;
    // RabbitMQ 3.10 already shows x-delivery-count on the first get: one give-back, then never again.
    assert_eq!(
        metric(t, "dwell_sidecar_peeks_total{kind=\"peeked\"}").await,
        Some(1.0)
    );
    running.stop().await;
    // The single message is still there, once.
    let got = drain(&ch, q).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "only");
    delete(&ch, q).await;
}
