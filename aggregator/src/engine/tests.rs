use std::collections::BTreeMap;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config;
use crate::provider::ObjectRef;
use crate::selector::Selector;
use crate::window::{Ages, Observation, QueueState, SourceKey};

const T0: i64 = 1_700_000_000_000;

/// The HPA's Object request for deployment `binder` in `ns`.
fn deployment(metric: &str, ns: &str) -> CustomQuery {
    CustomQuery::new(
        metric.into(),
        "deployments.apps".into(),
        Some(ns.into()),
        ObjectRef::Named("binder".into()),
        Selector::default(),
    )
    .expect("query")
}

struct Fixture {
    clock: Arc<ManualClock>,
    store: Arc<WindowStore>,
    engine: Engine,
    seq: std::cell::Cell<u64>,
}

fn fixture(yaml: Option<&str>) -> Fixture {
    let rules = yaml.map_or_else(RuleSet::default, |y| config::parse(y).expect("valid"));
    let clock = ManualClock::new(T0);
    let store = Arc::new(WindowStore::new(rules.longest_window_ms()));
    let engine = Engine::new(rules, store.clone(), clock.clone());
    Fixture {
        clock,
        store,
        engine,
        seq: std::cell::Cell::new(0),
    }
}

impl Fixture {
    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn push(&self, ns: &str, pod: &str, queue: &str, ages_s: &[f64], ready: Option<u64>) {
        self.seq.set(self.seq.get() + 1);
        let now = self.now();
        let obs = Observation {
            key: SourceKey {
                namespace: ns.into(),
                pod: pod.into(),
                queue: queue.into(),
                vhost: "/".into(),
            },
            labels: BTreeMap::from([("app".to_string(), "binder".to_string())]),
            peer: "test".into(),
            instance: 1,
            seq: self.seq.get(),
            ages: Ages::Samples(
                ages_s
                    .iter()
                    .map(|a| ((a * 1000.0) as i64, now, false))
                    .collect(),
            ),
            queue_state: ready.map(|r| QueueState {
                messages_ready: r,
                consumers: 2,
                observed_at_ms: now,
            }),
            counters: None,
        };
        self.store.ingest(obs, now);
    }

    fn object(&self, metric: &str, ns: &str) -> Result<Vec<MetricValue>, ProviderError> {
        self.engine.custom(&deployment(metric, ns))
    }

    fn value(&self, metric: &str) -> f64 {
        let v = self.object(metric, "ns").expect("a value");
        assert_eq!(v.len(), 1);
        v[0].value
    }
}

#[test]
fn default_rule_serves_ceil_p90_seconds_of_the_namespace() {
    let f = fixture(None);
    let ages: Vec<f64> = (1..=10).map(f64::from).collect();
    f.push("ns", "a", "q", &ages, None);
    f.push("other", "b", "q", &[500.0], None);
    let v = f.object("seconds", "ns").expect("value");
    assert_eq!(
        v[0].value, 9.0,
        "p90 of 1..10 s is 9 s, other namespace ignored"
    );
    assert_eq!(v[0].object_name, "binder");
    assert_eq!(v[0].timestamp, to_system_time(T0));
    assert_eq!(v[0].window, Some(Duration::from_secs(30)));
    assert_eq!(v[0].labels.get("queue").map(String::as_str), Some("q"));
    let metrics = f.engine.metrics();
    assert_eq!(metrics[0].name, "seconds");
}

#[test]
fn every_statistic() {
    let yaml = "rules:\n".to_string()
        + &[
            "max", "min", "mean", "count", "rate", "p50", "p99.9", "last",
        ]
        .map(|s| format!("  - {{name: s{s}, statistic: {s}, unit: milliseconds, min: 0}}\n"))
        .concat();
    let f = fixture(Some(&yaml));
    f.push("ns", "a", "q", &[1.0, 2.0, 3.0, 4.0], None);
    f.clock.advance(1_000);
    f.push("ns", "a", "q", &[0.5], None);
    assert_eq!(f.value("smax"), 4_000.0);
    assert_eq!(f.value("smin"), 500.0);
    assert_eq!(f.value("smean"), 2_100.0);
    assert_eq!(f.value("scount"), 5.0);
    assert_eq!(f.value("srate"), 1.0, "5 ages / 30 s = 0.17/s, ceil");
    assert!((f.value("sp50") - 2_000.0).abs() <= 20.0);
    assert!((f.value("sp99.9") - 4_000.0).abs() <= 40.0, "within 1 %");
    assert_eq!(f.value("slast"), 500.0);
}

#[test]
fn combine_modes_and_pods() {
    let f = fixture(Some(
        "rules:\n  - {name: m, statistic: max, combine: max}\n  - {name: a, statistic: max, combine: mean}\n  - {name: s, statistic: max, combine: sum}\n",
    ));
    f.push("ns", "a", "q", &[10.0], None);
    f.push("ns", "b", "q", &[20.0], None);
    f.push("ns", "c", "q2", &[60.0], None);
    assert_eq!(f.value("m"), 60.0);
    assert_eq!(f.value("a"), 30.0);
    assert_eq!(f.value("s"), 90.0);
    let pods = f
        .engine
        .custom(
            &CustomQuery::new(
                "m".into(),
                "pods".into(),
                Some("ns".into()),
                ObjectRef::All(Selector::parse("app=binder").expect("selector")),
                Selector::parse("queue=q").expect("selector"),
            )
            .expect("query"),
        )
        .expect("pods");
    let got: Vec<(String, f64)> = pods
        .iter()
        .map(|v| (v.object_name.clone(), v.value))
        .collect();
    assert_eq!(got, [("a".to_string(), 10.0), ("b".to_string(), 20.0)]);
    let ext = f
        .engine
        .external(&ExternalQuery {
            namespace: "ns".into(),
            metric: "s".into(),
            selector: Selector::parse("queue=q2").expect("selector"),
        })
        .expect("external");
    assert_eq!(ext[0].value, 60.0);
}

#[test]
fn formula_unit_rounding_and_clamps() {
    let f = fixture(Some(
        r#"rules:
  - name: f
    formula: "p90 > 120.0 ? p90 * 2.0 : max(p90, messages_ready / 50.0)"
  - {name: floor, statistic: max, rounding: floor, max: 3}
  - {name: round, statistic: max, rounding: round}
  - {name: low, statistic: min, min: 7}
"#,
    ));
    f.push("ns", "a", "q", &[2.4], Some(1000));
    assert_eq!(f.value("f"), 20.0, "max(2.4, 1000/50) = 20");
    assert_eq!(f.value("floor"), 2.0);
    assert_eq!(f.value("round"), 2.0);
    assert_eq!(f.value("low"), 7.0);
    f.push("ns", "a", "q", &[200.0; 20], Some(0));
    assert_eq!(f.value("f"), 400.0, "p90 200 s > 120: doubled");
    assert_eq!(f.value("floor"), 3.0, "clamped to max");
}

#[test]
fn stall_grows_with_the_silence() {
    let f = fixture(Some(
        "rules:\n  - {name: s, statistic: p90, stall_after: 10s}\n",
    ));
    f.push("ns", "a", "q", &[5.0], Some(3));
    assert_eq!(f.value("s"), 5.0);
    for (silence, expect) in [(5_000, 5.0), (20_000, 25.0), (60_000, 65.0)] {
        f.clock.set(T0 + silence);
        // The sidecar keeps reporting the queue state, but no samples.
        f.push("ns", "a", "q", &[], Some(3));
        assert_eq!(f.value("s"), expect, "after {silence} ms");
    }
    // The queue drains: no longer a stall; no ages in the window and an empty queue → 0 → min 1.
    f.push("ns", "a", "q", &[], Some(0));
    assert_eq!(f.value("s"), 1.0);
}

#[test]
fn staleness_fallback_and_eviction() {
    let f = fixture(Some(
        "stale_after: 10s\nevict_after: 20s\nrules:\n  - {name: s}\n  - {name: fb, on_missing: {fallback: 5}}\n",
    ));
    let e = f.object("s", "ns").expect_err("never seen");
    assert!(e.to_string().contains("never seen"), "{e}");
    assert_eq!(f.value("fb"), 5.0);
    f.push("ns", "a", "q", &[3.0], None);
    assert_eq!(f.value("s"), 3.0);
    f.clock.advance(11_000);
    let e = f.object("s", "ns").expect_err("stale");
    assert!(
        e.to_string().contains("stale since 2023-11-14T22:13:30Z"),
        "{e}"
    );
    assert_eq!(f.value("fb"), 5.0);
    let c = f.store.sweep(f.now(), 10_000, 20_000);
    assert_eq!((c.live, c.stale, c.evicted), (0, 1, 0));
    f.clock.advance(20_000);
    let c = f.store.sweep(f.now(), 10_000, 20_000);
    assert_eq!(c.evicted, 1);
    let e = f.object("s", "ns").expect_err("evicted");
    assert!(e.to_string().contains("never seen"), "{e}");
}

#[test]
fn unknown_metric_is_not_found() {
    let f = fixture(None);
    let e = f.object("nope", "ns").expect_err("no rule");
    assert!(
        e.to_string()
            .contains("no rule serves a metric named \"nope\""),
        "{e}"
    );
}

#[test]
fn explain_steps_end_in_the_served_value() {
    let f = fixture(Some("rules:\n  - {name: s, formula: \"value * 2.0\"}\n"));
    f.push("ns", "a", "q", &[1.2, 3.3], None);
    f.push("ns", "b", "q", &[0.7], None);
    let served = f.value("s");
    let ev = f
        .engine
        .evaluate(&request::custom(&deployment("s", "ns")).expect("request"));
    assert_eq!(ev.inputs.len(), 2);
    assert_eq!(ev.outcomes[0].value, served);
    assert_eq!(ev.steps.last().map(|s| s.value), Some(served));
    let text: Vec<&str> = ev.steps.iter().map(|s| s.description.as_str()).collect();
    assert!(
        text.iter().any(|t| t.contains("combine Max over 2")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("formula `value * 2.0`")),
        "{text:?}"
    );
}

#[test]
fn config_reload_swaps_rules_atomically() {
    let f = fixture(None);
    f.push("ns", "a", "q", &[1.0, 50.0], None);
    assert_eq!(f.value("seconds"), 50.0);
    f.engine
        .set_rules(config::parse("rules:\n  - {name: seconds, statistic: min}\n").expect("ok"));
    assert_eq!(f.value("seconds"), 1.0);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the ages and percentile, the served value is the exact nearest-rank
        /// percentile within the summary's 1 % error (plus the ceil), never below `min`.
        #[test]
        fn served_percentile_is_within_one_percent(
            ages in proptest::collection::vec(1i64..10_000_000, 1..300),
            p in 1u32..=1000,
        ) {
            let pct = f64::from(p) / 10.0;
            let yaml = format!(
                "rules:\n  - {{name: m, statistic: p{pct}, unit: milliseconds, min: 0}}\n"
            );
            let f = fixture(Some(&yaml));
            let seconds: Vec<f64> = ages.iter().map(|&a| a as f64 / 1000.0).collect();
            f.push("ns", "a", "q", &seconds, None);
            let mut sorted: Vec<i64> = seconds.iter().map(|s| (s * 1000.0) as i64).collect();
            sorted.sort_unstable();
            let rank = ((pct / 100.0 * sorted.len() as f64).ceil() as usize).max(1);
            let exact = sorted[rank - 1] as f64;
            let served = f.value("m");
            prop_assert!(served >= exact * 0.99 - 1.0 && served <= exact * 1.01 + 1.0,
                "p{} served {} exact {}", pct, served, exact);
        }
    }
}

/// The expected-wait recipe (aggregator/README.md): the formula sees each statistic combined
/// across sources (`rate` with `max`: the busiest source), and the largest `messages_ready` and
/// `consumers` any source reports, not their sums.
#[test]
fn expected_wait_recipe_uses_the_busiest_rate_and_the_largest_backlog() {
    let f = fixture(Some(
        "rules:\n  - name: wait_estimate_ms\n    statistic: rate\n    combine: max\n    \
         formula: \"1000.0 * messages_ready / (max(rate, 0.1) * max(consumers, 1.0))\"\n",
    ));
    // 30 deliveries in 30 s on pod a (1/s), 15 on pod b; both see the same queue, a a bit later.
    f.push("ns", "a", "q", &[0.5; 30], Some(60));
    f.push("ns", "b", "q", &[0.5; 15], Some(40));
    assert_eq!(
        f.value("wait_estimate_ms"),
        30_000.0,
        "60 ready / (1 msg/s × 2 consumers) = 30 s"
    );
    // No delivery in the window while messages wait: the floor of 0.1/s makes it 10 s a message.
    f.clock.advance(40_000);
    f.push("ns", "a", "q", &[], Some(3));
    assert_eq!(f.value("wait_estimate_ms"), 15_000.0, "3 / (0.1 × 2) s");
    // An empty queue: 0, clamped to the floor of 1.
    f.push("ns", "a", "q", &[], Some(0));
    assert_eq!(f.value("wait_estimate_ms"), 1.0);
}

/// A custom query on a root-scoped object, as the API builds it from
/// `/apis/custom.metrics.k8s.io/v1beta2/{resource}/{name}/{metric}`.
fn root_scoped(metric: &str, resource: &str, name: &str) -> CustomQuery {
    CustomQuery::new(
        metric.into(),
        resource.into(),
        None,
        ObjectRef::Named(name.into()),
        Selector::default(),
    )
    .expect("query")
}

#[test]
fn nodes_are_answered_as_root_scoped() {
    // The bug: `nodes` is cluster-scoped, so the API passes no namespace, and the engine used to
    // answer 400 "nodes is namespaced". A rule that does not list nodes says so (404)…
    let f = fixture(Some(
        "rules:\n  - {name: s, statistic: max}\n  - {name: n, statistic: max, resources: [nodes]}\n",
    ));
    f.push("ns", "a", "q", &[10.0], None);
    f.push("other", "b", "q", &[20.0], None);
    let err = f
        .engine
        .custom(&root_scoped("s", "nodes", "n1"))
        .unwrap_err();
    let ProviderError::NotFound { object, reason, .. } = err else {
        panic!("a 404, not {err:?}")
    };
    assert_eq!(object, "nodes n1");
    assert!(reason.contains("does not serve nodes"), "{reason}");
    // …and one that lists it combines every namespace's sources.
    let v = f
        .engine
        .custom(&root_scoped("n", "nodes", "n1"))
        .expect("a value");
    assert_eq!((v[0].object_name.as_str(), v[0].value), ("n1", 20.0));
    // `namespaces/{ns}` stays the namespace's own.
    let v = f
        .engine
        .custom(&root_scoped("s", "namespaces", "ns"))
        .expect("a value");
    assert_eq!((v[0].object_name.as_str(), v[0].value), ("ns", 10.0));
}
