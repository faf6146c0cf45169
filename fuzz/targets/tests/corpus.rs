//! Replays every committed corpus file (`fuzz/corpus/<target>/`, seeds and crash regressions)
//! through its target's function, so a parser change that panics on, or breaks a promise for,
//! a known input fails the normal test suite without the fuzzer; and checks that each corpus
//! still reaches the paths its seeds were chosen for.

use std::path::{Path, PathBuf};

use dwell_fuzz_targets as t;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            (path, data)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seed", dir.display());
    files
}

/// Runs `f` over the corpus of `target`, naming the file that fails.
fn replay<O>(target: &str, f: impl Fn(&[u8]) -> O) -> Vec<O> {
    corpus(target)
        .iter()
        .map(|(path, data)| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(data)))
                .unwrap_or_else(|_| panic!("{target}: {} fails", path.display()))
        })
        .collect()
}

#[test]
fn every_target_has_a_corpus() {
    for target in t::TARGETS {
        assert!(!corpus(target).is_empty());
    }
}

#[test]
fn api_request_corpus() {
    let out = replay("api_request", t::api_request);
    for route in ["group", "resources", "custom", "external"] {
        assert!(
            out.iter().any(|o| o.route == Some(route)),
            "no seed reaches {route}"
        );
    }
    assert!(out.iter().any(|o| o.route.is_none()), "no refused path");
    assert!(
        out.iter().any(|o| o.selectors == Some(2)),
        "no seed with both selectors"
    );
    assert!(
        out.iter()
            .any(|o| o.route.is_some() && o.selectors.is_none()),
        "no refused selector"
    );
}

#[test]
fn label_selector_corpus() {
    let out = replay("label_selector", t::label_selector);
    assert!(out.contains(&t::SelectorOutcome::Accepted(0)));
    assert!(out.contains(&t::SelectorOutcome::Accepted(5)));
    assert!(out.contains(&t::SelectorOutcome::Refused));
}

#[test]
fn report_corpus() {
    let out = replay("report", t::report);
    assert!(out.contains(&t::ReportOutcome::Accepted { summary: true }));
    assert!(out.contains(&t::ReportOutcome::Accepted { summary: false }));
    assert!(out.contains(&t::ReportOutcome::Goodbye));
    for reason in ["source", "summary", "timestamp"] {
        assert!(
            out.contains(&t::ReportOutcome::Rejected(reason)),
            "no seed rejected for {reason}"
        );
    }
}

#[test]
fn report_line_corpus() {
    let out = replay("report_line", t::report_line);
    assert!(
        out.iter().any(|o| o.accepted >= 3),
        "no multi-line datagram"
    );
    assert!(out.iter().any(|o| o.rejected >= 5), "no refused lines");
}

#[test]
fn report_http_corpus() {
    let out = replay("report_http", t::report_http);
    assert!(out.contains(&t::BodyOutcome::Accepted(4)));
    assert!(out.contains(&t::BodyOutcome::Refused(400)));
    assert!(out.contains(&t::BodyOutcome::Refused(415)));
}

#[test]
fn tap_corpus() {
    let out = replay("tap", t::tap);
    // The recorded pika session: one basic.get and two deliveries, nothing refused.
    assert!(
        out.iter()
            .any(|o| o.deliveries == 3 && o.off.is_none() && o.to_app > 10),
        "{out:?}"
    );
    assert!(out.iter().any(|o| o.off == Some("foreign_protocol")));
}
