//! Scaling behavior: stabilisation windows and rate limits on top of the raw proposal, as in
//! `k8s: pkg/controller/podautoscaler/horizontal.go` (`normalizeDesiredReplicasWithBehaviors`,
//! `stabilizeRecommendationWithBehaviors`, `convertDesiredReplicasWithBehaviorRate`,
//! `calculateScaleUpLimitWithScalingRules`, `calculateScaleDownLimitWithBehaviors`,
//! `getReplicasChangePerPeriod`), with the defaults of `pkg/apis/autoscaling/v2/defaults.go`.
//! Every duration goes through a [`ClockScale`] so a test can run the controller faster than life.

use std::time::{Duration, Instant};

/// Divides every controller duration (sync period, windows, policy periods) by `speedup`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockScale {
    /// 1.0 is real time; 15.0 turns the 15 s sync period into 1 s.
    pub speedup: f64,
}

impl ClockScale {
    /// Real time.
    pub const REAL: Self = Self { speedup: 1.0 };

    /// `seconds` of controller time on this clock.
    pub fn secs(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64(seconds / self.speedup)
    }
}

/// `HPAScalingPolicyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Change by at most `value` pods per period.
    Pods,
    /// Change by at most `value` percent per period.
    Percent,
}

/// `HPAScalingPolicy`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Pods or Percent.
    pub kind: PolicyKind,
    /// The amount of change allowed.
    pub value: i32,
    /// The window the change is counted over (`periodSeconds`, already scaled).
    pub period: Duration,
}

/// `ScalingPolicySelect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the biggest change (the default).
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// `HPAScalingRules` for one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingRules {
    /// `stabilizationWindowSeconds`, already scaled.
    pub stabilization_window: Duration,
    /// `selectPolicy`.
    pub select: Select,
    /// `policies`.
    pub policies: Vec<Policy>,
}

/// `HorizontalPodAutoscalerBehavior`.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// Rules when the proposal is above the current count.
    pub scale_up: ScalingRules,
    /// Rules when it is below.
    pub scale_down: ScalingRules,
}

impl Behavior {
    /// The autoscaling/v2 defaults (`defaults.go`: `defaultHPAScaleUpRules`,
    /// `defaultHPAScaleDownRules`; the scale-down window is the controller's
    /// `--horizontal-pod-autoscaler-downscale-stabilization`, 5 min, filled in by
    /// `maybeInitScaleDownStabilizationWindow`): up with no stabilisation, by max(4 pods, 100 %)
    /// per 15 s; down after a 300 s window, by 100 % per 15 s.
    pub fn kubernetes_default(clock: ClockScale) -> Self {
        Self {
            scale_up: ScalingRules {
                stabilization_window: Duration::ZERO,
                select: Select::Max,
                policies: vec![
                    Policy {
                        kind: PolicyKind::Pods,
                        value: 4,
                        period: clock.secs(15.0),
                    },
                    Policy {
                        kind: PolicyKind::Percent,
                        value: 100,
                        period: clock.secs(15.0),
                    },
                ],
            },
            scale_down: ScalingRules {
                stabilization_window: clock.secs(300.0),
                select: Select::Max,
                policies: vec![Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: clock.secs(15.0),
                }],
            },
        }
    }
}

/// A past scale change (`timestampedScaleEvent`).
#[derive(Debug, Clone, Copy)]
struct ScaleEvent {
    change: i32,
    at: Instant,
}

/// The controller's memory for one HPA: past recommendations and scale events.
#[derive(Debug, Default)]
pub struct BehaviorState {
    recommendations: Vec<(i32, Instant)>,
    scale_up_events: Vec<ScaleEvent>,
    scale_down_events: Vec<ScaleEvent>,
}

/// `getReplicasChangePerPeriod`: the replicas changed by events newer than `now − period`.
fn change_in_period(period: Duration, events: &[ScaleEvent], now: Instant) -> i32 {
    let cutoff = now.checked_sub(period);
    events
        .iter()
        .filter(|e| cutoff.is_none_or(|c| e.at > c))
        .map(|e| e.change)
        .sum()
}

/// `calculateScaleUpLimitWithScalingRules`: the most replicas the up-policies allow now.
fn scale_up_limit(current: i32, state: &BehaviorState, rules: &ScalingRules, now: Instant) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
        Select::Disabled => return current,
        Select::Min => (i32::MAX, std::cmp::min),
        Select::Max => (i32::MIN, std::cmp::max),
    };
    for policy in &rules.policies {
        let added = change_in_period(policy.period, &state.scale_up_events, now);
        let deleted = change_in_period(policy.period, &state.scale_down_events, now);
        let period_start = current - added + deleted;
        let proposed = match policy.kind {
            PolicyKind::Pods => period_start + policy.value,
            // Rounded up so a small count can always grow.
            PolicyKind::Percent => {
                (f64::from(period_start) * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`: the fewest replicas the down-policies allow now.
fn scale_down_limit(
    current: i32,
    state: &BehaviorState,
    rules: &ScalingRules,
    now: Instant,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
        Select::Disabled => return current,
        Select::Min => (i32::MIN, std::cmp::max),
        Select::Max => (i32::MAX, std::cmp::min),
    };
    for policy in &rules.policies {
        let added = change_in_period(policy.period, &state.scale_up_events, now);
        let deleted = change_in_period(policy.period, &state.scale_down_events, now);
        let period_start = current - added + deleted;
        let proposed = match policy.kind {
            PolicyKind::Pods => period_start - policy.value,
            PolicyKind::Percent => {
                (f64::from(period_start) * (1.0 - f64::from(policy.value) / 100.0)) as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

impl BehaviorState {
    /// `stabilizeRecommendationWithBehaviors`: the result is the current count pulled up to the
    /// minimum of the recommendations inside the up-window and down to the maximum of those inside
    /// the down-window; the new raw recommendation is recorded (replacing one older than both).
    pub fn stabilize(
        &mut self,
        behavior: &Behavior,
        current: i32,
        desired: i32,
        now: Instant,
    ) -> i32 {
        let up_cutoff = now.checked_sub(behavior.scale_up.stabilization_window);
        let down_cutoff = now.checked_sub(behavior.scale_down.stabilization_window);
        let after = |at: Instant, cutoff: Option<Instant>| cutoff.is_none_or(|c| at > c);
        let (mut up, mut down) = (desired, desired);
        let mut old_index = None;
        for (i, &(rec, at)) in self.recommendations.iter().enumerate() {
            if after(at, up_cutoff) {
                up = up.min(rec);
            }
            if after(at, down_cutoff) {
                down = down.max(rec);
            }
            if up_cutoff.is_some_and(|c| at < c) && down_cutoff.is_some_and(|c| at < c) {
                old_index = Some(i);
            }
        }
        let recommendation = current.max(up).min(down);
        match old_index {
            Some(i) => self.recommendations[i] = (desired, now),
            None => self.recommendations.push((desired, now)),
        }
        recommendation
    }

    /// `convertDesiredReplicasWithBehaviorRate`: caps a rise at min(max replicas, up-limit) and a
    /// fall at max(min replicas, down-limit).
    pub fn limit_rate(
        &self,
        behavior: &Behavior,
        current: i32,
        desired: i32,
        (min_replicas, max_replicas): (i32, i32),
        now: Instant,
    ) -> i32 {
        if desired > current {
            let limit = scale_up_limit(current, self, &behavior.scale_up, now).max(current);
            desired.min(max_replicas.min(limit))
        } else if desired < current {
            let limit = scale_down_limit(current, self, &behavior.scale_down, now).min(current);
            desired.max(min_replicas.max(limit))
        } else {
            desired
        }
    }

    /// `storeScaleEvent`: remembers a change for the rate limits (events older than the longest
    /// policy period are marked outdated in Go and reused; here they are dropped).
    pub fn record_scale(&mut self, behavior: &Behavior, from: i32, to: i32, now: Instant) {
        let longest = |rules: &ScalingRules| {
            rules
                .policies
                .iter()
                .map(|p| p.period)
                .max()
                .unwrap_or_default()
        };
        let keep = |events: &mut Vec<ScaleEvent>, period: Duration| {
            events.retain(|e| now.checked_sub(period).is_none_or(|c| e.at > c))
        };
        if to > from {
            keep(&mut self.scale_up_events, longest(&behavior.scale_up));
            self.scale_up_events.push(ScaleEvent {
                change: to - from,
                at: now,
            });
        } else if to < from {
            keep(&mut self.scale_down_events, longest(&behavior.scale_down));
            self.scale_down_events.push(ScaleEvent {
                change: from - to,
                at: now,
            });
        }
    }

    /// `normalizeDesiredReplicasWithBehaviors`: stabilise, then rate-limit and clamp to min/max.
    pub fn normalize(
        &mut self,
        behavior: &Behavior,
        current: i32,
        desired: i32,
        bounds: (i32, i32),
        now: Instant,
    ) -> i32 {
        let stabilized = self.stabilize(behavior, current, desired, now);
        self.limit_rate(behavior, current, stabilized, bounds, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> Behavior {
        Behavior::kubernetes_default(ClockScale::REAL)
    }

    #[test]
    fn clock_scale_divides_durations() {
        let b = Behavior::kubernetes_default(ClockScale { speedup: 15.0 });
        assert_eq!(b.scale_down.stabilization_window, Duration::from_secs(20));
        assert_eq!(b.scale_up.policies[0].period, Duration::from_secs(1));
    }

    #[test]
    fn scale_up_is_immediate_but_limited_to_max_of_4_pods_or_double() {
        let mut s = BehaviorState::default();
        let now = Instant::now();
        // From 1: max(1 + 4, 2 × 1) = 5.
        assert_eq!(s.normalize(&default(), 1, 20, (1, 50), now), 5);
        // From 10: max(14, 20) = 20.
        let mut s = BehaviorState::default();
        assert_eq!(s.normalize(&default(), 10, 40, (1, 50), now), 20);
    }

    #[test]
    fn scale_up_limit_counts_changes_within_the_period() {
        let b = default();
        let mut s = BehaviorState::default();
        let t0 = Instant::now();
        let first = s.normalize(&b, 1, 20, (1, 50), t0);
        assert_eq!(first, 5);
        s.record_scale(&b, 1, first, t0);
        // 5 s later, same 15 s period: period start is 1, so the cap is still 5.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(s.normalize(&b, 5, 20, (1, 50), t1), 5);
        // After the period the cap is max(5 + 4, 10) = 10.
        let t2 = t0 + Duration::from_secs(16);
        assert_eq!(s.normalize(&b, 5, 20, (1, 50), t2), 10);
    }

    #[test]
    fn max_replicas_caps_scale_up() {
        let mut s = BehaviorState::default();
        assert_eq!(s.normalize(&default(), 4, 40, (1, 6), Instant::now()), 6);
    }

    #[test]
    fn scale_down_waits_for_the_stabilisation_window() {
        let b = default();
        let mut s = BehaviorState::default();
        let t0 = Instant::now();
        // A high recommendation at t0 holds the count for 300 s.
        assert_eq!(s.normalize(&b, 8, 8, (1, 50), t0), 8);
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(s.normalize(&b, 8, 2, (1, 50), t1), 8);
        // At 301 s the t0 recommendation has left the window; t1's (2) is the max.
        let t2 = t0 + Duration::from_secs(301);
        assert_eq!(s.normalize(&b, 8, 2, (1, 50), t2), 2);
    }

    #[test]
    fn min_replicas_floors_scale_down() {
        let b = default();
        let mut s = BehaviorState::default();
        let t0 = Instant::now();
        assert_eq!(s.normalize(&b, 4, 0, (2, 50), t0), 2);
    }

    #[test]
    fn disabled_direction_does_not_move() {
        let mut b = default();
        b.scale_down.select = Select::Disabled;
        b.scale_down.stabilization_window = Duration::ZERO;
        let mut s = BehaviorState::default();
        assert_eq!(s.normalize(&b, 5, 1, (1, 50), Instant::now()), 5);
    }

    #[test]
    fn pods_policy_limits_scale_down_per_period() {
        let mut b = default();
        b.scale_down.stabilization_window = Duration::ZERO;
        b.scale_down.policies = vec![Policy {
            kind: PolicyKind::Pods,
            value: 2,
            period: Duration::from_secs(60),
        }];
        let mut s = BehaviorState::default();
        let t0 = Instant::now();
        assert_eq!(s.normalize(&b, 10, 1, (1, 50), t0), 8);
        s.record_scale(&b, 10, 8, t0);
        // Same period: period start is 10, so still no lower than 8.
        assert_eq!(
            s.normalize(&b, 8, 1, (1, 50), t0 + Duration::from_secs(30)),
            8
        );
    }
}
