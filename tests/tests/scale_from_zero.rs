//! Scale from zero, closed loop: the consumer Deployment starts at **0** replicas with no sidecar
//! running; the aggregator watches the queue itself (`watch:` in its rules); the HPA model
//! (`minReplicas: 0`, an Object metric, Kubernetes defaults on a 15× clock: 1 s syncs, a 20 s
//! scale-down window) reads the metric through `kubectl get --raw`. While nothing waits the value
//! is exactly 0 and the Deployment stays at zero; a burst lands; the value turns positive, the
//! model scales 0 → N (from zero: `ceil(value / target)`), the consumers — each with its own
//! sidecar, ages read by the AMQP tap — drain the queue, and once the queue has been idle for
//! `idle_after` the value is 0 again and the model returns the Deployment to zero. Every message
//! is consumed exactly once. The time from the first publish to the first consumer started is
//! printed (KEDA's default path polls every 30 s).

use std::time::Duration;

use dwell_e2e::aggregator::Aggregator;
use dwell_e2e::broker;
use dwell_e2e::closed_loop::{ApiReader, ClosedLoop, render};
use dwell_e2e::fleet::{Fleet, FleetConfig};
use dwell_e2e::hpa::behavior::ClockScale;
use dwell_e2e::hpa::conditions::{Condition, ConditionType};
use dwell_e2e::hpa::{Controller, HpaSpec, MetricSpec, Target};
use dwell_e2e::publisher::{Publisher, now_ms};
use dwell_e2e::sidecar::SidecarConfig;
use tokio::time::Instant;

/// Wait target: 2 s (milli-units: the Object value is in milliseconds).
const TARGET_MS: i64 = 2_000;
/// Each message takes a worker 100 ms.
const PROCESSING: Duration = Duration::from_millis(100);
/// The burst.
const MESSAGES: u64 = 80;
/// The watch polls every second; the rule calls a queue idle after 8 s without a wait.
const RULES: &str = r#"
stale_after: 10s
brokers:
  main:
    url_file: URL_FILE
watch:
  - {broker: main, vhost: /, queue: "QUEUE", namespace: jobs, labels: {app: binder}, interval: 1s}
rules:
  - name: wait_ms
    window: 3s
    statistic: max
    combine: max
    unit: milliseconds
    stall_after: 5s
    idle_after: 8s
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_at_zero_wakes_on_a_burst_drains_it_and_returns_to_zero() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(url) = broker::require("scale_from_zero").await else {
        return;
    };
    let queue = broker::unique_queue("zero");
    let conn = broker::connect(&url, Duration::from_secs(10))
        .await
        .expect("broker");
    let channel = conn.create_channel().await.expect("channel");
    broker::declare(&channel, &queue).await.expect("declare");

    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, &url).expect("url file");
    let rules = RULES
        .replace("URL_FILE", &url_file.display().to_string())
        .replace("QUEUE", &queue);
    let agg = Aggregator::start_with_rules(&rules)
        .await
        .expect("aggregator starts");

    // No pod at all: the Deployment is at zero, as the HPA left it (ScaledToZero=True).
    let fleet = Fleet::new(FleetConfig::new(
        "binder",
        &url,
        &queue,
        PROCESSING,
        Some(SidecarConfig::binder(agg.grpc_addr, &queue, &url).with_tap()),
    ));
    let clock = ClockScale { speedup: 15.0 };
    let mut spec = HpaSpec::new("jobs", "app=binder", (0, 8), clock);
    spec.metrics = vec![MetricSpec::deployment(
        "wait_ms",
        "binder",
        Target::Value(TARGET_MS * 1000),
    )];
    let mut controller = Controller::new(spec);
    controller.conditions = vec![Condition::new(
        ConditionType::ScaledToZero,
        true,
        "ScaledToZero",
    )];
    let mut lp = ClosedLoop::new(
        controller,
        fleet,
        ApiReader(agg.kubectl.clone()),
        clock.secs(15.0),
    );

    // Idle: nothing ready, nobody consuming, no sidecar: exactly 0, and zero replicas stay zero.
    for _ in 0..4 {
        let s = lp.step().await.expect("sync").clone();
        assert_eq!(
            (s.replicas, s.value),
            (0, Some(0)),
            "idle at zero must read exactly 0 and stay at zero: {s:?}"
        );
    }

    // The burst: all at once, every message confirmed.
    let mut publisher = Publisher::new(&url, &queue);
    let published = Instant::now();
    for seq in 0..MESSAGES {
        publisher
            .publish_at(seq, now_ms())
            .await
            .unwrap_or_else(|e| panic!("message {seq}: {e}"));
    }
    publisher.close().await;

    let mut woke: Option<Duration> = None;
    let deadline = lp.start().elapsed() + Duration::from_secs(120);
    let back_to_zero = loop {
        let s = lp.step().await.expect("sync").clone();
        if woke.is_none() && s.replicas > 0 {
            woke = Some(published.elapsed());
        }
        let drained = lp.fleet.ledger.distinct() as u64 >= MESSAGES;
        if woke.is_some() && drained && s.replicas == 0 {
            break true;
        }
        if lp.start().elapsed() > deadline {
            break false;
        }
    };
    let table = render(&lp.samples);
    eprintln!("{table}");
    let woke = woke.unwrap_or_else(|| panic!("the burst never woke the Deployment\n{table}"));
    eprintln!(
        "scale from zero: first publish → first consumer started {:.2} s (HPA model syncs every \
         1 s = Kubernetes' 15 s at 15× speed; the watch polls every 1 s; KEDA's default polls \
         every 30 s); peak {} replicas, {} messages, duplicates {}",
        woke.as_secs_f64(),
        lp.peak_replicas(),
        lp.fleet.ledger.distinct(),
        lp.fleet.ledger.duplicates()
    );
    let missing = lp.fleet.ledger.missing(MESSAGES);
    assert!(
        missing.is_empty(),
        "messages never consumed: {missing:?}\n{table}"
    );
    assert_eq!(
        lp.fleet.ledger.duplicates(),
        0,
        "a message was consumed twice\n{table}"
    );
    assert!(
        back_to_zero,
        "the Deployment did not return to zero within 120 s\n{table}"
    );
    let last = lp.samples.last().expect("samples");
    assert_eq!(
        (last.replicas, last.value),
        (0, Some(0)),
        "back at zero the value must be exactly 0\n{table}"
    );
    // While the burst waited, the value said so: some sync between waking and draining read
    // more than the target (the burst is more than one consumer can take within 2 s).
    assert!(
        lp.samples
            .iter()
            .filter_map(|s| s.value)
            .any(|v| v > TARGET_MS * 1000),
        "the burst never read above target\n{table}"
    );

    lp.fleet.shutdown().await;
    drop(channel);
    let _ = conn.close(200, "scale_from_zero done".into()).await;
    broker::delete(&url, &queue).await;
}
