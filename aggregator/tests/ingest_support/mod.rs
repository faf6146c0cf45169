//! Shared by the ingest acceptance tests: the real binary (through the e2e harness), reports
//! pushed with a real tonic client or `grpcurl`, values read with `kubectl get --raw`.
#![allow(dead_code)]

pub mod tokens;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_proto::v1;
use dwell_proto::v1::ingest_client::IngestClient;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_dwell-aggregator");
/// Generous deadline for conditions that depend on real time passing.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Starts the binary with `extra` flags (self-signed TLS, ports 0).
pub async fn start(extra: &[&str]) -> Aggregator {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Aggregator::start_program(Path::new(BIN), Tls::SelfSigned, extra)
        .await
        .expect("aggregator starts")
}

/// Writes `yaml` to `dir/rules.yaml` atomically (write then rename, as a ConfigMap swap).
pub fn write_config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("rules.yaml");
    let tmp = dir.join("rules.yaml.tmp");
    std::fs::write(&tmp, yaml).expect("write config");
    std::fs::rename(&tmp, &path).expect("rename config");
    path.display().to_string()
}

/// A tonic client to the aggregator's gRPC port.
pub async fn client(agg: &Aggregator) -> IngestClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", agg.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    IngestClient::new(channel)
}

/// A report from `ns/pod` on `queue` with raw ages (observed "now": times left 0).
pub fn report(ns: &str, pod: &str, queue: &str, ages_ms: &[i64]) -> v1::Report {
    v1::Report {
        source: Some(v1::Source {
            namespace: ns.into(),
            pod: pod.into(),
            labels: HashMap::from([("app".into(), "binder".into())]),
            queue: queue.into(),
            vhost: "/".into(),
        }),
        ages: Some(v1::report::Ages::Samples(v1::Samples {
            samples: ages_ms
                .iter()
                .map(|&age_ms| v1::Sample {
                    observed_at_ms: 0,
                    age_ms,
                    redelivered: false,
                })
                .collect(),
        })),
        ..Default::default()
    }
}

/// Runs `grpcurl -plaintext [args…]` against the aggregator; returns (success, stdout+stderr).
pub async fn grpcurl(agg: &Aggregator, args: &[&str]) -> (bool, String) {
    let addr = agg.grpc_addr.to_string();
    let mut cmd = tokio::process::Command::new("grpcurl");
    cmd.arg("-plaintext");
    // Flags with a value: `-d JSON`.
    let mut it = args.iter();
    let mut positional = Vec::new();
    while let Some(a) = it.next() {
        if *a == "-d" {
            cmd.arg("-d").arg(it.next().copied().unwrap_or(""));
        } else if a.starts_with('-') {
            cmd.arg(a);
        } else {
            positional.push(*a);
        }
    }
    cmd.arg(&addr).args(&positional);
    match cmd.output().await {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("cannot run grpcurl: {e}")),
    }
}

/// Parses a Kubernetes Quantity as our values come (`12`, `4k`, `2500m`).
pub fn quantity(q: &str) -> f64 {
    let (num, mult) = match q.chars().last() {
        Some('m') => (&q[..q.len() - 1], 1e-3),
        Some('k') => (&q[..q.len() - 1], 1e3),
        Some('M') => (&q[..q.len() - 1], 1e6),
        Some('G') => (&q[..q.len() - 1], 1e9),
        _ => (q, 1.0),
    };
    num.parse::<f64>().map(|n| n * mult).unwrap_or(f64::NAN)
}

/// The Object value of `metric` for `deployments.apps ns/binder` (v1beta2), or kubectl's error.
pub async fn object_value(agg: &Aggregator, ns: &str, metric: &str) -> Result<f64, String> {
    let path = format!(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/deployments.apps/binder/{metric}"
    );
    let v = agg.kubectl.get_raw(&path).await.json()?;
    v["items"][0]["value"]
        .as_str()
        .map(quantity)
        .ok_or_else(|| format!("no value in {v}"))
}

/// The external value of `metric` in `ns` with `selector`.
pub async fn external_value(
    agg: &Aggregator,
    ns: &str,
    metric: &str,
    selector: &str,
) -> Result<f64, String> {
    let q = if selector.is_empty() {
        String::new()
    } else {
        format!("?labelSelector={}", selector.replace('=', "%3D"))
    };
    let path = format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}{q}");
    let v = agg.kubectl.get_raw(&path).await.json()?;
    v["items"][0]["value"]
        .as_str()
        .map(quantity)
        .ok_or_else(|| format!("no value in {v}"))
}

/// Polls `check` every 100 ms until it gives `Some`, failing after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            tokio::time::Instant::now() < end,
            "{what}: never happened; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
