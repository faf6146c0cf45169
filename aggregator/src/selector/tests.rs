//! Selector grammar, semantics and adversarial input.
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ok(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn err(text: &str) -> String {
    match Selector::parse(text) {
        Ok(s) => panic!("{text:?} should fail, parsed as {s}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_matches_everything() {
    for text in ["", "   ", "\t"] {
        let s = ok(text);
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[])));
        assert_eq!(s.to_string(), "");
    }
}

#[test]
fn equality_operators() {
    let l = labels(&[("queue", "a"), ("tier", "web")]);
    assert!(ok("queue=a").matches(&l));
    assert!(ok("queue==a").matches(&l));
    assert!(!ok("queue=b").matches(&l));
    assert!(ok("queue!=b").matches(&l));
    assert!(!ok("queue!=a").matches(&l));
    // != is true when the key is absent, as upstream.
    assert!(ok("missing!=x").matches(&l));
    assert!(!ok("missing=x").matches(&l));
    assert!(ok("queue = a , tier == web").matches(&l));
}

#[test]
fn set_operators() {
    let l = labels(&[("queue", "a")]);
    assert!(ok("queue in (a,b)").matches(&l));
    assert!(!ok("queue in (b,c)").matches(&l));
    assert!(ok("queue notin (b,c)").matches(&l));
    assert!(!ok("queue notin (a)").matches(&l));
    assert!(ok("missing notin (a)").matches(&l));
    assert!(!ok("missing in (a)").matches(&l));
    assert!(ok("queue in(a , b)").matches(&l));
}

#[test]
fn existence_operators() {
    let l = labels(&[("queue", "a")]);
    assert!(ok("queue").matches(&l));
    assert!(!ok("missing").matches(&l));
    assert!(ok("!missing").matches(&l));
    assert!(!ok("!queue").matches(&l));
    assert!(ok("queue,!missing").matches(&l));
}

#[test]
fn numeric_comparisons() {
    let l = labels(&[("gen", "5"), ("name", "x")]);
    assert!(ok("gen>3").matches(&l));
    assert!(!ok("gen>5").matches(&l));
    assert!(ok("gen<6").matches(&l));
    assert!(!ok("name>1").matches(&l), "non-integer label never matches");
    assert!(!ok("missing<10").matches(&l));
    assert!(err("gen>x").contains("must be an integer"));
    assert!(err("gen<").contains("must be an integer"));
}

#[test]
fn display_is_canonical_and_sorted() {
    assert_eq!(
        ok("z=1, a in (c,b,b), !m, k").to_string(),
        "a in (b,c),k,!m,z=1"
    );
    assert_eq!(ok("a==b").to_string(), "a==b");
    assert_eq!(ok("a!=").to_string(), "a!=");
    assert_eq!(ok("a in ()").to_string(), "a in ()");
    assert_eq!(ok("y<2,x>3").to_string(), "x>3,y<2");
    // The value must also be a valid label value, so no negative numbers (as upstream).
    assert!(err("y<-2").contains("invalid label value"));
}

#[test]
fn keywords_are_values_in_value_position() {
    assert!(ok("a=in").matches(&labels(&[("a", "in")])));
    assert!(ok("a in (notin)").matches(&labels(&[("a", "notin")])));
}

#[test]
fn prefixed_keys() {
    let l = labels(&[("app.kubernetes.io/name", "binder")]);
    assert!(ok("app.kubernetes.io/name=binder").matches(&l));
    assert!(err("App.io/name=x").contains("prefix part"));
    assert!(err("/name=x").contains("prefix part"));
    assert!(err("a.io/=x").contains("name part"));
}

#[test]
fn messages_match_apimachinery_style() {
    assert_eq!(
        err("(a)"),
        "unable to parse requirement: found '(', expected: identifier or 'end of string'"
    );
    assert_eq!(
        err("a=b,"),
        "unable to parse requirement: found '', expected: identifier after ','"
    );
    assert_eq!(
        err("a=b c"),
        "unable to parse requirement: found 'c', expected: ',' or 'end of string'"
    );
    assert!(err("a in b").contains("found 'b', expected: '('"));
    assert!(err("a in (b").contains("found '', expected: ',' or ')'"));
    assert!(err("a=(b)").contains("found '(', expected: identifier"));
    assert!(err("!a=b").contains("found '=', expected: ',' or 'end of string'"));
    assert!(err("in=a").contains("found 'in', expected: identifier"));
}

#[test]
fn adversarial_input_is_rejected_not_panicking() {
    let long_key = "k".repeat(64);
    let long_value = format!("a={}", "v".repeat(64));
    let huge = "a=b,".repeat(10_000);
    for text in [
        ",",
        ",a",
        "a,,b",
        "=",
        "==",
        "!",
        "!=a",
        "a b",
        "a=b=c",
        "a in ((b))",
        "a notin",
        "a in (b c)",
        ")",
        "a=é",
        "é=a",
        "-a=b",
        "a-=b",
        "a=-b",
        "a=b/c",
        "a\u{0}=b",
        long_key.as_str(),
        long_value.as_str(),
        huge.as_str(),
        "a>1.5",
        "a>99999999999999999999",
        "a<>1",
    ] {
        assert!(Selector::parse(text).is_err(), "{text:?} should fail");
    }
    assert!(Selector::parse(&"k".repeat(63)).is_ok());
}

#[test]
fn label_validation() {
    assert!(validate_label_value("").is_ok());
    assert!(validate_label_value("a.b-c_d").is_ok());
    assert!(validate_label_value("a b").is_err());
    assert!(validate_label_key("example.com/a").is_ok());
    assert_eq!(
        validate_label_key(""),
        Err(LabelError::KeyName(String::new()))
    );
    assert_eq!(
        validate_label_value("a b").map_err(|e| e.to_string()),
        Err(
            "invalid label value: \"a b\": a valid label must be an empty string or must \
             consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character"
                .to_string()
        )
    );
    assert_eq!(
        validate_label_key("Example.com/a"),
        Err(LabelError::KeyPrefix("Example.com/a".into()))
    );
    assert_eq!(
        validate_label_key(&"k".repeat(64)),
        Err(LabelError::KeyNameTooLong("k".repeat(64)))
    );
    assert_eq!(
        validate_label_value(&"v".repeat(64)),
        Err(LabelError::ValueTooLong("v".repeat(64)))
    );
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,6}",
        "[a-z]{1,4}\\.io/[a-z][a-z0-9_.-]{0,5}[a-z]",
    ]
    // `in` and `notin` are operators to the Kubernetes lexer, never keys (`in` alone does
    // not parse there either).
    .prop_filter("an operator word", |k| k != "in" && k != "notin")
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "",
        "[A-Za-z0-9]",
        "[A-Za-z0-9][A-Za-z0-9_.-]{0,8}[A-Za-z0-9]",
    ]
}

fn requirement_text() -> impl Strategy<Value = String> {
    (
        key(),
        0..9usize,
        proptest::collection::vec(value(), 1..4),
        0..100_000u32,
    )
        .prop_map(|(k, op, vals, n)| match op {
            0 => format!("{k}={}", vals[0]),
            1 => format!("{k}=={}", vals[0]),
            2 => format!("{k}!={}", vals[0]),
            3 => format!("{k} in ({})", vals.join(",")),
            4 => format!("{k} notin ({})", vals.join(",")),
            5 => k,
            6 => format!("!{k}"),
            7 => format!("{k}>{n}"),
            _ => format!("{k}<{n}"),
        })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,64}") {
        let _ = Selector::parse(&text);
    }

    #[test]
    fn symbol_soup_never_panics(text in "[a-c!=(),<> in0-9]{0,40}") {
        if let Ok(s) = Selector::parse(&text) {
            // Whatever parses must round-trip.
            prop_assert_eq!(Selector::parse(&s.to_string()).ok(), Some(s));
        }
    }

    #[test]
    fn valid_selectors_round_trip(reqs in proptest::collection::vec(requirement_text(), 0..5)) {
        let text = reqs.join(",");
        let parsed = Selector::parse(&text);
        prop_assert!(parsed.is_ok(), "{:?}: {:?}", text, parsed);
        let parsed = parsed.unwrap();
        let shown = parsed.to_string();
        prop_assert_eq!(Selector::parse(&shown).ok(), Some(parsed.clone()));
        prop_assert_eq!(Selector::parse(&shown).map(|s| s.to_string()).ok(), Some(shown));
    }
}
