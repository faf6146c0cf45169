//! Scale-from-zero semantics, case by case, on the real engine and window with a manual clock:
//! a backlog nobody consumes, the head-age lower bound (watch and management API), formulas,
//! idle → exactly 0, sidecars ruling (and borrowing the watch's queue state), a watch that goes
//! stale, External requests, and Pods requests that never see a watched queue.
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::clock::{Clock, ManualClock};
use crate::config;
use crate::engine::Engine;
use crate::provider::{
    CustomQuery, ExternalQuery, MetricValue, MetricsProvider, ObjectRef, ProviderError,
};
use crate::selector::Selector;
use crate::window::watched::{HeadMessage, watch_pod};
use crate::window::{Ages, Observation, QueueState, SourceKey, WatchPoll, WindowStore};

const T0: i64 = 1_700_000_000_000;
const INTERVAL: i64 = 2_000;

struct Fixture {
    clock: Arc<ManualClock>,
    store: Arc<WindowStore>,
    engine: Engine,
    continuous: std::cell::Cell<bool>,
}

fn fixture(rules: &str) -> Fixture {
    let rules = config::parse(rules).expect("valid rules");
    let clock = ManualClock::new(T0);
    let store = Arc::new(WindowStore::new(rules.longest_window_ms()));
    let engine = Engine::new(rules, store.clone(), clock.clone());
    Fixture {
        clock,
        store,
        engine,
        continuous: std::cell::Cell::new(false),
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), "binder".to_string())])
}

impl Fixture {
    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// One successful poll of queue `jobs` in namespace `ns` on broker `main`.
    fn watch(&self, ready: u64, consumers: u32, head: Option<HeadMessage>) {
        let key = SourceKey {
            namespace: "ns".into(),
            pod: watch_pod("main"),
            queue: "jobs".into(),
            vhost: "/".into(),
        };
        let poll = WatchPoll {
            broker: "main".into(),
            interval_ms: INTERVAL,
            messages_ready: ready,
            consumers,
            observed_at_ms: self.now(),
            continuous: self.continuous.replace(true),
            head,
            queue_type: Some("classic".into()),
        };
        self.store
            .observe_watched(key, &labels(), &poll, self.now());
    }

    /// Polls every interval for `ms`, each seeing `ready` and `consumers`.
    fn watch_for(&self, ms: i64, ready: u64, consumers: u32) {
        let end = self.now() + ms;
        while self.now() < end {
            self.clock.advance(INTERVAL);
            self.watch(ready, consumers, None);
        }
    }

    /// A sidecar report from pod `p` on `jobs` with ages (seconds) and maybe queue state.
    fn sidecar(&self, ages_s: &[f64], ready: Option<u64>) {
        let now = self.now();
        self.store.ingest(
            Observation {
                key: SourceKey {
                    namespace: "ns".into(),
                    pod: "binder-1".into(),
                    queue: "jobs".into(),
                    vhost: "/".into(),
                },
                labels: labels(),
                peer: "test".into(),
                instance: 0,
                seq: 0,
                ages: Ages::Samples(
                    ages_s
                        .iter()
                        .map(|a| ((a * 1000.0) as i64, now, false))
                        .collect(),
                ),
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

    fn object(&self, metric: &str) -> Result<Vec<MetricValue>, ProviderError> {
        let q = CustomQuery::new(
            metric.into(),
            "deployments.apps".into(),
            Some("ns".into()),
            ObjectRef::Named("binder".into()),
            Selector::default(),
        )
        .expect("query");
        self.engine.custom(&q)
    }

    fn value(&self, metric: &str) -> f64 {
        let v = self.object(metric).expect("a value");
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].value
    }

    fn external(&self, metric: &str, selector: &str) -> Result<Vec<MetricValue>, ProviderError> {
        self.engine.external(&ExternalQuery {
            metric: metric.into(),
            namespace: "ns".into(),
            selector: Selector::parse(selector).expect("selector"),
        })
    }
}

const RULES: &str = "stale_after: 30s\nrules:\n  \
    - {name: seconds, statistic: p90, min: 0}\n  \
    - {name: wake, statistic: max, min: 1, idle_after: 5m}\n  \
    - {name: rate, statistic: rate, min: 0}\n  \
    - {name: vars, statistic: max, min: 0, formula: \"messages_ready + consumers * 100.0 + rate * 1000.0\"}\n";

#[test]
fn a_backlog_nobody_consumes_is_a_value_above_zero_from_the_first_poll() {
    let f = fixture(RULES);
    f.watch(5, 0, None);
    assert_eq!(
        f.value("seconds"),
        1.0,
        "min 0, yet at least 1: the HPA must wake"
    );
    assert_eq!(
        f.value("rate"),
        1.0,
        "rate is 0 (no delivery), raised to 1 by the backlog"
    );
    f.watch_for(10_000, 5, 0);
    assert_eq!(
        f.value("seconds"),
        10.0,
        "the head waited at least since the watch first saw it"
    );
    let ev = f.engine.evaluate(
        &crate::engine::request::custom(&{
            CustomQuery::new(
                "seconds".into(),
                "deployments.apps".into(),
                Some("ns".into()),
                ObjectRef::Named("binder".into()),
                Selector::default(),
            )
            .expect("query")
        })
        .expect("request"),
    );
    let steps: Vec<&str> = ev.steps.iter().map(|s| s.description.as_str()).collect();
    assert!(
        steps
            .iter()
            .any(|s| s.contains("watched: 5 ready, 0 consumers; p90 = head age >= 10s")),
        "{steps:#?}"
    );
}

#[test]
fn formulas_see_messages_ready_consumers_and_rate_zero() {
    let f = fixture(RULES);
    f.watch(7, 0, None);
    assert_eq!(f.value("vars"), 7.0);
    f.clock.advance(INTERVAL);
    f.watch(7, 2, None);
    assert_eq!(f.value("vars"), 207.0);
}

#[test]
fn the_management_head_timestamp_raises_the_bound_when_older() {
    let f = fixture(RULES);
    let head = HeadMessage {
        published_at_ms: T0 - 60_000,
        read_at_ms: T0,
    };
    f.watch(3, 0, Some(head));
    assert_eq!(
        f.value("seconds"),
        60.0,
        "the head was published a minute before the watch saw it"
    );
    // A head read before this backlog began describes another message: not used.
    f.clock.advance(INTERVAL);
    f.watch(0, 0, None);
    f.clock.advance(INTERVAL);
    f.watch(3, 0, Some(head));
    assert_eq!(
        f.value("seconds"),
        1.0,
        "backlog just seen; the old read is ignored"
    );
}

#[test]
fn idle_for_idle_after_is_exactly_zero_even_with_min_1() {
    let f = fixture(RULES);
    // A consumer without a sidecar is attached, nothing ready: not idle until idle_after.
    f.watch(0, 1, None);
    assert_eq!(f.value("wake"), 1.0, "min 1 while not idle long enough");
    f.watch_for(290_000, 0, 1);
    assert_eq!(f.value("wake"), 1.0, "4m50s is not 5m");
    f.watch_for(12_000, 0, 1);
    assert_eq!(f.value("wake"), 0.0, "idle for 5m: exactly 0");
    let v = f.object("wake").expect("value");
    assert_eq!(v[0].timestamp, crate::clock::to_system_time(f.now()));
    // Rules without idle_after never serve 0 from their min.
    assert_eq!(
        f.value("seconds"),
        0.0,
        "min 0 rule: age 0 of an empty queue"
    );
    // One ready message ends the idle at once.
    f.clock.advance(INTERVAL);
    f.watch(1, 1, None);
    assert_eq!(f.value("wake"), 1.0);
}

#[test]
fn nothing_ready_and_nobody_consuming_is_idle_at_once() {
    // At zero replicas after an aggregator restart: nothing could be delivered, so no wake-up.
    let f = fixture(RULES);
    f.watch(0, 0, None);
    assert_eq!(f.value("wake"), 0.0);
}

#[test]
fn sidecar_ages_within_idle_after_keep_the_value_up() {
    let f = fixture(RULES);
    f.watch(0, 1, None);
    f.watch_for(200_000, 0, 1);
    f.sidecar(&[2.0], Some(0)); // a delivery, 200 s into the quiet
    let alive = |ms: i64| {
        // The sidecar's heartbeats (no ages) keep it live while the watch polls.
        for _ in 0..ms / 20_000 {
            f.watch_for(20_000, 0, 1);
            f.sidecar(&[], Some(0));
        }
    };
    alive(160_000);
    assert_eq!(
        f.value("wake"),
        1.0,
        "the watch saw nothing ready for 6 min, but a sidecar age is 160 s old"
    );
    alive(160_000);
    assert_eq!(
        f.value("wake"),
        0.0,
        "no sidecar age for 320 s and nothing ready: idle"
    );
}

#[test]
fn sidecars_rule_and_borrow_the_watch_s_queue_state() {
    let f = fixture(&format!(
        "{RULES}  - {{name: stall, statistic: max, min: 0, stall_after: 10s}}\n"
    ));
    f.watch(50, 0, None);
    f.watch_for(100_000, 50, 0);
    f.sidecar(&[3.0], None);
    assert_eq!(
        f.value("seconds"),
        3.0,
        "the sidecar's ages, not the watch's 100 s bound"
    );
    // No sidecar queue state: the watch's tells the engine messages wait → stall detection.
    f.clock.advance(INTERVAL);
    f.watch(50, 1, None);
    for _ in 0..20 {
        f.clock.advance(INTERVAL);
        f.watch(50, 1, None);
        f.sidecar(&[], None);
    }
    assert_eq!(
        f.value("stall"),
        45.0,
        "last age 3 s + 42 s of silence with 50 ready"
    );
    assert_eq!(
        f.value("vars"),
        150.0,
        "messages_ready 50 and consumers 1 from the watch"
    );
}

#[test]
fn a_watch_that_stops_answering_goes_stale_and_on_missing_decides() {
    let f = fixture(&format!(
        "{RULES}  - {{name: fb, statistic: max, idle_after: 5m, on_missing: {{fallback: 4}}}}\n"
    ));
    f.watch(0, 0, None);
    assert_eq!(f.value("wake"), 0.0);
    f.clock.advance(3 * INTERVAL);
    assert_eq!(f.value("wake"), 0.0, "three intervals: still fresh");
    f.clock.advance(1);
    match f.object("wake") {
        Err(ProviderError::NotFound { reason, .. }) => {
            assert!(reason.contains("every source is stale"), "{reason}")
        }
        other => {
            panic!("a stale watch must not serve (a stale 0 scales a backlog to zero): {other:?}")
        }
    }
    assert_eq!(f.value("fb"), 4.0, "the fallback, never a stale 0");
}

#[test]
fn external_metrics_serve_watched_queues_with_no_consumers_at_all() {
    let f = fixture(RULES);
    f.watch(9, 0, None);
    f.watch_for(20_000, 9, 0);
    let v = f
        .external("seconds", "queue=jobs,app=binder")
        .expect("external value");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].value, 20.0);
    assert_eq!(v[0].labels.get("queue").map(String::as_str), Some("jobs"));
    assert!(
        f.external("seconds", "queue=other").is_err(),
        "selector narrows"
    );
}

#[test]
fn pods_requests_never_see_watched_queues() {
    let f = fixture(RULES);
    f.watch(9, 0, None);
    let q = CustomQuery::new(
        "seconds".into(),
        "pods".into(),
        Some("ns".into()),
        ObjectRef::All(Selector::parse("app=binder").expect("selector")),
        Selector::default(),
    )
    .expect("query");
    assert!(
        f.engine.custom(&q).is_err(),
        "no pod carries a watched queue"
    );
}
