//! Kubernetes' own replica-calculator tables, ported onto the HPA model (`dwell_e2e::hpa`).
//!
//! Source: `k8s: pkg/controller/podautoscaler/replica_calculator_test.go` at commit
//! `a769d5884497dc246960b38f3e5aae2cc30dd062` (the autoscaling/v2 copy with per-direction
//! `Tolerances`, as stored for the omerap12/kubernetes fork; see `tests/src/hpa/mod.rs`). Each row
//! keeps its Go name, `Test…/row`. Go's fake clients become plain values: the pods the lister
//! returns (phase, `Ready`, deletion timestamp) and the metric values; the calculator functions
//! are called with the same arguments the Go test passes (`currentReplicas` goes in as
//! `statusReplicas` for the per-pod functions, as there). Rows of the Resource (CPU) tables are
//! ported only where the rule they test is not CPU-specific, driven through a Pods metric with
//! the same usage ratio (said so at each); utilization, container metrics, requests and the
//! CPU-only readiness and start-time rules are not modelled. No cluster or broker is needed.
//! Tables keep one row per line (`#[rustfmt::skip]`), as the Go tables do.

use std::collections::{BTreeMap, BTreeSet};

use dwell_e2e::hpa::calculator::{self, Pod, PodPhase, Tolerances};
use dwell_e2e::hpa::pods::{self, PodGroups};

/// `defaultTestingTolerance` both ways.
const TOL: Tolerances = Tolerances {
    scale_down: 0.1,
    scale_up: 0.1,
};

/// `Tolerances{defaultTestingTolerance, .01}`.
const UP_1PCT: Tolerances = Tolerances {
    scale_down: 0.1,
    scale_up: 0.01,
};

/// A pod phase as the Go fixtures give it (`podPhase`).
#[derive(Clone, Copy)]
enum Go {
    Running,
    Pending,
    Failed,
    Succeeded,
}

/// `newFakePodClient`: `max(currentReplicas, len(podPhase))` pods named `test-pod-<i>`, Running
/// and Ready unless `phase`, `ready` or `deleting` say otherwise at that index.
fn go_pods(current: usize, phase: &[Go], ready: &[bool], deleting: &[bool]) -> Vec<Pod> {
    (0..current.max(phase.len()))
        .map(|i| {
            let phase_i = phase.get(i).copied().unwrap_or(Go::Running);
            let ready_i = ready.get(i).copied().unwrap_or(true);
            let deleting_i = deleting.get(i).copied().unwrap_or(false);
            let state = match (phase_i, deleting_i) {
                (Go::Running, true) if ready_i => PodPhase::Terminating,
                (_, true) => PodPhase::TerminatingUnready,
                (Go::Failed, false) => PodPhase::Failed,
                (Go::Succeeded, false) => PodPhase::Succeeded,
                (Go::Pending, false) => PodPhase::Pending,
                (Go::Running, false) if ready_i => PodPhase::Running,
                (Go::Running, false) => PodPhase::Unready,
            };
            Pod {
                name: format!("test-pod-{i}"),
                phase: state,
            }
        })
        .collect()
}

fn running(n: usize) -> Vec<Pod> {
    go_pods(n, &[], &[], &[])
}

/// The custom-metrics fake: one value per `test-pod-<i>`.
fn levels(values: &[i64]) -> BTreeMap<String, i64> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("test-pod-{i}"), *v))
        .collect()
}

/// One table row: `current` is `currentReplicas` (passed as `statusReplicas` to the per-pod
/// functions, as the Go test does), `values` the metric values, `want` (replicas, usage).
struct Row {
    name: &'static str,
    current: i32,
    pods: Vec<Pod>,
    values: Vec<i64>,
    target: i64,
    tol: Tolerances,
    want: (i32, i64),
}

/// A row with `current` Running and Ready pods and the default tolerance.
fn row(name: &'static str, current: i32, values: &[i64], target: i64, want: (i32, i64)) -> Row {
    Row {
        name,
        current,
        pods: running(usize::try_from(current).unwrap_or_default()),
        values: values.to_vec(),
        target,
        tol: TOL,
        want,
    }
}

impl Row {
    fn pods(mut self, pods: Vec<Pod>) -> Self {
        self.pods = pods;
        self
    }

    fn tol(mut self, tol: Tolerances) -> Self {
        self.tol = tol;
        self
    }
}

/// Runs every row of `test` through `calc` and names each one that disagrees.
fn run<F>(test: &str, rows: &[Row], expected_rows: usize, calc: F)
where
    F: Fn(&Row) -> Result<(i32, i64), calculator::CalcError>,
{
    assert_eq!(rows.len(), expected_rows, "{test}: row count changed");
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let got = calc(r);
            (got != Ok(r.want))
                .then(|| format!("{test}/{}: got {got:?}, want {:?}", r.name, r.want))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn test_replica_calc_external_per_pod_metric() {
    let max = i64::MAX;
    #[rustfmt::skip]
    let rows = [
        row("replica count overflow saturates to MaxInt32", 1, &[max], 1, (i32::MAX, max)),
        row("usage overflow with huge target leaves replicas unchanged", 1, &[max], max, (1, max)),
        row("statusReplicas zero does not overflow usage", 0, &[20_000], 5_000, (4, 0)),
        row("statusReplicas zero and metric zero does not underflow", 0, &[0], 5_000, (0, 0)),
        row("scale up", 3, &[8_600], 2_150, (4, 2_867)),
        row("scale down", 5, &[8_600], 2_867, (3, 1_720)),
        row("within default tolerance", 3, &[8_600], 2_900, (3, 2_867)),
        row("outside configurable 1% tolerance", 3, &[8_600], 2_800, (4, 2_867))
            .tol(UP_1PCT),
    ];
    run("TestReplicaCalcExternalPerPodMetric", &rows, 8, |r| {
        Ok(calculator::external_per_pod_replicas(
            r.current, &r.values, r.target, r.tol,
        ))
    });
}

#[test]
fn test_replica_calc_pod_metric() {
    #[rustfmt::skip]
    let rows = [
        row("scale up", 3, &[20_000, 10_000, 30_000], 15_000, (4, 20_000)),
        // Unready pods count for a Pods metric: readiness is checked for CPU only.
        row("scale up: unready hot-CPU pod scales less", 3, &[50_000, 10_000, 30_000], 15_000, (6, 30_000))
            .pods(go_pods(3, &[], &[true, true, false], &[])),
        row("scale up: unready hot-CPU pods avoid scale-down", 3, &[50_000, 15_000, 30_000], 15_000, (7, 31_666))
            .pods(go_pods(3, &[], &[false, true, false], &[])),
        row("scale down", 5, &[12_000; 5], 20_000, (3, 12_000)),
        row("within default tolerance", 3, &[20_000, 21_000, 21_000], 20_000, (3, 20_666)),
        row("outside configurable 1% tolerance", 3, &[20_000, 21_000, 21_000], 20_000, (4, 20_666))
            .tol(UP_1PCT),
        // Issue 16, disagreement 1 (`TestPlainMetricReplicaCalcMissingMetricsNoChangeEq` in older
        // copies): at a ratio of exactly 1 the two missing pods are not filled, so 5 stays 5.
        row("no change: missing metrics", 5, &[20_000, 19_000, 21_000], 20_000, (5, 20_000)),
        row("rolling update with maxSurge: extra pod missing metric", 2, &[10_000, 10_000], 17_000, (2, 10_000))
            .pods(go_pods(2, &[Go::Running, Go::Running, Go::Running], &[], &[])),
    ];
    run("TestReplicaCalcPodMetric", &rows, 8, |r| {
        calculator::pods_replicas(r.current, levels(&r.values), r.target, r.tol, &r.pods)
    });
}

#[test]
fn test_replica_calc_object_metric() {
    let max = i64::MAX;
    #[rustfmt::skip]
    let rows = [
        row("scale up", 3, &[20_000], 15_000, (4, 20_000)),
        row("scale up: very large metric saturates replicas to MaxInt32", 3, &[max], 1, (i32::MAX, max)),
        // Only Ready pods count for a Value target: 50/10 = 5 × 1 ready pod.
        row("scale up: ignores unready pods", 3, &[50_000], 10_000, (5, 50_000))
            .pods(go_pods(3, &[], &[false, true, false], &[])),
        row("scale down", 5, &[12_000], 20_000, (3, 12_000)),
        row("within default tolerance", 3, &[20_666], 20_000, (3, 20_666)),
        row("outside configurable 1% tolerance", 3, &[20_666], 20_000, (4, 20_666))
            .tol(UP_1PCT),
    ];
    run("TestReplicaCalcObjectMetric", &rows, 6, |r| {
        let value = r.values.first().copied().unwrap_or_default();
        calculator::object_value_replicas(r.current, value, r.target, r.tol, &r.pods)
    });
}

#[test]
fn test_replica_calc_object_per_pod_metric() {
    let max = i64::MAX;
    #[rustfmt::skip]
    let rows = [
        row("usage overflow with huge target leaves replicas unchanged", 1, &[max], max, (1, max)),
        row("scale up", 3, &[20_000], 5_000, (4, 6_667)),
        row("scale down", 5, &[6_000], 2_000, (3, 1_200)),
        row("within default tolerance", 4, &[20_166], 5_000, (4, 5_042)),
        row("outside configurable 1% tolerance", 4, &[20_208], 5_000, (5, 5_052))
            .tol(UP_1PCT),
        row("statusReplicas zero does not overflow usage", 0, &[20_000], 5_000, (4, 0)),
        row("statusReplicas zero and metric zero does not underflow", 0, &[0], 5_000, (0, 0)),
    ];
    run("TestReplicaCalcObjectPerPodMetric", &rows, 7, |r| {
        let value = r.values.first().copied().unwrap_or_default();
        Ok(calculator::per_pod_replicas(
            r.current, value, r.target, r.tol,
        ))
    });
}

#[test]
fn test_replica_calc_external_metric() {
    const HALF: i64 = i64::MAX / 2 + 1;
    #[rustfmt::skip]
    let rows = [
        // 8600/4400 = 1.95 × 1 ready pod = 2 ("Would be 6 if we didn't ignore unready pods").
        row("scale down: ignores unready pods (would otherwise scale up)", 3, &[8_600], 4_400, (2, 8_600))
            .pods(go_pods(3, &[], &[false, true, false], &[])),
        row("scale down", 5, &[8_600], 14_334, (3, 8_600)),
        row("within default tolerance", 3, &[8_600], 8_888, (3, 8_600)),
        row("outside configurable 1% tolerance", 3, &[8_900], 8_800, (4, 8_900))
            .tol(UP_1PCT),
        // Issue 16, disagreement 3 (`TestReplicaCalcExternalMetricUsageOverflow` in older
        // copies): the sum caps at i64::MAX instead of overflowing; ratio 1 keeps 3.
        row("usage overflow caps at MaxInt64", 3, &[HALF, HALF], i64::MAX, (3, i64::MAX)),
    ];
    run("TestReplicaCalcExternalMetric", &rows, 5, |r| {
        calculator::external_value_replicas(r.current, &r.values, r.target, r.tol, &r.pods)
    });
}

#[test]
fn test_get_per_pod_usage() {
    // (usage, statusReplicas) in `values`/`current`; the want's replicas field is unused.
    #[rustfmt::skip]
    let rows = [
        row("zero replicas returns zero", 0, &[20_000], 0, (0, 0)),
        row("normal division with ceiling", 3, &[1_000], 0, (0, 334)),
        row("overflow returns MaxInt64", 1, &[i64::MAX], 0, (0, i64::MAX)),
    ];
    run("TestGetPerPodUsage", &rows, 3, |r| {
        let usage = r.values.first().copied().unwrap_or_default();
        Ok((0, calculator::per_pod_usage(usage, r.current)))
    });
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// One TestGroupPods row.
struct GroupRow {
    name: &'static str,
    pods: Vec<Pod>,
    metrics: BTreeMap<String, i64>,
    want: PodGroups,
}

#[test]
fn test_group_pods() {
    // The rows whose outcome does not depend on the CPU-only readiness and start-time checks:
    // those run only for a pod that is neither ignored, pending nor missing, and only for CPU.
    // (The "- CPU" rows listed here never reach them.)
    let group = |name, pod: &str, phase, with_metric: bool, want: PodGroups| GroupRow {
        name,
        pods: vec![Pod {
            name: pod.into(),
            phase,
        }],
        metrics: if with_metric {
            BTreeMap::from([(pod.to_owned(), 1)])
        } else {
            BTreeMap::new()
        },
        want,
    };
    let groups = |ready, unready: &[&str], missing: &[&str], ignored: &[&str]| PodGroups {
        ready,
        unready: names(unready),
        missing: names(missing),
        ignored: names(ignored),
    };
    #[rustfmt::skip]
    let rows = [
        GroupRow { name: "void", pods: vec![], metrics: BTreeMap::new(), want: groups(0, &[], &[], &[]) },
        // Running with no Ready condition: counted, readiness is not looked at.
        group("count in a ready pod - memory", "bentham", PodPhase::Unready, true, groups(1, &[], &[], &[])),
        group("a missing pod", "epicurus", PodPhase::Unready, false, groups(0, &[], &["epicurus"], &[])),
        group("pending pods are unreadied", "unscheduled", PodPhase::Pending, false, groups(0, &["unscheduled"], &[], &[])),
        // Pending with a deletion timestamp.
        group("ignore pods with deletion timestamps", "deleted", PodPhase::TerminatingUnready, true, groups(0, &[], &[], &["deleted"])),
        group("ignore pods in a failed state", "failed", PodPhase::Failed, true, groups(0, &[], &[], &["failed"])),
        group("ignore pods in a succeeded state", "succeeded", PodPhase::Succeeded, true, groups(0, &[], &[], &["succeeded"])),
    ];
    assert_eq!(rows.len(), 7, "TestGroupPods: row count changed");
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let got = pods::group_pods(&r.pods, &r.metrics);
            (got != r.want)
                .then(|| format!("TestGroupPods/{}: got {got:?}, want {:?}", r.name, r.want))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn test_replica_calc_resource_tolerance_via_pods_metric() {
    // TestReplicaCalcResourceTolerance drives per-direction tolerances through CPU utilization
    // (requests 0.9, 1.0 and 1.1 cores); here a Pods metric at the same usage ratio (each pod at
    // the utilization, target 1000 = 100 %) carries the same tolerance rule. 3 pods throughout.
    let tol = |down, up| Tolerances {
        scale_down: down,
        scale_up: up,
    };
    #[rustfmt::skip]
    let rows = [
        row("within default tolerance", 3, &[1_020; 3], 1_000, (3, 1_020)),
        row("outside 0% tolerance", 3, &[1_010; 3], 1_000, (4, 1_010))
            .tol(tol(0.0, 0.0)),
        row("within 200% scale-up tolerance", 3, &[1_900; 3], 1_000, (3, 1_900))
            .tol(tol(0.1, 2.0)),
        row("outside 8% scale-up tolerance (superfluous scale-down tolerance)", 3, &[1_090; 3], 1_000, (4, 1_090))
            .tol(tol(2.0, 0.08)),
        row("within 36% scale-down tolerance", 3, &[650; 3], 1_000, (3, 650))
            .tol(tol(0.36, 0.1)),
        row("outside 34% scale-down tolerance", 3, &[650; 3], 1_000, (2, 650))
            .tol(tol(0.34, 0.1)),
    ];
    run("TestReplicaCalcResourceTolerance", &rows, 6, |r| {
        calculator::pods_replicas(r.current, levels(&r.values), r.target, r.tol, &r.pods)
    });
}

#[test]
fn test_replica_calc_resource_missing_metrics_via_pods_metric() {
    // The TestReplicaCalcResourceMissingMetrics rows about missing pods that involve no CPU
    // readiness: same rule for a Pods metric (missing pods count as the target below 1, as 0
    // above 1, not at all at exactly 1). Each pod's value is its utilization, target 1000.
    #[rustfmt::skip]
    let rows = [
        row("some pods missing metrics scales down", 4, &[400, 95], 1_000, (3, 247)),
        row("no change: metric equal to target", 2, &[1_000], 1_000, (2, 1_000)),
        row("no change: metric above target", 2, &[1_900], 1_000, (2, 1_900)),
        row("no change: metric below target", 2, &[600], 1_000, (2, 600)),
    ];
    run("TestReplicaCalcResourceMissingMetrics", &rows, 4, |r| {
        calculator::pods_replicas(r.current, levels(&r.values), r.target, r.tol, &r.pods)
    });
}

#[test]
fn test_replica_calc_resource_scale_via_pods_metric() {
    // The TestReplicaCalcResourceScale rows about which pods count (failed, succeeded, pending
    // and deleted pods), not about CPU readiness, hot CPU or containers: the same pod-state rules
    // apply to a Pods metric. Values are each pod's CPU level; the target is the utilization
    // target × 1000m / 100 (so the usage ratio is the same).
    let (r, p, f, s) = (Go::Running, Go::Pending, Go::Failed, Go::Succeeded);
    let five_ready_two_not = [true, true, true, true, true, false, false];
    let scale_down = [100, 300, 500, 250, 250];
    #[rustfmt::skip]
    let rows = [
        row("scale up", 3, &[300, 500, 700], 300, (5, 500)),
        row("scale up: failed pods ignored", 2, &[500, 700], 300, (4, 600))
            .pods(go_pods(2, &[r, r, f, f], &[true, true, false, false], &[])),
        row("scale up: succeeded pods ignored", 2, &[500, 700], 300, (4, 600))
            .pods(go_pods(2, &[r, r, s, s], &[true, true, false, false], &[])),
        row("scale up: pods being deleted are ignored", 2, &[500, 700], 300, (4, 600))
            .pods(go_pods(2, &[r; 4], &[true, true, false, false], &[false, false, true, true])),
        row("scale down", 5, &scale_down, 500, (3, 280)),
        row("scale down: exclude unscheduled pods", 5, &[100], 500, (1, 100))
            .pods(go_pods(5, &[r, p, p, p, p], &[true, false, false, false, false], &[])),
        row("scale down: failed pods ignored", 5, &scale_down, 500, (3, 280))
            .pods(go_pods(5, &[r, r, r, r, r, f, f], &five_ready_two_not, &[])),
        row("scale down: succeeded pods ignored", 5, &scale_down, 500, (3, 280))
            .pods(go_pods(5, &[r, r, r, r, r, s, s], &five_ready_two_not, &[])),
        row("scale down: pods being deleted are ignored", 5, &scale_down, 500, (3, 280))
            .pods(go_pods(5, &[r; 7], &five_ready_two_not, &[false, false, false, false, false, true, true])),
    ];
    run("TestReplicaCalcResourceScale", &rows, 9, |r| {
        calculator::pods_replicas(r.current, levels(&r.values), r.target, r.tol, &r.pods)
    });
}
