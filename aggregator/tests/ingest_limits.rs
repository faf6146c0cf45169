//! The ingest limits against the real binary over real gRPC on loopback, one each: sources per
//! namespace and in all (`RESOURCE_EXHAUSTED` naming the flag; sources held keep reporting),
//! reports per second per stream (the stream over its burst ends `RESOURCE_EXHAUSTED`, another
//! stream is unaffected), streams per connection (the SETTINGS_MAX_CONCURRENT_STREAMS the server
//! announces, read off the wire) and keepalive (a client that never answers a PING is closed
//! while a tonic client keeps working). Counters read from /metrics.
mod ingest_support;

use std::time::Duration;

use dwell_e2e::aggregator::Aggregator;
use dwell_proto::v1;
use ingest_support::{client, object_value, report, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

async fn limited() -> Aggregator {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = ingest_support::write_config(
        dir.path(),
        "rules:\n  - {name: dwell-max, statistic: max, window: 5m}\n",
    );
    let agg = start(&[
        "--config",
        &rules,
        "--ingest-max-sources-per-namespace",
        "2",
        "--ingest-max-sources",
        "3",
        "--ingest-max-reports-per-second",
        "1",
        "--ingest-report-burst",
        "3",
        "--grpc-max-streams-per-connection",
        "3",
        "--grpc-keepalive-interval",
        "1s",
        "--grpc-keepalive-timeout",
        "1s",
    ])
    .await;
    // The rules file is read at start; the directory may go.
    drop(dir);
    agg
}

async fn push(agg: &Aggregator, ns: &str, pod: &str, age_ms: i64) -> (Code, String) {
    match client(agg)
        .await
        .push(report(ns, pod, "q", &[age_ms]))
        .await
    {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_per_namespace_and_in_all() {
    let agg = limited().await;
    assert_eq!(push(&agg, "shop", "p1", 4_000).await.0, Code::Ok);
    assert_eq!(push(&agg, "shop", "p2", 5_000).await.0, Code::Ok);
    let (code, message) = push(&agg, "shop", "p3", 99_000).await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(
        message.contains("--ingest-max-sources-per-namespace") && message.contains("shop"),
        "{message}"
    );
    assert_eq!(
        push(&agg, "bank", "p1", 1_000).await.0,
        Code::Ok,
        "another namespace has room"
    );
    let (code, message) = push(&agg, "mall", "p1", 1_000).await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    assert!(
        message.contains("--ingest-max-sources") && message.contains("(3,"),
        "{message}"
    );
    // Sources held are never refused nor evicted for it.
    assert_eq!(push(&agg, "shop", "p1", 6_000).await.0, Code::Ok);
    assert_eq!(object_value(&agg, "shop", "dwell-max").await, Ok(6.0));
    assert_eq!(object_value(&agg, "bank", "dwell-max").await, Ok(1.0));
    let metrics = agg.kubectl.get_raw("/metrics").await.stdout;
    for line in [
        "dwell_ingest_limited_reports_total{limit=\"sources_per_namespace\"} 1",
        "dwell_ingest_limited_reports_total{limit=\"sources\"} 1",
    ] {
        assert!(has(&metrics, line), "{line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_per_second_per_stream() {
    let agg = limited().await;
    // Ten reports at once on one stream, against a burst of 3 at 1/s: some are acked, then the
    // stream ends RESOURCE_EXHAUSTED (unless the ten took seconds to send).
    let burst: Vec<v1::Report> = (0..10)
        .map(|i| report("shop", "fast", "q", &[i * 1_000]))
        .collect();
    let mut acks = client(&agg)
        .await
        .stream(tokio_stream::iter(burst))
        .await
        .expect("stream opens")
        .into_inner();
    let mut acked = 0;
    let end = loop {
        match acks.message().await {
            Ok(Some(_)) => acked += 1,
            Ok(None) => break Code::Ok,
            Err(s) => {
                assert!(
                    s.message().contains("--ingest-max-reports-per-second"),
                    "{s:?}"
                );
                break s.code();
            }
        }
    };
    assert_eq!(end, Code::ResourceExhausted);
    assert!((3..10).contains(&acked), "{acked} acked");
    // Another stream has its own bucket.
    let mut other = client(&agg)
        .await
        .stream(tokio_stream::iter(vec![report(
            "shop",
            "calm",
            "q",
            &[2_000],
        )]))
        .await
        .expect("stream opens")
        .into_inner();
    assert!(other.message().await.expect("ack").is_some());
    let metrics = agg.kubectl.get_raw("/metrics").await.stdout;
    assert!(
        has(
            &metrics,
            "dwell_ingest_limited_reports_total{limit=\"reports_per_second\"} 1"
        ),
        "{metrics}"
    );
}

/// Reads HTTP/2 frames (type, flags, payload) off `tcp` until the server closes it.
async fn frames_until_closed(tcp: &mut tokio::net::TcpStream) -> Vec<(u8, u8, Vec<u8>)> {
    let mut frames = Vec::new();
    loop {
        let mut head = [0u8; 9];
        if tcp.read_exact(&mut head).await.is_err() {
            return frames;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        if tcp.read_exact(&mut payload).await.is_err() {
            return frames;
        }
        frames.push((head[3], head[4], payload));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_connection_and_keepalive() {
    let agg = limited().await;
    // A raw HTTP/2 client: the preface and empty SETTINGS, then silence (no SETTINGS ack, no
    // PING ack), reading everything the server sends.
    let mut tcp = tokio::net::TcpStream::connect(agg.grpc_addr)
        .await
        .expect("connect");
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    let frames = tokio::time::timeout(Duration::from_secs(60), frames_until_closed(&mut tcp))
        .await
        .expect("the server closes a connection that never answers its pings");
    let settings = frames
        .iter()
        .find(|(t, flags, _)| *t == 0x4 && flags & 1 == 0)
        .expect("SETTINGS");
    let max_streams = settings.2.chunks(6).find_map(|s| {
        (u16::from_be_bytes([s[0], s[1]]) == 0x3)
            .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
    });
    assert_eq!(max_streams, Some(3), "SETTINGS_MAX_CONCURRENT_STREAMS");
    assert!(
        frames
            .iter()
            .any(|(t, flags, _)| *t == 0x6 && flags & 1 == 0),
        "a PING: {frames:?}"
    );
    // A client that answers pings is served as ever.
    assert_eq!(push(&agg, "shop", "p1", 2_000).await.0, Code::Ok);
}
