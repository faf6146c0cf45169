//! Every metric of an HPA → one proposal, as in `k8s: pkg/controller/podautoscaler/horizontal.go`
//! `computeReplicasForMetrics` and `computeReplicasForMetric` (with `computeStatusFor*Metric`):
//! which calculator function serves which source and target, the largest valid proposal, and
//! when invalid metrics make the HPA hold (the first invalid metric's reason goes on
//! `ScalingActive`).

use super::calculator::{self, CalcError};
use super::client::{FetchError, Reading};
use super::conditions::{Condition, ConditionType};
use super::{HpaSpec, MetricSource, MetricSpec, ScaleState, Target};

/// One metric's proposal and the usage the HPA would report, or why there is none.
pub type Proposal = Result<(i32, i64), String>;

/// `computeReplicasForMetric` for a reading that arrived: Object and External `Value` targets
/// scale from `scale.spec.replicas` with the ready-pod count, `AverageValue` targets from
/// `scale.status.replicas`, Pods metrics through `calcPlainMetricReplicas`.
pub fn propose(
    spec: &HpaSpec,
    reading: &Reading,
    target: Target,
    scale: &ScaleState,
) -> Result<(i32, i64), CalcError> {
    let tol = spec.tolerances;
    let (current, status) = (scale.spec_replicas, scale.status_replicas);
    match (reading, target) {
        (Reading::Object { value, .. }, Target::Value(t)) => {
            calculator::object_value_replicas(current, *value, t, tol, &scale.pods)
        }
        (Reading::Object { value, .. }, Target::AverageValue(t)) => {
            Ok(calculator::per_pod_replicas(status, *value, t, tol))
        }
        // API validation only admits AverageValue for Pods metrics; a Value target is read the
        // same way rather than rejected.
        (Reading::Pods { values, .. }, Target::AverageValue(t) | Target::Value(t)) => {
            calculator::pods_replicas(current, values.clone(), t, tol, &scale.pods)
        }
        (Reading::External { values, .. }, Target::Value(t)) => {
            calculator::external_value_replicas(current, values, t, tol, &scale.pods)
        }
        (Reading::External { values, .. }, Target::AverageValue(t)) => Ok(
            calculator::external_per_pod_replicas(status, values, t, tol),
        ),
    }
}

/// The `ScalingActive=False` reason a failed metric of `source` leaves
/// (`getUnableComputeReplicaCountCondition(hpa, "FailedGet…Metric", err)`), whether the fetch or
/// the calculation failed.
pub fn failed_reason(source: &MetricSource) -> &'static str {
    match source {
        MetricSource::Object { .. } => "FailedGetObjectMetric",
        MetricSource::Pods => "FailedGetPodsMetric",
        MetricSource::External => "FailedGetExternalMetric",
    }
}

fn one(
    spec: &HpaSpec,
    metric: &MetricSpec,
    reading: Option<&Result<Reading, FetchError>>,
    scale: &ScaleState,
) -> Proposal {
    match reading {
        Some(Ok(reading)) => {
            propose(spec, reading, metric.target, scale).map_err(|e| e.to_string())
        }
        Some(Err(e)) => Err(format!("unable to get metric {}: {e}", metric.metric)),
        None => Err(format!("no reading for metric {}", metric.metric)),
    }
}

/// `computeReplicasForMetrics`: every metric's proposal (in spec order) and either the largest
/// valid one or, when every metric is invalid or some are and the rest would scale below
/// `scale.spec.replicas`, the condition to hold with. An HPA without metrics gets the CPU
/// default from the API server, which the model does not read: it holds as if that had failed.
pub fn compute(
    spec: &HpaSpec,
    scale: &ScaleState,
    readings: &[Result<Reading, FetchError>],
) -> (Vec<Proposal>, Result<i32, Condition>) {
    let mut proposals = Vec::with_capacity(spec.metrics.len());
    let mut replicas = 0;
    let mut first_invalid = None;
    let mut invalid = 0;
    for (i, metric) in spec.metrics.iter().enumerate() {
        let proposal = one(spec, metric, readings.get(i), scale);
        match &proposal {
            Ok((r, _)) => {
                if replicas == 0 || *r > replicas {
                    replicas = *r;
                }
            }
            Err(_) => {
                invalid += 1;
                first_invalid.get_or_insert(failed_reason(&metric.source));
            }
        }
        proposals.push(proposal);
    }
    let hold = |reason| Condition::new(ConditionType::ScalingActive, false, reason);
    if spec.metrics.is_empty() {
        return (proposals, Err(hold("FailedGetResourceMetric")));
    }
    if invalid >= spec.metrics.len() || (invalid > 0 && replicas < scale.spec_replicas) {
        let reason = first_invalid.unwrap_or("FailedGetResourceMetric");
        return (proposals, Err(hold(reason)));
    }
    (proposals, Ok(replicas))
}
