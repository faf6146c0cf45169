//! Controller-level rules over several syncs of one controller (the ported Kubernetes tables in
//! `tests/tests/hpa_horizontal.rs` check single syncs): bounds, largest proposal, invalid metrics,
//! behavior on a fast clock, the round trip to zero and back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::calculator::PodPhase;
use super::client::{FetchError, Reading};
use super::*;

fn pods(n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| Pod {
            name: format!("w-{i}"),
            phase: PodPhase::Running,
        })
        .collect()
}

fn scale(n: i32) -> ScaleState {
    ScaleState {
        spec_replicas: n,
        status_replicas: n,
        pods: pods(n as usize),
    }
}

fn object(target: Target) -> MetricSpec {
    MetricSpec {
        metric: "seconds".into(),
        selector: None,
        source: MetricSource::Object {
            resource: "deployments.apps".into(),
            name: "binder".into(),
        },
        target,
    }
}

fn obj_reading(value: i64) -> Result<Reading, FetchError> {
    Ok(Reading::Object {
        value,
        timestamp: OffsetDateTime::UNIX_EPOCH,
    })
}

fn controller(metrics: Vec<MetricSpec>, bounds: (i32, i32), speedup: f64) -> Controller {
    let mut spec = HpaSpec::new("jobs", "app=binder", bounds, ClockScale { speedup });
    spec.metrics = metrics;
    Controller::new(spec)
}

#[test]
fn object_value_scales_up_by_ratio() {
    let mut c = controller(vec![object(Target::Value(30_000))], (1, 10), 1.0);
    let d = c.decide(Instant::now(), &scale(2), &[obj_reading(90_000)]);
    assert_eq!(d.desired, 6);
    assert_eq!(d.proposals, vec![Ok((6, 90_000))]);
}

#[test]
fn every_metric_invalid_holds() {
    let mut c = controller(vec![object(Target::Value(30_000))], (1, 10), 1.0);
    let d = c.decide(
        Instant::now(),
        &scale(3),
        &[Err(FetchError::Server("404".into()))],
    );
    assert_eq!(d.desired, 3);
    let active = d.condition(ConditionType::ScalingActive);
    assert_eq!(
        active,
        Some(&Condition::new(
            ConditionType::ScalingActive,
            false,
            "FailedGetObjectMetric"
        ))
    );
}

#[test]
fn an_invalid_metric_blocks_scale_down_but_not_scale_up() {
    let metrics = vec![object(Target::Value(30_000)), object(Target::Value(30_000))];
    let mut c = controller(metrics.clone(), (1, 10), 1.0);
    if let Some(b) = c.spec.behavior.as_mut() {
        b.scale_down.stabilization_window = Duration::ZERO;
    }
    let broken = Err(FetchError::Server("gone".into()));
    let down = c.decide(
        Instant::now(),
        &scale(4),
        &[obj_reading(1_000), broken.clone()],
    );
    assert_eq!(down.desired, 4);
    let up = c.decide(Instant::now(), &scale(4), &[obj_reading(60_000), broken]);
    assert_eq!(up.desired, 8);
}

#[test]
fn the_largest_proposal_wins() {
    let ext = MetricSpec {
        metric: "seconds".into(),
        selector: Some("queue=a".into()),
        source: MetricSource::External,
        target: Target::AverageValue(10_000),
    };
    let mut c = controller(vec![object(Target::Value(30_000)), ext], (1, 20), 1.0);
    let external = Ok(Reading::External {
        values: vec![40_000, 30_000],
        timestamps: vec![],
    });
    // Object: 45/30 × 4 = 6; External: ceil(70/10) = 7 (under the up-limit of 8).
    let d = c.decide(Instant::now(), &scale(4), &[obj_reading(45_000), external]);
    assert_eq!(d.desired, 7);
}

#[test]
fn current_above_max_goes_to_max_without_metrics() {
    let mut c = controller(vec![object(Target::Value(30_000))], (1, 3), 1.0);
    let d = c.decide(Instant::now(), &scale(5), &[]);
    assert_eq!(d.desired, 3);
    assert!(d.proposals.is_empty());
}

#[test]
fn zero_replicas_with_min_above_zero_disables_scaling() {
    let mut c = controller(vec![object(Target::Value(30_000))], (1, 3), 1.0);
    let d = c.decide(Instant::now(), &scale(0), &[obj_reading(90_000)]);
    assert_eq!(d.desired, 0);
    assert_eq!(
        d.condition(ConditionType::ScalingActive).map(|c| c.reason),
        Some("ScalingDisabled")
    );
}

#[test]
fn pods_metric_averages_per_pod_values() {
    let spec = MetricSpec {
        metric: "seconds".into(),
        selector: None,
        source: MetricSource::Pods,
        target: Target::AverageValue(30_000),
    };
    let mut c = controller(vec![spec], (1, 10), 1.0);
    let values: BTreeMap<String, i64> = [("w-0".to_string(), 90_000), ("w-1".into(), 30_000)]
        .into_iter()
        .collect();
    let r = Ok(Reading::Pods {
        values,
        timestamps: vec![],
    });
    // mean 60 / 30 × 2 = 4.
    assert_eq!(c.decide(Instant::now(), &scale(2), &[r]).desired, 4);
}

#[test]
fn compressed_clock_burst_then_quiet_follows_kubernetes_defaults() {
    // 15× faster: 1 s policy periods, 20 s scale-down window.
    let mut c = controller(vec![object(Target::Value(30_000))], (1, 10), 15.0);
    let t0 = Instant::now();
    let mut n = 1;
    // Burst: 300 s of wait → ratio 10; first step is capped at max(1 + 4, 2) = 5.
    n = c.decide(t0, &scale(n), &[obj_reading(300_000)]).desired;
    assert_eq!(n, 5);
    // Half a period later the cap still counts the earlier +4.
    let t = t0 + Duration::from_millis(500);
    assert_eq!(c.decide(t, &scale(n), &[obj_reading(300_000)]).desired, 5);
    // After a period: 10 × 5 = 50, capped by max replicas.
    let t = t0 + Duration::from_millis(1_100);
    n = c.decide(t, &scale(n), &[obj_reading(300_000)]).desired;
    assert_eq!(n, 10);
    // Quiet: the value drops to 1 s, but the window keeps 10 for 20 s.
    let t = t0 + Duration::from_secs(10);
    assert_eq!(c.decide(t, &scale(n), &[obj_reading(1_000)]).desired, 10);
    // Past the window of every high recommendation: ceil(1/30 × 10) = 1.
    let t = t0 + Duration::from_secs(32);
    assert_eq!(c.decide(t, &scale(n), &[obj_reading(1_000)]).desired, 1);
}

#[test]
fn to_zero_and_back_with_the_scaled_to_zero_condition() {
    // 15× faster: the 300 s scale-down window is 20 s.
    let mut c = controller(vec![object(Target::Value(30_000))], (0, 10), 15.0);
    let t0 = Instant::now();
    // A zero value from 2 replicas: held for the window (the initial recommendation is 2).
    assert_eq!(c.decide(t0, &scale(2), &[obj_reading(0)]).desired, 2);
    let t = t0 + Duration::from_secs(21);
    let d = c.decide(t, &scale(2), &[obj_reading(0)]);
    assert_eq!(d.desired, 0);
    let stz = |d: &Decision| d.condition(ConditionType::ScaledToZero).copied();
    assert_eq!(
        stz(&d),
        Some(Condition::new(
            ConditionType::ScaledToZero,
            true,
            "ScaledToZero"
        ))
    );
    // At zero, a zero value keeps it there: ceil(0 / 30) = 0, no rescale, condition kept.
    let t = t + Duration::from_secs(1);
    let d = c.decide(t, &scale(0), &[obj_reading(0)]);
    assert_eq!(d.desired, 0);
    assert_eq!(stz(&d).map(|c| c.status), Some(true));
    // Any value wakes it: ceil(45 / 30) = 2 with no pods to count and no tolerance.
    let t = t + Duration::from_secs(1);
    let d = c.decide(t, &scale(0), &[obj_reading(45_000)]);
    assert_eq!(d.desired, 2);
    assert_eq!(
        stz(&d).map(|c| (c.status, c.reason)),
        Some((false, "NotScaledToZero"))
    );
    // Scaled to zero by hand (condition False now): the HPA stays paused.
    let t = t + Duration::from_secs(1);
    let d = c.decide(t, &scale(0), &[obj_reading(45_000)]);
    assert_eq!(d.desired, 0);
    assert_eq!(
        d.condition(ConditionType::ScalingActive).map(|c| c.reason),
        Some("ScalingDisabled")
    );
}

#[test]
fn first_sync_does_not_scale_below_the_starting_size() {
    // Issue 16, disagreement 2: a fresh controller at 5 with a proposal of 3 holds 5.
    let mut c = controller(vec![object(Target::Value(50_000))], (2, 6), 1.0);
    let d = c.decide(Instant::now(), &scale(5), &[obj_reading(28_000)]);
    assert_eq!(d.proposals, vec![Ok((3, 28_000))]);
    assert_eq!(d.desired, 5);
}

#[test]
fn unready_and_terminating_pods_in_the_ready_count() {
    let mut c = controller(vec![object(Target::Value(30_000))], (1, 10), 1.0);
    let mut s = scale(4);
    s.pods[1].phase = PodPhase::Unready;
    s.pods[2].phase = PodPhase::Terminating;
    s.pods[3].phase = PodPhase::Pending;
    // 60/30 = 2 × 2 ready (w-0 Running, w-2 Terminating but Ready) = 4: hold.
    let d = c.decide(Instant::now(), &s, &[obj_reading(60_000)]);
    assert_eq!(d.proposals, vec![Ok((4, 60_000))]);
}
