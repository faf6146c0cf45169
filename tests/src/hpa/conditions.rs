//! `status.conditions` of an HPA as the controller writes them: one entry per type, replaced in
//! place when set again (so the list keeps the order types first appeared in) and kept across
//! syncs, which is what lets `ScaledToZero=True` written by one sync allow the next one to scale
//! from zero. Source: `k8s: pkg/controller/podautoscaler/horizontal.go` (`setCondition`,
//! `setConditionInList`, `removeCondition`, `getScaledToZeroConditionStatus`). Messages and
//! transition times are left out: Kubernetes' tests clear them before comparing too.

/// `HorizontalPodAutoscalerConditionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// Whether the controller could read and update the scale (`SucceededGetScale`,
    /// `SucceededRescale`, `ReadyForNewScale`, `ScaleUpStabilized`, `ScaleDownStabilized`).
    AbleToScale,
    /// Whether a replica count could be computed (`ValidMetricFound`, `ScalingDisabled`,
    /// `FailedGet{Pods,Object,External}Metric`).
    ScalingActive,
    /// Whether the count was clamped (`DesiredWithinRange`, `TooFewReplicas`, `TooManyReplicas`,
    /// `ScaleUpLimit`, `ScaleDownLimit`).
    ScalingLimited,
    /// Whether the controller itself scaled the target to zero (`ScaledToZero`,
    /// `NotScaledToZero`); only with the `HPAScaleToZero` feature gate.
    ScaledToZero,
}

/// One entry of `status.conditions` (without message and transition time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    /// `type`.
    pub kind: ConditionType,
    /// `status`: `True` or `False`.
    pub status: bool,
    /// `reason`.
    pub reason: &'static str,
}

impl Condition {
    /// A condition of `kind` with `status` and `reason`.
    pub fn new(kind: ConditionType, status: bool, reason: &'static str) -> Self {
        Self {
            kind,
            status,
            reason,
        }
    }
}

/// `setConditionInList`: replaces the entry of the same type, or appends one.
pub fn set_condition(list: &mut Vec<Condition>, condition: Condition) {
    match list.iter_mut().find(|c| c.kind == condition.kind) {
        Some(existing) => *existing = condition,
        None => list.push(condition),
    }
}

/// `removeCondition`.
pub fn remove_condition(list: &mut Vec<Condition>, kind: ConditionType) {
    list.retain(|c| c.kind != kind);
}

/// The entry of `kind`, if any.
pub fn find_condition(list: &[Condition], kind: ConditionType) -> Option<&Condition> {
    list.iter().find(|c| c.kind == kind)
}
