//! The path of an HPA without `spec.behavior` (`hpa.Spec.Behavior == nil`): one scale-down window
//! from the controller flag, no scale events, and a flat scale-up cap of
//! max(factor × current, minimum) per sync instead of per-period policies. Source:
//! `k8s: pkg/controller/podautoscaler/horizontal.go` (`normalizeDesiredReplicas`,
//! `stabilizeRecommendation`, `convertDesiredReplicasWithRules`, `calculateScaleUpLimit`,
//! `scaleUpLimitFactor = 2.0`, `scaleUpLimitMinimum = 4.0`).

use std::time::{Duration, Instant};

use super::behavior::{BehaviorState, record_recommendation};

/// `calculateScaleUpLimit`'s constants. Kubernetes' own tests set `scaleUpLimitFactor = 8`
/// (`horizontal_test.go` `init`), which is why this is a setting and not a constant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegacyScaleUpLimit {
    /// `scaleUpLimitFactor` (2.0).
    pub factor: f64,
    /// `scaleUpLimitMinimum` (4.0).
    pub minimum: f64,
}

impl Default for LegacyScaleUpLimit {
    fn default() -> Self {
        Self {
            factor: 2.0,
            minimum: 4.0,
        }
    }
}

impl LegacyScaleUpLimit {
    /// `calculateScaleUpLimit`: `int32(max(factor × current, minimum))`.
    pub fn limit(&self, current: i32) -> i32 {
        (self.factor * f64::from(current)).max(self.minimum) as i32
    }
}

/// `convertDesiredReplicasWithRules`: clamps to min replicas, and to the smaller of max replicas
/// and the scale-up cap; returns the count and the `ScalingLimited` reason (`DesiredWithinRange`,
/// `TooFewReplicas`, `ScaleUpLimit` or `TooManyReplicas`).
pub fn convert_with_rules(
    current: i32,
    desired: i32,
    (min_replicas, max_replicas): (i32, i32),
    limit: LegacyScaleUpLimit,
) -> (i32, &'static str) {
    let scale_up_limit = limit.limit(current);
    let (max_allowed, reason) = if max_replicas > scale_up_limit {
        (scale_up_limit, "ScaleUpLimit")
    } else {
        (max_replicas, "TooManyReplicas")
    };
    if desired < min_replicas {
        (min_replicas, "TooFewReplicas")
    } else if desired > max_allowed {
        (max_allowed, reason)
    } else {
        (desired, "DesiredWithinRange")
    }
}

impl BehaviorState {
    /// `stabilizeRecommendation`: the largest recommendation not older than `window` (the
    /// controller's `--horizontal-pod-autoscaler-downscale-stabilization`), the new one included;
    /// the new one replaces the last recommendation older than the window, or is appended.
    pub fn stabilize_legacy(&mut self, window: Duration, desired: i32, now: Instant) -> i32 {
        let cutoff = now.checked_sub(window);
        let recommendations = self.recommendations.get_or_insert_with(Vec::new);
        let mut max = desired;
        let mut old_index = None;
        for (i, rec) in recommendations.iter().enumerate() {
            if cutoff.is_some_and(|c| rec.at < c) {
                old_index = Some(i);
            } else {
                max = max.max(rec.replicas);
            }
        }
        record_recommendation(recommendations, old_index, desired, now);
        max
    }
}
