//! Behavior rules over several syncs on one state (the ported Kubernetes tables in
//! `tests/tests/hpa_horizontal.rs` check one call each).

use super::*;

fn default() -> Behavior {
    Behavior::kubernetes_default(ClockScale::REAL)
}

fn t0() -> Instant {
    // Far from the process start, so subtracting minutes never underflows.
    Instant::now() + Duration::from_secs(24 * 3600)
}

#[test]
fn clock_scale_divides_durations() {
    let b = Behavior::kubernetes_default(ClockScale { speedup: 15.0 });
    assert_eq!(b.scale_down.stabilization_window, Duration::from_secs(20));
    assert_eq!(b.scale_up.policies[0].period, Duration::from_secs(1));
}

#[test]
fn scale_up_limit_counts_changes_within_the_period() {
    let b = default();
    let mut s = BehaviorState::default();
    let t0 = t0();
    let first = s.normalize(&b, 1, 20, (1, 50), t0);
    assert_eq!(first, 5);
    s.record_scale(Some(&b), 1, first, t0);
    // 5 s later, same 15 s period: period start is 1, so the cap is still 5.
    let t1 = t0 + Duration::from_secs(5);
    assert_eq!(s.normalize(&b, 5, 20, (1, 50), t1), 5);
    // After the period the cap is max(5 + 4, 10) = 10.
    let t2 = t0 + Duration::from_secs(16);
    assert_eq!(s.normalize(&b, 5, 20, (1, 50), t2), 10);
}

#[test]
fn scale_down_waits_for_the_stabilisation_window() {
    let b = default();
    let mut s = BehaviorState::default();
    let t0 = t0();
    // A high recommendation at t0 holds the count for 300 s.
    assert_eq!(s.normalize(&b, 8, 8, (1, 50), t0), 8);
    let t1 = t0 + Duration::from_secs(100);
    assert_eq!(s.normalize(&b, 8, 2, (1, 50), t1), 8);
    // At 301 s the t0 recommendation has left the window; t1's (2) is the max.
    let t2 = t0 + Duration::from_secs(301);
    assert_eq!(s.normalize(&b, 8, 2, (1, 50), t2), 2);
}

#[test]
fn initial_recommendation_holds_the_starting_size_for_the_window() {
    let b = default();
    let mut s = BehaviorState::default();
    let t0 = t0();
    s.record_initial(5, t0);
    // A second call keeps the first record.
    s.record_initial(9, t0);
    assert_eq!(s.recommendations.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        s.normalize(&b, 5, 3, (1, 50), t0 + Duration::from_secs(10)),
        5
    );
    assert_eq!(
        s.normalize(&b, 5, 3, (1, 50), t0 + Duration::from_secs(301)),
        3
    );
}

#[test]
fn events_of_the_other_direction_survive_this_directions_period() {
    // Issue 16's example: scale-up 100 % per 300 s, default scale-down (100 % per 15 s).
    let clock = ClockScale::REAL;
    let b = Behavior {
        scale_up: ScalingRules {
            stabilization_window: Duration::ZERO,
            select: Select::Max,
            policies: vec![Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period: clock.secs(300.0),
            }],
        },
        scale_down: ScalingRules::default_scale_down(clock),
    };
    let mut s = BehaviorState::default();
    let t0 = t0();
    s.record_scale(Some(&b), 10, 9, t0);
    s.record_scale(Some(&b), 9, 8, t0 + Duration::from_secs(5));
    s.record_scale(Some(&b), 8, 7, t0 + Duration::from_secs(30));
    // Go keeps two of the three 1-pod removals: the period started at 7 + 2 = 9 → 18.
    let now = t0 + Duration::from_secs(40);
    assert_eq!(scale_up_limit(7, &s, &b.scale_up, now), 18);
    assert_eq!(s.scale_down_events.len(), 2);
}

#[test]
fn no_events_without_behavior() {
    let mut s = BehaviorState::default();
    s.record_scale(None, 1, 5, t0());
    assert!(s.scale_up_events.is_empty() && s.scale_down_events.is_empty());
}

#[test]
fn disabled_direction_does_not_move() {
    let mut b = default();
    b.scale_down.select = Select::Disabled;
    b.scale_down.stabilization_window = Duration::ZERO;
    let mut s = BehaviorState::default();
    assert_eq!(s.normalize(&b, 5, 1, (1, 50), t0()), 5);
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
    let t0 = t0();
    assert_eq!(s.normalize(&b, 10, 1, (1, 50), t0), 8);
    s.record_scale(Some(&b), 10, 8, t0);
    // Same period: period start is 10, so still no lower than 8.
    assert_eq!(
        s.normalize(&b, 8, 1, (1, 50), t0 + Duration::from_secs(30)),
        8
    );
}

#[test]
fn absurd_policy_values_saturate_instead_of_panicking() {
    let mut b = default();
    b.scale_up.policies[0].value = i32::MAX;
    b.scale_down.stabilization_window = Duration::ZERO;
    b.scale_down.policies = vec![Policy {
        kind: PolicyKind::Pods,
        value: i32::MAX,
        period: Duration::from_secs(60),
    }];
    let mut s = BehaviorState::default();
    let t0 = t0();
    s.record_scale(Some(&b), 0, i32::MAX, t0);
    s.record_scale(Some(&b), i32::MAX, 0, t0);
    assert_eq!(s.normalize(&b, 5, i32::MAX, (1, i32::MAX), t0), i32::MAX);
    assert_eq!(s.normalize(&b, 5, 1, (1, i32::MAX), t0), 1);
}
