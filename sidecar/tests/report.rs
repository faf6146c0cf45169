//! The report source end to end in one process: a consumer's UDP lines and HTTP posts become
//! ages that match the truth, garbage is rejected and counted (in /metrics and in the reports),
//! every report reaches a recording gRPC peer, and ages are measured against the injected clock.

mod common;

use common::{Peer, Running, ages, eventually, http, metric, now_ms, settings};
use dwell_runtime::clock::ManualClock;
use dwell_sidecar::Sidecar;

#[tokio::test]
async fn reported_ages_match_the_truth_within_resolution() {
    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let sidecar = Sidecar::bind(settings(peer.addr, "orders", &[]))
        .await
        .unwrap();
    let running = Running::start(sidecar).await;

    // Seconds (the spec's property): floor() loses up to 1 s, so the age is within [truth, truth+1s).
    let ts_s = (now_ms() / 1000 - 30) as u64;
    let sent_s = now_ms();
    running
        .send_udp(format!("orders {ts_s}\n").as_bytes())
        .await;
    let r = peer.until("the seconds age", |r| ages(r).0 > 0).await;
    let (count, min, max) = ages(r.last().unwrap());
    let end = r.last().unwrap().interval_end_ms;
    assert_eq!(count, 1);
    assert_eq!(min, max);
    let ts_ms = ts_s as i64 * 1000;
    assert!(
        (sent_s - ts_ms..=end - ts_ms).contains(&min),
        "age {min} not in [{}, {}]",
        sent_s - ts_ms,
        end - ts_ms
    );

    // Milliseconds, by suffix, by auto-detection (header-style values) and over HTTP JSON.
    let ts_ms = (now_ms() - 12_345) as u64;
    let sent = now_ms();
    running
        .send_udp(format!("orders {ts_ms}ms\n- {ts_ms} 1\n").as_bytes())
        .await;
    let body = format!(
        r#"[{{"queue":"orders","timestamp":{ts_ms},"unit":"ms"}},{{"timestamp":{ts_ms}}}]"#
    );
    let (status, text) = http(
        running.http,
        "POST",
        "/v1/report",
        "application/json",
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"accepted\":2"), "{text}");
    let mut seen = 0;
    let mut redelivered = 0;
    let mut last_end = 0;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    peer.until("four millisecond ages", |r| {
        if let Some(dwell_proto::v1::report::Ages::Summary(s)) = &r.ages
            && s.count > 0
        {
            seen += s.count;
            redelivered += s.redelivered;
            lo = lo.min(s.min_ms);
            hi = hi.max(s.max_ms);
            last_end = r.interval_end_ms;
        }
        seen >= 4
    })
    .await;
    assert_eq!((seen, redelivered), (4, 1));
    let truth_lo = sent - ts_ms as i64;
    let truth_hi = last_end - ts_ms as i64;
    assert!(
        lo >= truth_lo && hi <= truth_hi,
        "ages [{lo}, {hi}] not in [{truth_lo}, {truth_hi}]"
    );
    // Two of them were read as milliseconds by magnitude, and counted as such.
    assert_eq!(running.metrics.unit_converted.get(), 2);
    let r = peer
        .until("a report with counters", |r| r.counters.is_some())
        .await;
    let report = r.last().unwrap();
    let source = report.source.clone().unwrap();
    assert_eq!(
        (
            source.pod.as_str(),
            source.namespace.as_str(),
            source.queue.as_str()
        ),
        ("binder-0", "shop", "orders")
    );
    assert_eq!(source.labels.get("app").map(String::as_str), Some("binder"));
    assert_eq!(report.counters.unwrap().unit_converted, 2);
    running.stop().await;
}

#[tokio::test]
async fn bad_input_is_rejected_and_counted() {
    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let sidecar = Sidecar::bind(settings(peer.addr, "orders", &[]))
        .await
        .unwrap();
    let running = Running::start(sidecar).await;
    let t = running.telemetry;

    // UDP: garbage lines, bad numbers, a wrong queue, a huge datagram, non-UTF-8; one good line.
    running.send_udp(b"hello world again and again\norders -5\norders 1.5\norders 12h\norders 1 maybe\nother 1795817979\norders 1795817979\n").await;
    running.send_udp(&vec![b'x'; 20_000]).await;
    running.send_udp(&[0xff, 0xfe, 0x00]).await;
    // HTTP: bad JSON, bad numbers, unknown fields, wrong media type, a huge body, a wrong queue.
    for (ct, body, want) in [
        ("application/json", &b"{not json"[..], 400),
        ("application/json", br#"{"timestamp":-1}"#, 400),
        ("application/json", br#"{"timestamp":1e3}"#, 400),
        ("application/json", br#"{"timestamp":1,"evil":true}"#, 400),
        (
            "application/json",
            br#"{"queue":"other","timestamp":1}"#,
            400,
        ),
        ("text/plain", b"orders abc", 400),
        ("application/xml", b"<x/>", 415),
    ] {
        let (status, text) = http(running.http, "POST", "/v1/report", ct, body).await;
        assert_eq!(
            status,
            want,
            "{ct} {} -> {text}",
            String::from_utf8_lossy(body)
        );
        assert!(text.contains("\"error\""), "{text}");
    }
    let huge = vec![b'1'; 200_000];
    let (status, _) = http(running.http, "POST", "/v1/report", "text/plain", &huge).await;
    assert_eq!(status, 413);

    let series = |transport: &str, reason: &str| {
        format!(
            "dwell_sidecar_report_rejected_total{{transport=\"{transport}\",reason=\"{reason}\"}}"
        )
    };
    for (transport, reason, n) in [
        ("udp", "malformed", 1.0),
        ("udp", "bad_number", 2.0),
        ("udp", "bad_unit", 1.0),
        ("udp", "bad_flag", 1.0),
        ("udp", "unknown_queue", 1.0),
        ("udp", "datagram_too_large", 1.0),
        ("udp", "not_utf8", 1.0),
        ("http", "bad_json", 4.0),
        ("http", "unknown_queue", 1.0),
        ("http", "bad_number", 1.0),
        ("http", "unsupported_media_type", 1.0),
        ("http", "body_too_large", 1.0),
    ] {
        let s = series(transport, reason);
        eventually(&s, || async { metric(t, &s).await.filter(|v| *v == n) }).await;
    }
    // The one good line was still taken, and the reports carry the running total.
    let total = running.metrics.rejected_total.get();
    assert_eq!(total, 16);
    let reports = peer
        .until("the rejected total", |r| {
            r.counters.is_some_and(|c| c.rejected == total)
        })
        .await;
    let taken: u64 = reports.iter().map(|r| ages(r).0).sum();
    assert_eq!(taken, 1);
    assert_eq!(
        metric(t, "dwell_sidecar_ages_total{kind=\"report\"}").await,
        Some(1.0)
    );
    let (status, _) = http(t, "GET", "/healthz", "text/plain", b"").await;
    assert_eq!(status, 200);
    running.stop().await;
}

/// Ages and interval bounds come from the injected clock, so with a pinned "now" they are exact.
#[tokio::test]
async fn ages_and_intervals_follow_the_injected_clock() {
    const NOW: i64 = 1_800_000_000_000;
    let mut peer = Peer::start("127.0.0.1:0".parse().unwrap()).await;
    let clock = ManualClock::new(NOW);
    let sidecar = Sidecar::bind(settings(peer.addr, "orders", &[]))
        .await
        .unwrap()
        .with_clock(clock.clone());
    let running = Running::start(sidecar).await;
    let line = format!("orders {}ms\n", NOW - 42_000);
    running.send_udp(line.as_bytes()).await;
    let seen = peer.until("the pinned age", |r| ages(r).0 > 0).await;
    assert_eq!(ages(seen.last().unwrap()), (1, 42_000, 42_000));
    assert!(
        seen.iter()
            .all(|r| (r.interval_start_ms, r.interval_end_ms) == (NOW, NOW)),
        "the clock never moved, so neither did the intervals"
    );
    clock.advance(60_000);
    running.send_udp(line.as_bytes()).await;
    let seen = peer.until("the older age", |r| ages(r).0 > 0).await;
    let last = seen.last().unwrap();
    assert_eq!(ages(last), (1, 102_000, 102_000));
    assert_eq!(last.interval_end_ms, NOW + 60_000);
    running.stop().await;
}
