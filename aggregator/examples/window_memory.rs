//! Measures the window's memory: 10 000 sources under the default rules (30 s window), each
//! reporting every second for 40 s with 50 ages spread over 0.5–8 s, as a busy sidecar would.
//! Prints the process RSS and the store's own estimate per source.
//!
//! `cargo run -p dwell-aggregator --example window_memory --release [-- SOURCES SAMPLES]`
use std::collections::BTreeMap;

use dwell_aggregator::window::{Ages, Observation, SourceKey, WindowStore};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let sources: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let per_report: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let before = rss_kib();
    let store = WindowStore::new(30_000);
    let t0 = 1_700_000_000_000i64;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for second in 0..40i64 {
        let now = t0 + second * 1_000;
        for i in 0..sources {
            let samples = (0..per_report)
                .map(|_| (500 + (next() % 7_500) as i64, now, false))
                .collect();
            let labels = BTreeMap::from([
                ("app".to_string(), "binder".to_string()),
                ("pod-template-hash".to_string(), "5d8f7c9b7".to_string()),
            ]);
            store.ingest(
                Observation {
                    key: SourceKey {
                        namespace: format!("ns-{}", i % 50),
                        pod: format!("binder-5d8f7c9b7-{i:05}"),
                        queue: "jobs".into(),
                        vhost: "/".into(),
                    },
                    labels,
                    peer: "10.0.0.1:50000".into(),
                    instance: 7,
                    seq: second as u64 + 1,
                    ages: Ages::Samples(samples),
                    queue_state: None,
                    counters: None,
                },
                now,
            );
        }
    }
    let after = rss_kib();
    println!(
        "sources={sources} ages/report={per_report} rss_total={} MiB rss_growth={} MiB \
         growth_per_source={} B estimate_per_source={} B",
        after / 1024,
        (after - before) / 1024,
        (after - before) * 1024 / sources as u64,
        store.approx_bytes() / sources,
    );
}
