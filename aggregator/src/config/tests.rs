//! The rules file: a full config, defaults, errors with their paths, and the one duration grammar.
use proptest::prelude::*;

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
    let e = error_of("rules:\n  - name: a\n    window: 30x\n");
    assert!(
        e.contains("rules[0].window: invalid duration \"30x\": unknown unit \"x\""),
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

/// The window, stale_after and stall_after of a config holding `text` in each.
fn durations_of(text: &str) -> Result<(i64, i64, Option<i64>), String> {
    let yaml = format!(
        "stale_after: {text}\nrules:\n  - name: a\n    window: {text}\n    stall_after: {text}\n"
    );
    parse(&yaml)
        .map(|set| {
            let r = &set.rules[0];
            (r.window_ms, set.stale_after_ms, r.stall_after_ms)
        })
        .map_err(|e| e.to_string())
}

#[test]
fn durations_follow_the_one_grammar() {
    // A bare number is seconds, as on every flag; fractions and days are accepted.
    assert_eq!(durations_of("30"), Ok((30_000, 30_000, Some(30_000))));
    assert_eq!(durations_of("1.5s"), Ok((1_500, 1_500, Some(1_500))));
    assert_eq!(durations_of("1m30s"), Ok((90_000, 90_000, Some(90_000))));
    assert_eq!(durations_of("500ms"), Ok((500, 500, Some(500))));
    assert_eq!(
        durations_of("1d"),
        Ok((86_400_000, 86_400_000, Some(86_400_000)))
    );
    let set = parse("stale_after: 7d\nevict_after: 0.5\n").expect("valid");
    assert_eq!((set.stale_after_ms, set.evict_after_ms), (604_800_000, 500));
    // A window is still at most a day, whatever the grammar allows.
    let e = error_of("rules:\n  - name: a\n    window: 7d\n");
    assert!(
        e.contains("rules[0].window: \"7d\" is longer than 24h"),
        "{e}"
    );
}

#[test]
fn durations_refuse_garbage_zero_and_negatives() {
    for (text, reason) in [
        ("soon", "invalid duration \"soon\": unknown unit \"soon\""),
        ("0s", "invalid duration \"0s\": must be at least 1ms"),
        ("0", "invalid duration \"0\": must be at least 1ms"),
        ("-5s", "invalid duration \"-5s\": expected e.g."),
        ("1m30", "invalid duration \"1m30\": expected e.g."),
        (
            "99999999999999999999s",
            "invalid duration \"99999999999999999999s\": longer than 1000000000s",
        ),
    ] {
        let e = durations_of(text).expect_err(text);
        for path in ["stale_after", "rules[0].window", "rules[0].stall_after"] {
            assert!(e.contains(&format!("{path}: {reason}")), "{text}: {e}");
        }
        assert!(
            e.contains("(or \"off\")"),
            "stall_after says off is allowed: {e}"
        );
    }
    let e = error_of("evict_after: \"\"\n");
    assert!(e.contains("evict_after: empty duration"), "{e}");
}

proptest! {
    /// Whatever the text, a config duration is what `dwell_runtime::duration::parse_ms` makes of
    /// it: the same milliseconds, or an error quoting the same reason after the field's path.
    #[test]
    fn a_config_duration_is_the_runtime_grammar(
        text in prop_oneof![
            "[0-9]{1,4}(\\.[0-9]{1,3})?(ms|s|m|h)?",
            "[0-9]{1,2}m[0-9]{1,2}s",
            "[0-9.smhdx-]{1,8}",
        ]
    ) {
        // Quoted, so YAML keeps every text a string (`1.5` is not a float here).
        let yaml = format!("stale_after: \"{text}\"\n");
        match (duration::parse_ms(&text), parse(&yaml)) {
            (Ok(ms), Ok(set)) => prop_assert_eq!(set.stale_after_ms, ms),
            (Err(want), Err(got)) => {
                let got = got.to_string();
                prop_assert_eq!(got, format!("stale_after: {want}"));
            }
            (want, got) => prop_assert!(false, "{text:?}: runtime {want:?}, config {got:?}"),
        }
    }
}
