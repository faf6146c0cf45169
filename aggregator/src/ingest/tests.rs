use std::collections::HashMap;

use dwell_proto::v1;

use super::validate::{Limits, Valid, validate};

const NOW: i64 = 1_700_000_000_000;

fn report(ages: Vec<i64>) -> v1::Report {
    v1::Report {
        source: Some(v1::Source {
            namespace: "ns".into(),
            pod: "pod-1".into(),
            labels: HashMap::from([("app".into(), "x".into())]),
            queue: "q".into(),
            vhost: String::new(),
        }),
        instance: 1,
        seq: 1,
        interval_start_ms: NOW - 1_000,
        interval_end_ms: NOW,
        ages: Some(v1::report::Ages::Samples(v1::Samples {
            samples: ages
                .into_iter()
                .map(|age_ms| v1::Sample {
                    observed_at_ms: NOW,
                    age_ms,
                    redelivered: false,
                })
                .collect(),
        })),
        ..Default::default()
    }
}

fn reason(r: v1::Report) -> (&'static str, String) {
    let e = validate(r, &"peer".into(), NOW, &Limits::default()).expect_err("rejected");
    (e.reason, e.message)
}

#[test]
fn a_good_report_is_an_observation() {
    let Ok(Valid::Observe(obs)) =
        validate(report(vec![5, 0]), &"peer".into(), NOW, &Limits::default())
    else {
        panic!("valid report");
    };
    assert_eq!(obs.key.vhost, "/", "empty vhost is /");
    assert_eq!(&*obs.peer, "peer");
}

#[test]
fn bad_reports_are_rejected_precisely() {
    let (r, m) = reason(report(vec![-1]));
    assert_eq!(
        (r, m.as_str()),
        (
            "age",
            "samples[0].age_ms -1 is out of range [0, 1000000000000]"
        )
    );
    let (r, _) = reason(report(vec![2_000_000_000_000]));
    assert_eq!(r, "age");
    let mut rep = report(vec![1]);
    rep.source = None;
    assert_eq!(
        reason(rep),
        ("source", "report.source is required".to_string())
    );
    let mut rep = report(vec![1]);
    if let Some(s) = rep.source.as_mut() {
        s.namespace = "Bad_NS".into();
    }
    assert_eq!(reason(rep).0, "source");
    let mut rep = report(vec![1]);
    rep.interval_end_ms = NOW + 3_600_000;
    let (r, m) = reason(rep);
    assert_eq!(r, "timestamp");
    assert!(m.contains("3600000 ms ahead"), "{m}");
    let (r, m) = reason(report(vec![1; 10_001]));
    assert_eq!(r, "samples");
    assert!(m.contains("10001 samples; at most 10000"), "{m}");
    let mut rep = report(vec![1]);
    if let Some(s) = rep.source.as_mut() {
        s.labels = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
    }
    assert_eq!(reason(rep).0, "labels");
    let mut rep = report(vec![]);
    rep.ages = Some(v1::report::Ages::Summary(v1::Summary {
        count: 3,
        ..Default::default()
    }));
    let (r, m) = reason(rep);
    assert_eq!(r, "summary");
    assert!(m.starts_with("report.summary: "), "{m}");
}

#[test]
fn goodbye_needs_only_the_source() {
    let mut rep = report(vec![-1]);
    rep.goodbye = true;
    assert!(matches!(
        validate(rep, &"p".into(), NOW, &Limits::default()),
        Ok(Valid::Goodbye(_))
    ));
}
