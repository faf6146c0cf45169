use super::*;
use crate::policy::Statistic;

const FULL: &str = r#"
stale_after: 10s
evict_after: 1m
rules:
  - name: seconds
    sources:
      queue: a
      vhost: /
      namespace: jobs
      selector: "app=binder"
    window: 1m
    statistic: p99.9
    combine: sum
    formula: "p90 > 120.0 ? p90 * 2.0 : max(p90, double(messages_ready) / 50.0)"
    unit: milliseconds
    rounding: floor
    min: 0
    max: 100000
    on_missing: {fallback: 5}
    stall_after: 10s
    resources: [deployments.apps, services]
  - name: backlog
    statistic: count
    on_missing: not_found
    stall_after: "off"
"#;

#[test]
fn a_full_config_parses() {
    let set = parse(FULL).expect("valid");
    assert_eq!(set.stale_after_ms, 10_000);
    assert_eq!(set.evict_after_ms, 60_000);
    let r = &set.rules[0];
    assert_eq!(r.window_ms, 60_000);
    assert_eq!(r.statistic, Statistic::Percentile(99.9));
    assert_eq!(r.combine, Combine::Sum);
    assert_eq!(r.unit, Unit::Milliseconds);
    assert_eq!(r.rounding, Rounding::Floor);
    assert_eq!((r.min, r.max), (0.0, Some(100_000.0)));
    assert_eq!(r.on_missing, OnMissing::Fallback(5.0));
    assert_eq!(r.stall_after_ms, Some(10_000));
    assert_eq!(r.sources.queue.as_deref(), Some("a"));
    assert_eq!(r.sources.namespace.as_deref(), Some("jobs"));
    assert_eq!(r.resources, ["pods", "deployments.apps", "services"]);
    assert!(r.formula.is_some());
    let b = &set.rules[1];
    assert_eq!(b.statistic, Statistic::Count);
    assert_eq!(b.window_ms, 30_000);
    assert_eq!(b.stall_after_ms, None);
    assert_eq!(b.min, 1.0);
    assert_eq!(b.on_missing, OnMissing::NotFound);
    assert_eq!(set.longest_window_ms(), 60_000);
}

#[test]
fn no_rules_means_the_built_in_rule() {
    let set = parse("stale_after: 5s\n").expect("valid");
    assert_eq!(set.rules, vec![Rule::default_seconds()]);
    assert_eq!(set.stale_after_ms, 5_000);
}

fn error_of(yaml: &str) -> String {
    parse(yaml).expect_err("invalid").to_string()
}

#[test]
fn errors_name_the_field_and_the_reason() {
    let e = error_of("rules:\n  - name: a\n    statistic: p0\n");
    assert!(
        e.contains("rules[0].statistic: unknown statistic \"p0\""),
        "{e}"
    );
    let e = error_of("rules:\n  - name: a\n  - name: A\n");
    assert!(e.contains("rules[1].name: \"A\" is already used"), "{e}");
    let e = error_of("rules:\n  - name: a\n    formula: \"p90 *\"\n");
    assert!(e.contains("rules[0].formula: does not compile"), "{e}");
    let e = error_of("rules:\n  - name: a\n    formula: \"latency\"\n");
    assert!(
        e.contains("rules[0].formula: unknown variable \"latency\""),
        "{e}"
    );
    let e = error_of("rules:\n  - name: a\n    window: 30\n");
    assert!(
        e.contains("rules[0].window: invalid duration \"30\""),
        "{e}"
    );
    let e = error_of("stale_after: soon\n");
    assert!(e.contains("stale_after: invalid duration"), "{e}");
    let e = error_of("rules:\n  - name: a\n    min: 5\n    max: 2\n");
    assert!(
        e.contains("rules[0].max: 2 must be a number >= min (5)"),
        "{e}"
    );
    let e = error_of("rules:\n  - name: a\n    combine: median\n");
    assert!(e.contains("rules[0].combine: unknown \"median\""), "{e}");
    let e = error_of("rules:\n  - name: \"a/b\"\n");
    assert!(e.contains("rules[0].name"), "{e}");
    let e = error_of("rules: []\n");
    assert!(e.contains("rules: at least one rule"), "{e}");
}

#[test]
fn unknown_fields_and_bad_yaml_are_rejected() {
    let e = error_of("rules:\n  - name: a\n    statistc: p90\n");
    assert!(e.contains("statistc"), "{e}");
    let e = error_of("stale_afte: 5s\n");
    assert!(e.contains("stale_afte"), "{e}");
    let e = error_of("rules: [\n");
    assert!(!e.is_empty());
    let e = error_of("rules:\n  - name: a\n    on_missing: {fallback: x}\n");
    assert!(!e.is_empty());
}

#[test]
fn several_errors_are_all_reported() {
    let e = error_of("rules:\n  - name: a\n    statistic: px\n    unit: hours\n");
    assert!(
        e.contains("statistic") && e.contains("unit: unknown \"hours\""),
        "{e}"
    );
}
