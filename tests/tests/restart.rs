//! Restarts mid-run: the aggregator is killed and restarted (same address, same certificate, as a
//! Service and a Secret would give it), then the broker is restarted, while the HPA model keeps
//! scaling real consumers. The loop must recover after each, no message may be lost, and the HPA
//! must never read a wrong value: errors are fine while data is missing, but every value it reads
//! must carry an honest timestamp (no old number stamped as new) and be justified by the
//! deliveries in its window (the ground truth the workers recorded).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dwell_e2e::broker;
use dwell_e2e::certs::TestCa;
use dwell_e2e::closed_loop::{ApiReader, ClosedLoop, render};
use dwell_e2e::fleet::{Fleet, FleetConfig};
use dwell_e2e::hpa::behavior::ClockScale;
use dwell_e2e::hpa::{Controller, HpaSpec, MetricSpec, Target};
use dwell_e2e::kube::Kubectl;
use dwell_e2e::process::{Process, addr_after};
use dwell_e2e::publisher::{Playing, now_ms};
use dwell_e2e::sidecar::SidecarConfig;
use dwell_e2e::trace::{Phase, Trace};

/// Longest wait of the last 5 s, in ms. No stall detection, so every value must be explained by
/// real deliveries.
const RULES: &str = r#"
stale_after: 10s
rules:
  - name: wait_ms
    window: 5s
    statistic: max
    combine: max
    unit: milliseconds
    stall_after: "off"
"#;
const WINDOW_MS: u64 = 5_000;

/// A free loopback port (the aggregator must come back on the same one).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

async fn start_aggregator(
    metrics: SocketAddr,
    grpc: SocketAddr,
    dir: &Path,
) -> Result<Process, String> {
    let args: Vec<String> = [
        "--metrics-addr",
        &metrics.to_string(),
        "--grpc-addr",
        &grpc.to_string(),
        "--tls-cert",
        &dir.join("tls.crt").display().to_string(),
        "--tls-key",
        &dir.join("tls.key").display().to_string(),
        "--config",
        &dir.join("rules.yaml").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut p = Process::spawn(
        "aggregator",
        &dwell_e2e::binary("dwell-aggregator"),
        &args,
        &[],
    )
    .map_err(|e| e.to_string())?;
    p.wait_for(Duration::from_secs(30), |l| {
        addr_after(l, "gRPC listening on")
    })
    .await?;
    p.wait_for(Duration::from_secs(30), |l| {
        addr_after(l, "metrics API listening on https://")
    })
    .await?;
    Ok(p)
}

/// `rabbitmqctl stop_app`, a pause, `start_app`: every connection drops, durable queues stay.
async fn restart_broker(pause: Duration) -> Result<(), String> {
    // As root directly; otherwise through sudo, as scripts/lib/services.sh does.
    let root = std::env::var("USER").as_deref() == Ok("root")
        || std::fs::metadata("/proc/self").is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        });
    let ctl = |verb: &'static str| async move {
        let mut cmd = if root {
            tokio::process::Command::new("rabbitmqctl")
        } else {
            let mut c = tokio::process::Command::new("sudo");
            c.arg("rabbitmqctl");
            c
        };
        let out = cmd
            .arg(verb)
            .output()
            .await
            .map_err(|e| format!("rabbitmqctl {verb}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "rabbitmqctl {verb}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    ctl("stop_app").await?;
    tokio::time::sleep(pause).await;
    ctl("start_app").await
}

/// The longest recorded wait of deliveries made in `[from_ms, to_ms]` (wall clock).
fn truth(waits: &[(u64, u64)], from_ms: u64, to_ms: u64) -> Option<u64> {
    waits
        .iter()
        .filter(|(at, _)| *at >= from_ms && *at <= to_ms)
        .map(|(_, w)| *w)
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_survives_aggregator_and_broker_restarts_without_wrong_values() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(url) = broker::require("restart").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.yaml"), RULES).expect("rules");
    let ca = TestCa::new("dwell-e2e restart CA");
    ca.issue(&["127.0.0.1", "localhost"]).write(dir.path());
    let (metrics, grpc) = (free_port(), free_port());
    let kubectl =
        Kubectl::new(dir.path(), &format!("https://{metrics}"), ca.pem()).expect("kubeconfig");
    let mut agg = start_aggregator(metrics, grpc, dir.path())
        .await
        .expect("aggregator starts");

    let queue = broker::unique_queue("restart");
    let mut fleet = Fleet::new(FleetConfig::new(
        "binder",
        &url,
        &queue,
        Duration::from_millis(100),
        Some(SidecarConfig::binder(grpc, &queue, &url)),
    ));
    fleet.scale_to(2).await.expect("pods start");
    let clock = ClockScale { speedup: 15.0 };
    let mut spec = HpaSpec::new("jobs", "app=binder", (2, 6), clock);
    spec.metrics = vec![MetricSpec::deployment(
        "wait_ms",
        "binder",
        Target::Value(2_000_000),
    )];
    let mut lp = ClosedLoop::new(
        Controller::new(spec),
        fleet,
        ApiReader(kubectl),
        clock.secs(15.0),
    );
    let start_ms = now_ms();

    // Steady load at 60 % of two workers, for the whole run.
    let trace = Trace::poisson(
        &[Phase {
            duration: Duration::from_secs(50),
            rate: 12.0,
        }],
        7,
    );
    let publisher = Playing::start(&url, &queue, &trace, lp.start());

    let s = Duration::from_secs;
    let (mut killed_at, mut agg_back_at, mut broker_back_at) = (None, None, None);
    let (mut broker_restart, mut broker_down_at) = (None, None);
    while lp.start().elapsed() < s(60) {
        lp.step().await.expect("loop step");
        let t = lp.start().elapsed();
        if t >= s(12) && killed_at.is_none() {
            agg.kill().await;
            killed_at = Some(t);
        }
        if t >= s(17) && agg_back_at.is_none() {
            agg = start_aggregator(metrics, grpc, dir.path())
                .await
                .expect("aggregator restarts on the same address");
            agg_back_at = Some(lp.start().elapsed());
        }
        if t >= s(30) && broker_restart.is_none() {
            broker_restart = Some(tokio::spawn(restart_broker(s(4))));
            broker_down_at = Some(t);
        }
        if broker_back_at.is_none() && broker_restart.as_ref().is_some_and(|h| h.is_finished()) {
            broker_back_at = Some(t);
        }
    }
    broker_restart
        .expect("the broker restart was started at 30 s")
        .await
        .expect("join")
        .expect("broker restarted");
    // Let every message drain before counting.
    let total = trace.arrivals.len() as u64;
    let drained = lp
        .run_until(s(100), |l| l.fleet.ledger.distinct() as u64 >= total)
        .await
        .expect("drain");
    let sent = publisher.stop().await.expect("publisher");
    let table = render(&lp.samples);
    eprintln!("{table}");
    eprintln!(
        "aggregator killed at {killed_at:?}, back at {agg_back_at:?}; broker back at {broker_back_at:?}"
    );

    assert_eq!(sent, total, "the publisher got every confirm");
    assert!(
        lp.fleet.ledger.missing(sent).is_empty(),
        "lost messages: {:?}",
        lp.fleet.ledger.missing(sent)
    );
    assert!(drained, "not every message was consumed within 100 s");
    // The loop recovered: values are read again within 15 s of each restart.
    for (what, back) in [("aggregator", agg_back_at), ("broker", broker_back_at)] {
        let back = back.expect("restart happened");
        assert!(
            lp.samples
                .iter()
                .any(|x| x.at > back && x.at < back + s(15) && x.value.is_some()),
            "no value within 15 s after the {what} came back at {back:?}\n{table}"
        );
    }
    assert!(
        lp.samples.iter().any(|x| x.error.is_some()),
        "the aggregator outage was never seen by the HPA?\n{table}"
    );
    // Never a wrong value. Each value read at R with timestamp T (the newest observation behind
    // it: a delivery, or the stats source's look at the queue) must be (1) honestly stamped: some
    // delivery in the window ending at T (an old number re-stamped as new during an outage would
    // have none); (2) no larger than the longest wait delivered in its window; (3) no smaller
    // than any wait delivered well inside its window, in [R - 3.5 s, T - 0.5 s]. A value of 1
    // (the rule's floor: the stats source saw an empty queue) needs no delivery for (1). For (3),
    // that stretch must hold deliveries whenever it is at least 1 s long, inside the trace and
    // clear of the broker's outage (12 messages a second are being consumed then): finding none
    // there fails the test instead of skipping the check.
    let waits = lp.fleet.ledger.waits();
    let broker_down = (
        broker_down_at.expect("the broker restart was started"),
        broker_back_at.expect("the broker came back") + s(5),
    );
    let since_start = |ms: u64| Duration::from_millis(ms.saturating_sub(start_ms));
    let (mut read, mut bounded_below) = (0, 0);
    for x in &lp.samples {
        // A sync without a value is fine (errors are allowed while data is missing).
        let Some(milli) = x.value else {
            continue;
        };
        read += 1;
        let value = milli / 1000;
        let age = x.reading_age.unwrap_or_else(|| {
            panic!(
                "value {value} ms at {:?} carries no observation timestamp\n{table}",
                x.at
            )
        });
        let read_ms = start_ms + x.at.as_millis() as u64;
        let ts_ms = read_ms.saturating_sub(age.as_millis() as u64);
        if value > 1 {
            assert!(
                truth(
                    &waits,
                    ts_ms.saturating_sub(WINDOW_MS + 2_000),
                    ts_ms + 1_000
                )
                .is_some(),
                "value {value} ms at {:?} is stamped {age:?} old, but nothing was delivered in the window before that\n{table}",
                x.at
            );
        }
        let upper = truth(&waits, read_ms.saturating_sub(WINDOW_MS + 2_000), read_ms).unwrap_or(0);
        assert!(
            // The sidecar takes the age when it reads the report, which on a busy machine can
            // trail the worker's own clock reading by a scheduling delay: 250 ms of slack.
            value as f64 <= upper as f64 * 1.01 + 250.0,
            "value {value} ms at {:?} exceeds every wait in its window (max {upper} ms)\n{table}",
            x.at
        );
        let (sure_from, sure_to) = (
            read_ms.saturating_sub(WINDOW_MS - 1_500),
            ts_ms.saturating_sub(500),
        );
        let (from, to) = (since_start(sure_from), since_start(sure_to));
        let steady = to >= from + s(1)
            && from >= s(2)
            && to + s(1) <= trace.length
            && (to < broker_down.0 || from > broker_down.1);
        match truth(&waits, sure_from, sure_to) {
            Some(lower) => {
                bounded_below += 1;
                assert!(
                    value as f64 >= lower as f64 * 0.99 - 50.0,
                    "value {value} ms at {:?} is below a wait surely in its window ({lower} ms)\n{table}",
                    x.at
                );
            }
            None if steady => panic!(
                "value {value} ms at {:?}: no delivery recorded in {from:?}..{to:?}, though messages \
                 were being published at 12/s with the broker up\n{table}",
                x.at
            ),
            // An outage or the trace's end: nothing was surely delivered in the window.
            None => {}
        }
    }
    eprintln!("{read} values read, {bounded_below} of them checked against a lower bound");
    assert!(
        bounded_below >= 10,
        "only {bounded_below} of {read} values could be checked against the waits surely in their window\n{table}"
    );

    lp.fleet.shutdown().await;
    broker::delete(&url, &queue).await;
    agg.terminate(s(10)).await;
}
