//! Acceptance for issue 3 against the real binary: reports pushed with a real tonic client and
//! with `grpcurl` (through reflection, no .proto), values read through HTTPS with
//! `kubectl get --raw`. Every statistic, combine mode, formula, stall detection, staleness,
//! eviction, goodbye, config reload (good and bad), invalid reports, and Explain matching the
//! served value.
mod ingest_support;

use std::time::Duration;

use ingest_support::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statistic_combine_mode_and_formula_through_kubectl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = [
        "max", "min", "mean", "count", "rate", "p50", "p99.9", "last",
    ]
    .map(|s| {
        format!(
            "  - {{name: s-{}, statistic: {s}, unit: milliseconds, window: 5m}}\n",
            s.replace('.', "")
        )
    })
    .concat();
    let yaml = [
        "rules:\n",
        &stats,
        "  - {name: cmax, statistic: max, combine: max, window: 5m}\n",
        "  - {name: cmean, statistic: max, combine: mean, window: 5m}\n",
        "  - {name: csum, statistic: max, combine: sum, window: 5m}\n",
        "  - name: formula\n    window: 5m\n",
        "    formula: \"p90 > 100.0 ? p90 * 2.0 : max(p90, messages_ready / 100.0)\"\n",
    ]
    .concat();
    let config = write_config(dir.path(), &yaml);
    let agg = start(&["--config", &config]).await;
    let mut c = client(&agg).await;

    // 600 ages in one source: 500, 297 × 1 s, 300 × 3 s, 8 s, 9 s (in that order; last is 500).
    let mut ages = vec![1_000; 297];
    ages.extend([3_000; 300]);
    ages.extend([8_000, 9_000, 500]);
    c.push(report("stats", "a", "q", &ages))
        .await
        .expect("push");
    for (metric, want) in [
        ("s-max", 9_000.0),
        ("s-min", 500.0),
        ("s-mean", 2_025.0), // 1 214 500 / 600 = 2024.17, ceil
        ("s-count", 600.0),
        ("s-rate", 2.0), // 600 ages over 300 s
        ("s-last", 500.0),
    ] {
        assert_eq!(
            object_value(&agg, "stats", metric).await,
            Ok(want),
            "{metric}"
        );
    }
    let p50 = object_value(&agg, "stats", "s-p50").await.expect("p50");
    assert!(
        (2_970.0..=3_031.0).contains(&p50),
        "p50 {p50} within 1 % of 3000"
    );
    let p999 = object_value(&agg, "stats", "s-p999").await.expect("p99.9");
    assert!(
        (8_910.0..=9_000.0).contains(&p999),
        "p99.9 {p999} within 1 % of 9000"
    );

    // Combine: three pods, two on queue q, one on q2.
    c.push(report("comb", "a", "q", &[10_000]))
        .await
        .expect("push");
    c.push(report("comb", "b", "q", &[20_000]))
        .await
        .expect("push");
    c.push(report("comb", "c", "q2", &[60_000]))
        .await
        .expect("push");
    assert_eq!(object_value(&agg, "comb", "cmax").await, Ok(60.0));
    assert_eq!(object_value(&agg, "comb", "cmean").await, Ok(30.0));
    assert_eq!(object_value(&agg, "comb", "csum").await, Ok(90.0));
    assert_eq!(
        external_value(&agg, "comb", "csum", "queue=q").await,
        Ok(30.0)
    );
    assert_eq!(
        external_value(&agg, "comb", "cmax", "queue=q2").await,
        Ok(60.0)
    );
    let pods = agg
        .kubectl
        .get_json("/apis/custom.metrics.k8s.io/v1beta1/namespaces/comb/pods/*/cmax?labelSelector=app%3Dbinder")
        .await;
    let got: Vec<(String, f64)> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            let name = i["describedObject"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (name, quantity(i["value"].as_str().unwrap_or("")))
        })
        .collect();
    assert_eq!(
        got,
        [("a".into(), 10.0), ("b".into(), 20.0), ("c".into(), 60.0)]
    );
    // Namespaces are isolated: nothing of `comb` shows in `stats`.
    assert_eq!(object_value(&agg, "stats", "cmax").await, Ok(9.0));

    // Formula over p90 and the queue state: max(2, 1500 / 100) = 15.
    let mut r = report("form", "a", "q", &[2_000]);
    r.queue_state = Some(dwell_proto::v1::QueueState {
        messages_ready: 1_500,
        consumers: 1,
        observed_at_ms: 0,
    });
    c.push(r).await.expect("push");
    assert_eq!(object_value(&agg, "form", "formula").await, Ok(15.0));
    c.push(report("form", "a", "q", &[200_000; 20]))
        .await
        .expect("push");
    assert_eq!(
        object_value(&agg, "form", "formula").await,
        Ok(400.0),
        "p90 200 s > 100: doubled"
    );

    // Explain (through grpcurl) shows the steps and the value kubectl served.
    let (ok, out) = grpcurl(
        &agg,
        &[
            "-d",
            r#"{"metric":"s-mean","namespace":"stats","name":"binder"}"#,
            "dwell.v1.Inspect/Explain",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let explain: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(explain["value"], "2025", "{out}");
    let steps = explain["steps"].as_array().expect("steps");
    assert!(steps.len() >= 4, "{out}");
    assert_eq!(steps.last().and_then(|s| s["value"].as_f64()), Some(2025.0));
    assert!(out.contains("mean over 300s (600 ages)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_through_reflection_and_invalid_reports() {
    let agg = start(&[]).await;
    let (ok, out) = grpcurl(&agg, &["list"]).await;
    assert!(ok, "{out}");
    for service in [
        "dwell.v1.Ingest",
        "dwell.v1.Inspect",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(out.contains(service), "{service} missing from: {out}");
    }
    let (ok, out) = grpcurl(&agg, &["describe", "dwell.v1.Report"]).await;
    assert!(ok && out.contains("queue_state"), "{out}");
    let (ok, out) = grpcurl(&agg, &["grpc.health.v1.Health/Check"]).await;
    assert!(ok && out.contains("SERVING"), "{out}");

    let push = r#"{"source":{"namespace":"default","pod":"p1","queue":"a","labels":{"app":"x"}},
                   "samples":{"samples":[{"age_ms":1500},{"age_ms":2500}]}}"#;
    let (ok, out) = grpcurl(&agg, &["-d", push, "dwell.v1.Ingest/Push"]).await;
    assert!(ok && out.contains(r#""accepted": "2""#), "{out}");
    // The built-in rule: `seconds` = ceil(p90) over 30 s.
    assert_eq!(object_value(&agg, "default", "seconds").await, Ok(3.0));
    assert_eq!(
        external_value(&agg, "default", "seconds", "queue=a").await,
        Ok(3.0)
    );
    let (ok, out) = grpcurl(
        &agg,
        &[
            "-d",
            r#"{"metric":"seconds","namespace":"default","name":"binder"}"#,
            "dwell.v1.Inspect/Explain",
        ],
    )
    .await;
    assert!(ok && out.contains(r#""value": "3""#), "{out}");
    let (ok, out) = grpcurl(
        &agg,
        &[
            "-d",
            r#"{"namespace":"default"}"#,
            "dwell.v1.Inspect/ListSources",
        ],
    )
    .await;
    assert!(
        ok && out.contains(r#""pod": "p1""#) && out.contains(r#""samples": "2""#),
        "{out}"
    );

    // Invalid reports: INVALID_ARGUMENT with the precise problem.
    let bad = r#"{"source":{"namespace":"default","pod":"p1","queue":"a"},"samples":{"samples":[{"age_ms":-5}]}}"#;
    let (ok, out) = grpcurl(&agg, &["-d", bad, "dwell.v1.Ingest/Push"]).await;
    assert!(!ok && out.contains("InvalidArgument"), "{out}");
    assert!(
        out.contains("samples[0].age_ms -5 is out of range"),
        "{out}"
    );
    let (ok, out) = grpcurl(&agg, &["-d", r#"{"seq":1}"#, "dwell.v1.Ingest/Push"]).await;
    assert!(!ok && out.contains("report.source is required"), "{out}");
    let mut c = client(&agg).await;
    let e = c
        .push(report("default", "p1", "a", &vec![1; 10_001]))
        .await
        .expect_err("too many samples");
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut huge = report("default", "p1", "a", &[1]);
    if let Some(s) = huge.source.as_mut() {
        s.labels.insert("big".into(), "x".repeat(2 * 1024 * 1024));
    }
    let e = c.push(huge).await.expect_err("message too large");
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    // Nothing bad entered the window; the rejections are counted by reason.
    assert_eq!(object_value(&agg, "default", "seconds").await, Ok(3.0));
    let metrics = agg.kubectl.get_raw("/metrics").await;
    assert!(metrics.success, "{metrics:?}");
    for line in [
        "dwell_ingest_rejected_reports_total{reason=\"age\"} 1",
        "dwell_ingest_rejected_reports_total{reason=\"source\"} 1",
        "dwell_ingest_rejected_reports_total{reason=\"samples\"} 1",
        "dwell_ingest_samples_total 2",
    ] {
        assert!(
            metrics.stdout.contains(line),
            "{line} missing from:\n{}",
            metrics.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_staleness_eviction_and_goodbye() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "stale_after: 3s\nevict_after: 3s\nrules:\n  - {name: seconds, statistic: max, window: 1m, stall_after: 1s}\n",
    );
    let agg = start(&["--config", &config, "--sweep-interval", "200ms"]).await;
    let mut c = client(&agg).await;
    let with_ready = |ages: &[i64]| {
        let mut r = report("stall", "a", "q", ages);
        r.queue_state = Some(dwell_proto::v1::QueueState {
            messages_ready: 5,
            consumers: 1,
            observed_at_ms: 0,
        });
        r
    };
    c.push(with_ready(&[2_000])).await.expect("push");
    assert_eq!(object_value(&agg, "stall", "seconds").await, Ok(2.0));
    // The sidecar keeps reporting 5 ready messages, but no sample arrives. Every heartbeat must
    // be accepted: a refused one would let the source go stale and the stall go unseen.
    let heartbeat = tokio_util::sync::CancellationToken::new();
    let beat = {
        let (mut c, token, r) = (c.clone(), heartbeat.clone(), with_ready(&[]));
        tokio::spawn(async move {
            let mut beats = 0u32;
            while !token.is_cancelled() {
                c.push(r.clone())
                    .await
                    .map_err(|e| format!("heartbeat {beats} refused: {e}"))?;
                beats += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok::<u32, String>(beats)
        })
    };
    let grown = eventually("the stalled age grows past 4 s", || async {
        match object_value(&agg, "stall", "seconds").await? {
            v if v >= 4.0 => Ok(v),
            v => Err(format!("still {v}")),
        }
    })
    .await;
    eventually("it keeps growing with the silence", || async {
        match object_value(&agg, "stall", "seconds").await? {
            v if v > grown => Ok(v),
            v => Err(format!("still {v}")),
        }
    })
    .await;
    heartbeat.cancel();
    let beats = beat
        .await
        .expect("heartbeat task")
        .expect("every heartbeat accepted");
    assert!(beats > 0, "no heartbeat was sent");
    // Silent for stale_after: a 404 that says since when.
    let stale = eventually("the source goes stale", || async {
        match object_value(&agg, "stall", "seconds").await {
            Err(e) if e.contains("stale since") => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(stale.contains("(NotFound)"), "{stale}");
    // And evicted after the grace period: never seen again, gone from ListSources.
    eventually("the source is evicted", || async {
        match object_value(&agg, "stall", "seconds").await {
            Err(e) if e.contains("never seen") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (ok, out) = grpcurl(
        &agg,
        &[
            "-d",
            r#"{"namespace":"stall"}"#,
            "dwell.v1.Inspect/ListSources",
        ],
    )
    .await;
    assert!(ok && !out.contains("\"pod\""), "{out}");

    // Goodbye: removed at once, no waiting.
    c.push(report("bye", "g", "q", &[1_000]))
        .await
        .expect("push");
    assert_eq!(object_value(&agg, "bye", "seconds").await, Ok(1.0));
    let mut bye = report("bye", "g", "q", &[]);
    bye.goodbye = true;
    c.push(bye).await.expect("goodbye");
    let e = object_value(&agg, "bye", "seconds")
        .await
        .expect_err("gone");
    assert!(e.contains("never seen"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_good_and_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "rules:\n  - {name: seconds, statistic: max}\n");
    let mut agg = start(&["--config", &config, "--config-poll-interval", "100ms"]).await;
    let mut c = client(&agg).await;
    c.push(report("ns", "a", "q", &[1_000, 9_000]))
        .await
        .expect("push");
    assert_eq!(object_value(&agg, "ns", "seconds").await, Ok(9.0));

    write_config(dir.path(), "rules:\n  - {name: seconds, statistic: p0}\n");
    let line = agg
        .process
        .wait_for(DEADLINE, |l| {
            l.contains("config rejected").then(|| l.to_string())
        })
        .await
        .expect("rejection logged");
    assert!(
        line.contains("rules[0].statistic: unknown statistic \"p0\""),
        "{line}"
    );
    assert_eq!(
        object_value(&agg, "ns", "seconds").await,
        Ok(9.0),
        "old rules stay"
    );

    write_config(dir.path(), "rules:\n  - {name: seconds, statistc: min}\n");
    let line = agg
        .process
        .wait_for(DEADLINE, |l| {
            (l.contains("config rejected") && l.contains("statistc")).then(|| l.to_string())
        })
        .await
        .expect("unknown field logged");
    assert!(line.contains("statistc"), "{line}");

    write_config(
        dir.path(),
        "rules:\n  - {name: seconds, statistic: min}\n  - {name: other}\n",
    );
    agg.process
        .wait_for(DEADLINE, |l| l.contains("config reloaded").then_some(()))
        .await
        .expect("reload logged");
    assert_eq!(
        object_value(&agg, "ns", "seconds").await,
        Ok(1.0),
        "new rules in force"
    );
    let disc = agg
        .kubectl
        .get_json("/apis/custom.metrics.k8s.io/v1beta1")
        .await;
    assert!(
        disc.to_string().contains("other"),
        "discovery lists the new rule: {disc}"
    );

    // A bad file at start-up is refused with the precise reason.
    let bad = write_config(dir.path(), "rules:\n  - {name: x, window: soon}\n");
    let err = dwell_e2e::aggregator::Aggregator::start_program(
        std::path::Path::new(env!("CARGO_BIN_EXE_dwell-aggregator")),
        dwell_e2e::aggregator::Tls::SelfSigned,
        &["--config", &bad],
    )
    .await
    .err()
    .expect("refuses to start");
    assert!(
        err.contains("rules[0].window: invalid duration \"soon\""),
        "{err}"
    );
}
