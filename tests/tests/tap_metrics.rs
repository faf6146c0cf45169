//! The tap as the only age source, end to end: an unchanged pika app (it makes no report call
//! and knows nothing of dwell) consumes two queues through the sidecar's tap; the sidecar reports
//! one source per queue; `kubectl get --raw` on the External metrics API then serves, per queue,
//! the ages of exactly the messages consumed, matching their known publish stamps within 1 s
//! plus the summary's 1 % error.

use std::time::Duration;

use dwell_e2e::aggregator::Aggregator;
use dwell_e2e::broker;
use dwell_e2e::poll;
use dwell_e2e::publisher::now_ms;
use dwell_e2e::tap::{Client, TapSidecar};
use serde_json::Value;

const RULES: &str = r#"
stale_after: 60s
rules:
  - name: tap_wait_max_ms
    window: 60s
    statistic: max
    combine: max
    unit: milliseconds
    stall_after: "off"
  - name: tap_wait_min_ms
    window: 60s
    statistic: min
    # One source per queue: combining a single source is the identity.
    combine: max
    unit: milliseconds
    stall_after: "off"
  - name: tap_deliveries
    window: 60s
    statistic: count
    combine: sum
    stall_after: "off"
"#;

const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/jobs";

/// The one value served for `metric` narrowed to `queue`.
async fn external(agg: &Aggregator, metric: &str, queue: &str) -> Result<i64, String> {
    let path = format!("{EXTERNAL}/{metric}?labelSelector=queue%3D{queue}");
    let v: Value = agg.kubectl.get_raw(&path).await.json()?;
    let items = v["items"].as_array().ok_or(format!("no items: {v}"))?;
    match items.as_slice() {
        [one] => one["value"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or(format!("not a whole number: {one}")),
        other => Err(format!("{} items: {v}", other.len())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ages_served_per_queue_match_the_stamps_with_the_app_unchanged() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(url) = broker::require("tap_metrics").await else {
        return;
    };
    if !Client::Pika.available("tap_metrics").await {
        return;
    }
    let agg = Aggregator::start_with_rules(RULES)
        .await
        .expect("aggregator starts");
    let sidecar = TapSidecar::start(
        "binder-tap-0",
        &url,
        agg.grpc_addr,
        &["--timestamp-header", "timestamp_in_ms"],
    )
    .await
    .expect("sidecar starts");
    let (qa, qb) = (
        broker::unique_queue("tap-metrics-a"),
        broker::unique_queue("tap-metrics-b"),
    );
    let stamp = now_ms() - 20_000;
    let started = now_ms();
    let out = Client::Pika
        .run(
            &["compare", &sidecar.url(&url), &qa, &qb, &stamp.to_string()],
            Duration::from_secs(120),
        )
        .await
        .expect("the app runs through the tap");
    let finished = now_ms();
    assert_eq!(out.last(), Some(&serde_json::json!({"done": 101})));

    // Every delivery reached the aggregator: 51 consumed from A (one redelivered), 50 got from B.
    for (q, n) in [(&qa, 51), (&qb, 50)] {
        poll::until(
            Duration::from_secs(30),
            Duration::from_millis(250),
            || async {
                match external(&agg, "tap_deliveries", q).await {
                    Ok(v) if v == n => Ok(()),
                    other => Err(format!("{q}: deliveries {other:?}")),
                }
            },
        )
        .await
        .expect("all deliveries served");
    }
    // Each message was stamped `stamp` and consumed between `started` and `finished`.
    let (lo, hi) = ((started - stamp) as f64, (finished - stamp) as f64);
    for q in [&qa, &qb] {
        let max = external(&agg, "tap_wait_max_ms", q).await.expect("max") as f64;
        let min = external(&agg, "tap_wait_min_ms", q).await.expect("min") as f64;
        assert!(
            min >= lo * 0.99 - 1_000.0,
            "{q}: min {min} ms < {lo} ms (the earliest possible age)"
        );
        assert!(
            max <= hi * 1.01 + 1_000.0,
            "{q}: max {max} ms > {hi} ms (the latest possible age)"
        );
        assert!(min <= max, "{q}: min {min} > max {max}");
    }
    assert!(sidecar.stop().await);
    agg.stop(Duration::from_secs(10)).await;
}
