//! The replica calculator: one metric's reading → a replica proposal and the usage the HPA reports,
//! rule for rule as in `k8s: pkg/controller/podautoscaler/replica_calculator.go` (the copy with
//! per-direction `Tolerances` and the int64/int32 overflow caps; commit cited in [`super`]).
//! All values are milli-units (`Quantity.MilliValue()`), as in the Go code. Nothing here panics:
//! sums saturate the way Go caps them, float → int conversions saturate, a zero divisor gives
//! Go's ±Inf/NaN ratio instead of a trap.

use std::collections::BTreeMap;

use thiserror::Error;

pub use super::pods::{Pod, PodPhase};
use super::pods::{group_pods, ready_pod_count};

/// The HPA's tolerance band around a usage ratio of 1.0 (`--horizontal-pod-autoscaler-tolerance`,
/// default 0.1; per direction since 1.33's configurable tolerance, `behavior.scaleUp.tolerance`
/// and `behavior.scaleDown.tolerance`). This is what `tolerancesForHpa` returns.
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
    /// `Tolerances.isWithin`: `1 − down ≤ ratio ≤ 1 + up` means "change too small, keep the count"
    /// (false for a NaN ratio, as in Go).
    pub fn is_within(&self, usage_ratio: f64) -> bool {
        (1.0 - self.scale_down) <= usage_ratio && usage_ratio <= (1.0 + self.scale_up)
    }
}

/// Why no proposal could be made (the HPA then marks the metric invalid,
/// `horizontal.go` `computeReplicasForMetrics`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CalcError {
    /// "no pods returned by selector while calculating replica count"
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// "did not receive metrics for targeted pods (pods might be unready)"
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoPodMetrics,
}

/// `int32(math.Ceil(x))` with the `math.MaxInt32` cap Go applies in `getUsageRatioReplicaCount`
/// and `GetExternalPerPodMetricReplicas` (Rust's `as` saturates the other call sites the same way).
fn ceil_replicas(x: f64) -> i32 {
    if x > f64::from(i32::MAX) {
        i32::MAX
    } else {
        x.ceil() as i32
    }
}

/// `getUsageRatioReplicaCount`: Object and External `Value` targets. With replicas ≠ 0: inside
/// the tolerance keep the count, else `ceil(ratio × ready pods)` (ready as `getReadyPodsCount`
/// counts them, listed only outside the tolerance). From zero replicas: `ceil(ratio)`, with no
/// tolerance and no pod count, so a zero value keeps the target at zero and any positive value
/// wakes it ("For currentReplicas=0 doesn't take into account ready pods count and tolerance").
pub fn usage_ratio_replica_count(
    current_replicas: i32,
    usage_ratio: f64,
    tolerances: Tolerances,
    pods: &[Pod],
) -> Result<i32, CalcError> {
    if current_replicas == 0 {
        return Ok(usage_ratio.ceil() as i32);
    }
    if tolerances.is_within(usage_ratio) {
        return Ok(current_replicas);
    }
    let ready = ready_pod_count(pods).ok_or(CalcError::NoPods)?;
    Ok(ceil_replicas(usage_ratio * ready as f64))
}

/// `GetObjectMetricReplicas`: ratio = value / target, then [`usage_ratio_replica_count`].
/// Returns the proposal and the usage (the value itself).
pub fn object_value_replicas(
    current_replicas: i32,
    usage: i64,
    target: i64,
    tolerances: Tolerances,
    pods: &[Pod],
) -> Result<(i32, i64), CalcError> {
    let ratio = usage as f64 / target as f64;
    let replicas = usage_ratio_replica_count(current_replicas, ratio, tolerances, pods)?;
    Ok((replicas, usage))
}

/// `getPerPodUsage`: `ceil(usage / statusReplicas)`, `i64::MAX` when the usage is already at the
/// cap, 0 for zero replicas (no division by zero).
pub fn per_pod_usage(usage: i64, status_replicas: i32) -> i64 {
    if usage as f64 >= i64::MAX as f64 {
        return i64::MAX;
    }
    if status_replicas == 0 {
        return 0;
    }
    (usage as f64 / f64::from(status_replicas)).ceil() as i64
}

/// `GetObjectPerPodMetricReplicas` (Object `AverageValue`): ratio = usage / (target ×
/// statusReplicas); outside the tolerance, `ceil(usage / target)`. Returns the proposal and the
/// per-pod usage the HPA reports in its status ([`per_pod_usage`]).
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
    (replicas, per_pod_usage(usage, status_replicas))
}

/// The sum `GetExternalMetricReplicas` takes over the items: a positive value that would overflow
/// caps the sum at `i64::MAX` ("Cap at MaxInt64 for positive overflow"). Go's sum would wrap
/// below `i64::MIN`; here it saturates there instead of panicking.
pub fn external_value_sum(items: &[i64]) -> i64 {
    let mut usage: i64 = 0;
    for &val in items {
        if val > 0 && usage > i64::MAX - val {
            return i64::MAX;
        }
        usage = usage.saturating_add(val);
    }
    usage
}

/// `GetExternalMetricReplicas` (External `Value`): every returned item is summed
/// ([`external_value_sum`]), then [`usage_ratio_replica_count`].
pub fn external_value_replicas(
    current_replicas: i32,
    items: &[i64],
    target: i64,
    tolerances: Tolerances,
    pods: &[Pod],
) -> Result<(i32, i64), CalcError> {
    object_value_replicas(
        current_replicas,
        external_value_sum(items),
        target,
        tolerances,
        pods,
    )
}

/// The sum `GetExternalPerPodMetricReplicas` takes: Go adds with int64 wrap-around and, as soon as
/// the running sum is negative, takes `i64::MAX` ("the only way we would ever get here is because
/// of an Int64 overflow"), which also turns a negative item into `i64::MAX`; kept as Go does it.
pub fn external_per_pod_sum(items: &[i64]) -> i64 {
    let mut usage: i64 = 0;
    for &val in items {
        usage = usage.wrapping_add(val);
        if usage < 0 {
            return i64::MAX;
        }
    }
    usage
}

/// `GetExternalPerPodMetricReplicas` (External `AverageValue`): ratio = sum / (target ×
/// statusReplicas); outside the tolerance `ceil(sum / target)`, capped at `i32::MAX`. Returns the
/// proposal and the per-pod usage.
pub fn external_per_pod_replicas(
    status_replicas: i32,
    items: &[i64],
    target_per_pod: i64,
    tolerances: Tolerances,
) -> (i32, i64) {
    let usage = external_per_pod_sum(items);
    let mut replicas = status_replicas;
    let ratio = usage as f64 / (target_per_pod as f64 * f64::from(status_replicas));
    if !tolerances.is_within(ratio) {
        replicas = ceil_replicas(usage as f64 / target_per_pod as f64);
    }
    (replicas, per_pod_usage(usage, status_replicas))
}

/// `metricsclient.GetMetricUsageRatio`: the integer mean of the values (Go's `int64` division,
/// truncating) over the target. The sum is taken in i128, so it equals Go's wherever Go's int64
/// sum does not wrap; the mean of i64 values always fits an i64.
fn metric_usage_ratio(metrics: &BTreeMap<String, i64>, target: i64) -> (f64, i64) {
    let total: i128 = metrics.values().map(|&v| i128::from(v)).sum();
    let usage = (total / metrics.len().max(1) as i128) as i64;
    (usage as f64 / target as f64, usage)
}

/// `calcPlainMetricReplicas` (Pods metrics, AverageValue): groups pods ([`group_pods`]), drops
/// the values of ignored and pending pods, averages over the rest (items naming no known pod
/// still count), and handles missing and unready pods: a missing pod counts as the target on a
/// scale-down, as 0 on a scale-up and not at all when the ratio is exactly 1; pending pods count
/// as 0 on a scale-up; a result inside the tolerance or one that would flip direction keeps the
/// current count. Returns the proposal and the average usage before any filling.
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
    let groups = group_pods(pods, &metrics);
    for name in groups.ignored.iter().chain(groups.unready.iter()) {
        metrics.remove(name);
    }
    if metrics.is_empty() {
        return Err(CalcError::NoPodMetrics);
    }
    let (usage_ratio, usage) = metric_usage_ratio(&metrics, target);
    let scale_up_with_unready = !groups.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if tolerances.is_within(usage_ratio) {
            return Ok((current_replicas, usage));
        }
        return Ok(((usage_ratio * groups.ready as f64).ceil() as i32, usage));
    }
    // Go fills missing pods only strictly below or above 1.0: at exactly 1.0 they stay out.
    let fill_missing = if usage_ratio < 1.0 {
        Some(target)
    } else if usage_ratio > 1.0 {
        Some(0)
    } else {
        None
    };
    if let Some(fill) = fill_missing {
        for name in &groups.missing {
            metrics.insert(name.clone(), fill);
        }
    }
    if scale_up_with_unready {
        for name in &groups.unready {
            metrics.insert(name.clone(), 0);
        }
    }
    let (new_ratio, _) = metric_usage_ratio(&metrics, target);
    if tolerances.is_within(new_ratio)
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
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
mod tests;
