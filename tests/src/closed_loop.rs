//! The closed loop: the [`hpa`](crate::hpa) model reads a metric every sync period and scales a
//! [`Fleet`] of real consumers, while a trace is published into a real queue. A test drives it
//! step by step (so it can break things between steps); the comparison binary runs it to the end.
//! Each step is recorded as a [`Sample`] for the assertions and the replica-second accounting.

use std::future::Future;
use std::time::Duration;

use lapin::{Channel, Connection};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::broker;
use crate::fleet::Fleet;
use crate::hpa::client::{self, FetchError, RawGet, Reading};
use crate::hpa::{Controller, HpaSpec, ScaleState};
use crate::publisher::now_ms;

/// The HPA's reads go through the real `kubectl get --raw` of the harness.
impl RawGet for crate::kube::Kubectl {
    async fn get_raw(&self, path: &str) -> Result<String, String> {
        let out = crate::kube::Kubectl::get_raw(self, path).await;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(out.stderr.trim().to_owned())
        }
    }
}

/// Where the loop's HPA gets its metric readings.
pub trait MetricReader {
    /// One reading per metric of `spec`, in order.
    fn read(
        &mut self,
        spec: &HpaSpec,
    ) -> impl Future<Output = Vec<Result<Reading, FetchError>>> + Send;
}

/// Reads every metric through the metrics API, exactly as the HPA requests it: custom-metrics
/// version discovery on `/apis` each sync (the HPA invalidates its cached choice every sync
/// period), then one GET per metric.
pub struct ApiReader<G>(pub G);

impl<G: RawGet + Sync + Send> MetricReader for ApiReader<G> {
    async fn read(&mut self, spec: &HpaSpec) -> Vec<Result<Reading, FetchError>> {
        let needs_custom = spec
            .metrics
            .iter()
            .any(|m| m.source != crate::hpa::MetricSource::External);
        let version = if needs_custom {
            match self.0.get_raw("/apis").await {
                Ok(body) => client::preferred_custom_version(&body),
                Err(e) => Err(FetchError::Server(e)),
            }
        } else {
            Ok(spec.custom_version.clone())
        };
        let mut out = Vec::new();
        for m in &spec.metrics {
            let reading = match (&version, &m.source) {
                (_, crate::hpa::MetricSource::External) | (Ok(_), _) => {
                    let v = version.as_deref().unwrap_or(&spec.custom_version);
                    client::fetch(&self.0, m, &spec.namespace, v, &spec.pod_selector).await
                }
                (Err(e), _) => Err(e.clone()),
            };
            out.push(reading);
        }
        out
    }
}

/// The queue-length baseline: one External reading, `messages_ready` by passive declare (what a
/// queue-length adapter such as KEDA's RabbitMQ scaler serves).
pub struct QueueLengthReader {
    url: String,
    queue: String,
    conn: Option<(Connection, Channel)>,
}

impl QueueLengthReader {
    /// A reader for `queue`.
    pub fn new(url: &str, queue: &str) -> Self {
        Self {
            url: url.into(),
            queue: queue.into(),
            conn: None,
        }
    }

    async fn depth(&mut self) -> Result<u32, String> {
        if self
            .conn
            .as_ref()
            .is_none_or(|(c, ch)| !c.status().connected() || !ch.status().connected())
        {
            let c = broker::connect(&self.url, Duration::from_secs(2)).await?;
            let ch = c.create_channel().await.map_err(|e| e.to_string())?;
            self.conn = Some((c, ch));
        }
        let Some((_, ch)) = &self.conn else {
            return Err("no channel".into());
        };
        let r = broker::queue_depth(ch, &self.queue).await;
        match r {
            Ok((ready, _)) => Ok(ready),
            Err(e) => {
                self.conn = None;
                Err(e.to_string())
            }
        }
    }
}

impl MetricReader for QueueLengthReader {
    async fn read(&mut self, spec: &HpaSpec) -> Vec<Result<Reading, FetchError>> {
        let r = self
            .depth()
            .await
            .map(|ready| Reading::External {
                values: vec![i64::from(ready) * 1000],
                timestamps: vec![OffsetDateTime::now_utc()],
            })
            .map_err(FetchError::Server);
        spec.metrics.iter().map(|_| r.clone()).collect()
    }
}

/// One sync of the loop.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Time since the loop started.
    pub at: Duration,
    /// Replicas running after this sync's decision.
    pub replicas: usize,
    /// The first metric's value (milli), when it could be read.
    pub value: Option<i64>,
    /// The first metric's error, when it could not.
    pub error: Option<String>,
    /// How old the reading's newest timestamp was when read (None without a reading).
    pub reading_age: Option<Duration>,
    /// Longest wait among deliveries since the previous sample (the true dwell time).
    pub max_wait_ms: Option<u64>,
}

/// The loop's parts and history.
pub struct ClosedLoop<R> {
    /// The HPA.
    pub controller: Controller,
    /// The consumers it scales.
    pub fleet: Fleet,
    /// How it reads its metric.
    pub reader: R,
    /// The sync period (15 s in Kubernetes, scaled).
    pub sync_period: Duration,
    /// Every sync so far.
    pub samples: Vec<Sample>,
    start: Instant,
    ticks: u32,
    waits_seen: usize,
}

impl<R: MetricReader> ClosedLoop<R> {
    /// A loop starting now.
    pub fn new(controller: Controller, fleet: Fleet, reader: R, sync_period: Duration) -> Self {
        Self {
            controller,
            fleet,
            reader,
            sync_period,
            samples: Vec::new(),
            start: Instant::now(),
            ticks: 0,
            waits_seen: 0,
        }
    }

    /// When the loop started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Waits for the next sync time, then reads, decides and scales once.
    pub async fn step(&mut self) -> Result<&Sample, String> {
        self.ticks += 1;
        tokio::time::sleep_until(self.start + self.sync_period * self.ticks).await;
        let readings = self.reader.read(&self.controller.spec).await;
        let n = self.fleet.len() as i32;
        let scale = ScaleState {
            spec_replicas: n,
            status_replicas: n,
            pods: self.fleet.hpa_pods(),
        };
        let decision = self
            .controller
            .decide(std::time::Instant::now(), &scale, &readings);
        self.fleet
            .scale_to(decision.desired.max(0) as usize)
            .await?;
        let waits = self.fleet.ledger.waits();
        let max_wait_ms = waits[self.waits_seen.min(waits.len())..]
            .iter()
            .map(|(_, w)| *w)
            .max();
        self.waits_seen = waits.len();
        let first = readings.first();
        let value = match first {
            Some(Ok(Reading::Object { value, .. })) => Some(*value),
            Some(Ok(Reading::External { values, .. })) => Some(values.iter().sum()),
            Some(Ok(Reading::Pods { values, .. })) if !values.is_empty() => {
                Some(values.values().sum::<i64>() / values.len() as i64)
            }
            _ => None,
        };
        let now = OffsetDateTime::now_utc();
        let reading_age = first
            .and_then(|r| r.as_ref().ok())
            .and_then(|r| r.timestamps().into_iter().max())
            .map(|t| Duration::try_from(now - t).unwrap_or_default());
        self.samples.push(Sample {
            at: self.start.elapsed(),
            replicas: self.fleet.len(),
            value,
            error: first
                .and_then(|r| r.as_ref().err())
                .map(ToString::to_string),
            reading_age,
            max_wait_ms,
        });
        self.samples
            .last()
            .ok_or_else(|| "no sample recorded".to_owned())
    }

    /// Steps until `done` holds or `deadline` (since the start) passes; returns whether `done` held.
    pub async fn run_until(
        &mut self,
        deadline: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<bool, String> {
        while self.start.elapsed() < deadline {
            self.step().await?;
            if done(self) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replicas × seconds over the samples so far (each sample holds for one sync period).
    pub fn replica_seconds(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.replicas as f64 * self.sync_period.as_secs_f64())
            .sum()
    }

    /// Seconds (in sync periods) during which some delivery had waited longer than `target_ms`.
    pub fn seconds_over(&self, target_ms: u64) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.max_wait_ms.is_some_and(|w| w > target_ms))
            .count() as f64
            * self.sync_period.as_secs_f64()
    }

    /// The largest replica count so far.
    pub fn peak_replicas(&self) -> usize {
        self.samples.iter().map(|s| s.replicas).max().unwrap_or(0)
    }

    /// Time since the start of the last delivery that waited longer than `target_ms`.
    pub fn last_over(&self, target_ms: u64) -> Option<Duration> {
        let start_ms = now_ms().saturating_sub(self.start.elapsed().as_millis() as u64);
        self.fleet
            .ledger
            .waits()
            .iter()
            .filter(|(_, w)| *w > target_ms)
            .map(|(at, _)| Duration::from_millis(at.saturating_sub(start_ms)))
            .max()
    }
}

/// A one-line-per-sample table of the run, for test output and the benchmark record.
pub fn render(samples: &[Sample]) -> String {
    samples
        .iter()
        .map(|s| {
            format!(
                "t={:>5.1}s replicas={:>2} value={:>8} wait_max={:>6} age={:>6} {}",
                s.at.as_secs_f64(),
                s.replicas,
                s.value
                    .map(|v| format!("{:.1}", v as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into()),
                s.max_wait_ms
                    .map(|w| format!("{w}ms"))
                    .unwrap_or_else(|| "-".into()),
                s.reading_age
                    .map(|a| format!("{}ms", a.as_millis()))
                    .unwrap_or_else(|| "-".into()),
                s.error.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
