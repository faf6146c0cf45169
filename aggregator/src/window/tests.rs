//! The window store end to end: slots, staleness, eviction, resends, the namespace index, spans.
use super::*;

fn key(pod: &str) -> SourceKey {
    SourceKey {
        namespace: "ns".into(),
        pod: pod.into(),
        queue: "q".into(),
        vhost: "/".into(),
    }
}

fn obs(pod: &str, seq: u64, samples: Vec<(i64, i64, bool)>) -> Observation {
    Observation {
        key: key(pod),
        labels: BTreeMap::new(),
        peer: "127.0.0.1:1".into(),
        instance: 1,
        seq,
        ages: Ages::Samples(samples),
        queue_state: None,
        counters: None,
    }
}

const T0: i64 = 1_700_000_000_000;

#[test]
fn slot_width_is_a_sixth_of_the_window_in_whole_seconds() {
    assert_eq!(slot_width_for(30_000), 5_000);
    assert_eq!(slot_width_for(1_000), 1_000);
    assert_eq!(slot_width_for(300_000), 50_000);
    assert_eq!(slot_width_for(31_000), 6_000);
}

#[test]
fn window_holds_recent_ages_only() {
    let store = WindowStore::new(30_000);
    let taken = store.ingest(obs("a", 1, vec![(100, T0, false), (300, T0, false)]), T0);
    assert_eq!(taken, Taken::Accepted(2));
    let taken = store.ingest(obs("a", 2, vec![(5_000, T0 + 20_000, false)]), T0 + 20_000);
    assert_eq!(taken, Taken::Accepted(1));
    let w = store.window(30_000, T0 + 20_000, None, BucketsKept::All, |_, _| true);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].ages.count(), 3);
    assert_eq!(w[0].ages.max_ms(), Some(5_000));
    // 40 s later the first slot has left the 30 s window, the second has not.
    let w = store.window(30_000, T0 + 40_000, None, BucketsKept::All, |_, _| true);
    assert_eq!(w[0].ages.count(), 1);
    // A shorter window sees less.
    let w = store.window(10_000, T0 + 40_000, None, BucketsKept::All, |_, _| true);
    assert_eq!(w[0].ages.count(), 0);
    assert_eq!(w[0].source.last_sample, Some((5_000, T0 + 20_000)));
}

#[test]
fn resends_are_ignored() {
    let store = WindowStore::new(30_000);
    assert_eq!(
        store.ingest(obs("a", 1, vec![(100, T0, false)]), T0),
        Taken::Accepted(1)
    );
    assert_eq!(
        store.ingest(obs("a", 1, vec![(100, T0, false)]), T0),
        Taken::Duplicate
    );
    let w = store.window(30_000, T0, None, BucketsKept::All, |_, _| true);
    assert_eq!(w[0].ages.count(), 1);
    assert_eq!(w[0].source.reports, 1);
}

#[test]
fn ages_older_than_the_ring_are_not_taken() {
    let store = WindowStore::new(30_000);
    let taken = store.ingest(obs("a", 1, vec![(100, T0 - 60_000, false)]), T0);
    assert_eq!(taken, Taken::Accepted(0));
}

#[test]
fn sweep_counts_stale_and_evicts() {
    let store = WindowStore::new(30_000);
    store.ingest(obs("a", 1, vec![]), T0);
    store.ingest(obs("b", 1, vec![]), T0 + 20_000);
    let c = store.sweep(T0 + 31_000, 30_000, 60_000);
    assert_eq!((c.live, c.stale, c.evicted), (1, 1, 0));
    let c = store.sweep(T0 + 91_000, 30_000, 60_000);
    assert_eq!((c.live, c.stale, c.evicted), (0, 1, 1));
    assert_eq!(store.len(), 1);
    assert!(store.remove(&key("b")));
    assert!(store.is_empty());
}

#[test]
fn slots_stay_bounded_whatever_the_rate() {
    let store = WindowStore::new(30_000);
    for i in 0..10_000i64 {
        let now = T0 + i * 100;
        store.ingest(
            obs("a", i as u64 + 1, vec![(1_000 + i % 50, now, false)]),
            now,
        );
    }
    let held = store.sources.get(&key("a")).map(|s| s.slots.iter().count());
    assert!(held.is_some_and(|n| n <= 8), "slots held: {held:?}");
}

#[test]
fn summaries_land_in_their_slot() {
    let store = WindowStore::new(30_000);
    let mut summary = AgeSummary::new();
    for age in [10, 20, 30] {
        summary.record(age, T0, false);
    }
    let mut o = obs("a", 1, vec![]);
    o.ages = Ages::Summary {
        summary: (&summary).into(),
        at_ms: T0,
    };
    assert_eq!(store.ingest(o, T0), Taken::Accepted(3));
    let w = store.window(5_000, T0 + 1_000, None, BucketsKept::All, |_, _| true);
    assert_eq!(w[0].ages.count(), 3);
}

#[test]
fn reads_scoped_to_a_namespace_see_only_its_sources() {
    let store = WindowStore::new(30_000);
    let mut other = obs("x", 1, vec![(500, T0, false)]);
    other.key.namespace = "other".into();
    store.ingest(other, T0);
    store.ingest(obs("a", 1, vec![(700, T0, false)]), T0);
    let pods = |ns: Option<&str>| -> Vec<String> {
        store
            .window(30_000, T0, ns, BucketsKept::All, |_, _| true)
            .into_iter()
            .map(|w| w.source.key.pod.clone())
            .collect()
    };
    assert_eq!(pods(Some("ns")), vec!["a".to_string()]);
    assert_eq!(pods(Some("other")), vec!["x".to_string()]);
    assert!(pods(Some("absent")).is_empty());
    assert_eq!(pods(None).len(), 2);
    // Gone and back: the index follows removal, eviction and re-creation.
    assert!(store.remove(&key("a")));
    assert!(pods(Some("ns")).is_empty());
    store.ingest(obs("a", 2, vec![(700, T0, false)]), T0);
    assert_eq!(pods(Some("ns")), vec!["a".to_string()]);
    store.sweep(T0 + 200_000, 30_000, 60_000);
    assert!(pods(Some("ns")).is_empty());
    assert!(
        store.by_namespace.is_empty(),
        "empty namespaces are dropped"
    );
    store.ingest(obs("a", 3, vec![]), T0 + 200_000);
    assert_eq!(pods(Some("ns")), vec!["a".to_string()]);
}

#[test]
fn span_covers_the_slots_counted_not_just_the_window() {
    let store = WindowStore::new(30_000); // 5 s slots
    store.ingest(obs("a", 1, vec![(100, T0 + 2_000, false)]), T0 + 2_000);
    let span = |now: i64| store.window(30_000, now, None, BucketsKept::All, |_, _| true)[0].span_ms;
    // The window starts exactly at the slot's start: the span is the window.
    assert_eq!(span(T0 + 30_000), 30_000);
    // The window starts inside the slot [T0, T0+5 s), which still counts whole: 2 s more.
    assert_eq!(span(T0 + 32_000), 32_000);
}
