//! One HPA's controller: `reconcileAutoscaler` from the scale and the readings on, as in
//! `k8s: pkg/controller/podautoscaler/horizontal.go` (`reconcileAutoscaler`,
//! `shouldComputeMetricsForZeroReplicas`, `normalizeDesiredReplicas`,
//! `normalizeDesiredReplicasWithBehaviors`). It keeps what the Go controller keeps between
//! syncs: the recommendations and scale events ([`BehaviorState`]) and the HPA's
//! `status.conditions`.
//!
//! # Zero replicas
//!
//! With `scale.spec.replicas == 0` the controller computes metrics only if the HPA's own
//! `ScaledToZero=True` condition is there (and, for `minReplicas: 0`, an Object or External metric
//! exists): a target someone scaled to zero by hand stays paused (`ScalingActive=False`,
//! `ScalingDisabled`). The sync that takes the target from N > 0 to 0 with `minReplicas: 0` and an
//! Object/External metric writes `ScaledToZero=True`; every other rescale writes
//! `ScaledToZero=False` (`NotScaledToZero`). From zero, a `Value` target proposes
//! `ceil(value / target)` with no tolerance and no pod count (see
//! [`super::calculator::usage_ratio_replica_count`]); the proposal then goes through the normal
//! stabilisation and limits, and is raised to `minReplicas` if that was raised meanwhile. All of
//! this needs `HpaSpec::scale_to_zero` (the `HPAScaleToZero` feature gate); without it a target
//! at zero never scales. A loop that starts at zero seeds `Controller::conditions` with
//! `ScaledToZero=True` to model an HPA that scaled it there.

use std::time::Instant;

use super::behavior::{Behavior, BehaviorState};
use super::client::{self, FetchError, RawGet, Reading};
use super::conditions::{
    Condition, ConditionType, find_condition, remove_condition, set_condition,
};
use super::metrics::{self, Proposal};
use super::{HpaSpec, MetricSource, ScaleState, legacy};

/// The outcome of one sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count to set (equal to the current count when holding).
    pub desired: i32,
    /// Per metric: the proposal and the usage the HPA would report, or the error (empty when no
    /// metric was computed: bounds corrected first, or scaling disabled at zero).
    pub proposals: Vec<Proposal>,
    /// `status.conditions` after the sync.
    pub conditions: Vec<Condition>,
}

impl Decision {
    /// The condition of `kind`, if set.
    pub fn condition(&self, kind: ConditionType) -> Option<&Condition> {
        find_condition(&self.conditions, kind)
    }
}

/// One HPA's controller: its spec and its memory of past recommendations, scale events and
/// conditions.
#[derive(Debug)]
pub struct Controller {
    /// The HPA object.
    pub spec: HpaSpec,
    /// Recommendations and scale events (seed them to model a controller with history).
    pub state: BehaviorState,
    /// `status.conditions` as the last sync left them (seed them to model an existing HPA).
    pub conditions: Vec<Condition>,
}

impl Controller {
    /// A controller meeting the HPA for the first time (or just restarted): no history, so its
    /// first sync records the current count as a recommendation.
    pub fn new(spec: HpaSpec) -> Self {
        Self {
            spec,
            state: BehaviorState::default(),
            conditions: Vec::new(),
        }
    }

    /// `reconcileAutoscaler` from the readings on: zero-replica handling, bounds, the largest
    /// valid proposal (holding when metrics are invalid), behavior or legacy normalisation, the
    /// scale event and the `ScaledToZero` condition.
    pub fn decide(
        &mut self,
        now: Instant,
        scale: &ScaleState,
        readings: &[Result<Reading, FetchError>],
    ) -> Decision {
        let spec = &self.spec;
        let conditions = &mut self.conditions;
        let state = &mut self.state;
        let set = |list: &mut Vec<Condition>, kind, status, reason| {
            set_condition(list, Condition::new(kind, status, reason))
        };
        set(
            conditions,
            ConditionType::AbleToScale,
            true,
            "SucceededGetScale",
        );
        let current = scale.spec_replicas;
        state.record_initial(current, now);
        let (min, max) = (spec.min_replicas, spec.max_replicas);
        let object_or_external = spec.metrics.iter().any(|m| m.source != MetricSource::Pods);
        let scaled_to_zero = spec.scale_to_zero
            && find_condition(conditions, ConditionType::ScaledToZero).is_some_and(|c| c.status);
        let mut proposals = Vec::new();
        let mut desired = 0;
        let mut compute = true;
        // shouldComputeMetricsForZeroReplicas: (min ≠ 0 and ScaledToZero) or canScaleFromZero
        // (ScaledToZero and an Object/External metric).
        let wake_from_zero = scaled_to_zero && (min != 0 || object_or_external);
        if current == 0 {
            if !wake_from_zero {
                set(
                    conditions,
                    ConditionType::ScalingActive,
                    false,
                    "ScalingDisabled",
                );
                if !spec.scale_to_zero {
                    remove_condition(conditions, ConditionType::ScaledToZero);
                }
                return decision(0, proposals, conditions);
            }
        } else if current > max {
            (desired, compute) = (max, false);
        } else if current < min {
            (desired, compute) = (min, false);
        }
        if compute {
            let (computed, outcome) = metrics::compute(spec, scale, readings);
            proposals = computed;
            let metric_desired = match outcome {
                Ok(replicas) => replicas,
                Err(hold) => {
                    set_condition(conditions, hold);
                    return decision(current, proposals, conditions);
                }
            };
            set(
                conditions,
                ConditionType::ScalingActive,
                true,
                "ValidMetricFound",
            );
            desired = desired.max(metric_desired);
            desired = match &spec.behavior {
                None => normalize_legacy(spec, state, conditions, current, desired, now),
                Some(behavior) => {
                    let bounds = (min, max);
                    normalize(behavior, state, conditions, current, desired, bounds, now)
                }
            };
            // "Ensure we scale to at least minReplicas when scaling from zero with increased
            // minReplicas".
            if current == 0 && min != 0 && scaled_to_zero && desired < min {
                desired = min;
            }
        }
        if desired == current {
            return decision(current, proposals, conditions);
        }
        set(
            conditions,
            ConditionType::AbleToScale,
            true,
            "SucceededRescale",
        );
        state.record_scale(spec.behavior.as_ref(), current, desired, now);
        // "Set ScaledToZero condition on every rescale so the condition is never stale."
        if !spec.scale_to_zero {
            remove_condition(conditions, ConditionType::ScaledToZero);
        } else if current > 0 && desired == 0 && min == 0 && object_or_external {
            set(
                conditions,
                ConditionType::ScaledToZero,
                true,
                "ScaledToZero",
            );
        } else {
            set(
                conditions,
                ConditionType::ScaledToZero,
                false,
                "NotScaledToZero",
            );
        }
        decision(desired, proposals, conditions)
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

fn decision(desired: i32, proposals: Vec<Proposal>, conditions: &[Condition]) -> Decision {
    Decision {
        desired,
        proposals,
        conditions: conditions.to_vec(),
    }
}

/// `normalizeDesiredReplicasWithBehaviors`: stabilise (`AbleToScale` says whether the windows
/// changed the proposal), then the rate limits and bounds (`ScalingLimited` says which clamped).
fn normalize(
    behavior: &Behavior,
    state: &mut BehaviorState,
    conditions: &mut Vec<Condition>,
    current: i32,
    desired: i32,
    bounds: (i32, i32),
    now: Instant,
) -> i32 {
    let stabilized = state.stabilize(behavior, current, desired, now);
    let able = if stabilized == desired {
        "ReadyForNewScale"
    } else if desired >= current {
        "ScaleUpStabilized"
    } else {
        "ScaleDownStabilized"
    };
    let limited = state.limit_rate(behavior, current, stabilized, bounds, now);
    note_normalized(conditions, able, stabilized, limited)
}

/// `normalizeDesiredReplicas` (no `spec.behavior`): the controller-wide scale-down window, then
/// the flat scale-up cap and the bounds.
fn normalize_legacy(
    spec: &HpaSpec,
    state: &mut BehaviorState,
    conditions: &mut Vec<Condition>,
    current: i32,
    desired: i32,
    now: Instant,
) -> i32 {
    let stabilized = state.stabilize_legacy(spec.downscale_stabilization, desired, now);
    let able = if stabilized == desired {
        "ReadyForNewScale"
    } else {
        "ScaleDownStabilized"
    };
    let bounds = (spec.min_replicas, spec.max_replicas);
    let limited = legacy::convert_with_rules(current, stabilized, bounds, spec.legacy_scale_up);
    note_normalized(conditions, able, stabilized, limited)
}

/// The conditions both normalisations write: `AbleToScale` with `able` (did a window change the
/// proposal?) and `ScalingLimited` with the limit's reason, `True` when it changed the stabilised
/// count. Returns the count.
fn note_normalized(
    conditions: &mut Vec<Condition>,
    able: &'static str,
    stabilized: i32,
    (limited, reason): (i32, &'static str),
) -> i32 {
    set_condition(
        conditions,
        Condition::new(ConditionType::AbleToScale, true, able),
    );
    let clamped = Condition::new(ConditionType::ScalingLimited, limited != stabilized, reason);
    set_condition(conditions, clamped);
    limited
}
