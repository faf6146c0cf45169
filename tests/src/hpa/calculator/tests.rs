//! Calculator rules the ported Kubernetes tables (`tests/tests/hpa_replica_calculator.rs`) do not
//! pin: the tolerance band's edges, the zero-replica path, items for unknown pods, readiness,
//! and inputs that must not panic.

use super::*;

const TOL: Tolerances = Tolerances {
    scale_down: 0.1,
    scale_up: 0.1,
};

fn pods(phases: &[PodPhase]) -> Vec<Pod> {
    phases
        .iter()
        .enumerate()
        .map(|(i, &phase)| Pod {
            name: format!("p{i}"),
            phase,
        })
        .collect()
}

fn running(n: usize) -> Vec<Pod> {
    pods(&vec![PodPhase::Running; n])
}

fn values(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(n, v)| ((*n).into(), *v)).collect()
}

#[test]
fn tolerance_band_is_inclusive_and_rejects_nan() {
    assert!(TOL.is_within(1.0));
    assert!(TOL.is_within(1.1));
    assert!(TOL.is_within(0.9));
    assert!(!TOL.is_within(1.1001));
    assert!(!TOL.is_within(0.8999));
    assert!(!TOL.is_within(f64::NAN));
}

#[test]
fn from_zero_is_ceil_of_ratio_without_tolerance_or_pods() {
    // No pods at all: from zero the pod list is never read.
    assert_eq!(
        object_value_replicas(0, 45_000, 30_000, TOL, &[]),
        Ok((2, 45_000))
    );
    // Inside the tolerance the count still moves from zero.
    assert_eq!(
        object_value_replicas(0, 30_000, 30_000, TOL, &[]),
        Ok((1, 30_000))
    );
    // A zero value keeps it at zero.
    assert_eq!(object_value_replicas(0, 0, 30_000, TOL, &[]), Ok((0, 0)));
}

#[test]
fn value_target_counts_ready_pods_only_outside_the_tolerance() {
    // Inside the tolerance no pod list is needed (and none is given).
    assert_eq!(
        object_value_replicas(5, 32_000, 30_000, TOL, &[]),
        Ok((5, 32_000))
    );
    // Outside it, an empty list is the Go error.
    assert_eq!(
        object_value_replicas(5, 90_000, 30_000, TOL, &[]),
        Err(CalcError::NoPods)
    );
    // Unready, pending and terminal pods are not ready; a Ready pod being deleted is.
    let p = pods(&[
        PodPhase::Running,
        PodPhase::Unready,
        PodPhase::Pending,
        PodPhase::Terminating,
        PodPhase::TerminatingUnready,
        PodPhase::Failed,
        PodPhase::Succeeded,
    ]);
    // 90/30 = 3 × 2 ready = 6.
    assert_eq!(
        object_value_replicas(7, 90_000, 30_000, TOL, &p),
        Ok((6, 90_000))
    );
}

#[test]
fn pods_metric_counts_running_unready_pods_and_items_for_unknown_pods() {
    let p = pods(&[PodPhase::Running, PodPhase::Unready]);
    // Both Running pods count (readiness is a CPU-only check): mean 45/30 = 1.5 × 2 = 3.
    let m = values(&[("p0", 60_000), ("p1", 30_000)]);
    assert_eq!(pods_replicas(2, m, 30_000, TOL, &p), Ok((3, 45_000)));
    // An item naming no pod still enters the mean: (30 + 90) / 2 = 60 → ratio 2 × 1 ready = 2.
    let m = values(&[("p0", 30_000), ("stranger", 90_000)]);
    assert_eq!(
        pods_replicas(1, m, 30_000, TOL, &running(1)),
        Ok((2, 60_000))
    );
}

#[test]
fn pods_metric_errors() {
    assert_eq!(
        pods_replicas(1, values(&[("p0", 1)]), 30_000, TOL, &[]),
        Err(CalcError::NoPods)
    );
    let p = pods(&[PodPhase::Failed]);
    assert_eq!(
        pods_replicas(1, values(&[("p0", 1)]), 30_000, TOL, &p),
        Err(CalcError::NoPodMetrics)
    );
}

#[test]
fn pods_metric_mean_does_not_overflow() {
    let m = values(&[("p0", i64::MAX), ("p1", i64::MAX)]);
    let (replicas, usage) = pods_replicas(2, m, 1, TOL, &running(2)).expect("a proposal");
    assert_eq!(usage, i64::MAX);
    assert_eq!(replicas, i32::MAX);
}

#[test]
fn external_sums_cap_instead_of_wrapping() {
    assert_eq!(external_value_sum(&[i64::MAX, 1]), i64::MAX);
    assert_eq!(external_value_sum(&[20, -5]), 15);
    assert_eq!(external_value_sum(&[i64::MIN, -1]), i64::MIN);
    // Go's per-pod sum takes any negative running sum for an overflow.
    assert_eq!(external_per_pod_sum(&[i64::MAX, 1]), i64::MAX);
    assert_eq!(external_per_pod_sum(&[-5]), i64::MAX);
    assert_eq!(external_per_pod_sum(&[20, 25]), 45);
}

#[test]
fn zero_targets_do_not_panic() {
    // A zero target is rejected by API validation; the model must still not trap on it.
    let (r, _) = per_pod_replicas(2, 10, 0, TOL);
    assert_eq!(r, i32::MAX);
    let (r, _) = external_per_pod_replicas(2, &[10], 0, TOL);
    assert_eq!(r, i32::MAX);
    assert_eq!(
        object_value_replicas(2, 10, 0, TOL, &running(2)),
        Ok((i32::MAX, 10))
    );
    assert!(pods_replicas(2, values(&[("p0", 1)]), 0, TOL, &running(2)).is_ok());
}
