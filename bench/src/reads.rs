//! HPA-style reads: one keep-alive HTTPS connection per request kind, sending at a fixed pace
//! (open loop, so a slow answer shows up as latency, not as fewer requests).
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::https::{Conn, connector};
use crate::stats::Latencies;

/// The three request kinds the HPA sends.
#[derive(Debug, Clone)]
pub struct HpaPaths {
    /// `Object` metric on a Deployment.
    pub object: String,
    /// `Pods` metric over every pod matching a selector.
    pub pods: String,
    /// `External` metric.
    pub external: String,
}

impl HpaPaths {
    /// Paths for metric `metric`: Object and External in `ns`, Pods in `pods_ns`.
    pub fn new(metric: &str, ns: &str, pods_ns: &str) -> Self {
        Self {
            object: format!(
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/deployments.apps/worker/{metric}"
            ),
            pods: format!(
                "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{pods_ns}/pods/%2A/{metric}?labelSelector=app%3Dworker"
            ),
            external: format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}"),
        }
    }

    /// `(kind, path)` pairs.
    pub fn all(&self) -> [(&'static str, String); 3] {
        [
            ("Object", self.object.clone()),
            ("Pods", self.pods.clone()),
            ("External", self.external.clone()),
        ]
    }
}

/// Latencies of one kind, plus the first failure's text.
#[derive(Debug, Clone, Default)]
pub struct KindResult {
    /// Latencies of 2xx answers.
    pub latencies: Latencies,
    /// The first non-2xx answer or error.
    pub first_error: Option<String>,
    /// Body size of the last 2xx answer.
    pub body_bytes: usize,
}

/// Sends GET `path` `rate` times a second for `duration`.
pub async fn paced(
    addr: SocketAddr,
    path: String,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<KindResult> {
    let mut conn = Conn::open(&connector(), addr).await?;
    let mut out = KindResult::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = Instant::now() + duration;
    while Instant::now() < end {
        tick.tick().await;
        let t = Instant::now();
        match conn.get(&path).await {
            Ok((200, body)) => {
                out.latencies.record(t.elapsed());
                out.body_bytes = body.len();
            }
            Ok((status, body)) => {
                out.latencies.errors += 1;
                out.first_error.get_or_insert_with(|| {
                    format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )
                });
            }
            Err(e) => {
                out.latencies.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
                conn = Conn::open(&connector(), addr).await?;
            }
        }
    }
    Ok(out)
}

/// Runs the three kinds in parallel, each at `rate`/s for `duration`.
pub async fn all_kinds(
    addr: SocketAddr,
    paths: &HpaPaths,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Vec<(&'static str, KindResult)>> {
    let mut tasks = Vec::new();
    for (kind, path) in paths.all() {
        tasks.push((kind, tokio::spawn(paced(addr, path, rate, duration))));
    }
    let mut out = Vec::new();
    for (kind, t) in tasks {
        out.push((kind, t.await??));
    }
    Ok(out)
}
