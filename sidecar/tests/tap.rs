//! The AMQP tap against the real RabbitMQ with lapin as the app: the same app run directly and
//! through the tap sees the same deliveries (bodies up to 1 MiB, properties, headers, order,
//! redelivered, basic.get, publisher confirms on the consuming connection), 50 channels share
//! one connection, and the ages reported per queue match the stamps the publisher set. And, with
//! a fake broker that stops reading, back-pressure reaches the app while the other way flows.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use common::amqp::delete;
use common::{Peer, Running, ages, amqp_url, broker, eventually, metric, now_ms, tap_settings};
use dwell_sidecar::Sidecar;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio_stream::StreamExt;

/// What the app saw of one delivery.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    /// Which of the app's queues (by role, so both runs compare).
    role: &'static str,
    body: Vec<u8>,
    properties: BasicProperties,
    redelivered: bool,
    routing_key: String,
}

/// The URL of the tap at `tap` with the test broker's credentials and vhost.
fn via(tap: SocketAddr) -> String {
    let url = amqp_url();
    let (creds, rest) = url.split_once('@').expect("user:pass@ in the test URL");
    let vhost = rest.split_once('/').map_or("", |(_, v)| v);
    format!("{creds}@{tap}/{vhost}")
}

fn unique(name: &str) -> String {
    format!(
        "dwell.test.tap.{name}.{}.{:x}",
        std::process::id(),
        rand_suffix()
    )
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// The messages every run publishes: bodies from empty to 1 MiB (larger than frame_max), and
/// every kind of property.
fn messages(stamp_ms: i64) -> Vec<(Vec<u8>, BasicProperties)> {
    let sizes = [0usize, 1, 17, 4096, 131_072, 300_000, 1 << 20, 5];
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let body: Vec<u8> = (0..n).map(|b| (b * 31 + i) as u8).collect();
            let mut headers = FieldTable::default();
            headers.insert("timestamp_in_ms".into(), AMQPValue::LongLongInt(stamp_ms));
            headers.insert("note".into(), AMQPValue::LongString(format!("n{i}").into()));
            headers.insert("flag".into(), AMQPValue::Boolean(i % 2 == 0));
            let mut nested = FieldTable::default();
            nested.insert("depth".into(), AMQPValue::LongInt(i as i32));
            headers.insert("nested".into(), AMQPValue::FieldTable(nested));
            let mut props = BasicProperties::default()
                .with_timestamp((stamp_ms / 1000) as u64)
                .with_headers(headers)
                .with_message_id(format!("m{i}").into())
                .with_delivery_mode(2);
            if i % 2 == 1 {
                props = props
                    .with_content_type("application/octet-stream".into())
                    .with_correlation_id(format!("c{i}").into())
                    .with_priority(3)
                    .with_app_id("tap-test".into());
            }
            (body, props)
        })
        .collect()
}

async fn declare(ch: &Channel, queue: &str) {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

async fn publish_confirmed(ch: &Channel, queue: &str, body: &[u8], props: BasicProperties) {
    let confirm = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "publisher confirm: {confirm:?}");
}

/// The app: on one connection it publishes (with confirms) to two queues, consumes the first
/// (nacking its first delivery once, so it comes back redelivered) and basic.gets the second.
async fn app(url: &str, queues: [&str; 2], stamp_ms: i64) -> Vec<Seen> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let publisher = conn.create_channel().await.unwrap();
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for q in queues {
        declare(&publisher, q).await;
    }
    let msgs = messages(stamp_ms);
    for (body, props) in &msgs {
        for q in queues {
            publish_confirmed(&publisher, q, body, props.clone()).await;
        }
    }
    let mut seen = Vec::new();
    let consumer_ch = conn.create_channel().await.unwrap();
    consumer_ch
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    // An empty tag: the broker names the consumer (consume-ok carries it).
    let mut consumer = consumer_ch
        .basic_consume(
            queues[0].into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut nacked = false;
    while seen.len() < msgs.len() + 1 {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("a delivery within 20 s")
            .expect("the consumer is open")
            .unwrap();
        seen.push(Seen {
            role: "consumed",
            body: d.data.clone(),
            properties: d.properties.clone(),
            redelivered: d.redelivered,
            routing_key: d.routing_key.to_string(),
        });
        if !nacked {
            nacked = true;
            d.acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
                .unwrap();
        } else {
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    let getter = conn.create_channel().await.unwrap();
    while let Some(m) = getter
        .basic_get(queues[1].into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
    {
        seen.push(Seen {
            role: "got",
            body: m.delivery.data.clone(),
            properties: m.delivery.properties.clone(),
            redelivered: m.delivery.redelivered,
            routing_key: m.delivery.routing_key.to_string(),
        });
        m.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
    for q in queues {
        delete(&publisher, q).await;
    }
    conn.close(200, "done".into()).await.unwrap();
    seen
}

/// Routing keys name the queue, which differs per run: compare by role.
fn by_role(mut seen: Vec<Seen>) -> Vec<Seen> {
    for s in &mut seen {
        s.routing_key = s.role.to_owned();
    }
    seen
}

#[tokio::test]
async fn lapin_sees_the_same_through_the_tap_and_ages_are_reported_per_queue() {
    let Some(_conn) = broker("tap_lapin").await else {
        return;
    };
    let stamp_ms = now_ms() - 30_000;
    let direct = app(
        &amqp_url(),
        [&unique("direct-a"), &unique("direct-b")],
        stamp_ms,
    )
    .await;

    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let flags = ["--timestamp-header", "timestamp_in_ms"];
    let sidecar = Sidecar::bind(tap_settings(peer.addr, &flags))
        .await
        .unwrap();
    let running = Running::start(sidecar).await;
    let tap = running.tap.unwrap();
    let (qa, qb) = (unique("tap-a"), unique("tap-b"));
    let started = now_ms();
    let tapped = app(&via(tap), [&qa, &qb], stamp_ms).await;
    let finished = now_ms();

    assert_eq!(tapped.len(), direct.len());
    assert_eq!(tapped.len(), 2 * messages(0).len() + 1);
    assert!(tapped[0].properties.timestamp().is_some());
    assert_eq!(tapped.iter().filter(|s| s.redelivered).count(), 1);
    assert_eq!(by_role(tapped), by_role(direct));

    // Every delivery's age, per queue: 9 consumed (one redelivered) from qa, 8 got from qb.
    let mut per_queue: BTreeMap<String, (u64, i64, i64, u64)> = BTreeMap::new();
    peer.until("every delivery's age", |r| {
        let (n, min, max) = ages(r);
        let q = r.source.as_ref().unwrap().queue.clone();
        if n > 0 {
            let e = per_queue.entry(q).or_insert((0, i64::MAX, 0, 0));
            e.0 += n;
            e.1 = e.1.min(min);
            e.2 = e.2.max(max);
            if let Some(dwell_proto::v1::report::Ages::Summary(s)) = &r.ages {
                e.3 += s.redelivered;
            }
        }
        per_queue.get(&qa).is_some_and(|e| e.0 >= 9) && per_queue.get(&qb).is_some_and(|e| e.0 >= 8)
    })
    .await;
    let a = per_queue[&qa];
    let b = per_queue[&qb];
    assert_eq!((a.0, a.3), (9, 1), "consumed: 9 deliveries, 1 redelivered");
    assert_eq!((b.0, b.3), (8, 0), "got: 8");
    for (min, max) in [(a.1, a.2), (b.1, b.2)] {
        // The header is in ms: ages lie between the run's bounds, within the summary's 1 %.
        assert!(
            min as f64 >= (started - stamp_ms) as f64 * 0.99,
            "min {min}"
        );
        assert!(
            max as f64 <= (finished - stamp_ms) as f64 * 1.01,
            "max {max}"
        );
    }
    let t = running.telemetry;
    let deliveries = format!(r#"dwell_sidecar_tap_deliveries_total{{queue="{qa}",vhost="/"}}"#);
    assert_eq!(metric(t, &deliveries).await, Some(9.0));
    assert_eq!(
        metric(
            t,
            r#"dwell_sidecar_tap_parse_off_total{kind="foreign_protocol"}"#
        )
        .await,
        None,
        "nothing switched parsing off"
    );
    eventually("the app's connection closed", || async {
        metric(t, "dwell_sidecar_tap_connections_open")
            .await
            .filter(|v| *v == 0.0)
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn fifty_channels_on_one_connection() {
    let Some(direct) = broker("tap_fifty_channels").await else {
        return;
    };
    let peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let running = Running::start(Sidecar::bind(tap_settings(peer.addr, &[])).await.unwrap()).await;
    let conn = Connection::connect(&via(running.tap.unwrap()), ConnectionProperties::default())
        .await
        .unwrap();
    let queues: Vec<String> = (0..5).map(|i| unique(&format!("fifty-{i}"))).collect();
    let setup = direct.create_channel().await.unwrap();
    setup
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for q in &queues {
        declare(&setup, q).await;
    }
    // 50 channels, 10 consumers per queue, all on the one tapped connection.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut channels = Vec::new();
    for i in 0..50 {
        let ch = conn.create_channel().await.unwrap();
        let q = queues[i % 5].clone();
        let mut consumer = ch
            .basic_consume(
                q.as_str().into(),
                ShortString::from(format!("c{i}")),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let _ = tx.send((q.clone(), d.data));
            }
        });
        channels.push(ch);
    }
    let stamp_s = (now_ms() / 1000 - 5) as u64;
    let mut published = Vec::new();
    for n in 0..40 {
        let q = &queues[n % 5];
        let body = format!("{n}").into_bytes();
        let props = BasicProperties::default().with_timestamp(stamp_s);
        publish_confirmed(&setup, q, &body, props).await;
        published.push((q.clone(), body));
    }
    let mut got = Vec::new();
    while got.len() < published.len() {
        let m = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("every message within 20 s")
            .unwrap();
        got.push(m);
    }
    got.sort();
    published.sort();
    assert_eq!(got, published);
    let t = running.telemetry;
    for q in &queues {
        let series = format!(r#"dwell_sidecar_tap_deliveries_total{{queue="{q}",vhost="/"}}"#);
        eventually("8 deliveries per queue", || async {
            metric(t, &series).await.filter(|v| *v == 8.0)
        })
        .await;
    }
    assert_eq!(
        metric(t, "dwell_sidecar_tap_unknown_consumer_total").await,
        Some(0.0)
    );
    for q in &queues {
        delete(&setup, q).await;
    }
    conn.close(200, "done".into()).await.unwrap();
    running.stop().await;
}

/// A "broker" that never reads: the tap must stop reading the app (TCP back-pressure reaches
/// the app instead of the sidecar's memory), while the other direction keeps flowing.
#[tokio::test]
async fn a_broker_that_stops_reading_pushes_back_on_the_app_and_the_other_way_flows() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const ATTEMPT: usize = 512 << 20;
    const FROM_BROKER: usize = 100 * 1000;
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("amqp://{}", fake.local_addr().unwrap());
    let broker = tokio::spawn(async move {
        let (mut s, _) = fake.accept().await.unwrap();
        // Never reads; sends 100 small frames' worth of bytes, 10 ms apart, then a heartbeat's
        // worth every 100 ms for as long as the tap takes them.
        for _ in 0..100 {
            s.write_all(&[8u8; 1000]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        while s.write_all(&[8u8; 8]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let args = dwell_sidecar::cli::Args::try_parse_from([
        "dwell-sidecar",
        "--aggregator",
        "http://127.0.0.1:9",
        "--tap-listen",
        "127.0.0.1:0",
        "--tap-upstream",
        &upstream,
        "--telemetry-addr",
        "127.0.0.1:0",
        "--pod-name",
        "p",
        // No aggregator listens: do not wait for the goodbye.
        "--shutdown-timeout",
        "200ms",
    ])
    .unwrap();
    let settings = dwell_sidecar::Settings::from_args(args).unwrap();
    let running = Running::start(Sidecar::bind(settings).await.unwrap()).await;
    let app = tokio::net::TcpStream::connect(running.tap.unwrap())
        .await
        .unwrap();
    let (mut rx, mut tx) = app.into_split();
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; FROM_BROKER];
        rx.read_exact(&mut got).await.map(|_| got)
    });
    tx.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    // Write until a 64 KiB write has not gone through for a second: the path is full.
    let chunk = vec![0xCEu8; 64 << 10];
    let mut written = 0;
    while written < ATTEMPT {
        match tokio::time::timeout(Duration::from_secs(1), tx.write_all(&chunk)).await {
            Ok(Ok(())) => written += chunk.len(),
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => break,
        }
    }
    let from_broker = reader.await.unwrap().expect("the broker's bytes arrived");
    assert_eq!(from_broker, vec![8u8; FROM_BROKER], "forwarded unchanged");
    assert!(
        written < 128 << 20,
        "{written} bytes were taken before the path pushed back (of {ATTEMPT} attempted)"
    );
    let forwarded = metric(
        running.telemetry,
        r#"dwell_sidecar_tap_bytes_total{direction="to_broker"}"#,
    )
    .await
    .unwrap_or(0.0);
    assert!(
        forwarded <= written as f64 + 8.0,
        "the tap forwarded {forwarded} of {written} bytes"
    );
    eprintln!("back-pressure after {written} bytes written, {forwarded} forwarded");
    // The app closes. The tap is not reading it (the broker side is full), so it learns of the
    // close from its next write to the app (the broker's next heartbeat), and closes both sides.
    drop(tx);
    eventually("the tap let go of the connection", || async {
        metric(running.telemetry, "dwell_sidecar_tap_connections_open")
            .await
            .filter(|v| *v == 0.0)
    })
    .await;
    broker.await.unwrap();
    running.stop().await;
}
