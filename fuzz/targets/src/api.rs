//! The metrics API's request parsing: the path (`dwell_aggregator::api::path::parse`), the query
//! string as the value handlers read it, and the label selectors in it
//! (`dwell_aggregator::selector::Selector::parse`).

use std::collections::BTreeMap;

use dwell_aggregator::api::path::{self, ApiPath, ObjectName};
use dwell_aggregator::selector::Selector;

/// Which way a request target went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiOutcome {
    /// The route the path parsed to (`group`, `resources`, `custom`, `external`), None when
    /// refused (404 or 400), or when the input is not UTF-8.
    pub route: Option<&'static str>,
    /// Selectors parsed from the query string; None when the target is no URI, the query is
    /// refused, or a selector in it is.
    pub selectors: Option<usize>,
}

/// Fuzzes one request target, `path[?query]`, as the metrics API sees it.
pub fn api_request(data: &[u8]) -> ApiOutcome {
    let mut out = ApiOutcome {
        route: None,
        selectors: None,
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return out;
    };
    // The router hands `Uri::path()` over, which ends at the first '?'.
    let raw_path = text.split_once('?').map_or(text, |(p, _)| p);
    if let Ok(parsed) = path::parse(raw_path) {
        check_route(&parsed);
        out.route = Some(match parsed {
            ApiPath::Group(_) => "group",
            ApiPath::Resources(..) => "resources",
            ApiPath::Custom(..) => "custom",
            ApiPath::External { .. } => "external",
        });
    }
    // hyper hands over only request targets that parse as a URI.
    let Ok(uri) = text.parse::<http::Uri>() else {
        return out;
    };
    // The same extraction as `api::metrics::params`: every pair, then the two selectors.
    let Ok(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri) else {
        return out;
    };
    let mut selectors = 0;
    for (key, value) in pairs.0 {
        if key == "labelSelector" || key == "metricLabelSelector" {
            match Selector::parse(&value) {
                Ok(s) => {
                    check_selector(&s);
                    selectors += 1;
                }
                Err(_) => return out,
            }
        }
    }
    out.selectors = Some(selectors);
    out
}

/// What a parsed path promises the handlers: names that are usable path segments and a
/// namespace that is a DNS-1123 label.
fn check_route(parsed: &ApiPath) {
    match parsed {
        ApiPath::Group(_) | ApiPath::Resources(..) => {}
        ApiPath::External { namespace, metric } => {
            assert!(is_dns_label(namespace), "namespace {namespace:?}");
            assert!(is_segment(metric), "metric {metric:?}");
            assert_eq!(
                *metric,
                metric.to_lowercase(),
                "external metric names are lower-cased"
            );
        }
        ApiPath::Custom(_, p) => {
            assert!(is_segment(&p.metric), "metric {:?}", p.metric);
            if let Some(ns) = &p.namespace {
                assert!(is_dns_label(ns), "namespace {ns:?}");
            }
            if let ObjectName::Named(name) = &p.object {
                assert!(!name.is_empty() && !name.contains('/'), "object {name:?}");
            }
            assert!(!p.resource.is_empty(), "an empty resource segment");
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '%'])
}

/// Whether selector text was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorOutcome {
    /// Parsed, with this many requirements.
    Accepted(usize),
    /// Refused (a 400 to the HPA).
    Refused,
    /// Not UTF-8 (a query value always is).
    NotUtf8,
}

/// Fuzzes label-selector text directly (the query string's encoding out of the way).
pub fn label_selector(data: &[u8]) -> SelectorOutcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return SelectorOutcome::NotUtf8;
    };
    match Selector::parse(text) {
        Ok(s) => {
            check_selector(&s);
            SelectorOutcome::Accepted(s.requirements().len())
        }
        Err(_) => SelectorOutcome::Refused,
    }
}

/// The selector module's promises: `Display` is canonical and parses back to the same
/// selector, and matching any label set is defined (never a panic).
fn check_selector(s: &Selector) {
    let text = s.to_string();
    match Selector::parse(&text) {
        Ok(again) => {
            assert_eq!(&again, s, "{text:?} does not parse back to itself");
            assert_eq!(again.to_string(), text, "Display is not canonical");
        }
        Err(e) => panic!("Display gave {text:?}, which does not parse: {e}"),
    }
    // A label set built from the selector's own keys and values exercises every operator.
    let labels: BTreeMap<String, String> = s
        .requirements()
        .iter()
        .map(|r| {
            (
                r.key().to_owned(),
                r.values().next().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let _ = s.matches(&labels);
    let everything_matches = s.matches(&BTreeMap::new()) || !s.is_empty();
    assert!(
        everything_matches,
        "the empty selector must match everything"
    );
}
