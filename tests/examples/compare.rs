//! Dwell-time scaling versus queue-length scaling on the same bursty trace, through the same HPA
//! model (Kubernetes defaults on a 15× clock) and the same real consumers on a real RabbitMQ.
//!
//! Strategies (all aim at a 2 s wait):
//! - dwell, observed: Object metric `wait_ms` (longest wait of the last 3 s, from the sidecars
//!   through the aggregator, read with `kubectl get --raw`), target Value 2 s.
//! - dwell, estimated: Object metric `wait_estimate_ms` = the wait of a message arriving now,
//!   `messages_ready / (deliveries/s of one busy worker × consumers)`, target Value 2 s.
//! - dwell, observed or estimated: Object `wait_or_estimate_ms` = the larger of the two, Value 2 s.
//! - dwell, backlog per pod: Object `backlog_ms` = `messages_ready / deliveries/s of one busy
//!   worker` (one worker's time to clear the backlog), target AverageValue 2 s (replicas =
//!   value / 2 s, no multiplication by the current count).
//! - queue length: External metric `messages_ready` (passive queue.declare, as a queue-length
//!   adapter serves it), target AverageValue 20 per pod (2 s × 10 messages/s per worker: the
//!   backlog one worker clears within the wait target).
//!
//! Every strategy runs for the same horizon; reported per run and as medians over the seeds:
//! replica-seconds spent, seconds in which some delivery waited longer than 2 s, the peak replica
//! count, the longest wait and messages lost.
//!
//! `cargo run -p dwell-e2e --example compare [-- SEEDS [PROCESSING_MS [SOURCE [ONLY]]]]` (needs
//! RabbitMQ at DWELL_TEST_AMQP_URL and `cargo build --workspace --bins` first). PROCESSING_MS
//! (default 100) changes the work per message while the queue-length target stays tuned for
//! 100 ms, as happens when the work gets slower after the HPA was set up; max replicas grow with
//! it (8 per 100 ms). SOURCE is where the sidecars get the ages: `report` (default: each worker
//! reports every delivery over UDP) or `tap` (each worker connects through its sidecar's AMQP tap
//! and makes no report call). ONLY (a metric name, e.g. `wait_estimate_ms`) runs that dwell
//! strategy and the queue-length baseline alone.

use std::time::Duration;

use dwell_e2e::aggregator::{Aggregator, WAIT_MS_RULES};
use dwell_e2e::broker;
use dwell_e2e::closed_loop::{ApiReader, ClosedLoop, MetricReader, QueueLengthReader};
use dwell_e2e::fleet::{Fleet, FleetConfig};
use dwell_e2e::hpa::behavior::ClockScale;
use dwell_e2e::hpa::{Controller, HpaSpec, MetricSource, MetricSpec, Target};
use dwell_e2e::publisher::Playing;
use dwell_e2e::sidecar::SidecarConfig;
use dwell_e2e::trace::Trace;

/// Rules appended to [`WAIT_MS_RULES`]. `rate` combined with `max` is the busiest source's
/// deliveries per second: with a backlog every worker (prefetch 1) is busy, so that is one
/// worker's drain rate, and a pod that joined mid-window (whose rate is still partial) does not
/// pull it down. `consumers` is the broker's count, current within a stats interval.
const ESTIMATE_RULES: &str = r#"
  - name: wait_estimate_ms
    window: 3s
    statistic: rate
    combine: max
    formula: "1000.0 * messages_ready / (max(rate, 0.1) * max(consumers, 1.0))"
  - name: wait_or_estimate_ms
    window: 3s
    statistic: max
    combine: max
    unit: milliseconds
    stall_after: 5s
    formula: "max(value, 1000.0 * messages_ready / (max(rate, 0.1) * max(consumers, 1.0)))"
  - name: backlog_ms
    window: 3s
    statistic: rate
    combine: max
    formula: "1000.0 * messages_ready / max(rate, 0.1)"
"#;
const TARGET_MS: u64 = 2_000;
/// Messages per second one worker handles at 100 ms a message (what the queue-length target and
/// the trace are tuned for).
const CAPACITY: f64 = 10.0;
const HORIZON: Duration = Duration::from_secs(70);

/// One way of scaling.
struct Strategy {
    label: String,
    metric: MetricSpec,
    /// Read through the aggregator (pods get sidecars) or from the broker (queue length).
    dwell: bool,
}

fn strategies() -> Vec<Strategy> {
    let (value, average) = (
        Target::Value(TARGET_MS as i64 * 1000),
        Target::AverageValue(TARGET_MS as i64 * 1000),
    );
    let dwell = [
        (
            "observed wait `wait_ms` (Object, Value 2 s)",
            "wait_ms",
            value,
        ),
        (
            "estimated wait `wait_estimate_ms` (Object, Value 2 s)",
            "wait_estimate_ms",
            value,
        ),
        (
            "max(observed, estimated) `wait_or_estimate_ms` (Object, Value 2 s)",
            "wait_or_estimate_ms",
            value,
        ),
        (
            "backlog per worker `backlog_ms` (Object, AverageValue 2 s)",
            "backlog_ms",
            average,
        ),
    ];
    let mut out: Vec<Strategy> = dwell
        .into_iter()
        .map(|(label, metric, target)| Strategy {
            label: format!("dwell: {label}"),
            metric: MetricSpec::deployment(metric, "binder", target),
            dwell: true,
        })
        .collect();
    out.push(Strategy {
        label: "queue length `messages_ready` (External, AverageValue 20)".into(),
        metric: MetricSpec {
            metric: "messages_ready".into(),
            selector: None,
            source: MetricSource::External,
            target: Target::AverageValue((TARGET_MS as f64 / 1000.0 * CAPACITY) as i64 * 1000),
        },
        dwell: false,
    });
    out
}

#[derive(Debug, Clone, Copy)]
struct Outcome {
    replica_seconds: f64,
    seconds_over: f64,
    peak: usize,
    longest_wait_ms: u64,
    missing: usize,
}

async fn run<R: MetricReader>(
    fleet: FleetConfig,
    url: &str,
    spec: HpaSpec,
    reader: R,
    seed: u64,
) -> Result<Outcome, String> {
    let queue = fleet.worker.queue.clone();
    let mut fleet = Fleet::new(fleet);
    fleet.scale_to(1).await?;
    let sync = ClockScale { speedup: 15.0 }.secs(15.0);
    let mut lp = ClosedLoop::new(Controller::new(spec), fleet, reader, sync);
    let publisher = Playing::start(url, &queue, &Trace::bursty(CAPACITY, seed), lp.start());
    lp.run_until(HORIZON, |_| false).await?;
    let sent = publisher.stop().await?;
    let waits = lp.fleet.ledger.waits();
    let outcome = Outcome {
        replica_seconds: lp.replica_seconds(),
        seconds_over: lp.seconds_over(TARGET_MS),
        peak: lp.peak_replicas(),
        longest_wait_ms: waits.iter().map(|(_, w)| *w).max().unwrap_or(0),
        missing: lp.fleet.ledger.missing(sent).len(),
    };
    lp.fleet.shutdown().await;
    broker::delete(url, &queue).await;
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
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
    let tap = match std::env::args().nth(3).as_deref() {
        None | Some("report") => false,
        Some("tap") => true,
        Some(other) => anyhow::bail!("SOURCE must be report or tap, not {other:?}"),
    };
    let only = std::env::args().nth(4);
    let processing = Duration::from_millis(processing_ms);
    let max_replicas = (8 * processing_ms).div_ceil(100) as i32;
    let url = broker::url();
    broker::connect(&url, Duration::from_secs(5))
        .await
        .map_err(anyhow::Error::msg)?;
    let agg = Aggregator::start_with_rules(&format!("{WAIT_MS_RULES}{ESTIMATE_RULES}"))
        .await
        .map_err(anyhow::Error::msg)?;

    let strategies: Vec<Strategy> = strategies()
        .into_iter()
        .filter(|s| !s.dwell || only.as_ref().is_none_or(|m| *m == s.metric.metric))
        .collect();
    let mut results: Vec<Vec<Outcome>> = vec![Vec::new(); strategies.len()];
    let source = if tap {
        "the AMQP tap (no report calls)"
    } else {
        "the report source"
    };
    println!("{processing_ms} ms per message, max {max_replicas} replicas, ages from {source}\n");
    println!(
        "| seed | scaling on | replica-seconds | seconds over 2 s wait | peak replicas | longest wait | lost |"
    );
    println!("|---|---|---|---|---|---|---|");
    for seed in 1..=seeds {
        for (s, out) in strategies.iter().zip(results.iter_mut()) {
            let queue = broker::unique_queue("compare");
            let sidecar = s.dwell.then(|| {
                let c = SidecarConfig::binder(agg.grpc_addr, &queue, &url);
                if tap { c.with_tap() } else { c }
            });
            let fleet = FleetConfig::new("binder", &url, &queue, processing, sidecar);
            let spec = hpa(s.metric.clone(), max_replicas);
            let o = if s.dwell {
                run(fleet, &url, spec, ApiReader(agg.kubectl.clone()), seed).await
            } else {
                run(
                    fleet,
                    &url,
                    spec,
                    QueueLengthReader::new(&url, &queue),
                    seed,
                )
                .await
            }
            .map_err(anyhow::Error::msg)?;
            println!(
                "| {seed} | {} | {:.0} | {:.0} | {} | {:.1} s | {} |",
                s.label,
                o.replica_seconds,
                o.seconds_over,
                o.peak,
                o.longest_wait_ms as f64 / 1000.0,
                o.missing
            );
            out.push(o);
        }
    }

    println!("\nMedians over {seeds} seed(s), {processing_ms} ms per message:\n");
    println!(
        "| scaling on | replica-seconds | vs queue length | seconds over 2 s wait | peak replicas | longest wait | lost (total) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let med = |os: &[Outcome], f: fn(&Outcome) -> f64| median(os.iter().map(f).collect());
    let baseline = results
        .last()
        .map(|os| med(os, |o| o.replica_seconds))
        .unwrap_or(f64::NAN);
    for (s, os) in strategies.iter().zip(&results) {
        let rs = med(os, |o| o.replica_seconds);
        println!(
            "| {} | {rs:.0} | {:.2}× | {:.0} | {:.0} | {:.1} s | {} |",
            s.label,
            rs / baseline,
            med(os, |o| o.seconds_over),
            med(os, |o| o.peak as f64),
            med(os, |o| o.longest_wait_ms as f64) / 1000.0,
            os.iter().map(|o| o.missing).sum::<usize>()
        );
    }
    agg.stop(Duration::from_secs(10)).await;
    Ok(())
}
