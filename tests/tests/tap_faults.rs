//! Faults through the tap: garbage from the app and from the "broker", an app that disconnects
//! in the middle of a body, 1 000 connections opened and dropped, and a broker restart. The
//! sidecar never panics, a healthy connection opened before the faults keeps working through them,
//! every faulty connection is let go of, garbage is still forwarded byte for byte (fail-open), and
//! the sidecar's memory comes back to its idle level.
//!
//! DISTURBS THE SHARED BROKER: the restart test stops the broker application (`rabbitmqctl
//! stop_app`) for about a second, which drops every connection on it; a guard starts it again
//! when dropped, panics included. The tests of this file take turns ([`ONE_AT_A_TIME`]), so the
//! restart never lands in the middle of the others.

use std::time::Duration;

use dwell_e2e::broker;
use dwell_e2e::poll;
use dwell_e2e::rabbitmqctl::{self, AppStopped};
use dwell_e2e::tap::{TapSidecar, round_trip};
use lapin::{Connection, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NOWHERE: &str = "127.0.0.1:9";

/// Held by each test for its whole run: the broker restart must not overlap the others.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";
/// Slack over the idle RSS once everything is closed: allocator arenas and caches that glibc
/// keeps, but no per-connection memory (1 000 connections at ~40 KiB would be ~40 MiB).
const RSS_SLACK_KIB: u64 = 6 * 1024;

fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(0xCE);
    out
}

async fn open_count(s: &TapSidecar) -> Result<(), String> {
    match s.metric("dwell_sidecar_tap_connections_open").await {
        Some(0.0) => Ok(()),
        other => Err(format!("tap connections open: {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_never_hurt_other_connections_and_memory_returns_to_idle() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(url) = broker::require("tap_faults").await else {
        return;
    };
    let sidecar = TapSidecar::start("tap-faults", &url, NOWHERE.parse().unwrap(), &[])
        .await
        .expect("sidecar starts");
    let q = broker::unique_queue("tap-faults");
    let healthy = Connection::connect(&sidecar.url(&url), ConnectionProperties::default())
        .await
        .expect("a healthy app connection through the tap");
    round_trip(&healthy, &q, b"before")
        .await
        .expect("round trip");
    let idle_rss = sidecar.rss_kib().expect("RSS readable");

    // Garbage from the app: forwarded (the broker refuses it), parsing off, counted.
    let mut garbage = TcpStream::connect(sidecar.tap).await.unwrap();
    garbage
        .write_all(b"\x16\x03\x01 this is no AMQP at all")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), garbage.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"AMQP"),
        "the broker's own refusal reached the app unchanged: {answer:?}"
    );

    // An app that disconnects in the middle of a 1 MiB body.
    let mut mid_body = TcpStream::connect(sidecar.tap).await.unwrap();
    let mut bytes = PROTOCOL_HEADER.to_vec();
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&(1u64 << 20).to_be_bytes());
    header.extend_from_slice(&[0, 0]);
    bytes.extend(frame(2, 1, &header));
    let mut body_frame = frame(3, 1, &vec![7; 131_064]);
    body_frame.truncate(60_000);
    bytes.extend(body_frame);
    let _ = mid_body.write_all(&bytes).await;
    drop(mid_body);

    // 1 000 connections opened and dropped, 50 at a time, each after the broker's first bytes.
    for _ in 0..20 {
        let batch: Vec<_> = (0..50)
            .map(|_| {
                let tap = sidecar.tap;
                tokio::spawn(async move {
                    let mut s = TcpStream::connect(tap).await?;
                    s.write_all(PROTOCOL_HEADER).await?;
                    let mut first = [0u8; 1];
                    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut first))
                        .await
                        .map_err(|_| std::io::Error::other("no connection.start"))??;
                    Ok::<u8, std::io::Error>(first[0])
                })
            })
            .collect();
        for task in batch {
            let first = task.await.unwrap().expect("the broker answered");
            assert_eq!(first, 1, "connection.start is a method frame");
        }
    }
    poll::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let open = sidecar
                .metric("dwell_sidecar_tap_connections_open")
                .await
                .unwrap_or(-1.0);
            // The healthy connection stays.
            if open == 1.0 {
                Ok(())
            } else {
                Err(format!("open {open}"))
            }
        },
    )
    .await
    .expect("every dropped connection was let go of");
    let accepted = sidecar
        .metric("dwell_sidecar_tap_connections_total")
        .await
        .unwrap_or(0.0);
    assert!(accepted >= 1_003.0, "accepted {accepted}");
    assert_eq!(
        sidecar
            .metric(r#"dwell_sidecar_tap_parse_off_total{kind="foreign_protocol"}"#)
            .await,
        Some(1.0),
        "the garbage connection, and only it, had parsing switched off"
    );

    // The healthy connection never noticed.
    round_trip(&healthy, &q, b"after")
        .await
        .expect("round trip");
    let ch = healthy.create_channel().await.unwrap();
    let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    healthy.close(200, "done".into()).await.unwrap();
    poll::until(Duration::from_secs(10), Duration::from_millis(100), || {
        open_count(&sidecar)
    })
    .await
    .expect("all closed");
    let rss = sidecar.rss_kib().expect("RSS readable");
    eprintln!("sidecar RSS: {idle_rss} KiB idle, {rss} KiB after 1 003 faulty connections");
    assert!(
        rss <= idle_rss + RSS_SLACK_KIB,
        "RSS {rss} KiB after the faults, {idle_rss} KiB idle before"
    );
    let output = sidecar.process.output().join("\n");
    assert!(!output.contains("panicked"), "{output}");
    assert!(sidecar.stop().await, "the sidecar exits cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_broker_is_forwarded_blind_and_counted() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // A "broker" that answers the protocol header with bytes no AMQP peer would send.
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 9) as u8).collect();
    let sent = garbage.clone();
    let server = tokio::spawn(async move {
        let (mut s, _) = fake.accept().await.unwrap();
        let mut header = [0u8; 8];
        s.read_exact(&mut header).await.unwrap();
        s.write_all(&sent).await.unwrap();
        // Then it echoes whatever the app sends: forwarding must go on after parsing stopped.
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&buf[..n]).await.unwrap();
        header
    });
    let url = format!("amqp://guest:guest@{fake_addr}/%2f");
    let sidecar = TapSidecar::start("tap-fake-broker", &url, NOWHERE.parse().unwrap(), &[])
        .await
        .expect("sidecar starts");
    let mut app = TcpStream::connect(sidecar.tap).await.unwrap();
    app.write_all(PROTOCOL_HEADER).await.unwrap();
    let mut got = vec![0u8; garbage.len()];
    app.read_exact(&mut got).await.unwrap();
    assert_eq!(got, garbage, "forwarded unchanged");
    app.write_all(b"still here").await.unwrap();
    let mut echo = [0u8; 10];
    app.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"still here");
    assert_eq!(server.await.unwrap(), PROTOCOL_HEADER);
    // 4096 bytes starting 0x09: no frame type AMQP has.
    let off = sidecar
        .metric(r#"dwell_sidecar_tap_parse_off_total{kind="unknown_frame_type"}"#)
        .await
        .unwrap_or(0.0)
        + sidecar
            .metric(r#"dwell_sidecar_tap_parse_off_total{kind="bad_frame_end"}"#)
            .await
            .unwrap_or(0.0)
        + sidecar
            .metric(r#"dwell_sidecar_tap_parse_off_total{kind="frame_too_large"}"#)
            .await
            .unwrap_or(0.0);
    assert_eq!(off, 1.0, "parsing switched off once, counted");
    drop(app);
    poll::until(Duration::from_secs(10), Duration::from_millis(100), || {
        open_count(&sidecar)
    })
    .await
    .expect("the app's close closed the upstream and the connection");
    assert!(sidecar.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_closes_tapped_connections_and_the_tap_carries_on() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(url) = broker::require("tap_broker_restart").await else {
        return;
    };
    if !rabbitmqctl::available() {
        if std::env::var("DWELL_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("tap_broker_restart: rabbitmqctl cannot reach the broker");
        }
        eprintln!(
            "\n!!!!! SKIPPED tap_broker_restart: rabbitmqctl cannot reach the broker !!!!!\n"
        );
        return;
    }
    let sidecar = TapSidecar::start("tap-restart", &url, NOWHERE.parse().unwrap(), &[])
        .await
        .expect("sidecar starts");
    let q = broker::unique_queue("tap-restart");
    let before = Connection::connect(&sidecar.url(&url), ConnectionProperties::default())
        .await
        .expect("connected through the tap");
    round_trip(&before, &q, b"before")
        .await
        .expect("round trip");
    {
        let _stopped = AppStopped::stop().expect("stop_app");
        // The broker closed its side: the tap closes the app's side at once.
        poll::until(
            Duration::from_secs(15),
            Duration::from_millis(100),
            || async {
                if before.status().connected() {
                    Err("the app still thinks it is connected".to_owned())
                } else {
                    Ok(())
                }
            },
        )
        .await
        .expect("the app saw the broker go");
        // While the broker is down, a new app connection is closed (the upstream refuses).
        let mut refused = TcpStream::connect(sidecar.tap).await.unwrap();
        let _ = refused.write_all(PROTOCOL_HEADER).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), refused.read_to_end(&mut rest)).await;
        assert!(
            rest.is_empty(),
            "nothing came from a stopped broker: {rest:?}"
        );
        // The guard starts the broker again here.
    }
    let after = poll::until(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            Connection::connect(&sidecar.url(&url), ConnectionProperties::default())
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await
    .expect("the app reconnects through the same tap once the broker is back");
    round_trip(&after, &q, b"after").await.expect("round trip");
    let ch = after.create_channel().await.unwrap();
    let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
    after.close(200, "done".into()).await.unwrap();
    poll::until(Duration::from_secs(10), Duration::from_millis(100), || {
        open_count(&sidecar)
    })
    .await
    .expect("all closed");
    let output = sidecar.process.output().join("\n");
    assert!(!output.contains("panicked"), "{output}");
    assert!(sidecar.stop().await);
}
