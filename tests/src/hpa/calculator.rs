//! The replica calculator: one metric's reading → a replica proposal, rule for rule as in
//! `k8s: pkg/controller/podautoscaler/replica_calculator.go` (the ≥1.33 copy with `Tolerances`).
//! All values are milli-units (`Quantity.MilliValue()`), as in the Go code.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

/// The HPA's tolerance band around a usage ratio of 1.0 (`--horizontal-pod-autoscaler-tolerance`,
/// default 0.1; per-direction since 1.33's configurable tolerance).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// How far below 1.0 the ratio may fall before scaling down.
    pub scale_down: f64,
    /// How far above 1.0 the ratio may rise before scaling up.
    pub scale_up: f64,
}

impl Default for Tolerances {
    /// 10 % both ways (`k8s: cmd/kube-controller-manager/app/options/hpacontroller.go`,
    /// `HorizontalPodAutoscalerTolerance: 0.1`).
    fn default() -> Self {
        Self {
            scale_down: 0.1,
            scale_up: 0.1,
        }
    }
}

impl Tolerances {
    /// `Tolerances.isWithin`: `1 − down ≤ ratio ≤ 1 + up` means "change too small, keep the count".
    pub fn is_within(&self, usage_ratio: f64) -> bool {
        (1.0 - self.scale_down) <= usage_ratio && usage_ratio <= (1.0 + self.scale_up)
    }
}

/// Where a pod stands, as `groupPods` sorts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Running and Ready: counted.
    Running,
    /// Not started yet: "unready" (dropped; counts as 0 on a scale-up).
    Pending,
    /// Failed or being deleted: ignored entirely.
    Gone,
}

/// A pod matched by the scale target's selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// `metadata.name`, matched against `describedObject.name` of the Pods metric items.
    pub name: String,
    /// Its phase as `groupPods` reads it.
    pub phase: PodPhase,
}

/// Why no proposal could be made (the HPA then holds, `horizontal.go` `computeReplicasForMetrics`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CalcError {
    /// "no pods returned by selector while calculating replica count"
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// "did not receive metrics for targeted pods (pods might be unready)"
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoPodMetrics,
}

/// `getUsageRatioReplicaCount`: Object `Value` and External `Value` targets. With replicas ≠ 0:
/// inside the tolerance keep the count, else `ceil(ratio × ready pods)`; from zero: `ceil(ratio)`.
pub fn usage_ratio_replica_count(
    current_replicas: i32,
    usage_ratio: f64,
    tolerances: Tolerances,
    ready_pods: i32,
) -> i32 {
    if current_replicas != 0 {
        if tolerances.is_within(usage_ratio) {
            return current_replicas;
        }
        (usage_ratio * f64::from(ready_pods)).ceil() as i32
    } else {
        usage_ratio.ceil() as i32
    }
}

/// `GetObjectMetricReplicas`: ratio = value / target, then [`usage_ratio_replica_count`].
pub fn object_value_replicas(
    current_replicas: i32,
    usage: i64,
    target: i64,
    tolerances: Tolerances,
    ready_pods: i32,
) -> i32 {
    let ratio = usage as f64 / target as f64;
    usage_ratio_replica_count(current_replicas, ratio, tolerances, ready_pods)
}

/// `GetObjectPerPodMetricReplicas` and `GetExternalPerPodMetricReplicas` (AverageValue targets):
/// ratio = usage / (target × statusReplicas); outside the tolerance, `ceil(usage / target)`.
/// Returns the proposal and the per-pod usage the HPA reports in its status.
pub fn per_pod_replicas(
    status_replicas: i32,
    usage: i64,
    target_per_pod: i64,
    tolerances: Tolerances,
) -> (i32, i64) {
    let mut replicas = status_replicas;
    let ratio = usage as f64 / (target_per_pod as f64 * f64::from(status_replicas));
    if !tolerances.is_within(ratio) {
        replicas = (usage as f64 / target_per_pod as f64).ceil() as i32;
    }
    let per_pod = (usage as f64 / f64::from(status_replicas)).ceil() as i64;
    (replicas, per_pod)
}

/// `GetExternalMetricReplicas` (External `Value`): every returned item is summed, then
/// [`usage_ratio_replica_count`].
pub fn external_value_replicas(
    current_replicas: i32,
    items: &[i64],
    target: i64,
    tolerances: Tolerances,
    ready_pods: i32,
) -> i32 {
    let usage: i64 = items.iter().sum();
    object_value_replicas(current_replicas, usage, target, tolerances, ready_pods)
}

/// `metricsclient.GetMetricUsageRatio`: integer mean of the values (Go's `int64` division), over
/// the target.
fn metric_usage_ratio(metrics: &BTreeMap<String, i64>, target: i64) -> (f64, i64) {
    let total: i64 = metrics.values().sum();
    let usage = total / metrics.len() as i64;
    (usage as f64 / target as f64, usage)
}

/// `calcPlainMetricReplicas` (Pods metrics, AverageValue): groups pods (`groupPods`), averages
/// over the items (items naming no pod still count), and handles missing and unready pods:
/// missing pods count as the target on a scale-down and as 0 on a scale-up; unready pods count as
/// 0 on a scale-up; a result that would flip direction keeps the current count.
/// Returns the proposal and the average usage.
pub fn pods_replicas(
    current_replicas: i32,
    mut metrics: BTreeMap<String, i64>,
    target: i64,
    tolerances: Tolerances,
    pods: &[Pod],
) -> Result<(i32, i64), CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let mut ready = 0;
    let (mut unready, mut missing, mut ignored) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for pod in pods {
        match pod.phase {
            PodPhase::Gone => {
                ignored.insert(pod.name.clone());
            }
            PodPhase::Pending => {
                unready.insert(pod.name.clone());
            }
            PodPhase::Running if !metrics.contains_key(&pod.name) => {
                missing.insert(pod.name.clone());
            }
            PodPhase::Running => ready += 1,
        }
    }
    for name in ignored.iter().chain(unready.iter()) {
        metrics.remove(name);
    }
    if metrics.is_empty() {
        return Err(CalcError::NoPodMetrics);
    }
    let (usage_ratio, usage) = metric_usage_ratio(&metrics, target);
    let scale_up_with_unready = !unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if tolerances.is_within(usage_ratio) {
            return Ok((current_replicas, usage));
        }
        return Ok(((usage_ratio * f64::from(ready)).ceil() as i32, usage));
    }
    let fill_missing = if usage_ratio < 1.0 { target } else { 0 };
    for name in &missing {
        metrics.insert(name.clone(), fill_missing);
    }
    if scale_up_with_unready {
        for name in &unready {
            metrics.insert(name.clone(), 0);
        }
    }
    let (new_ratio, _) = metric_usage_ratio(&metrics, target);
    if tolerances.is_within(new_ratio)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
        || (usage_ratio < 1.0 && new_ratio > 1.0)
    {
        return Ok((current_replicas, usage));
    }
    let new_replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && new_replicas > current_replicas)
        || (new_ratio > 1.0 && new_replicas < current_replicas)
    {
        return Ok((current_replicas, usage));
    }
    Ok((new_replicas, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerances = Tolerances {
        scale_down: 0.1,
        scale_up: 0.1,
    };

    fn running(names: &[&str]) -> Vec<Pod> {
        names
            .iter()
            .map(|n| Pod {
                name: (*n).into(),
                phase: PodPhase::Running,
            })
            .collect()
    }

    fn values(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(n, v)| ((*n).into(), *v)).collect()
    }

    #[test]
    fn tolerance_band_is_inclusive_ten_percent() {
        assert!(TOL.is_within(1.0));
        assert!(TOL.is_within(1.1));
        assert!(TOL.is_within(0.9));
        assert!(!TOL.is_within(1.1001));
        assert!(!TOL.is_within(0.8999));
    }

    #[test]
    fn object_value_is_ceil_of_ratio_times_ready_pods() {
        // 90 s against a 30 s target with 2 ready pods → ceil(3 × 2) = 6.
        assert_eq!(object_value_replicas(2, 90_000, 30_000, TOL, 2), 6);
        // 40/30 × 3 = 4.0 → 4.
        assert_eq!(object_value_replicas(3, 40_000, 30_000, TOL, 3), 4);
        // 10/30 × 3 = 1.0 → 1.
        assert_eq!(object_value_replicas(3, 10_000, 30_000, TOL, 3), 1);
    }

    #[test]
    fn object_value_inside_tolerance_keeps_count() {
        assert_eq!(object_value_replicas(5, 32_000, 30_000, TOL, 5), 5);
        assert_eq!(object_value_replicas(5, 28_000, 30_000, TOL, 5), 5);
    }

    #[test]
    fn object_value_uses_ready_pods_not_spec() {
        // Spec says 4, only 2 ready: ceil(2 × 2) = 4, not 8.
        assert_eq!(object_value_replicas(4, 60_000, 30_000, TOL, 2), 4);
    }

    #[test]
    fn from_zero_replicas_is_ceil_of_ratio() {
        assert_eq!(object_value_replicas(0, 45_000, 30_000, TOL, 0), 2);
        // Even inside the tolerance the count moves from zero.
        assert_eq!(object_value_replicas(0, 30_000, 30_000, TOL, 0), 1);
    }

    #[test]
    fn average_value_is_ceil_of_usage_over_target() {
        // 100 / 30 = 3.33 → 4, reported per pod as ceil(100/2) = 50.
        assert_eq!(per_pod_replicas(2, 100_000, 30_000, TOL), (4, 50_000));
        // 62/(30×2) = 1.033: within tolerance, keep 2.
        assert_eq!(per_pod_replicas(2, 62_000, 30_000, TOL), (2, 31_000));
    }

    #[test]
    fn external_value_sums_items() {
        // 20 + 25 = 45 against 15, one ready pod → 3.
        assert_eq!(
            external_value_replicas(1, &[20_000, 25_000], 15_000, TOL, 1),
            3
        );
    }

    #[test]
    fn pods_average_with_all_metrics_present() {
        let pods = running(&["a", "b"]);
        let m = values(&[("a", 60_000), ("b", 30_000)]);
        // mean 45 / 30 = 1.5 × 2 ready = 3.
        assert_eq!(pods_replicas(2, m, 30_000, TOL, &pods), Ok((3, 45_000)));
    }

    #[test]
    fn pods_items_for_unknown_pods_still_enter_the_average() {
        let pods = running(&["a"]);
        let m = values(&[("a", 30_000), ("stranger", 90_000)]);
        // mean 60 / 30 = 2 × 1 ready = 2.
        assert_eq!(pods_replicas(1, m, 30_000, TOL, &pods), Ok((2, 60_000)));
    }

    #[test]
    fn pods_missing_count_as_zero_on_scale_up() {
        let pods = running(&["a", "b"]);
        let m = values(&[("a", 90_000)]);
        // ratio 3 > 1: b counts as 0 → mean 45 / 30 = 1.5 × 2 = 3.
        assert_eq!(pods_replicas(2, m, 30_000, TOL, &pods), Ok((3, 90_000)));
    }

    #[test]
    fn pods_missing_count_as_target_on_scale_down() {
        let pods = running(&["a", "b", "c", "d"]);
        let m = values(&[("a", 3_000), ("b", 3_000)]);
        // ratio 0.1 < 1: c, d count as 30 → mean 16.5 / 30 = 0.55 × 4 = 2.2 → 3.
        assert_eq!(pods_replicas(4, m, 30_000, TOL, &pods), Ok((3, 3_000)));
    }

    #[test]
    fn pods_unready_count_as_zero_on_scale_up_only() {
        let mut pods = running(&["a", "b"]);
        pods[1].phase = PodPhase::Pending;
        let m = values(&[("a", 90_000), ("b", 90_000)]);
        // b's item is dropped; a alone → ratio 3; b re-enters as 0 → 1.5 × 2 = 3.
        assert_eq!(pods_replicas(2, m, 30_000, TOL, &pods), Ok((3, 90_000)));
    }

    #[test]
    fn pods_direction_flip_keeps_count() {
        let pods = running(&["a", "b", "c"]);
        let m = values(&[("a", 40_000)]);
        // ratio 1.33 > 1: b, c count as 0 → 0.44 < 1: direction flips, keep 3.
        assert_eq!(pods_replicas(3, m, 30_000, TOL, &pods), Ok((3, 40_000)));
    }

    #[test]
    fn pods_errors() {
        assert_eq!(
            pods_replicas(1, values(&[("a", 1)]), 30_000, TOL, &[]),
            Err(CalcError::NoPods)
        );
        let mut pods = running(&["a"]);
        pods[0].phase = PodPhase::Gone;
        assert_eq!(
            pods_replicas(1, values(&[("a", 1)]), 30_000, TOL, &pods),
            Err(CalcError::NoPodMetrics)
        );
    }
}
