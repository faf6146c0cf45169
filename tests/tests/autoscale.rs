//! The closed loop: the HPA model (Kubernetes defaults on a 15× clock: 1 s syncs, a 20 s
//! scale-down window) reads the dwell metric through `kubectl get --raw` and scales real
//! consumers, each with its own sidecar, on a real queue fed a bursty trace. The dwell time must
//! come back under target after the burst, the replicas must come back down, and every message
//! must be consumed.

use std::time::Duration;

use dwell_e2e::aggregator::{Aggregator, WAIT_MS_RULES};
use dwell_e2e::broker;
use dwell_e2e::closed_loop::{ApiReader, ClosedLoop, render};
use dwell_e2e::fleet::{Fleet, FleetConfig};
use dwell_e2e::hpa::behavior::ClockScale;
use dwell_e2e::hpa::{Controller, HpaSpec, MetricSpec, Target};
use dwell_e2e::publisher::Playing;
use dwell_e2e::sidecar::SidecarConfig;
use dwell_e2e::trace::Trace;

/// Wait target: 2 s.
const TARGET_MS: u64 = 2_000;
/// Each message takes a worker 100 ms: one worker handles 10 messages a second.
const PROCESSING: Duration = Duration::from_millis(100);
const CAPACITY: f64 = 10.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_on_dwell_time_absorbs_a_burst_and_scales_back_down() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(url) = broker::require("autoscale").await else {
        return;
    };
    // The metric: the longest wait among deliveries of the last 3 s, in milliseconds.
    let agg = Aggregator::start_with_rules(WAIT_MS_RULES)
        .await
        .expect("aggregator starts");
    let queue = broker::unique_queue("autoscale");

    let mut fleet = Fleet::new(FleetConfig::new(
        "binder",
        &url,
        &queue,
        PROCESSING,
        Some(SidecarConfig::binder(agg.grpc_addr, &queue, &url)),
    ));
    fleet.scale_to(1).await.expect("first pod starts");

    let clock = ClockScale { speedup: 15.0 };
    let mut spec = HpaSpec::new("jobs", "app=binder", (1, 8), clock);
    spec.metrics = vec![MetricSpec::deployment(
        "wait_ms",
        "binder",
        Target::Value(TARGET_MS as i64 * 1000),
    )];
    let sync = clock.secs(15.0);
    let mut lp = ClosedLoop::new(
        Controller::new(spec),
        fleet,
        ApiReader(agg.kubectl.clone()),
        sync,
    );

    // 8 s at half a worker's capacity, 10 s at four workers' worth, 22 s at 0.3 of one.
    let trace = Trace::bursty(CAPACITY, 42);
    let burst_end = Duration::from_secs(18);
    let publisher = Playing::start(&url, &queue, &trace, lp.start());

    let total = trace.arrivals.len() as u64;
    let finished = lp
        .run_until(Duration::from_secs(100), |l| {
            l.start().elapsed() > trace.length
                && l.fleet.ledger.distinct() as u64 >= total
                && l.fleet.len() == 1
        })
        .await
        .expect("loop runs");
    let sent = publisher.stop().await.expect("publisher task");
    let table = render(&lp.samples);
    eprintln!("{table}");

    let peak = lp.peak_replicas();
    let last_over = lp.last_over(TARGET_MS);
    let missing = lp.fleet.ledger.missing(sent);
    eprintln!(
        "closed loop: {sent} messages, peak {peak} replicas, {:.0} replica-seconds, {:.0} s over target, \
         last wait over {TARGET_MS} ms at {last_over:?} (burst ended at {burst_end:?}), duplicates {}",
        lp.replica_seconds(),
        lp.seconds_over(TARGET_MS),
        lp.fleet.ledger.duplicates()
    );
    assert_eq!(sent, total, "the publisher got every confirm");
    assert!(
        missing.is_empty(),
        "messages never consumed: {missing:?}\n{table}"
    );
    assert!(
        peak >= 3,
        "the burst did not scale the consumers up (peak {peak})\n{table}"
    );
    let last_over = last_over.expect("the burst pushed the wait over target");
    assert!(
        last_over > burst_end - Duration::from_secs(10),
        "the wait went over target only before the burst?\n{table}"
    );
    assert!(
        last_over < burst_end + Duration::from_secs(25),
        "the wait stayed over target {last_over:?} (bound: 25 s after the burst)\n{table}"
    );
    assert!(
        finished,
        "replicas did not come back down to 1 within 100 s\n{table}"
    );
    // No stale or missing reading: once the first report has landed, every sync reads a value,
    // and every value carries an observation time (the newest data behind it) that is recent.
    let first = lp
        .samples
        .iter()
        .position(|s| s.value.is_some())
        .unwrap_or_else(|| panic!("the HPA never read a value\n{table}"));
    for s in &lp.samples[first..] {
        assert!(
            s.value.is_some(),
            "the HPA read no value at {:?} ({:?})\n{table}",
            s.at,
            s.error
        );
        let age = s.reading_age.unwrap_or_else(|| {
            panic!(
                "the value read at {:?} carries no observation timestamp\n{table}",
                s.at
            )
        });
        assert!(
            age < Duration::from_secs(5),
            "the HPA read a stale value at {:?} (observed {age:?} before)\n{table}",
            s.at
        );
    }

    lp.fleet.shutdown().await;
    broker::delete(&url, &queue).await;
    agg.stop(Duration::from_secs(10)).await;
}
