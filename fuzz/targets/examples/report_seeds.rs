//! Writes the `report` target's seed corpus (`fuzz/corpus/report/`): reports as the sidecar
//! builds them (a summary from `AgeSummary::record`), the README's grpcurl push (raw samples),
//! a goodbye, and a few the validator must refuse. Re-run after a change to `dwell.v1.Report`:
//! `cargo run -p dwell-fuzz-targets --example report_seeds`.

use std::collections::HashMap;
use std::path::Path;

use dwell_proto::summary::AgeSummary;
use dwell_proto::v1::{self, report::Ages};
use prost::Message;

const NOW_MS: i64 = dwell_fuzz_targets::NOW_MS;

fn source() -> v1::Source {
    v1::Source {
        namespace: "shop".into(),
        pod: "binder-7d9f8-x2x4q".into(),
        labels: HashMap::from([("app".into(), "binder".into())]),
        queue: "orders".into(),
        vhost: "/".into(),
    }
}

fn main() -> std::io::Result<()> {
    let mut summary = AgeSummary::new();
    for (i, age) in [0, 3, 250, 1_200, 1_250, 4_000, 95_000]
        .into_iter()
        .enumerate()
    {
        summary.record(age, NOW_MS - 900 + i as i64 * 100, i == 3);
    }
    let sidecar = v1::Report {
        source: Some(source()),
        instance: 0x5eed_1234,
        seq: 42,
        interval_start_ms: NOW_MS - 1_000,
        interval_end_ms: NOW_MS,
        ages: Some(Ages::Summary(summary.to_proto())),
        queue_state: Some(v1::QueueState {
            messages_ready: 17,
            consumers: 3,
            observed_at_ms: NOW_MS - 2_000,
        }),
        counters: Some(v1::Counters {
            clamped: 1,
            missing: 2,
            unit_converted: 3,
            backlog_dropped: 0,
            rejected: 4,
        }),
        goodbye: false,
    };
    let grpcurl = v1::Report {
        source: Some(v1::Source {
            namespace: "default".into(),
            pod: "p1".into(),
            queue: "jobs".into(),
            ..Default::default()
        }),
        ages: Some(Ages::Samples(v1::Samples {
            samples: vec![
                v1::Sample {
                    age_ms: 1_500,
                    ..Default::default()
                },
                v1::Sample {
                    age_ms: 2_500,
                    observed_at_ms: NOW_MS - 10,
                    redelivered: true,
                },
            ],
        })),
        ..Default::default()
    };
    let goodbye = v1::Report {
        source: Some(source()),
        seq: 43,
        goodbye: true,
        ..Default::default()
    };
    let mut inconsistent = summary.to_proto();
    inconsistent.count += 1;
    let bad_summary = v1::Report {
        ages: Some(Ages::Summary(inconsistent)),
        ..sidecar.clone()
    };
    let future = v1::Report {
        interval_end_ms: NOW_MS + 3_600_000,
        ..sidecar.clone()
    };
    let bad_source = v1::Report {
        source: Some(v1::Source {
            namespace: "Not_A_Namespace".into(),
            ..source()
        }),
        ..grpcurl.clone()
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/report");
    std::fs::create_dir_all(&dir)?;
    for (name, report) in [
        ("sidecar-summary", &sidecar),
        ("grpcurl-samples", &grpcurl),
        ("goodbye", &goodbye),
        ("bad-summary-count", &bad_summary),
        ("future-interval", &future),
        ("bad-namespace", &bad_source),
    ] {
        std::fs::write(dir.join(name), report.encode_to_vec())?;
    }
    Ok(())
}
