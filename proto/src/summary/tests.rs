//! Property tests: quantiles within the stated error, and merge equals summarising the union.
use super::*;
use proptest::prelude::*;

fn summarise(ages: &[i64]) -> AgeSummary {
    let mut s = AgeSummary::new();
    for (i, &a) in ages.iter().enumerate() {
        s.record(a, i as i64, false);
    }
    s
}

fn exact_quantile(ages: &[i64], q: f64) -> f64 {
    let mut v = ages.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).max(1);
    v[rank - 1] as f64
}

proptest! {
    #[test]
    fn quantiles_within_one_percent(ages in prop::collection::vec(0i64..10_000_000, 1..500), q in 0.0f64..=1.0) {
        let s = summarise(&ages);
        let got = s.quantile_ms(q).unwrap();
        let want = exact_quantile(&ages, q);
        let err = (got - want).abs();
        // Ages < 1 ms are exact (0); otherwise the relative error bound holds.
        prop_assert!(err <= want * (GAMMA - 1.0) / (GAMMA + 1.0) + 1e-9, "q={q} got={got} want={want}");
    }

    #[test]
    fn merge_equals_union(a in prop::collection::vec(0i64..1_000_000_000, 0..200),
                          b in prop::collection::vec(0i64..1_000_000_000, 0..200)) {
        let mut merged = summarise(&a);
        let mut sb = AgeSummary::new();
        for (i, &x) in b.iter().enumerate() {
            sb.record(x, (a.len() + i) as i64, false);
        }
        merged.merge(&sb);
        let mut all = a.clone();
        all.extend_from_slice(&b);
        let union = summarise(&all);
        prop_assert_eq!(merged.count(), union.count());
        prop_assert_eq!(merged.buckets(), union.buckets());
        prop_assert_eq!(merged.min_ms(), union.min_ms());
        prop_assert_eq!(merged.max_ms(), union.max_ms());
        prop_assert!((merged.sum_ms() - union.sum_ms()).abs() <= 1e-6 * union.sum_ms().max(1.0));
    }

    #[test]
    fn proto_round_trip(ages in prop::collection::vec(0i64..MAX_AGE_MS, 0..100)) {
        let s = summarise(&ages);
        let back = AgeSummary::from_proto(&s.to_proto()).unwrap();
        prop_assert_eq!(back, s);
    }
}

#[test]
fn rejects_inconsistent_summaries() {
    let mut p = summarise(&[5, 10, 20]).to_proto();
    p.count = 4;
    assert!(AgeSummary::from_proto(&p).is_err());
    let mut p = summarise(&[5, 10, 20]).to_proto();
    p.min_ms = -1;
    assert!(AgeSummary::from_proto(&p).is_err());
    let mut p = summarise(&[5, 10, 20]).to_proto();
    p.buckets.reverse();
    assert!(AgeSummary::from_proto(&p).is_err());
    let mut p = summarise(&[5, 10, 20]).to_proto();
    p.sum_ms = f64::NAN;
    assert!(AgeSummary::from_proto(&p).is_err());
}

#[test]
fn empty_summary_has_no_quantile() {
    assert_eq!(AgeSummary::new().quantile_ms(0.9), None);
}

proptest! {
    #[test]
    fn dense_accumulator_equals_pairwise_merge(parts in prop::collection::vec(
        prop::collection::vec(0i64..100_000_000, 0..50), 0..8)) {
        let mut pairwise = AgeSummary::new();
        let mut acc = DenseAccumulator::new();
        for (n, ages) in parts.iter().enumerate() {
            let mut s = AgeSummary::new();
            for (i, &a) in ages.iter().enumerate() {
                s.record(a, (n * 100 + i) as i64, i % 3 == 0);
            }
            pairwise.merge(&s);
            acc.add(&s);
        }
        prop_assert_eq!(acc.finish(), pairwise);
        // The accumulator is reusable: empty again after finish.
        prop_assert_eq!(acc.finish(), AgeSummary::new());
    }
}

proptest! {
    /// A summary finished for some quantiles answers each of them, and every scalar, exactly as
    /// the full merge does, with its counts still adding up.
    #[test]
    fn finishing_for_quantiles_keeps_their_answers(
        parts in prop::collection::vec(prop::collection::vec(0i64..100_000_000, 0..80), 1..5),
        qs in prop::collection::vec(prop_oneof![0.0f64..=1.0, Just(0.5), Just(0.9), Just(1.0), Just(0.0)], 0..4),
    ) {
        let mut full = DenseAccumulator::new();
        let mut lean = DenseAccumulator::new();
        for p in &parts {
            let s = summarise(p);
            full.add(&s);
            lean.add(&s);
        }
        let (full, lean) = (full.finish(), lean.finish_for(&qs));
        for &q in &qs {
            prop_assert_eq!(lean.quantile_ms(q), full.quantile_ms(q), "q={}", q);
        }
        prop_assert_eq!((lean.count(), lean.sum_ms(), lean.min_ms(), lean.max_ms()), (full.count(), full.sum_ms(), full.min_ms(), full.max_ms()));
        prop_assert_eq!((lean.zero_count(), lean.redelivered(), lean.last()), (full.zero_count(), full.redelivered(), full.last()));
        let total: u64 = lean.buckets().iter().map(|b| b.1).sum();
        prop_assert_eq!(total + lean.zero_count(), lean.count());
        prop_assert!(lean.buckets().windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        prop_assert!(lean.buckets().len() <= 2 * qs.len() + 1);
    }
}
