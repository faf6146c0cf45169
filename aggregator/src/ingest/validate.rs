//! Turns a wire `Report` into a validated [`Observation`], or a precise rejection. Nothing from
//! the wire is trusted: sizes are bounded, ages range-checked, times checked against our clock.
use std::collections::BTreeMap;
use std::sync::Arc;

use dwell_proto::summary::{MAX_AGE_MS, ValidSummary};
use dwell_proto::v1;

use crate::window::{Ages, Observation, QueueState, SidecarCounters, SourceKey};

/// Bounds on what one report may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most raw samples in one report.
    pub max_samples: usize,
    /// Most pod labels.
    pub max_labels: usize,
    /// Most bytes of label keys and values together.
    pub max_label_bytes: usize,
    /// Largest encoded message the server decodes.
    pub max_message_bytes: usize,
    /// How far ahead of the aggregator's clock a sidecar timestamp may be (clock skew).
    pub max_future_skew_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_samples: 10_000,
            max_labels: 64,
            max_label_bytes: 16 * 1024,
            max_message_bytes: 1024 * 1024,
            max_future_skew_ms: 5 * 60_000,
        }
    }
}

/// Why a report was rejected: a metric label (`reason`) and a message for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// Bounded reason label: `source`, `labels`, `samples`, `age`, `timestamp`, `summary`.
    pub reason: &'static str,
    /// What exactly is wrong.
    pub message: String,
}

fn reject(reason: &'static str, message: String) -> Rejection {
    Rejection { reason, message }
}

/// A valid report: ages to take, or a goodbye.
#[derive(Debug, Clone)]
pub enum Valid {
    /// Take these ages.
    Observe(Box<Observation>),
    /// Forget this source now.
    Goodbye(SourceKey),
}

/// Validates `report` received from `peer` at `now_ms`.
pub fn validate(
    report: v1::Report,
    peer: &Arc<str>,
    now_ms: i64,
    limits: &Limits,
) -> Result<Valid, Rejection> {
    let source = report
        .source
        .ok_or_else(|| reject("source", "report.source is required".into()))?;
    let key = source_key(&source)?;
    if report.goodbye {
        return Ok(Valid::Goodbye(key));
    }
    check_labels(&source.labels, limits)?;
    let latest = now_ms + limits.max_future_skew_ms;
    // Zero times mean "now" (scripts and grpcurl rarely set them).
    let when = |field: &str, at: i64| -> Result<i64, Rejection> {
        match at {
            0 => Ok(now_ms),
            at if at < 0 => Err(reject("timestamp", format!("{field} is negative ({at})"))),
            at if at > latest => Err(reject(
                "timestamp",
                format!(
                    "{field} is {} ms ahead of the aggregator's clock (max skew {} ms)",
                    at - now_ms,
                    limits.max_future_skew_ms
                ),
            )),
            at => Ok(at.min(now_ms)),
        }
    };
    let start = when("report.interval_start_ms", report.interval_start_ms)?;
    let end = when("report.interval_end_ms", report.interval_end_ms)?;
    if report.interval_start_ms != 0 && report.interval_end_ms != 0 && start > end {
        return Err(reject(
            "timestamp",
            "report.interval_start_ms is after interval_end_ms".into(),
        ));
    }
    let ages = match report.ages {
        None => Ages::Samples(Vec::new()),
        Some(v1::report::Ages::Samples(s)) => {
            if s.samples.len() > limits.max_samples {
                return Err(reject(
                    "samples",
                    format!(
                        "report carries {} samples; at most {} are accepted (send a summary)",
                        s.samples.len(),
                        limits.max_samples
                    ),
                ));
            }
            let mut out = Vec::with_capacity(s.samples.len());
            for (i, sample) in s.samples.iter().enumerate() {
                if !(0..=MAX_AGE_MS).contains(&sample.age_ms) {
                    return Err(reject(
                        "age",
                        format!(
                            "samples[{i}].age_ms {} is out of range [0, {MAX_AGE_MS}]",
                            sample.age_ms
                        ),
                    ));
                }
                let at = when(
                    &format!("samples[{i}].observed_at_ms"),
                    sample.observed_at_ms,
                )?;
                out.push((sample.age_ms, at, sample.redelivered));
            }
            Ages::Samples(out)
        }
        Some(v1::report::Ages::Summary(s)) => {
            // Checked, not converted: the window merges the wire form straight into its slot.
            let summary = ValidSummary::new(s).map_err(|e| {
                let reason = match e {
                    dwell_proto::summary::SummaryError::AgeOutOfRange(_) => "age",
                    _ => "summary",
                };
                reject(reason, format!("report.summary: {e}"))
            })?;
            Ages::Summary {
                summary,
                at_ms: end,
            }
        }
    };
    let queue_state = match report.queue_state {
        None => None,
        Some(q) => Some(QueueState {
            messages_ready: q.messages_ready,
            consumers: q.consumers,
            observed_at_ms: when("queue_state.observed_at_ms", q.observed_at_ms)?,
        }),
    };
    Ok(Valid::Observe(Box::new(Observation {
        key,
        labels: source.labels.into_iter().collect::<BTreeMap<_, _>>(),
        peer: peer.clone(),
        instance: report.instance,
        seq: report.seq,
        ages,
        queue_state,
        counters: report.counters.map(|c| SidecarCounters {
            clamped: c.clamped,
            missing: c.missing,
            backlog_dropped: c.backlog_dropped,
        }),
    })))
}

fn source_key(s: &v1::Source) -> Result<SourceKey, Rejection> {
    let dns_label = |v: &str| {
        !v.is_empty()
            && v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !v.starts_with('-')
            && !v.ends_with('-')
    };
    if !dns_label(&s.namespace) {
        return Err(reject(
            "source",
            format!(
                "source.namespace {:?} is not a Kubernetes namespace name",
                s.namespace
            ),
        ));
    }
    let pod_ok = !s.pod.is_empty()
        && s.pod.len() <= 253
        && s.pod
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !pod_ok {
        return Err(reject(
            "source",
            format!("source.pod {:?} is not a Kubernetes pod name", s.pod),
        ));
    }
    // AMQP short strings: at most 255 bytes.
    if s.queue.is_empty() || s.queue.len() > 255 {
        return Err(reject(
            "source",
            "source.queue must be 1 to 255 bytes".into(),
        ));
    }
    if s.vhost.len() > 255 {
        return Err(reject(
            "source",
            "source.vhost must be at most 255 bytes".into(),
        ));
    }
    Ok(SourceKey {
        namespace: s.namespace.clone(),
        pod: s.pod.clone(),
        queue: s.queue.clone(),
        vhost: if s.vhost.is_empty() {
            "/".into()
        } else {
            s.vhost.clone()
        },
    })
}

fn check_labels(
    labels: &std::collections::HashMap<String, String>,
    limits: &Limits,
) -> Result<(), Rejection> {
    if labels.len() > limits.max_labels {
        return Err(reject(
            "labels",
            format!(
                "source.labels has {} labels; at most {} are accepted",
                labels.len(),
                limits.max_labels
            ),
        ));
    }
    let bytes: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > limits.max_label_bytes {
        return Err(reject(
            "labels",
            format!(
                "source.labels total {bytes} bytes; at most {} are accepted",
                limits.max_label_bytes
            ),
        ));
    }
    if let Some(k) = labels.keys().find(|k| k.is_empty() || k.len() > 317) {
        return Err(reject(
            "labels",
            format!("source.labels key {k:?} must be 1 to 317 bytes"),
        ));
    }
    if let Some((k, _)) = labels.iter().find(|(_, v)| v.len() > 63) {
        return Err(reject(
            "labels",
            format!("source.labels[{k:?}] value is longer than 63 bytes"),
        ));
    }
    Ok(())
}
