//! Scaling behavior (`spec.behavior` set): stabilisation windows and rate limits on top of the raw
//! proposal, as in `k8s: pkg/controller/podautoscaler/horizontal.go`
//! (`normalizeDesiredReplicasWithBehaviors`, `stabilizeRecommendationWithBehaviors`,
//! `convertDesiredReplicasWithBehaviorRate`, `calculateScaleUpLimitWithScalingRules`,
//! `calculateScaleDownLimitWithBehaviors`, `getReplicasChangePerPeriod`, `storeScaleEvent`,
//! `markScaleEventsOutdated`, `recordInitialRecommendation`), with the defaults of
//! `pkg/apis/autoscaling/v2/defaults.go`. An HPA without `spec.behavior` takes the legacy path in
//! [`super::legacy`] instead. Every duration goes through a [`ClockScale`] so a test can run the
//! controller faster than life.

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

/// `HPAScalingRules` for one direction, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingRules {
    /// `stabilizationWindowSeconds`, already scaled.
    pub stabilization_window: Duration,
    /// `selectPolicy`.
    pub select: Select,
    /// `policies`.
    pub policies: Vec<Policy>,
}

impl ScalingRules {
    /// `GenerateHPAScaleUpRules(nil)`: no stabilisation, max(4 pods, 100 %) per 15 s.
    pub fn default_scale_up(clock: ClockScale) -> Self {
        Self {
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
        }
    }

    /// `GenerateHPAScaleDownRules(nil)`: 100 % per 15 s, after a 300 s window (the controller's
    /// `--horizontal-pod-autoscaler-downscale-stabilization`, filled in by
    /// `maybeInitScaleDownStabilizationWindow`).
    pub fn default_scale_down(clock: ClockScale) -> Self {
        Self {
            stabilization_window: clock.secs(300.0),
            select: Select::Max,
            policies: vec![Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period: clock.secs(15.0),
            }],
        }
    }

    /// `getLongestPolicyPeriod`.
    fn longest_period(&self) -> Duration {
        self.policies
            .iter()
            .map(|p| p.period)
            .max()
            .unwrap_or_default()
    }
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
    /// `behavior: {}` after defaulting: [`ScalingRules::default_scale_up`] and
    /// [`ScalingRules::default_scale_down`].
    pub fn kubernetes_default(clock: ClockScale) -> Self {
        Self {
            scale_up: ScalingRules::default_scale_up(clock),
            scale_down: ScalingRules::default_scale_down(clock),
        }
    }
}

/// A past raw proposal (`timestampedRecommendation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// The proposed replica count before stabilisation.
    pub replicas: i32,
    /// When it was recorded.
    pub at: Instant,
}

/// A past scale change (`timestampedScaleEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// Replicas added (scale-up list) or removed (scale-down list), never negative.
    pub change: i32,
    /// When the change was made.
    pub at: Instant,
    /// Older than the direction's longest policy period when an event was last stored: free for
    /// reuse, but still counted by a policy whose period reaches back to it.
    pub outdated: bool,
}

/// The controller's memory for one HPA: past recommendations and scale events.
#[derive(Debug, Default)]
pub struct BehaviorState {
    /// `recommendations[key]`; `None` until the first sync (Go's nil slice), which is what makes
    /// [`BehaviorState::record_initial`] record the starting size.
    pub recommendations: Option<Vec<Recommendation>>,
    /// `scaleUpEvents[key]`.
    pub scale_up_events: Vec<ScaleEvent>,
    /// `scaleDownEvents[key]`.
    pub scale_down_events: Vec<ScaleEvent>,
}

/// `getReplicasChangePerPeriod`: the replicas changed by events newer than `now − period`
/// (outdated or not).
pub fn change_in_period(period: Duration, events: &[ScaleEvent], now: Instant) -> i32 {
    let cutoff = now.checked_sub(period);
    events
        .iter()
        .filter(|e| cutoff.is_none_or(|c| e.at > c))
        .fold(0, |sum, e| sum.saturating_add(e.change))
}

/// The replica count at the start of `policy`'s period: the current count minus what was added
/// and plus what was removed inside it. (Sums saturate here and below where Go's int32 would
/// wrap: only absurd policy values get there, and they must not panic.)
fn period_start(current: i32, state: &BehaviorState, policy: &Policy, now: Instant) -> i32 {
    let added = change_in_period(policy.period, &state.scale_up_events, now);
    let deleted = change_in_period(policy.period, &state.scale_down_events, now);
    current.saturating_sub(added).saturating_add(deleted)
}

/// `calculateScaleUpLimitWithScalingRules`: the most replicas the up-policies allow now.
pub fn scale_up_limit(
    current: i32,
    state: &BehaviorState,
    rules: &ScalingRules,
    now: Instant,
) -> i32 {
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
        Select::Disabled => return current,
        Select::Min => (i32::MAX, std::cmp::min),
        Select::Max => (i32::MIN, std::cmp::max),
    };
    for policy in &rules.policies {
        let start = period_start(current, state, policy, now);
        let proposed = match policy.kind {
            PolicyKind::Pods => start.saturating_add(policy.value),
            // Rounded up so a small count can always grow.
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`: the fewest replicas the down-policies allow now.
pub fn scale_down_limit(
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
        let start = period_start(current, state, policy, now);
        let proposed = match policy.kind {
            PolicyKind::Pods => start.saturating_sub(policy.value),
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 - f64::from(policy.value) / 100.0)) as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// `markScaleEventsOutdated` then the store: marks every event older than `longest` outdated
/// (the mark is never cleared), puts the new event in place of the last outdated one, or
/// appends it when none is outdated. Events are never dropped, so a policy of the other
/// direction with a longer period still counts them.
fn store_event(events: &mut Vec<ScaleEvent>, longest: Duration, change: i32, now: Instant) {
    let cutoff = now.checked_sub(longest);
    for event in events.iter_mut() {
        if cutoff.is_some_and(|c| event.at < c) {
            event.outdated = true;
        }
    }
    let new = ScaleEvent {
        change,
        at: now,
        outdated: false,
    };
    match events.iter().rposition(|e| e.outdated) {
        Some(i) => events[i] = new,
        None => events.push(new),
    }
}

/// Records a raw proposal in place of the recommendation at `old_index` (one that left every
/// window), or appends it: both stabilisations reuse one stale slot per sync.
pub(super) fn record_recommendation(
    recommendations: &mut Vec<Recommendation>,
    old_index: Option<usize>,
    replicas: i32,
    now: Instant,
) {
    let new = Recommendation { replicas, at: now };
    match old_index {
        Some(i) => recommendations[i] = new,
        None => recommendations.push(new),
    }
}

impl BehaviorState {
    /// `recordInitialRecommendation`: on an HPA's first sync (and after a controller restart),
    /// the current count becomes a recommendation, so the scale-down window never goes below the
    /// starting size ("nothing below the initial size for the window"). Does nothing once a
    /// history exists, including an empty one given on purpose.
    pub fn record_initial(&mut self, current: i32, now: Instant) {
        if self.recommendations.is_none() {
            self.recommendations = Some(vec![Recommendation {
                replicas: current,
                at: now,
            }]);
        }
    }

    /// `stabilizeRecommendationWithBehaviors`: the result is the current count pulled up to the
    /// minimum of the recommendations inside the up-window and down to the maximum of those inside
    /// the down-window; the new raw recommendation is recorded in place of the last one older than
    /// both windows, or appended.
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
        let before = |at: Instant, cutoff: Option<Instant>| cutoff.is_some_and(|c| at < c);
        let (mut up, mut down) = (desired, desired);
        let recommendations = self.recommendations.get_or_insert_with(Vec::new);
        let mut old_index = None;
        for (i, rec) in recommendations.iter().enumerate() {
            if after(rec.at, up_cutoff) {
                up = up.min(rec.replicas);
            }
            if after(rec.at, down_cutoff) {
                down = down.max(rec.replicas);
            }
            if before(rec.at, up_cutoff) && before(rec.at, down_cutoff) {
                old_index = Some(i);
            }
        }
        record_recommendation(recommendations, old_index, desired, now);
        current.max(up).min(down)
    }

    /// `convertDesiredReplicasWithBehaviorRate`: a rise is capped at min(max replicas, up-limit)
    /// and a fall at max(min replicas, down-limit); returns the count and the `ScalingLimited`
    /// reason (`DesiredWithinRange`, `ScaleUpLimit`, `TooManyReplicas`, `ScaleDownLimit`,
    /// `TooFewReplicas`).
    pub fn limit_rate(
        &self,
        behavior: &Behavior,
        current: i32,
        desired: i32,
        (min_replicas, max_replicas): (i32, i32),
        now: Instant,
    ) -> (i32, &'static str) {
        if desired > current {
            // Never below the current count, even after many recent scale-ups.
            let limit = scale_up_limit(current, self, &behavior.scale_up, now).max(current);
            let (allowed, reason) = if max_replicas > limit {
                (limit, "ScaleUpLimit")
            } else {
                (max_replicas, "TooManyReplicas")
            };
            if desired > allowed {
                return (allowed, reason);
            }
        } else if desired < current {
            let limit = scale_down_limit(current, self, &behavior.scale_down, now).min(current);
            let (allowed, reason) = if min_replicas < limit {
                (limit, "ScaleDownLimit")
            } else {
                (min_replicas, "TooFewReplicas")
            };
            if desired < allowed {
                return (allowed, reason);
            }
        }
        (desired, "DesiredWithinRange")
    }

    /// `storeScaleEvent`: remembers a change for the rate limits. Without `spec.behavior` nothing
    /// is stored ("we should not store any event as they will not be used").
    pub fn record_scale(&mut self, behavior: Option<&Behavior>, from: i32, to: i32, now: Instant) {
        let Some(behavior) = behavior else {
            return;
        };
        if to > from {
            let longest = behavior.scale_up.longest_period();
            store_event(&mut self.scale_up_events, longest, to - from, now);
        } else {
            let longest = behavior.scale_down.longest_period();
            store_event(&mut self.scale_down_events, longest, from - to, now);
        }
    }

    /// Stabilise, then rate-limit and clamp to min/max (`normalizeDesiredReplicasWithBehaviors`
    /// without the conditions; the controller sets those).
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
            .0
    }
}

#[cfg(test)]
mod tests;
