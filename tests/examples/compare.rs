//! Dwell-time scaling versus queue-length scaling on the same bursty trace, through the same HPA
//! model (Kubernetes defaults on a 15× clock) and the same real consumers on a real RabbitMQ.
//!
//! - dwell: Object metric `wait_ms` (longest wait of the last 3 s, from the sidecars through the
//!   aggregator, read with `kubectl get --raw`), target Value 2 s.
//! - queue length: External metric `messages_ready` (passive queue.declare, as a queue-length
//!   adapter serves it), target AverageValue 20 per pod (2 s × 10 messages/s per worker: the
//!   backlog one worker clears within the wait target).
//!
//! Both run for the same horizon; reported: replica-seconds spent, seconds in which some delivery
//! waited longer than 2 s, the peak replica count and the longest wait.
//!
//! `cargo run -p dwell-e2e --example compare [-- SEEDS [PROCESSING_MS]]` (needs RabbitMQ at
//! DWELL_TEST_AMQP_URL and `cargo build --workspace --bins` first). PROCESSING_MS (default 100)
//! changes the work per message while the queue-length target stays tuned for 100 ms, as happens
//! when the work gets slower after the HPA was set up; max replicas grow with it (8 per 100 ms).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use dwell_e2e::aggregator::Aggregator;
use dwell_e2e::broker;
use dwell_e2e::closed_loop::{ApiReader, ClosedLoop, MetricReader, QueueLengthReader};
use dwell_e2e::fleet::{Fleet, FleetConfig};
use dwell_e2e::hpa::behavior::ClockScale;
use dwell_e2e::hpa::{Controller, HpaSpec, MetricSource, MetricSpec, Target};
use dwell_e2e::publisher::{Publisher, play};
use dwell_e2e::sidecar::SidecarConfig;
use dwell_e2e::trace::Trace;
use dwell_e2e::worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

const RULES: &str = r#"
stale_after: 10s
rules:
  - name: wait_ms
    window: 3s
    statistic: max
    combine: max
    unit: milliseconds
    stall_after: 5s
"#;
const TARGET_MS: u64 = 2_000;
/// Messages per second one worker handles at 100 ms a message (what the queue-length target and
/// the trace are tuned for).
const CAPACITY: f64 = 10.0;
const HORIZON: Duration = Duration::from_secs(70);

struct Outcome {
    replica_seconds: f64,
    seconds_over: f64,
    peak: usize,
    longest_wait_ms: u64,
    missing: usize,
}

async fn run<R: MetricReader>(
    processing: Duration,
    url: &str,
    queue: &str,
    spec: HpaSpec,
    reader: R,
    sidecar: Option<SidecarConfig>,
    seed: u64,
) -> Result<Outcome, String> {
    let mut fleet = Fleet::new(FleetConfig {
        name: "binder".into(),
        worker: WorkerConfig {
            amqp_url: url.into(),
            queue: queue.into(),
            processing,
            report_udp: None,
        },
        sidecar,
    });
    fleet.scale_to(1).await?;
    let sync = ClockScale { speedup: 15.0 }.secs(15.0);
    let mut lp = ClosedLoop::new(Controller::new(spec), fleet, reader, sync);
    let trace = Trace::bursty(CAPACITY, seed);
    let published = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let publisher = tokio::spawn({
        let (trace, published, stop) = (trace.clone(), published.clone(), stop.clone());
        let p = Publisher::new(url, queue);
        let start = lp.start();
        async move { play(p, &trace, start, published, stop).await }
    });
    lp.run_until(HORIZON, |_| false).await?;
    stop.cancel();
    let sent = publisher.await.map_err(|e| e.to_string())?;
    let outcome = Outcome {
        replica_seconds: lp.replica_seconds(),
        seconds_over: lp.seconds_over(TARGET_MS),
        peak: lp.peak_replicas(),
        longest_wait_ms: lp
            .fleet
            .ledger
            .waits()
            .iter()
            .map(|(_, w)| *w)
            .max()
            .unwrap_or(0),
        missing: lp.fleet.ledger.missing(sent).len(),
    };
    lp.fleet.shutdown().await;
    broker::delete(url, queue).await;
    Ok(outcome)
}

fn hpa(metric: MetricSpec, max_replicas: i32) -> HpaSpec {
    let mut spec = HpaSpec::new(
        "jobs",
        "app=binder",
        (1, max_replicas),
        ClockScale { speedup: 15.0 },
    );
    spec.metrics = vec![metric];
    spec
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let arg = |i: usize, default: u64| -> anyhow::Result<u64> {
        Ok(std::env::args()
            .nth(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (seeds, processing_ms) = (arg(1, 1)?, arg(2, 100)?.max(1));
    let processing = Duration::from_millis(processing_ms);
    let max_replicas = (8 * processing_ms).div_ceil(100) as i32;
    let url = broker::url();
    broker::connect(&url, Duration::from_secs(5))
        .await
        .map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES)?;
    let agg = Aggregator::start(&["--config", &rules.display().to_string()])
        .await
        .map_err(anyhow::Error::msg)?;

    println!("{processing_ms} ms per message, max {max_replicas} replicas\n");
    println!(
        "| seed | scaling on | replica-seconds | seconds over 2 s wait | peak replicas | longest wait | lost |"
    );
    println!("|---|---|---|---|---|---|---|");
    for seed in 1..=seeds {
        let queue = broker::unique_queue("compare-dwell");
        let dwell = run(
            processing,
            &url,
            &queue,
            hpa(
                MetricSpec {
                    metric: "wait_ms".into(),
                    selector: None,
                    source: MetricSource::Object {
                        resource: "deployments.apps".into(),
                        name: "binder".into(),
                    },
                    target: Target::Value(TARGET_MS as i64 * 1000),
                },
                max_replicas,
            ),
            ApiReader(agg.kubectl.clone()),
            Some(SidecarConfig {
                aggregator: agg.grpc_addr,
                queue: queue.clone(),
                namespace: "jobs".into(),
                pod: String::new(),
                labels: vec!["app=binder".into()],
                amqp_url: Some(url.clone()),
                interval: Duration::from_millis(250),
            }),
            seed,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        let queue = broker::unique_queue("compare-length");
        let length = run(
            processing,
            &url,
            &queue,
            hpa(
                MetricSpec {
                    metric: "messages_ready".into(),
                    selector: None,
                    source: MetricSource::External,
                    target: Target::AverageValue(
                        (TARGET_MS as f64 / 1000.0 * CAPACITY) as i64 * 1000,
                    ),
                },
                max_replicas,
            ),
            QueueLengthReader::new(&url, &queue),
            None,
            seed,
        )
        .await
        .map_err(anyhow::Error::msg)?;
        for (name, o) in [
            ("dwell time (Object, 2 s)", dwell),
            ("queue length (External, 20/pod)", length),
        ] {
            println!(
                "| {seed} | {name} | {:.0} | {:.0} | {} | {:.1} s | {} |",
                o.replica_seconds,
                o.seconds_over,
                o.peak,
                o.longest_wait_ms as f64 / 1000.0,
                o.missing
            );
        }
    }
    agg.stop(Duration::from_secs(10)).await;
    Ok(())
}
