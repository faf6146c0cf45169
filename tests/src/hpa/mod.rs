//! A faithful model of the Kubernetes HPA controller (autoscaling/v2) as a library, so tests and
//! benchmarks can close the loop without a cluster: it reads metrics with the HPA's own requests
//! ([`client`]), turns each into a proposal with the replica calculator ([`calculator`]), takes the
//! largest, and applies stabilisation and rate limits ([`behavior`]), all on a scalable clock.
//!
//! Source: `k8s: pkg/controller/podautoscaler/horizontal.go` (`reconcileAutoscaler`,
//! `computeReplicasForMetrics`, `computeReplicasForMetric`) and `replica_calculator.go`.

pub mod behavior;
pub mod calculator;
pub mod client;
pub mod quantity;

use std::time::Instant;

use behavior::{Behavior, BehaviorState, ClockScale};
use calculator::{CalcError, Pod, PodPhase, Tolerances};
use client::{FetchError, RawGet, Reading};

/// Which kind of metric (`MetricSourceType`), with what Object names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricSource {
    /// `type: Object`: `resource` is the plural with group (`deployments.apps`), or `namespaces`.
    Object {
        /// Resource of the described object, e.g. `deployments.apps`.
        resource: String,
        /// Its name.
        name: String,
    },
    /// `type: Pods`: one value per pod of the scale target.
    Pods,
    /// `type: External`: the items are summed.
    External,
}

/// `MetricTarget` (values in milli-units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `type: Value`.
    Value(i64),
    /// `type: AverageValue`.
    AverageValue(i64),
}

/// One entry of `spec.metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    /// `metric.name`.
    pub metric: String,
    /// `metric.selector` rendered as a label selector string (`queue=a`).
    pub selector: Option<String>,
    /// Object, Pods or External.
    pub source: MetricSource,
    /// The target.
    pub target: Target,
}

impl MetricSpec {
    /// An Object metric about `deployments.apps/{deployment}`, no selector.
    pub fn deployment(metric: &str, deployment: &str, target: Target) -> Self {
        Self {
            metric: metric.into(),
            selector: None,
            source: MetricSource::Object {
                resource: "deployments.apps".into(),
                name: deployment.into(),
            },
            target,
        }
    }
}

/// The parts of an HPA object the controller reads.
#[derive(Debug, Clone)]
pub struct HpaSpec {
    /// The HPA's namespace (every request goes there).
    pub namespace: String,
    /// The scale target's pod selector (`labelSelector` of Pods requests).
    pub pod_selector: String,
    /// `minReplicas` (default 1).
    pub min_replicas: i32,
    /// `maxReplicas`.
    pub max_replicas: i32,
    /// `metrics`.
    pub metrics: Vec<MetricSpec>,
    /// `behavior`, defaults filled in.
    pub behavior: Behavior,
    /// The controller's tolerance.
    pub tolerances: Tolerances,
    /// The preferred custom.metrics.k8s.io version (`v1beta2` when served).
    pub custom_version: String,
}

impl HpaSpec {
    /// An HPA with the Kubernetes defaults (behavior, 10 % tolerance) on `clock`.
    pub fn new(namespace: &str, pod_selector: &str, bounds: (i32, i32), clock: ClockScale) -> Self {
        Self {
            namespace: namespace.into(),
            pod_selector: pod_selector.into(),
            min_replicas: bounds.0,
            max_replicas: bounds.1,
            metrics: Vec::new(),
            behavior: Behavior::kubernetes_default(clock),
            tolerances: Tolerances::default(),
            custom_version: "v1beta2".into(),
        }
    }
}

/// The scale subresource and the pods behind it, as the controller sees them at a sync.
#[derive(Debug, Clone)]
pub struct ScaleState {
    /// `scale.spec.replicas` (what the HPA calls `currentReplicas`).
    pub spec_replicas: i32,
    /// `scale.status.replicas` (used by AverageValue targets).
    pub status_replicas: i32,
    /// Pods matched by the selector.
    pub pods: Vec<Pod>,
}

/// The outcome of one sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count to set (equal to the current count when holding).
    pub desired: i32,
    /// Per metric: the proposal and the usage the HPA would report, or the error.
    pub proposals: Vec<Result<(i32, i64), String>>,
    /// Why (mirrors the controller's condition reasons).
    pub reason: &'static str,
}

/// One HPA's controller: its spec and its memory of past recommendations and scale events.
#[derive(Debug)]
pub struct Controller {
    /// The HPA object.
    pub spec: HpaSpec,
    state: BehaviorState,
}

impl Controller {
    /// A controller with no history.
    pub fn new(spec: HpaSpec) -> Self {
        Self {
            spec,
            state: BehaviorState::default(),
        }
    }

    /// `computeReplicasForMetric`: one reading → a proposal and the usage.
    fn propose(
        &self,
        metric: &MetricSpec,
        reading: &Reading,
        scale: &ScaleState,
    ) -> Result<(i32, i64), CalcError> {
        let tol = self.spec.tolerances;
        let current = scale.spec_replicas;
        let ready = || {
            if scale.pods.is_empty() {
                return Err(CalcError::NoPods);
            }
            Ok(scale
                .pods
                .iter()
                .filter(|p| p.phase == PodPhase::Running)
                .count() as i32)
        };
        let value_replicas = |usage: i64, target: i64| {
            let ratio = usage as f64 / target as f64;
            // getUsageRatioReplicaCount lists pods only outside the tolerance.
            let ready = if current != 0 && !tol.is_within(ratio) {
                ready()?
            } else {
                0
            };
            Ok((
                calculator::usage_ratio_replica_count(current, ratio, tol, ready),
                usage,
            ))
        };
        match (reading, metric.target) {
            (Reading::Object { value, .. }, Target::Value(t)) => value_replicas(*value, t),
            (Reading::Object { value, .. }, Target::AverageValue(t)) => Ok(
                calculator::per_pod_replicas(scale.status_replicas, *value, t, tol),
            ),
            (Reading::Pods { values, .. }, Target::AverageValue(t) | Target::Value(t)) => {
                calculator::pods_replicas(current, values.clone(), t, tol, &scale.pods)
            }
            (Reading::External { values, .. }, Target::Value(t)) => {
                value_replicas(values.iter().sum(), t)
            }
            (Reading::External { values, .. }, Target::AverageValue(t)) => Ok(
                calculator::per_pod_replicas(scale.status_replicas, values.iter().sum(), t, tol),
            ),
        }
    }

    /// `reconcileAutoscaler` from the readings on: bounds first, then the largest valid proposal
    /// (holding when every metric is invalid, or when some are and the rest would scale down),
    /// then behavior normalisation; a change is recorded for the rate limits.
    pub fn decide(
        &mut self,
        now: Instant,
        scale: &ScaleState,
        readings: &[Result<Reading, FetchError>],
    ) -> Decision {
        let (min, max) = (self.spec.min_replicas, self.spec.max_replicas);
        let current = scale.spec_replicas;
        let hold = |proposals, reason| Decision {
            desired: current,
            proposals,
            reason,
        };
        if current == 0 && min != 0 {
            return hold(Vec::new(), "ScalingDisabled");
        }
        let (desired, reason, proposals) = if current > max {
            (max, "TooManyReplicas", Vec::new())
        } else if current < min {
            (min, "TooFewReplicas", Vec::new())
        } else {
            let proposals: Vec<Result<(i32, i64), String>> = self
                .spec
                .metrics
                .iter()
                .zip(readings)
                .map(|(m, r)| match r {
                    Ok(reading) => self.propose(m, reading, scale).map_err(|e| e.to_string()),
                    Err(e) => Err(format!("unable to get metric {}: {e}", m.metric)),
                })
                .collect();
            let invalid = proposals.iter().filter(|p| p.is_err()).count()
                + self.spec.metrics.len().saturating_sub(readings.len());
            let best = proposals
                .iter()
                .filter_map(|p| p.as_ref().ok().map(|(r, _)| *r))
                .max()
                .unwrap_or(0);
            if invalid >= self.spec.metrics.len() || (invalid > 0 && best < current) {
                return hold(proposals, "FailedComputeMetricsReplicas");
            }
            let normalized =
                self.state
                    .normalize(&self.spec.behavior, current, best.max(0), (min, max), now);
            (normalized, "ValidMetricFound", proposals)
        };
        if desired != current {
            self.state
                .record_scale(&self.spec.behavior, current, desired, now);
        }
        Decision {
            desired,
            proposals,
            reason,
        }
    }

    /// One full sync: reads every metric with `getter`, then [`Controller::decide`]. Returns the
    /// readings too, so a caller can check what the HPA saw.
    pub async fn sync(
        &mut self,
        getter: &impl RawGet,
        now: Instant,
        scale: &ScaleState,
    ) -> (Decision, Vec<Result<Reading, FetchError>>) {
        let mut readings = Vec::with_capacity(self.spec.metrics.len());
        for metric in &self.spec.metrics {
            readings.push(
                client::fetch(
                    getter,
                    metric,
                    &self.spec.namespace,
                    &self.spec.custom_version,
                    &self.spec.pod_selector,
                )
                .await,
            );
        }
        (self.decide(now, scale, &readings), readings)
    }
}

#[cfg(test)]
mod tests;
