//! The result cache against a fresh evaluation. On random histories (reports of samples and of
//! summaries from a few pods in two namespaces, polls of the aggregator's own queue watch,
//! goodbyes, sweeps that evict, rule reloads, and the clock moving across slot boundaries,
//! staleness, stalls and `idle_after`), every answer the engine serves,
//! from its cache or not, is exactly what `Explain`'s evaluation at that moment gives, which
//! never uses the cache and keeps every bucket (serving keeps only those its percentiles need).
//! A second, immediate read (a hit) must give it again.
use std::collections::BTreeMap;

use dwell_proto::summary::AgeSummary;
use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config;
use crate::provider::ObjectRef;
use crate::selector::Selector;
use crate::window::watched::watch_pod;
use crate::window::{Ages, Observation, QueueState, SourceKey, WatchPoll};

const T0: i64 = 1_700_000_000_000;

/// Rules whose answers read the clock in every way a rule can: slots entering and leaving the
/// window, a rate over a moving span, staleness, stalls, fallbacks, formulas.
const RULES: &str = "\
stale_after: 6s
evict_after: 5s
rules:
  - {name: p90, window: 12s}
  - name: wait
    window: 7s
    statistic: rate
    combine: max
    formula: \"1000.0 * messages_ready / max(rate, 0.1)\"
  - {name: top, window: 4s, statistic: max, unit: milliseconds, combine: sum, stall_after: 2s, on_missing: {fallback: 5}}
  - {name: mean, window: 9s, statistic: mean, combine: mean, unit: milliseconds, min: 0}
  - {name: mix, window: 8s, statistic: p99, unit: milliseconds, formula: \"p50 + p99_9 + max\"}
  - {name: idle, window: 6s, statistic: max, min: 1, idle_after: 3s}
";

/// The reloaded rules: same names, other windows and statistics (and a longer ring).
const RELOADED: &str = "\
stale_after: 3s
evict_after: 4s
rules:
  - {name: p90, window: 20s, statistic: p50}
  - {name: wait, window: 3s, statistic: count, stall_after: 1s}
  - {name: top, window: 10s, statistic: last, on_missing: {fallback: 2}}
  - {name: mean, window: 5s, statistic: rate}
  - {name: mix, window: 4s, statistic: p10, combine: mean}
  - {name: idle, window: 5s, statistic: p50, idle_after: 2s, formula: \"max + messages_ready\"}
";

#[derive(Debug, Clone)]
enum Op {
    /// A report from `pod` of namespace `ns`: ages observed `ago` ms before now.
    Report {
        ns: usize,
        pod: usize,
        ages: Vec<(i64, i64)>,
        summary: bool,
        ready: Option<u64>,
    },
    Goodbye {
        ns: usize,
        pod: usize,
    },
    /// A poll of queue `q` (which the sidecars report too) or `w` (which none does) by the
    /// aggregator's queue watch; `continuous`: the previous poll succeeded.
    Watch {
        ns: usize,
        queue: usize,
        ready: u64,
        consumers: u32,
        continuous: bool,
    },
    Advance(i64),
    Sweep,
    Reload,
    /// Reads every metric (None), or one (mostly the first, so that reads of the same one
    /// follow each other with changes between them), with every request kind, in both
    /// namespaces.
    Read(Option<usize>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (
            0usize..2,
            0usize..3,
            proptest::collection::vec((0i64..20_000, 0i64..3_000), 0..4),
            any::<bool>(),
            proptest::option::of(0u64..3),
        )
            .prop_map(|(ns, pod, ages, summary, ready)| Op::Report { ns, pod, ages, summary, ready }),
        1 => (0usize..2, 0usize..3).prop_map(|(ns, pod)| Op::Goodbye { ns, pod }),
        3 => (0usize..2, 0usize..2, prop_oneof![Just(0u64), 1u64..4], 0u32..2, any::<bool>())
            .prop_map(|(ns, queue, ready, consumers, continuous)| Op::Watch {
                ns,
                queue,
                ready,
                consumers,
                continuous,
            }),
        6 => prop_oneof![1i64..50, 1i64..2_500, 2_500i64..9_000].prop_map(Op::Advance),
        1 => Just(Op::Sweep),
        1 => Just(Op::Reload),
        6 => prop_oneof![
            2 => Just(None),
            3 => Just(Some(0usize)),
            // The watch's own rule, whose answers move with `idle_after`.
            2 => Just(Some(METRICS.len() - 1)),
            2 => (0usize..METRICS.len()).prop_map(Some),
        ]
        .prop_map(Op::Read),
    ]
}

const NAMESPACES: [&str; 2] = ["ns", "other"];

const METRICS: [&str; 6] = ["p90", "wait", "top", "mean", "mix", "idle"];

fn key(ns: usize, pod: usize) -> SourceKey {
    SourceKey {
        namespace: NAMESPACES[ns].into(),
        pod: format!("p{pod}"),
        queue: "q".into(),
        vhost: "/".into(),
    }
}

/// Every request the HPA could send for `metric` in `ns`.
fn requests(metric: &str, ns: &str) -> Vec<Request> {
    let custom = |resource: &str, object: ObjectRef| {
        let q = CustomQuery::new(
            metric.into(),
            resource.into(),
            Some(ns.into()),
            object,
            Selector::default(),
        )
        .expect("query");
        request::custom(&q).expect("request")
    };
    let selected = Selector::parse("app=binder").expect("selector");
    vec![
        custom("deployments.apps", ObjectRef::Named("binder".into())),
        custom("pods", ObjectRef::All(selected)),
        custom("pods", ObjectRef::Named("p1".into())),
        request::external(&ExternalQuery {
            namespace: ns.into(),
            metric: metric.to_lowercase(),
            selector: Selector::parse("queue=q").expect("selector"),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn cached_answers_are_fresh_answers(ops in proptest::collection::vec(op(), 1..60)) {
        let rule_sets = [config::parse(RULES).expect("rules"), config::parse(RELOADED).expect("rules")];
        let clock = ManualClock::new(T0);
        let store = Arc::new(WindowStore::new(rule_sets[0].longest_window_ms()));
        let engine = Engine::new(rule_sets[0].clone(), store.clone(), clock.clone());
        let mut in_force = 0;
        let mut seq = 0;
        for op in ops {
            let now = clock.now_ms();
            match op {
                Op::Report { ns, pod, ages, summary, ready } => {
                    seq += 1;
                    let samples: Vec<(i64, i64, bool)> =
                        ages.iter().map(|&(age, ago)| (age, now - ago, false)).collect();
                    let ages = if summary {
                        let mut s = AgeSummary::new();
                        for &(age, at, r) in &samples {
                            s.record(age, at, r);
                        }
                        Ages::Summary { summary: (&s).into(), at_ms: now }
                    } else {
                        Ages::Samples(samples)
                    };
                    store.ingest(
                        Observation {
                            key: key(ns, pod),
                            labels: BTreeMap::from([("app".to_string(), "binder".to_string())]),
                            peer: "test".into(),
                            instance: 1,
                            seq,
                            ages,
                            queue_state: ready.map(|r| QueueState {
                                messages_ready: r,
                                consumers: 1,
                                observed_at_ms: now,
                            }),
                            counters: None,
                        },
                        now,
                    );
                }
                Op::Goodbye { ns, pod } => {
                    store.remove(&key(ns, pod));
                }
                Op::Watch { ns, queue, ready, consumers, continuous } => {
                    let key = SourceKey {
                        namespace: NAMESPACES[ns].into(),
                        pod: watch_pod("main"),
                        queue: ["q", "w"][queue].into(),
                        vhost: "/".into(),
                    };
                    let poll = WatchPoll {
                        broker: "main".into(),
                        interval_ms: 2_000,
                        messages_ready: ready,
                        consumers,
                        observed_at_ms: now,
                        continuous,
                        head: None,
                        queue_type: None,
                    };
                    let labels = BTreeMap::from([("app".to_string(), "binder".to_string())]);
                    store.observe_watched(key, &labels, &poll, now);
                }
                Op::Advance(ms) => clock.advance(ms),
                Op::Sweep => {
                    let rules = engine.rules();
                    store.sweep(now, rules.stale_after_ms, rules.evict_after_ms);
                }
                Op::Reload => {
                    in_force = 1 - in_force;
                    engine.set_rules(rule_sets[in_force].clone());
                }
                Op::Read(which) => {
                    let metrics = which.map_or(&METRICS[..], |i| &METRICS[i..=i]);
                    for req in metrics
                        .iter()
                        .flat_map(|m| NAMESPACES.iter().flat_map(|ns| requests(m, ns)))
                    {
                        let fresh = answer_of(&req, engine.evaluate(&req)).map(|v| v.to_vec());
                        let served = engine.answer(req.clone());
                        prop_assert_eq!(&served, &fresh, "{:?} at {}", req, now);
                        prop_assert_eq!(&engine.answer(req.clone()), &fresh, "again");
                        // What the API's memo is handed: the same values.
                        let held = engine.held(req.clone()).0.map(|v| v.to_vec());
                        prop_assert_eq!(&held, &fresh, "held");
                    }
                }
            }
        }
        prop_assert!(engine.cache.len() <= METRICS.len() * 2 * 4);
    }
}

/// The cache does its job: the same request with nothing changed is one evaluation, a report
/// to the namespace read or the clock crossing a slot boundary is another; a report elsewhere
/// is not.
#[test]
fn hits_until_a_report_or_a_boundary() {
    let rules = config::parse("rules:\n  - {name: s, window: 6s}\n").expect("rules");
    let clock = ManualClock::new(T0);
    let store = Arc::new(WindowStore::new(rules.longest_window_ms()));
    let engine = Engine::new(rules, store.clone(), clock.clone());
    let report = |ns: usize, seq: u64| {
        store.ingest(
            Observation {
                key: key(ns, 0),
                labels: BTreeMap::new(),
                peer: "test".into(),
                instance: 1,
                seq,
                ages: Ages::Samples(vec![(2_000, clock.now_ms(), false)]),
                queue_state: None,
                counters: None,
            },
            clock.now_ms(),
        );
    };
    let req = || requests("s", "ns").remove(0);
    let counts = || {
        let m = engine.cache.metrics();
        (m.hits.get(), m.misses.get())
    };
    report(0, 1);
    for _ in 0..5 {
        assert!(engine.answer(req()).is_ok());
    }
    assert_eq!(counts(), (4, 1));
    report(1, 2);
    clock.advance(500);
    assert!(engine.answer(req()).is_ok());
    assert_eq!(
        counts(),
        (5, 1),
        "another namespace's report, the same slot"
    );
    report(0, 3);
    assert!(engine.answer(req()).is_ok());
    assert_eq!(counts(), (5, 2), "a report to the namespace read");
    // 1 s slots: the first slot [T0, T0 + 1 s) leaves the 6 s window at T0 + 7 s.
    clock.set(T0 + 6_999);
    assert!(engine.answer(req()).is_ok());
    assert_eq!(counts(), (6, 2));
    clock.set(T0 + 7_000);
    let gone = engine
        .answer(req())
        .expect_err("no ages left in the window");
    assert!(
        gone.to_string().contains("no ages in the last 6s"),
        "{gone}"
    );
    assert_eq!(counts(), (6, 3), "a slot boundary");
}
