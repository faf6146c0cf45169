//! A faithful model of the Kubernetes HPA controller (autoscaling/v2) as a library, so tests and
//! benchmarks can close the loop without a cluster: it reads metrics with the HPA's own requests
//! ([`client`]), turns each into a proposal with the replica calculator ([`calculator`], pods as
//! [`pods`] sorts them), takes the largest ([`metrics`]), and normalises it with stabilisation and
//! rate limits ([`behavior`], or [`legacy`] for an HPA without `spec.behavior`), writing the
//! HPA's conditions ([`conditions`]), all on a scalable clock ([`controller`]).
//!
//! Source: `k8s: pkg/controller/podautoscaler/horizontal.go` and `replica_calculator.go`, read at
//! commit `a769d5884497dc246960b38f3e5aae2cc30dd062` (the copy stored for the omerap12/kubernetes
//! fork of kubernetes/kubernetes: autoscaling/v2, per-direction `Tolerances`, the int64/int32
//! overflow caps, `recordInitialRecommendation`, and the beta `HPAScaleToZero` gate with the
//! `ScaledToZero` condition). Kubernetes' own test tables for these files are ported in
//! `tests/tests/hpa_replica_calculator.rs` and `tests/tests/hpa_horizontal.rs`.

pub mod behavior;
pub mod calculator;
pub mod client;
pub mod conditions;
pub mod controller;
pub mod legacy;
pub mod metrics;
pub mod pods;
pub mod quantity;

use std::time::Duration;

use behavior::{Behavior, ClockScale};
use calculator::{Pod, Tolerances};
use legacy::LegacyScaleUpLimit;

pub use conditions::{Condition, ConditionType};
pub use controller::{Controller, Decision};

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
    /// `behavior` with defaults filled in; `None` is an HPA without `spec.behavior`, which takes
    /// the legacy path ([`legacy`]: one scale-down window, max(2 × current, 4) per sync).
    pub behavior: Option<Behavior>,
    /// The tolerances `tolerancesForHpa` returns: the controller's
    /// `--horizontal-pod-autoscaler-tolerance`, or per direction from `behavior.*.tolerance`.
    pub tolerances: Tolerances,
    /// The controller's `--horizontal-pod-autoscaler-downscale-stabilization` (300 s, scaled): the
    /// scale-down window of the legacy path.
    pub downscale_stabilization: Duration,
    /// The legacy path's scale-up cap (`scaleUpLimitFactor`, `scaleUpLimitMinimum`).
    pub legacy_scale_up: LegacyScaleUpLimit,
    /// The `HPAScaleToZero` feature gate (beta and on by default; alpha, off, up to 1.36): scaling
    /// to and from zero replicas and the `ScaledToZero` condition (see [`controller`]).
    pub scale_to_zero: bool,
    /// The preferred custom.metrics.k8s.io version (`v1beta2` when served).
    pub custom_version: String,
}

impl HpaSpec {
    /// An HPA with `behavior: {}` (every default filled in, as in the example manifests) and a
    /// controller with its default flags (10 % tolerance, 300 s downscale window, scale-to-zero
    /// gate on) on `clock`. Set `behavior` to `None` for an HPA without `spec.behavior`.
    pub fn new(namespace: &str, pod_selector: &str, bounds: (i32, i32), clock: ClockScale) -> Self {
        Self {
            namespace: namespace.into(),
            pod_selector: pod_selector.into(),
            min_replicas: bounds.0,
            max_replicas: bounds.1,
            metrics: Vec::new(),
            behavior: Some(Behavior::kubernetes_default(clock)),
            tolerances: Tolerances::default(),
            downscale_stabilization: clock.secs(300.0),
            legacy_scale_up: LegacyScaleUpLimit::default(),
            scale_to_zero: true,
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

#[cfg(test)]
mod tests;
