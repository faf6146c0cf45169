//! Kubernetes' own HPA controller tables, ported onto the HPA model (`dwell_e2e::hpa`).
//!
//! Source: `k8s: pkg/controller/podautoscaler/horizontal_test.go` at commit
//! `a769d5884497dc246960b38f3e5aae2cc30dd062` (the autoscaling/v2 copy with `HPAScaleToZero`,
//! as stored for the omerap12/kubernetes fork; see `tests/src/hpa/mod.rs`). Each case keeps its
//! Go name, `Test…/row`. The reconcile cases (first half) run one `Controller::decide` the way
//! `reconcileAutoscaler` runs once in Go: a fresh controller (history `nil` unless the row gives
//! `recommendations`), `scaleUpLimitFactor = 8` as the Go test's `init` sets it, a 5 min
//! downscale window, the 10 % tolerance, the scale-to-zero gate as the row sets it (on otherwise:
//! beta, on by default), and the fixture's pods (`len(reportedCPURequests)` of them, or
//! `statusReplicas`). Go's fakes return values for every metric; a failing fake becomes a failed
//! reading. Where a row drives the rule under test through a CPU (Resource) metric only as a
//! vehicle, a Pods metric with the same usage ratio drives it here (values = the CPU levels,
//! AverageValue target = utilization target × the pods' request / 100), said so at each such
//! row; a row whose rule is CPU-specific (readiness and start-time checks, extraneous metrics,
//! requests), or is about the API machinery the model does not have (events, selectors, invalid
//! source types, scale subresource failures, status-update suppression, worker concurrency), is
//! not ported. The function-level tables (second half) call the model's counterparts directly.
//! Tables keep one row per line (`#[rustfmt::skip]`), as the Go tables do.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dwell_e2e::hpa::behavior::{
    Behavior, BehaviorState, ClockScale, Policy, PolicyKind, Recommendation, ScaleEvent,
    ScalingRules, Select, change_in_period, scale_down_limit, scale_up_limit,
};
use dwell_e2e::hpa::calculator::{Pod, PodPhase, Tolerances};
use dwell_e2e::hpa::client::{FetchError, Reading};
use dwell_e2e::hpa::legacy::{LegacyScaleUpLimit, convert_with_rules};
use dwell_e2e::hpa::{
    Condition, ConditionType, Controller, HpaSpec, MetricSource, MetricSpec, ScaleState, Target,
};
use time::OffsetDateTime;

/// A base time far from the process start, so subtracting minutes never underflows.
fn t0() -> Instant {
    Instant::now() + Duration::from_secs(24 * 3600)
}

/// Go tables are built with `time.Now()` before the function under test reads `time.Now()`.
fn later(t0: Instant) -> Instant {
    t0 + Duration::from_millis(1)
}

// ---- conditions -------------------------------------------------------------------------------

use ConditionType::{AbleToScale, ScaledToZero, ScalingActive, ScalingLimited};

fn cond(kind: ConditionType, status: bool, reason: &'static str) -> Condition {
    Condition::new(kind, status, reason)
}

/// `scaledToZeroFalse`.
fn stz_false() -> Condition {
    cond(ScaledToZero, false, "NotScaledToZero")
}

/// `statusOkWithOverrides`: the "ok" status with each override replacing its type (or appended).
fn ok_with(overrides: &[Condition]) -> Vec<Condition> {
    let mut list = vec![
        cond(AbleToScale, true, "SucceededRescale"),
        cond(ScalingActive, true, "ValidMetricFound"),
        cond(ScalingLimited, false, "DesiredWithinRange"),
    ];
    for o in overrides {
        match list.iter_mut().find(|c| c.kind == o.kind) {
            Some(c) => *c = *o,
            None => list.push(*o),
        }
    }
    list
}

/// `[{AbleToScale, True, SucceededGetScale}, {ScalingActive, False, reason}]`.
fn inactive(reason: &'static str) -> Vec<Condition> {
    vec![
        cond(AbleToScale, true, "SucceededGetScale"),
        cond(ScalingActive, false, reason),
    ]
}

// ---- metrics ------------------------------------------------------------------------------------

type Metric = (MetricSpec, Result<Reading, FetchError>);

fn metric(source: MetricSource, target: Target, reading: Result<Reading, FetchError>) -> Metric {
    let spec = MetricSpec {
        metric: "qps".into(),
        selector: None,
        source,
        target,
    };
    (spec, reading)
}

fn deployment() -> MetricSource {
    MetricSource::Object {
        resource: "deployments.apps".into(),
        name: "some-deployment".into(),
    }
}

/// A Pods metric with AverageValue `target`, one value per `test-pod-<i>`.
fn pods_metric(target: i64, values: &[i64]) -> Metric {
    let values: BTreeMap<String, i64> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("test-pod-{i}"), *v))
        .collect();
    let reading = Reading::Pods {
        values,
        timestamps: vec![],
    };
    metric(
        MetricSource::Pods,
        Target::AverageValue(target),
        Ok(reading),
    )
}

fn object(target: Target, value: i64) -> Metric {
    let reading = Reading::Object {
        value,
        timestamp: OffsetDateTime::UNIX_EPOCH,
    };
    metric(deployment(), target, Ok(reading))
}

fn external(target: Target, values: &[i64]) -> Metric {
    let reading = Reading::External {
        values: values.to_vec(),
        timestamps: vec![],
    };
    metric(MetricSource::External, target, Ok(reading))
}

/// A metric whose fetch fails ("something went wrong").
fn failing(source: MetricSource, target: Target) -> Metric {
    let err = Err(FetchError::Server("something went wrong".into()));
    metric(source, target, err)
}

// ---- pods ----------------------------------------------------------------------------------------

fn pod(i: usize, phase: PodPhase) -> Pod {
    Pod {
        name: format!("test-pod-{i}"),
        phase,
    }
}

fn running(n: usize) -> Vec<Pod> {
    (0..n).map(|i| pod(i, PodPhase::Running)).collect()
}

fn with_phases(phases: &[PodPhase]) -> Vec<Pod> {
    phases.iter().enumerate().map(|(i, p)| pod(i, *p)).collect()
}

// ---- behavior ------------------------------------------------------------------------------------

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.unsigned_abs())
}

/// `generateScalingRules(pods, podsPeriod, percent, percentPeriod, stabilizationWindow)`.
fn rules(
    pods: i32,
    pods_period: i64,
    percent: i32,
    percent_period: i64,
    window: i64,
) -> ScalingRules {
    let mut policies = Vec::new();
    if pods != 0 {
        policies.push(Policy {
            kind: PolicyKind::Pods,
            value: pods,
            period: secs(pods_period),
        });
    }
    if percent != 0 {
        policies.push(Policy {
            kind: PolicyKind::Percent,
            value: percent,
            period: secs(percent_period),
        });
    }
    ScalingRules {
        stabilization_window: secs(window),
        select: Select::Max,
        policies,
    }
}

/// `behavior` with `GenerateHPAScale{Up,Down}Rules` filling the unset direction.
fn behavior(up: Option<ScalingRules>, down: Option<ScalingRules>) -> Behavior {
    Behavior {
        scale_up: up.unwrap_or_else(|| ScalingRules::default_scale_up(ClockScale::REAL)),
        scale_down: down.unwrap_or_else(|| ScalingRules::default_scale_down(ClockScale::REAL)),
    }
}

/// `generateEventsUniformDistribution(rawEvents, periodSeconds)`: each event in the middle of its
/// share of the last `period` seconds.
fn uniform(raw: &[i32], period: f64, now: Instant) -> Vec<ScaleEvent> {
    let seg = period / raw.len() as f64;
    raw.iter()
        .enumerate()
        .map(|(i, &change)| {
            let back = (period - seg * (i as f64 + 1.0) + seg / 2.0).trunc();
            ScaleEvent {
                change,
                at: now - Duration::from_secs_f64(back),
                outdated: false,
            }
        })
        .collect()
}

fn recs(list: &[(i32, i64)], now: Instant) -> Vec<Recommendation> {
    list.iter()
        .map(|&(replicas, ago)| Recommendation {
            replicas,
            at: now - secs(ago),
        })
        .collect()
}

// ---- reconcile cases -----------------------------------------------------------------------------

/// One `reconcileAutoscaler` row.
struct Case {
    name: &'static str,
    bounds: (i32, i32),
    spec_replicas: i32,
    status_replicas: i32,
    pods: Vec<Pod>,
    metrics: Vec<Metric>,
    behavior: Option<Behavior>,
    tolerances: Tolerances,
    gate: bool,
    /// `recommendations`: `None` is Go's nil (the first sync records the current count).
    history: Option<Vec<(i32, i64)>>,
    initial: Vec<Condition>,
    want: i32,
    want_conditions: Option<Vec<Condition>>,
}

/// A row at `replicas` (spec and status) with that many Running and Ready pods.
fn case(name: &'static str, bounds: (i32, i32), replicas: i32, want: i32) -> Case {
    Case {
        name,
        bounds,
        spec_replicas: replicas,
        status_replicas: replicas,
        pods: running(usize::try_from(replicas).unwrap_or_default()),
        metrics: Vec::new(),
        behavior: None,
        tolerances: Tolerances::default(),
        gate: true,
        history: None,
        initial: Vec::new(),
        want,
        want_conditions: None,
    }
}

impl Case {
    fn metric(mut self, m: Metric) -> Self {
        self.metrics.push(m);
        self
    }
    fn pods(mut self, pods: Vec<Pod>) -> Self {
        self.pods = pods;
        self
    }
    fn status(mut self, n: i32) -> Self {
        self.status_replicas = n;
        self
    }
    fn behavior(mut self, b: Behavior) -> Self {
        self.behavior = Some(b);
        self
    }
    fn tol(mut self, t: Tolerances) -> Self {
        self.tolerances = t;
        self
    }
    fn gate(mut self, on: bool) -> Self {
        self.gate = on;
        self
    }
    /// `recommendations: []timestampedRecommendation{}` (or a list of (replicas, seconds ago)).
    fn history(mut self, list: &[(i32, i64)]) -> Self {
        self.history = Some(list.to_vec());
        self
    }
    /// `initialConditions: [{ScaledToZero, True, ScaledToZero}]`.
    fn scaled_to_zero(mut self) -> Self {
        self.initial = vec![cond(ScaledToZero, true, "ScaledToZero")];
        self
    }
    fn conditions(mut self, c: Vec<Condition>) -> Self {
        self.want_conditions = Some(c);
        self
    }

    /// Runs the row; returns what disagrees.
    fn run(self, test: &str) -> Option<String> {
        let now = t0();
        let mut spec = HpaSpec::new(
            "test-namespace",
            "name=test-pod",
            self.bounds,
            ClockScale::REAL,
        );
        spec.behavior = self.behavior;
        spec.tolerances = self.tolerances;
        spec.scale_to_zero = self.gate;
        spec.downscale_stabilization = Duration::from_secs(300);
        spec.legacy_scale_up = LegacyScaleUpLimit {
            factor: 8.0,
            minimum: 4.0,
        };
        let (specs, readings): (Vec<_>, Vec<_>) = self.metrics.into_iter().unzip();
        spec.metrics = specs;
        let mut controller = Controller::new(spec);
        controller.state.recommendations = self.history.map(|h| recs(&h, now));
        controller.conditions = self.initial;
        let scale = ScaleState {
            spec_replicas: self.spec_replicas,
            status_replicas: self.status_replicas,
            pods: self.pods,
        };
        let d = controller.decide(later(now), &scale, &readings);
        let mut wrong = Vec::new();
        if d.desired != self.want {
            wrong.push(format!("desired {} (want {})", d.desired, self.want));
        }
        if let Some(want) = self.want_conditions
            && d.conditions != want
        {
            wrong.push(format!("conditions {:?} (want {want:?})", d.conditions));
        }
        (!wrong.is_empty()).then(|| format!("{test}/{}: {}", self.name, wrong.join("; ")))
    }
}

fn run_cases(test: &str, cases: Vec<Case>, expected_rows: usize) {
    assert_eq!(cases.len(), expected_rows, "{test}: row count changed");
    let failures: Vec<String> = cases.into_iter().filter_map(|c| c.run(test)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Pods metric vehicle for a CPU row with 1-core requests: AverageValue = utilization × 10 milli.
fn cpu(target_percent: i64, levels: &[i64]) -> Metric {
    pods_metric(target_percent * 10, levels)
}

#[test]
fn test_scale_cpu() {
    // CPU vehicle throughout; the rows on unready and hot-CPU pods are CPU-only and not ported.
    use PodPhase::{Failed, Running as R, TerminatingUnready as Del};
    #[rustfmt::skip]
    let rows = vec![
        case("scale up", (2, 6), 3, 5)
            .metric(cpu(30, &[300, 500, 700])),
        case("scale up ignores failed pods", (2, 6), 2, 4)
            .metric(cpu(30, &[500, 700]))
            .pods(with_phases(&[R, R, Failed, Failed])),
        case("scale up ignores deletion pods", (2, 6), 2, 4)
            .metric(cpu(30, &[500, 700]))
            .pods(with_phases(&[R, R, Del, Del])),
        // The target's kind does not enter the model (nor the rule).
        case("scale up deployment", (2, 6), 3, 5)
            .metric(cpu(30, &[300, 500, 700])),
        case("scale up replicaset", (2, 6), 3, 5)
            .metric(cpu(30, &[300, 500, 700])),
        case("scale down", (2, 6), 5, 3)
            .metric(cpu(50, &[100, 300, 500, 250, 250]))
            .history(&[]),
        case("scale down ignores failed pods", (2, 6), 5, 3)
            .metric(cpu(50, &[100, 300, 500, 250, 250]))
            .pods(with_phases(&[R, R, R, R, R, Failed, Failed]))
            .history(&[]),
        case("scale down ignores deletion pods", (2, 6), 5, 3)
            .metric(cpu(50, &[100, 300, 500, 250, 250]))
            .pods(with_phases(&[R, R, R, R, R, Del, Del]))
            .history(&[]),
    ];
    run_cases("TestScaleCPU", rows, 8);
}

#[test]
fn test_scale_up_cm() {
    use PodPhase::{Running as R, Unready as U};
    #[rustfmt::skip]
    let rows = vec![
        case("scale up custom metric", (2, 6), 3, 4)
            .metric(pods_metric(15_000, &[20_000, 10_000, 30_000])),
        // Not Ready (and hot CPU) but Running: still counted for a Pods metric.
        case("unready and hot cpu pods do not reduce scale for custom metric", (2, 6), 3, 6)
            .metric(pods_metric(15_000, &[50_000, 10_000, 30_000]))
            .pods(with_phases(&[R, R, U])),
        case("unready and hot cpu pods scale to max with scaling limited condition", (2, 6), 3, 6)
            .metric(pods_metric(15_000, &[50_000, 15_000, 30_000]))
            .pods(with_phases(&[U, R, U]))
            .conditions(ok_with(&[cond(AbleToScale, true, "SucceededRescale"), cond(ScalingLimited, true, "TooManyReplicas"), stz_false()])),
        case("scale up external metric with value target", (2, 6), 3, 4)
            .metric(external(Target::Value(6_666), &[8_600])),
        case("scale up external metric with per-pod average value target", (2, 6), 3, 4)
            .metric(external(Target::AverageValue(2_222), &[8_600])),
    ];
    run_cases("TestScaleUpCM", rows, 5);
}

fn from_zero_conditions() -> Vec<Condition> {
    vec![
        stz_false(),
        cond(AbleToScale, true, "SucceededRescale"),
        cond(ScalingActive, true, "ValidMetricFound"),
        cond(ScalingLimited, false, "DesiredWithinRange"),
    ]
}

#[test]
fn test_scale_up_cm_object() {
    let value = |t| Target::Value(t);
    #[rustfmt::skip]
    let rows = vec![
        case("scale up object metric with value target", (2, 6), 3, 4)
            .metric(object(value(15_000), 20_000)),
        // From zero: ceil(20/15) = 2, no tolerance, no pods.
        case("scale up from zero with HPAScaleToZero enabled", (0, 6), 0, 2)
            .metric(object(value(15_000), 20_000))
            .scaled_to_zero()
            .conditions(from_zero_conditions()),
        case("scale up from zero with HPAScaleToZero disabled", (0, 6), 0, 0)
            .metric(object(value(15_000), 20_000))
            .scaled_to_zero()
            .gate(false)
            .conditions(inactive("ScalingDisabled")),
        // A ratio of exactly 1 still wakes the target: ceil(1) = 1.
        case("scale up from zero ignores tolerance with HPAScaleToZero enabled", (0, 6), 0, 1)
            .metric(object(value(1_000), 1_000))
            .scaled_to_zero()
            .conditions(from_zero_conditions()),
        case("scale up from zero ignores tolerance with HPAScaleToZero disabled", (0, 6), 0, 0)
            .metric(object(value(1_000), 1_000))
            .scaled_to_zero()
            .gate(false)
            .conditions(inactive("ScalingDisabled")),
        case("scale up per-pod object metric with average value target", (2, 6), 3, 4)
            .metric(object(Target::AverageValue(10_000), 40_000)),
    ];
    run_cases("TestScaleUpCMObject", rows, 6);
}

#[test]
fn test_scale_with_one_invalid_metric() {
    // CPU vehicle; the invalid "CheddarCheese" metric is a metric that yields no value.
    let invalid = || failing(MetricSource::Pods, Target::AverageValue(1));
    #[rustfmt::skip]
    let rows = vec![
        case("scale up with one invalid metric", (2, 6), 3, 4)
            .metric(cpu(30, &[300, 400, 500]))
            .metric(invalid()),
        // Neither a CPU nor an invalid metric can scale from zero, and there is no
        // ScaledToZero condition: disabled whatever the gate.
        case("from zero with invalid metric, HPAScaleToZero enabled", (0, 6), 0, 0)
            .metric(cpu(30, &[300, 400, 500]))
            .metric(invalid())
            .history(&[])
            .conditions(inactive("ScalingDisabled")),
        case("from zero with invalid metric, HPAScaleToZero disabled", (0, 6), 0, 0)
            .metric(cpu(30, &[300, 400, 500]))
            .metric(invalid())
            .history(&[])
            .gate(false)
            .conditions(inactive("ScalingDisabled")),
    ];
    run_cases("TestScaleWithOneInvalidMetric", rows, 3);
}

#[test]
fn test_scale_down_cm() {
    let to_zero_on = ok_with(&[cond(ScaledToZero, true, "ScaledToZero")]);
    #[rustfmt::skip]
    let rows = vec![
        case("scale down pods metric", (2, 6), 5, 3)
            .metric(pods_metric(20_000, &[12_000; 5]))
            .history(&[]),
        case("scale down object metric with value target", (2, 6), 5, 3)
            .metric(object(Target::Value(20_000), 12_000))
            .history(&[]),
        case("scale down to zero object metric with HPAScaleToZero enabled", (0, 6), 5, 0)
            .metric(object(Target::Value(20_000), 0))
            .history(&[])
            .conditions(to_zero_on.clone()),
        case("scale down to zero object metric with HPAScaleToZero disabled", (0, 6), 5, 0)
            .metric(object(Target::Value(20_000), 0))
            .history(&[])
            .gate(false)
            .conditions(ok_with(&[])),
        case("scale down per-pod object metric with average value target", (2, 6), 5, 3)
            .metric(object(Target::AverageValue(20_000), 60_000))
            .history(&[]),
        case("scale down external metric with value target", (2, 6), 5, 3)
            .metric(external(Target::Value(14_400), &[8_600]))
            .history(&[]),
        case("scale down to zero external metric with HPAScaleToZero enabled", (0, 6), 5, 0)
            .metric(external(Target::Value(14_400), &[0]))
            .history(&[])
            .conditions(to_zero_on),
        case("scale down to zero external metric with HPAScaleToZero disabled", (0, 6), 5, 0)
            .metric(external(Target::Value(14_400), &[0]))
            .history(&[])
            .gate(false)
            .conditions(ok_with(&[])),
        case("scale down per-pod external metric with average value target", (2, 6), 5, 3)
            .metric(external(Target::AverageValue(3_000), &[8_600]))
            .history(&[]),
    ];
    run_cases("TestScaleDownCM", rows, 9);
}

#[test]
fn test_scale_to_zero_behavior() {
    let object15 = || object(Target::Value(15_000), 20_000);
    #[rustfmt::skip]
    let rows = vec![
        case("from zero without condition, HPAScaleToZero enabled", (0, 6), 0, 0)
            .metric(object15())
            .conditions(inactive("ScalingDisabled")),
        case("from zero without condition, HPAScaleToZero disabled", (0, 6), 0, 0)
            .metric(object15())
            .gate(false)
            .conditions(inactive("ScalingDisabled")),
        // ceil(10/15) = 1 from zero, below the raised minReplicas: 2, TooFewReplicas.
        case("minReplicas increased with ScaledToZero condition, HPAScaleToZero enabled", (2, 6), 0, 2)
            .metric(object(Target::Value(15_000), 10_000))
            .scaled_to_zero()
            .conditions(vec![stz_false(), cond(AbleToScale, true, "SucceededRescale"), cond(ScalingActive, true, "ValidMetricFound"), cond(ScalingLimited, true, "TooFewReplicas")]),
        case("minReplicas increased with ScaledToZero condition, HPAScaleToZero disabled", (2, 6), 0, 0)
            .metric(object(Target::Value(15_000), 10_000))
            .scaled_to_zero()
            .gate(false)
            .conditions(inactive("ScalingDisabled")),
        // CPU vehicle (3 → 5).
        case("stale ScaledToZero condition cleared on normal rescale, HPAScaleToZero enabled", (1, 6), 3, 5)
            .metric(cpu(30, &[300, 500, 700]))
            .scaled_to_zero()
            .conditions(from_zero_conditions()),
        case("stale ScaledToZero condition removed on normal rescale, HPAScaleToZero disabled", (1, 6), 3, 5)
            .metric(cpu(30, &[300, 500, 700]))
            .scaled_to_zero()
            .gate(false)
            .conditions(ok_with(&[])),
        // CPU vehicle; a target scaled to zero by hand.
        case("manual scale to zero disables HPA, HPAScaleToZero enabled", (1, 6), 0, 0)
            .metric(cpu(50, &[]))
            .conditions(inactive("ScalingDisabled")),
        case("manual scale to zero disables HPA, HPAScaleToZero disabled", (1, 6), 0, 0)
            .metric(cpu(50, &[]))
            .gate(false)
            .conditions(inactive("ScalingDisabled")),
        case("no ScaledToZero condition when HPAScaleToZero disabled", (1, 6), 3, 5)
            .metric(cpu(30, &[300, 500, 700]))
            .gate(false)
            .conditions(ok_with(&[])),
    ];
    run_cases("TestScaleToZeroBehavior", rows, 9);
}

#[test]
fn test_tolerance() {
    let ready = || ok_with(&[cond(AbleToScale, true, "ReadyForNewScale")]);
    #[rustfmt::skip]
    let rows = vec![
        // CPU vehicle: 1010, 1030, 1020 on 0.9, 1.0, 1.1 cores = 102 % of a 100 % target.
        case("CPU resource metric within tolerance", (1, 5), 3, 3)
            .metric(pods_metric(1_000, &[1_020; 3]))
            .conditions(ready()),
        case("pods metric within tolerance", (1, 5), 3, 3)
            .metric(pods_metric(20_000, &[20_000, 20_001, 21_000]))
            .conditions(ready()),
        case("object metric with value target within tolerance", (1, 5), 3, 3)
            .metric(object(Target::Value(20_000), 20_050))
            .conditions(ready()),
        case("external metric with value target within tolerance", (2, 6), 4, 4)
            .metric(external(Target::Value(8_666), &[8_600]))
            .conditions(ready()),
        case("per-pod object metric with average value target within tolerance", (2, 6), 4, 4)
            .metric(object(Target::AverageValue(2_200), 8_600))
            .conditions(ready()),
        case("per-pod external metric with average value target within tolerance", (2, 6), 4, 4)
            .metric(external(Target::AverageValue(2_200), &[8_600]))
            .conditions(ready()),
    ];
    run_cases("TestTolerance", rows, 6);
}

#[test]
fn test_configurable_tolerance() {
    // CPU vehicle (100 % target). A behavior with only a tolerance set is defaulted otherwise;
    // the model takes what `tolerancesForHpa` returns, which with the HPAConfigurableTolerance
    // gate off is the controller's 0.1 both ways.
    let tol = |down, up| Tolerances {
        scale_down: down,
        scale_up: up,
    };
    let defaults = || behavior(None, None);
    let ready = || ok_with(&[cond(AbleToScale, true, "ReadyForNewScale")]);
    #[rustfmt::skip]
    let rows = vec![
        case("scaling up because of a 1% configurable tolerance", (1, 5), 3, 4)
            .metric(pods_metric(1_000, &[1_020; 3]))
            .behavior(defaults())
            .tol(tol(0.1, 0.01))
            .conditions(ok_with(&[cond(AbleToScale, true, "SucceededRescale"), stz_false()])),
        case("no scale-down because of a 90% configurable tolerance", (1, 5), 3, 3)
            .metric(pods_metric(1_000, &[300; 3]))
            .behavior(defaults())
            .tol(tol(0.9, 0.1))
            .conditions(ready()),
        case("no scaling because of the large default tolerance", (1, 5), 3, 3)
            .metric(pods_metric(1_000, &[1_020; 3]))
            .conditions(ready()),
        case("no scaling because the configurable tolerance is ignored when feature gate is disabled", (1, 5), 3, 3)
            .metric(pods_metric(1_000, &[1_020; 3]))
            .behavior(defaults())
            .conditions(ready()),
    ];
    run_cases("TestConfigurableTolerance", rows, 4);
}

#[test]
fn test_replica_limits() {
    let limited = |reason| ok_with(&[cond(ScalingLimited, true, reason), stz_false()]);
    let rescaled = || vec![cond(AbleToScale, true, "SucceededRescale"), stz_false()];
    let up_700 = || behavior(Some(rules(0, 0, 700, 60, 0)), None);
    #[rustfmt::skip]
    let rows = vec![
        // CPU vehicle: 10, 95, 10 against 90 % → 1 pod, clamped to 2.
        case("scale down clamped to min replicas", (2, 5), 3, 2)
            .metric(cpu(90, &[10, 95, 10]))
            .history(&[])
            .conditions(limited("TooFewReplicas")),
        // A Pods (not Object/External) metric: ScaledToZero stays False at zero.
        case("scale down to zero when min replicas is zero", (0, 5), 3, 0)
            .metric(cpu(90, &[0, 0, 0]))
            .history(&[])
            .conditions(ok_with(&[cond(ScalingLimited, false, "DesiredWithinRange"), stz_false()])),
        case("scale down clamped to min when desired is zero", (2, 5), 3, 2)
            .metric(cpu(90, &[0, 0, 0]))
            .history(&[])
            .conditions(limited("TooFewReplicas")),
        case("no scaling when spec replicas is zero", (3, 5), 0, 0)
            .metric(cpu(90, &[]))
            .conditions(inactive("ScalingDisabled")),
        case("scale up to min when below min replicas", (3, 5), 2, 3)
            .metric(cpu(90, &[]))
            .conditions(rescaled()),
        case("scale down to max when above max replicas", (3, 5), 10, 5)
            .metric(cpu(90, &[]))
            .conditions(rescaled()),
        case("scale up clamped to max replicas", (2, 5), 3, 5)
            .metric(cpu(90, &[8_000, 9_500, 1_000]))
            .conditions(limited("TooManyReplicas")),
        case("scale up to min immediately even with recent scale time", (2, 6), 1, 2)
            .metric(cpu(90, &[0, 0, 0, 0]))
            .pods(running(4))
            .conditions(rescaled()),
        // CPU vehicle: 100, 200, 300 on 0.1 cores against 10 % (200 % each) → 60, capped at
        // ceil(3 × 8) = 24 by 700 % per 60 s.
        case("upscale capped by scaling policy", (1, 100), 3, 24)
            .metric(pods_metric(10, &[100, 200, 300]))
            .behavior(up_700())
            .conditions(limited("ScaleUpLimit")),
        case("upscale cap greater than max replicas", (1, 20), 3, 20)
            .metric(pods_metric(10, &[100, 200, 300]))
            .behavior(up_700())
            .conditions(limited("TooManyReplicas")),
        case("scale down to max immediately even with recent scale time", (2, 5), 6, 5)
            .metric(cpu(50, &[8_000, 9_500, 1_000]))
            .pods(running(3))
            .conditions(rescaled()),
    ];
    run_cases("TestReplicaLimits", rows, 11);
}

#[test]
fn test_metrics_edge_cases() {
    // CPU vehicle; "superfluous metrics reported" and "empty CPU requests" are CPU-only rules.
    #[rustfmt::skip]
    let rows = vec![
        // 400 and 95 of 1000 with two pods missing: 247 → missing count as the target → 3.
        case("missing metrics from some pods", (2, 6), 4, 3)
            .metric(cpu(100, &[400, 95]))
            .history(&[]),
        // No value at all: the Pods metric fails (FailedGetPodsMetric where CPU would say
        // FailedGetResourceMetric) and the HPA holds.
        case("empty metrics from all pods", (2, 6), 4, 4)
            .metric(failing(MetricSource::Pods, Target::AverageValue(1_000)))
            .conditions(inactive("FailedGetPodsMetric")),
        // One pod (200m on 0.2 cores = 100 % against 50 %): ratio 2 × 1 = 2.
        case("missing reports from some pods scales down", (1, 5), 4, 2)
            .metric(pods_metric(100, &[200]))
            .pods(running(1))
            .history(&[]),
        // Deployment update with 25 % surge: 5 pods exactly at target keep spec's 4.
        case("more replicas than spec no scale", (1, 8), 4, 4)
            .status(5)
            .pods(running(5))
            .metric(cpu(50, &[500; 5]))
            .conditions(ok_with(&[cond(AbleToScale, true, "ReadyForNewScale")])),
    ];
    run_cases("TestMetricsEdgeCases", rows, 4);
}

#[test]
fn test_event_creation() {
    // Events are not modelled; the rescale each row expects is (CPU vehicle, requests 0.2 and
    // 0.4 cores against 50 %).
    #[rustfmt::skip]
    let rows = vec![
        case("event created on scale up", (1, 5), 1, 2)
            .metric(pods_metric(100, &[200])),
        case("no event when replicas unchanged", (1, 5), 2, 2)
            .metric(pods_metric(200, &[200, 200])),
    ];
    run_cases("TestEventCreation", rows, 2);
}

#[test]
fn test_condition_failed_get_metrics() {
    // "failed get resource metric" is the CPU source, not modelled.
    #[rustfmt::skip]
    let rows = vec![
        case("failed get pods metric", (1, 100), 3, 3)
            .metric(failing(MetricSource::Pods, Target::AverageValue(15_000)))
            .conditions(inactive("FailedGetPodsMetric")),
        case("failed get object metric", (1, 100), 3, 3)
            .metric(failing(deployment(), Target::Value(15_000)))
            .conditions(inactive("FailedGetObjectMetric")),
        case("failed get external metric", (1, 100), 3, 3)
            .metric(failing(MetricSource::External, Target::Value(300)))
            .conditions(inactive("FailedGetExternalMetric")),
    ];
    run_cases("TestConditionFailedGetMetrics", rows, 3);
}

#[test]
fn test_scale_timing_behavior() {
    #[rustfmt::skip]
    let rows = vec![
        case("no backoff upscale custom metric only", (1, 5), 3, 4)
            .metric(pods_metric(15_000, &[20_000, 10_000, 30_000]))
            .conditions(ok_with(&[cond(AbleToScale, true, "SucceededRescale"), stz_false()])),
        // CPU vehicle beside the Pods metric: 20000m on 1 core against 10 % wants 600.
        case("no backoff upscale custom metric and CPU", (1, 5), 3, 5)
            .metric(pods_metric(15_000, &[20_000, 10_000, 30_000]))
            .metric(cpu(10, &[20_000, 10_000, 30_000]))
            .conditions(ok_with(&[cond(AbleToScale, true, "SucceededRescale"), cond(ScalingLimited, true, "TooManyReplicas"), stz_false()])),
        // CPU vehicle: 50m on 0.1 cores (50 %) against 100 % on 3 pods wants 2; the 4 from a
        // minute ago holds.
        case("stabilize downscale", (1, 5), 4, 4)
            .metric(pods_metric(100, &[50, 50, 50]))
            .pods(running(3))
            .history(&[(10, 600), (4, 60)])
            .conditions(ok_with(&[cond(AbleToScale, true, "ScaleDownStabilized")])),
        // Issue 16, disagreement 2 (TestScaleDownStabilizeInitialSize): no history, so the
        // starting 5 is recorded and the proposal of 3 waits for the window.
        case("stabilize downscale initial size", (2, 6), 5, 5)
            .metric(cpu(50, &[100, 300, 500, 250, 250]))
            .conditions(ok_with(&[cond(AbleToScale, true, "ScaleDownStabilized")])),
    ];
    run_cases("TestScaleTimingBehavior", rows, 4);
}

#[test]
fn test_one_metric_empty_external_error() {
    // CPU vehicle beside an External metric whose fetch fails.
    let broken = || failing(MetricSource::External, Target::Value(100));
    #[rustfmt::skip]
    let rows = vec![
        case("scale up when one external metric errors", (2, 6), 3, 4)
            .metric(cpu(30, &[300, 400, 500]))
            .metric(broken()),
        case("no scale down when one external metric errors", (2, 6), 5, 5)
            .metric(cpu(50, &[100, 300, 500, 250, 250]))
            .metric(failing(MetricSource::External, Target::Value(1_000)))
            .history(&[])
            .conditions(inactive("FailedGetExternalMetric")),
    ];
    run_cases("TestOneMetricEmptyExternalError", rows, 2);
}

// ---- function-level tables -------------------------------------------------------------------

/// Names each row that disagrees.
fn report(test: &str, failures: Vec<String>, rows: usize, expected_rows: usize) {
    assert_eq!(rows, expected_rows, "{test}: row count changed");
    assert!(failures.is_empty(), "{test}:\n{}", failures.join("\n"));
}

#[test]
fn test_convert_desired_replicas_with_rules() {
    let limit = LegacyScaleUpLimit {
        factor: 8.0,
        minimum: 4.0,
    };
    // (annotation, current, desired, min, max, converted, condition)
    #[rustfmt::skip]
    let rows = [
        ("prenormalized desired replicas within range", 5, 7, 3, 8, 7, "DesiredWithinRange"),
        ("prenormalized desired replicas < minReplicas", 3, 1, 2, 8, 2, "TooFewReplicas"),
        ("prenormalized desired zeroed replicas within range", 1, 0, 0, 10, 0, "DesiredWithinRange"),
        ("maxReplicas is the limit because maxReplicas < scaleUpLimit", 20, 1000, 1, 10, 10, "TooManyReplicas"),
        // calculateScaleUpLimit(3) with the test's factor 8.
        ("scaleUpLimit is the limit because scaleUpLimit < maxReplicas", 3, 1000, 1, 2000, 24, "ScaleUpLimit"),
    ];
    let mut failures = Vec::new();
    for (name, current, desired, min, max, want, reason) in rows {
        let got = convert_with_rules(current, desired, (min, max), limit);
        if got != (want, reason) {
            failures.push(format!("{name}: got {got:?}, want {:?}", (want, reason)));
        }
    }
    report(
        "TestConvertDesiredReplicasWithRules",
        failures,
        rows.len(),
        5,
    );
}

#[test]
fn test_calculate_scale_up_and_down_limits() {
    let mut min_rules = rules(2, 60, 50, 60, 300);
    min_rules.select = Select::Min;
    let state = BehaviorState::default();
    let now = t0();
    // TestCalculateScaleUpLimitWithScalingRules: min(1 + 2, ceil(1 × 1.5)) = 2.
    assert_eq!(
        scale_up_limit(1, &state, &min_rules, now),
        2,
        "TestCalculateScaleUpLimitWithScalingRules"
    );
    // TestCalculateScaleDownLimitWithBehaviors: the smaller change, max(5 − 2, int(5 × 0.5)) = 3.
    assert_eq!(
        scale_down_limit(5, &state, &min_rules, now),
        3,
        "TestCalculateScaleDownLimitWithBehaviors"
    );
}

#[test]
fn test_normalize_desired_replicas() {
    // stabilizeRecommendation with the 5 min controller window.
    type Row = (&'static str, &'static [(i32, i64)], i32, i32, usize);
    #[rustfmt::skip]
    let rows: [Row; 5] = [
        ("empty log", &[], 5, 5, 1),
        ("stabilize", &[(4, 120), (5, 60)], 3, 5, 3),
        ("no stabilize", &[(1, 120), (2, 60)], 3, 3, 3),
        ("no stabilize - old recommendations", &[(10, 600), (9, 540)], 3, 3, 2),
        ("stabilize - old recommendations", &[(10, 600), (4, 60), (5, 120), (9, 540)], 3, 5, 4),
    ];
    let mut failures = Vec::new();
    for (name, history, desired, want, log_len) in rows {
        let now = t0();
        let mut state = BehaviorState {
            recommendations: Some(recs(history, now)),
            ..BehaviorState::default()
        };
        let got = state.stabilize_legacy(Duration::from_secs(300), desired, later(now));
        let len = state.recommendations.as_ref().map_or(0, Vec::len);
        if (got, len) != (want, log_len) {
            failures.push(format!(
                "{name}: got {got} with {len} entries, want {want} with {log_len}"
            ));
        }
    }
    report("TestNormalizeDesiredReplicas", failures, rows.len(), 5);
}

/// One TestScalingWithRules row.
struct RateRow {
    name: &'static str,
    up_events: Vec<i32>,
    down_events: Vec<i32>,
    bounds: (i32, i32),
    up: Option<ScalingRules>,
    down: Option<ScalingRules>,
    current: i32,
    desired: i32,
    want: (i32, &'static str),
}

fn rate(
    name: &'static str,
    bounds: (i32, i32),
    current: i32,
    desired: i32,
    want: (i32, &'static str),
) -> RateRow {
    RateRow {
        name,
        up_events: Vec::new(),
        down_events: Vec::new(),
        bounds,
        up: None,
        down: None,
        current,
        desired,
        want,
    }
}

impl RateRow {
    fn up(mut self, r: ScalingRules) -> Self {
        self.up = Some(r);
        self
    }
    fn down(mut self, r: ScalingRules) -> Self {
        self.down = Some(r);
        self
    }
    fn up_events(mut self, e: &[i32]) -> Self {
        self.up_events = e.to_vec();
        self
    }
    fn down_events(mut self, e: &[i32]) -> Self {
        self.down_events = e.to_vec();
        self
    }
}

#[test]
fn test_scaling_with_rules() {
    let (w, tf, tm, su, sd) = (
        "DesiredWithinRange",
        "TooFewReplicas",
        "TooManyReplicas",
        "ScaleUpLimit",
        "ScaleDownLimit",
    );
    #[rustfmt::skip]
    let rows = vec![
        rate("prenormalized desired replicas within range", (3, 8), 5, 7, (7, w)),
        rate("prenormalized desired replicas < minReplicas", (2, 8), 3, 1, (2, tf)),
        rate("prenormalized desired replicas within range when minReplicas is 0", (0, 10), 1, 0, (0, w)),
        rate("maxReplicas is the limit because maxReplicas < scaleUpLimit", (1, 10), 20, 1000, (10, tm)),
        rate("desired replica count is more than the maximum replica count", (100, 150), 100, 1000, (150, tm)),
        rate("scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies", (1, 2000), 3, 1000, (4, su))
            .up(rules(0, 0, 1, 60, 0)),
        rate("scaleUp with default behavior", (1, 1000), 10, 50, (20, su)),
        rate("scaleUp with pods policy larger than percent policy", (1, 1000), 10, 500, (110, su))
            .up(rules(100, 60, 100, 60, 0)),
        rate("scaleUp with percent policy larger than pods policy", (1, 1000), 10, 500, (20, su))
            .up(rules(2, 60, 100, 60, 0)),
        rate("scaleUp with spec MaxReplicas limitation with large pod policy", (1, 1000), 10, 50, (50, w))
            .up(rules(100, 60, 0, 0, 0)),
        rate("scaleUp with spec MaxReplicas limitation with large percent policy", (1, 1000), 10, 50, (50, w))
            .up(rules(10000, 60, 0, 0, 0)),
        rate("scaleUp with pod policy limitation", (1, 1000), 10, 50, (40, su))
            .up(rules(30, 60, 0, 0, 0)),
        rate("scaleUp with percent policy limitation", (1, 1000), 10, 50, (30, su))
            .up(rules(0, 0, 200, 60, 0)),
        rate("scaleDown with percent policy larger than pod policy", (1, 1000), 100, 2, (80, sd))
            .down(rules(20, 60, 1, 60, 300)),
        rate("scaleDown with pod policy larger than percent policy", (1, 1000), 100, 2, (98, sd))
            .down(rules(2, 60, 1, 60, 300)),
        rate("scaleDown with spec MinReplicas limitation with large pod policy", (1, 1000), 10, 0, (1, tf))
            .down(rules(100, 60, 0, 0, 300)),
        rate("scaleDown with spec MinReplicas limitation with large percent policy", (5, 1000), 10, 2, (5, tf))
            .down(rules(0, 0, 100, 60, 300)),
        rate("scaleDown with pod policy limitation", (1, 1000), 10, 2, (5, sd))
            .down(rules(5, 60, 0, 0, 300)),
        rate("scaleDown with percent policy limitation", (1, 1000), 10, 5, (5, w))
            .down(rules(0, 0, 50, 60, 300)),
        rate("scaleUp with spec MaxReplicas limitation with large pod policy and events", (1, 200), 100, 500, (200, tm))
            .up_events(&[1, 5, 9])
            .up(rules(300, 60, 0, 0, 0)),
        rate("scaleUp with spec MaxReplicas limitation with large percent policy and events", (1, 200), 100, 500, (200, tm))
            .up_events(&[1, 5, 9])
            .up(rules(0, 0, 10000, 60, 0)),
        rate("scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events", (1, 1000), 100, 500, (100, su))
            .up_events(&[1, 5, 9])
            .up(rules(5, 120, 0, 0, 0)),
        rate("scaleUp with pod policy and previous scale up events", (1, 1000), 100, 500, (235, su))
            .up_events(&[1, 5, 9])
            .up(rules(150, 120, 0, 0, 0)),
        rate("scaleUp with percent policy and previous scale up events", (1, 1000), 100, 500, (255, su))
            .up_events(&[1, 5, 9])
            .up(rules(0, 0, 200, 120, 0)),
        rate("scaleUp with percent policy and previous scale up and down events", (1, 1000), 6, 24, (16, su))
            .up_events(&[4])
            .down_events(&[2])
            .up(rules(0, 0, 300, 300, 0)),
        rate("scaleDown with default policy and previous events", (1, 1000), 10, 5, (5, w))
            .down_events(&[1, 5, 9]),
        rate("scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events", (1, 1000), 100, 0, (1, tf))
            .down_events(&[1, 5, 9])
            .down(rules(115, 120, 0, 0, 300)),
        rate("scaleDown with spec MinReplicas limitation with large pod policy and previous events", (5, 1000), 100, 0, (5, tf))
            .down_events(&[1, 5, 9])
            .down(rules(130, 120, 0, 0, 300)),
        rate("scaleDown with spec MinReplicas limitation with large percent policy and previous events", (5, 1000), 100, 2, (5, tf))
            .down_events(&[1, 5, 9])
            .down(rules(0, 0, 100, 120, 300)),
        rate("scaleDown with pod policy limitation and previous events", (1, 1000), 100, 2, (100, sd))
            .down_events(&[1, 5, 9])
            .down(rules(5, 120, 0, 0, 300)),
        rate("scaleDown with percent policy limitation and previous events", (1, 1000), 100, 0, (56, sd))
            .down_events(&[2, 4, 6])
            .down(rules(0, 0, 50, 120, 300)),
        rate("scaleDown with percent policy and previous scale up and down events", (1, 1000), 10, 1, (6, sd))
            .up_events(&[2])
            .down_events(&[4])
            .down(rules(0, 0, 50, 180, 0)),
        rate("scaleDown with previous events preventing further scale down", (1, 1000), 100, 0, (100, sd))
            .down_events(&[10, 10, 10])
            .down(rules(0, 0, 10, 120, 300)),
        rate("scaleDown with with previous events still allowing more scale down", (1, 1000), 10, 5, (5, w))
            .down_events(&[10, 10, 10])
            .down(rules(0, 0, 1000, 120, 300)),
        rate("check 'outdated' flag for events for one behavior for up", (1, 1000), 100, 200, (200, w))
            .up_events(&[8, 12, 9, 11])
            .up(rules(1000, 60, 0, 0, 0)),
        rate("check that events were not marked 'outdated' for two different policies in the behavior for up", (1, 1000), 100, 200, (200, w))
            .up_events(&[8, 12, 9, 11])
            .up(rules(1000, 120, 100, 60, 0)),
        rate("check that events were marked 'outdated' for two different policies in the behavior for up", (1, 1000), 100, 200, (200, w))
            .up_events(&[8, 12, 9, 11])
            .up(rules(1000, 30, 100, 60, 0)),
        rate("check 'outdated' flag for events for one behavior for down", (1, 1000), 100, 5, (5, w))
            .down_events(&[8, 12, 9, 11])
            .down(rules(1000, 60, 0, 0, 300)),
        rate("check that events were not marked 'outdated' for two different policies in the behavior for down", (1, 1000), 100, 5, (5, w))
            .down_events(&[8, 12, 9, 11])
            .down(rules(1000, 120, 100, 60, 300)),
        rate("check that events were marked 'outdated' for two different policies in the behavior for down", (1, 1000), 100, 5, (5, w))
            .down_events(&[8, 12, 9, 11])
            .down(rules(1000, 30, 100, 60, 300)),
    ];
    let count = rows.len();
    let mut failures = Vec::new();
    for r in rows {
        let now = t0();
        let state = BehaviorState {
            recommendations: None,
            scale_up_events: uniform(&r.up_events, 120.0, now),
            scale_down_events: uniform(&r.down_events, 120.0, now),
        };
        let b = behavior(r.up, r.down);
        let got = state.limit_rate(&b, r.current, r.desired, r.bounds, later(now));
        if got != r.want {
            failures.push(format!("{}: got {got:?}, want {:?}", r.name, r.want));
        }
    }
    report("TestScalingWithRules", failures, count, 40);
}

#[test]
fn test_store_scale_events() {
    // (row, previous events as (change, seconds ago), new events as (change, outdated), rules,
    // replicas changed in the last 60 s before the store)
    type Events = &'static [(i32, i64)];
    type Stored = &'static [(i32, bool)];
    let two_policies = || Some(rules(10, 60, 100, 60, 0));
    #[rustfmt::skip]
    let rows: Vec<(&str, Events, Stored, Option<ScalingRules>, i32)> = vec![
        ("empty entries with default behavior", &[], &[], None, 0),
        ("empty entries with two-policy-behavior", &[], &[(5, false)], two_policies(), 0),
        ("one outdated entry to be kept untouched without behavior", &[(7, 61)], &[(7, false)], None, 0),
        ("one outdated entry to be replaced with behavior", &[(7, 61)], &[(5, false)], two_policies(), 0),
        ("one actual entry to be not touched with behavior", &[(7, 58)], &[(7, false), (5, false)], two_policies(), 7),
        ("two entries, one of them to be replaced", &[(7, 61), (6, 59)], &[(5, false), (6, false)], Some(rules(10, 60, 0, 0, 0)), 6),
        ("replace one entry, use policies with different periods", &[(8, 29), (6, 59), (7, 61), (9, 61)], &[(8, false), (6, false), (7, true), (5, false)], Some(rules(10, 60, 100, 30, 0)), 14),
        ("two entries, both actual", &[(7, 58), (6, 59)], &[(7, false), (6, false), (5, false)], Some(rules(10, 120, 100, 30, 0)), 13),
    ];
    let count = rows.len();
    let mut failures = Vec::new();
    for (name, prev, stored, scaling, changed) in rows {
        let b = scaling.map(|r| Behavior {
            scale_up: r.clone(),
            scale_down: r,
        });
        // Scale up 10 → 15 on the up list, then down 10 → 5 on the down list, as in Go.
        for (dir, to) in [("up", 15), ("down", 5)] {
            let now = t0();
            let events: Vec<ScaleEvent> = prev
                .iter()
                .map(|&(change, ago)| ScaleEvent {
                    change,
                    at: now - secs(ago),
                    outdated: false,
                })
                .collect();
            let mut state = BehaviorState::default();
            if to > 10 {
                state.scale_up_events = events.clone();
            } else {
                state.scale_down_events = events.clone();
            }
            let got_changed = change_in_period(Duration::from_secs(60), &events, later(now));
            state.record_scale(b.as_ref(), 10, to, later(now));
            let list = if to > 10 {
                &state.scale_up_events
            } else {
                &state.scale_down_events
            };
            let got: Vec<(i32, bool)> = list.iter().map(|e| (e.change, e.outdated)).collect();
            if got_changed != changed || got != stored {
                failures.push(format!(
                    "{name} ({dir}): changed {got_changed} (want {changed}), events {got:?} (want {stored:?})"
                ));
            }
        }
    }
    report("TestStoreScaleEvents", failures, count, 8);
}

#[test]
fn test_normalize_desired_replicas_with_behavior() {
    // (row, recommendations as (replicas, seconds ago), current, desired, stabilized, stored
    // recommendations (None: not checked), up window, down window)
    type Recs = &'static [(i32, i64)];
    type Row = (
        &'static str,
        Recs,
        i32,
        i32,
        i32,
        Option<&'static [i32]>,
        i64,
        i64,
    );
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("empty recommendations for scaling down", &[], 100, 5, 5, Some(&[5]), 0, 0),
        ("simple scale down stabilization", &[(4, 120), (5, 60)], 100, 3, 5, Some(&[4, 5, 3]), 0, 180),
        ("simple scale up stabilization", &[(4, 120), (5, 60)], 1, 7, 4, Some(&[4, 5, 7]), 300, 0),
        ("no scale down stabilization", &[(1, 120), (2, 60)], 100, 3, 3, Some(&[1, 2, 3]), 300, 0),
        ("no scale up stabilization", &[(4, 120), (5, 60)], 1, 3, 3, Some(&[4, 5, 3]), 0, 300),
        ("no scale down stabilization, reuse recommendation element", &[(10, 600), (9, 540)], 100, 3, 3, Some(&[10, 3]), 0, 0),
        ("no scale up stabilization, reuse recommendation element", &[(10, 600), (9, 540)], 1, 100, 100, Some(&[10, 100]), 0, 0),
        ("scale down stabilization, reuse one of obsolete recommendation element", &[(10, 600), (4, 60), (5, 120), (9, 540)], 100, 3, 5, Some(&[10, 4, 5, 3]), 0, 180),
        ("scale up stabilization, reuse one of obsolete recommendation element", &[(10, 6000), (6, 60), (5, 120), (9, 180)], 1, 100, 5, Some(&[100, 6, 5, 9]), 300, 0),
        ("scale up and down stabilization, do not scale up when prenormalized rec goes down", &[(2, 6000), (3, 180)], 2, 1, 2, None, 300, 300),
        ("scale up and down stabilization, do not scale down when prenormalized rec goes up", &[(2, 6000), (1, 180)], 2, 3, 2, None, 300, 300),
    ];
    let count = rows.len();
    let mut failures = Vec::new();
    for (name, history, current, desired, want, stored, up, down) in rows {
        let now = t0();
        let mut b = behavior(None, None);
        b.scale_up.stabilization_window = secs(up);
        b.scale_down.stabilization_window = secs(down);
        let mut state = BehaviorState {
            recommendations: Some(recs(history, now)),
            ..BehaviorState::default()
        };
        let got = state.stabilize(&b, current, desired, later(now));
        let got_stored: Vec<i32> = state
            .recommendations
            .iter()
            .flatten()
            .map(|r| r.replicas)
            .collect();
        let stored_ok = stored.is_none_or(|s| s == got_stored.as_slice());
        if got != want || !stored_ok {
            failures.push(format!(
                "{name}: got {got} stored {got_stored:?}, want {want} stored {stored:?}"
            ));
        }
    }
    report(
        "TestNormalizeDesiredReplicasWithBehavior",
        failures,
        count,
        11,
    );
}
