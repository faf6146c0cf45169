//! Realistic reports for simulated sidecars: summaries of a log-normal spread of ages (what a
//! busy consumer sees in one interval) and raw-sample batches.
use std::collections::HashMap;

use dwell_proto::summary::AgeSummary;
use dwell_proto::v1;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;

/// Unix time now, in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The source of simulated pod `pod` in `namespace`, with the labels a Deployment gives its pods.
pub fn source(namespace: &str, pod: &str, queue: &str) -> v1::Source {
    let labels: HashMap<String, String> = [
        ("app", "worker"),
        ("pod-template-hash", "7d9c8b6f5"),
        ("app.kubernetes.io/part-of", "bench"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    v1::Source {
        namespace: namespace.into(),
        pod: pod.into(),
        labels,
        queue: queue.into(),
        vhost: "/".into(),
    }
}

/// One age drawn from a log-normal distribution with median `median_ms` (sigma 1).
fn lognormal_age(rng: &mut SmallRng, median_ms: f64) -> i64 {
    // Box-Muller: two uniforms → one standard normal.
    let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (median_ms * z.exp()).clamp(0.0, 3_600_000.0) as i64
}

/// `n` pre-built summaries, each of `per_interval` ages (median 2 s), to send in rotation so
/// the load generator spends its CPU on sending, not on summarising.
pub fn summary_pool(n: usize, per_interval: usize, seed: u64) -> Vec<v1::Summary> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let now = now_ms();
    (0..n)
        .map(|_| {
            let mut s = AgeSummary::new();
            for _ in 0..per_interval {
                s.record(lognormal_age(&mut rng, 2_000.0), now, rng.random_bool(0.01));
            }
            s.to_proto()
        })
        .collect()
}

/// A batch of `n` raw samples (median 2 s); `observed_at_ms` is set per send with [`stamp`].
pub fn sample_batch(n: usize, seed: u64) -> v1::Samples {
    let mut rng = SmallRng::seed_from_u64(seed);
    v1::Samples {
        samples: (0..n)
            .map(|_| v1::Sample {
                observed_at_ms: 0,
                age_ms: lognormal_age(&mut rng, 2_000.0),
                redelivered: false,
            })
            .collect(),
    }
}

/// Sets every sample's observation time to `at_ms` (spread over the last interval).
pub fn stamp(batch: &mut v1::Samples, at_ms: i64, interval_ms: i64) {
    let n = batch.samples.len().max(1) as i64;
    for (i, s) in batch.samples.iter_mut().enumerate() {
        s.observed_at_ms = at_ms - interval_ms + (i as i64 + 1) * interval_ms / n;
    }
}

/// A report of `summary` for the interval ending now.
pub fn summary_report(
    source: &v1::Source,
    instance: u64,
    seq: u64,
    interval_ms: i64,
    summary: &v1::Summary,
) -> v1::Report {
    let end = now_ms();
    let mut summary = summary.clone();
    summary.last_observed_at_ms = end;
    v1::Report {
        source: Some(source.clone()),
        instance,
        seq,
        interval_start_ms: end - interval_ms,
        interval_end_ms: end,
        ages: Some(v1::report::Ages::Summary(summary)),
        queue_state: Some(v1::QueueState {
            messages_ready: 40,
            consumers: 1,
            observed_at_ms: end,
        }),
        counters: Some(v1::Counters::default()),
        goodbye: false,
    }
}

/// A report carrying raw `samples` for the interval ending now.
pub fn samples_report(
    source: &v1::Source,
    instance: u64,
    seq: u64,
    interval_ms: i64,
    samples: v1::Samples,
) -> v1::Report {
    let end = now_ms();
    v1::Report {
        source: Some(source.clone()),
        instance,
        seq,
        interval_start_ms: end - interval_ms,
        interval_end_ms: end,
        ages: Some(v1::report::Ages::Samples(samples)),
        queue_state: None,
        counters: None,
        goodbye: false,
    }
}
