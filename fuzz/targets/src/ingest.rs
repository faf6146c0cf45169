//! The aggregator's report validation: arbitrary bytes decoded as a `dwell.v1.Report` (what the
//! gRPC server does with a message) and validated by the public entry point
//! `dwell_aggregator::ingest::validate::validate`; an accepted summary is then put through what
//! the window and the read path do with it (`AgeSummary`, `DenseAccumulator`).

use dwell_aggregator::ingest::validate::{Limits, Valid, validate};
use dwell_proto::summary::{AgeSummary, DenseAccumulator, MAX_AGE_MS};
use dwell_proto::v1;
use prost::Message;

/// The aggregator's clock for every input (a fixed "now" keeps runs reproducible).
pub const NOW_MS: i64 = 1_795_817_979_177;

/// Every `reason` validation may give (`dwell_ingest_rejected_reports_total{reason}`).
pub const REASONS: [&str; 6] = ["source", "labels", "samples", "age", "timestamp", "summary"];

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Not a protobuf `Report` (gRPC answers INTERNAL before validation).
    NotProtobuf,
    /// Taken, with or without a summary.
    Accepted {
        /// It carried a summary (rather than raw samples or nothing).
        summary: bool,
    },
    /// A valid goodbye.
    Goodbye,
    /// INVALID_ARGUMENT, with this reason.
    Rejected(&'static str),
}

/// Fuzzes one gRPC message body.
pub fn report(data: &[u8]) -> ReportOutcome {
    let Ok(report) = v1::Report::decode(data) else {
        return ReportOutcome::NotProtobuf;
    };
    let summary = match &report.ages {
        Some(v1::report::Ages::Summary(s)) => Some(s.clone()),
        _ => None,
    };
    let peer: std::sync::Arc<str> = "10.1.2.3:41000".into();
    match validate(report, &peer, NOW_MS, &Limits::default()) {
        Ok(Valid::Goodbye(_)) => ReportOutcome::Goodbye,
        Ok(Valid::Observe(_)) => {
            if let Some(wire) = &summary {
                match AgeSummary::from_proto(wire) {
                    Ok(s) => check_summary(&s),
                    Err(e) => panic!("validate accepted a summary from_proto refuses: {e}"),
                }
            }
            ReportOutcome::Accepted {
                summary: summary.is_some(),
            }
        }
        Err(r) => {
            assert!(REASONS.contains(&r.reason), "unknown reason {:?}", r.reason);
            assert!(!r.message.is_empty(), "a rejection says what is wrong");
            ReportOutcome::Rejected(r.reason)
        }
    }
}

/// What holds of any summary validation let through.
fn check_summary(s: &AgeSummary) {
    // The wire form round-trips.
    assert_eq!(AgeSummary::from_proto(&s.to_proto()).as_ref(), Ok(s));
    // Every quantile lies in [min, max] and they never decrease.
    if let (Some(min), Some(max)) = (s.min_ms(), s.max_ms()) {
        assert!((0..=MAX_AGE_MS).contains(&min) && min <= max);
        let mut previous = f64::MIN;
        for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let v = s.quantile_ms(q).expect("a non-empty summary has quantiles");
            assert!(
                v >= min as f64 && v <= max as f64,
                "p{q} = {v} outside [{min}, {max}]"
            );
            assert!(v >= previous, "quantiles decrease at p{q}");
            previous = v;
        }
        assert!(s.mean_ms().is_some_and(f64::is_finite));
    }
    // The read path's dense merge of one summary is that summary.
    let mut dense = DenseAccumulator::new();
    dense.add(s);
    let merged = dense.finish();
    assert_eq!(merged.count(), s.count());
    assert_eq!(merged.buckets(), s.buckets());
    assert_eq!((merged.min_ms(), merged.max_ms()), (s.min_ms(), s.max_ms()));
    assert_eq!(merged.zero_count(), s.zero_count());
}
