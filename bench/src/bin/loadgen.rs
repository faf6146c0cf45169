//! `dwell-loadgen`: simulated sidecars against a release `dwell-aggregator`, with HPA-style reads
//! running at the same time. Measures ingest throughput, read latency (p50/p99) under load and
//! without it, the aggregator's CPU and peak RSS, and RSS per source. Prints Markdown tables.
//!
//! Two scenarios (`--scenario`): `fleet` (N streams sending a summary every 1/R s) and `raw`
//! (streams sending batches of raw samples totalling `--raw-samples-per-sec`, beside a fleet of
//! `--pods` summary streams so the Pods read has its pods).
//!
//! Each run: warm-up; `--ingest-only` s of load with no reads (CPU per report); `--duration` s
//! of load with the three reads (latency under load, RSS); `--solo` s of load with the Object
//! read alone (does a Pods read's cost show in the Object read's latency?); then `--quiet` s of
//! the three reads without load. With `--baseline-aggregator`, each run measures that build too
//! (in alternating order), and the tables end with the ratio of the two.
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use dwell_bench::child::sibling_binary;
use dwell_bench::ingest::{self, Counters, Payload};
use dwell_bench::procfs::{self, CpuMeter, mib};
use dwell_bench::reads::{self, HpaPaths, KindResult};
use dwell_bench::reports;
use dwell_bench::stats::{median, ratio};
use dwell_bench::target::Aggregator;
use dwell_bench::tokens;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Fleet,
    Raw,
}

/// Load generator for the dwell aggregator (simulated sidecars + HPA reads).
#[derive(Debug, Parser)]
#[command(name = "dwell-loadgen")]
struct Args {
    /// Which load to run.
    #[arg(long, value_enum, default_value_t = Scenario::Fleet)]
    scenario: Scenario,
    /// Simulated sidecars (one source and one Ingest/Stream each), fleet scenario.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// Reports per second per stream (fleet).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Ages per summarised interval (fleet); sets the summary's spread.
    #[arg(long, default_value_t = 50)]
    ages_per_report: usize,
    /// HTTP/2 connections the streams are spread over.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Pods in the namespace read by the Pods request (their sources come first).
    #[arg(long, default_value_t = 1_000)]
    pods: usize,
    /// Raw samples per second in total (raw scenario).
    #[arg(long, default_value_t = 1_000_000)]
    raw_samples_per_sec: u64,
    /// Samples per raw report.
    #[arg(long, default_value_t = 1_000)]
    raw_batch: usize,
    /// Streams carrying the raw reports.
    #[arg(long, default_value_t = 50)]
    raw_streams: usize,
    /// Seconds from start until measuring (every stream connected and reporting).
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Seconds measured under load.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds of reads after the load stops (the no-load baseline).
    #[arg(long, default_value_t = 8)]
    quiet: u64,
    /// Reads per second per request kind.
    #[arg(long, default_value_t = 20.0)]
    read_rate: f64,
    /// Unary `Ingest/Push` per report instead of one long-lived `Ingest/Stream` per sidecar.
    #[arg(long)]
    unary: bool,
    /// Runs (each with a fresh aggregator); medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds of load with no reads, after the warm-up (ingest CPU per report).
    #[arg(long, default_value_t = 5)]
    ingest_only: u64,
    /// Seconds of load with only the Object read, after the main phase.
    #[arg(long, default_value_t = 8)]
    solo: u64,
    /// The aggregator binary measured (default: `dwell-aggregator` next to this one).
    #[arg(long)]
    aggregator: Option<PathBuf>,
    /// Another aggregator build measured in the same runs, as the baseline of the comparison.
    #[arg(long)]
    baseline_aggregator: Option<PathBuf>,
    /// Measures the aggregator twice per run, with ingest tokens (each stream sends an ES256
    /// token for its own pod; `--ingest-jwks`, `--ingest-require-identity`) and without, the
    /// run without as the baseline (streams only, not with --unary).
    #[arg(long, conflicts_with_all = ["baseline_aggregator", "unary"])]
    tokens: bool,
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
struct Run {
    reports_per_sec: f64,
    sent_per_sec: f64,
    ages_per_sec: f64,
    behind: u64,
    errors: u64,
    cpu_cores: f64,
    /// Aggregator CPU seconds per acked report with no reads running.
    ingest_cpu_per_report: f64,
    /// Aggregator CPU seconds over the warm-up, while every stream opens (and, with tokens,
    /// is verified).
    warmup_cpu_s: f64,
    /// Object read p50 / p99 under load with no other read running.
    solo: (f64, f64),
    rss: u64,
    peak_rss: u64,
    idle_rss: u64,
    sources: usize,
    loadgen_cpu: f64,
    /// (kind, p50 loaded, p99 loaded, p50 quiet, p99 quiet, errors, body bytes)
    reads: Vec<(&'static str, f64, f64, f64, f64, u64, usize)>,
}

fn source_for(i: usize, pods: usize) -> dwell_proto::v1::Source {
    if i < pods {
        reports::source("bench-pods", &format!("worker-{i}"), "jobs")
    } else {
        let ns = format!("ns-{:03}", (i - pods) / 100);
        reports::source(&ns, &format!("worker-{i}"), "jobs")
    }
}

async fn one_run(args: &Args, bin: &std::path::Path, tokens: bool) -> anyhow::Result<Run> {
    let issuer = tokens.then(tokens::Issuer::new).transpose()?;
    let jwks = std::env::temp_dir().join(format!("dwell-loadgen-{}.jwks", std::process::id()));
    let mut flags: Vec<String> = Vec::new();
    if let Some(issuer) = &issuer {
        issuer.write_jwks(&jwks)?;
        flags.extend(["--ingest-jwks".into(), jwks.display().to_string()]);
        flags.extend(["--ingest-token-issuer".into(), tokens::ISSUER.into()]);
        flags.push("--ingest-require-identity".into());
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agg = Aggregator::start_binary(bin, None, &flags).await?;
    let sender = |source: dwell_proto::v1::Source| -> anyhow::Result<ingest::Sender> {
        let token = issuer.as_ref().map(|i| i.bearer(&source)).transpose()?;
        Ok(ingest::Sender { source, token })
    };
    let pid = agg.process.pid()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = procfs::memory(pid).map(|m| m.rss).unwrap_or(0);
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let channels = ingest::connect(&agg.grpc_uri(), args.connections.max(1)).await?;
    let warmup_cpu = CpuMeter::start(pid);
    let mut handles = Vec::new();
    let (fleet, fleet_period) = match args.scenario {
        Scenario::Fleet => (args.streams, Duration::from_secs_f64(1.0 / args.rate)),
        Scenario::Raw => (args.pods, Duration::from_secs(1)),
    };
    let pool = Arc::new(reports::summary_pool(256, args.ages_per_report, 7));
    let driver = if args.unary {
        |c, s, p, d, l, n, t| tokio::spawn(ingest::pusher(c, s, p, d, l, n, t))
    } else {
        |c, s, p, d, l, n, t| tokio::spawn(ingest::sidecar(c, s, p, d, l, n, t))
    };
    for i in 0..fleet {
        // Phases spread by the golden ratio: every namespace's sources report spread over the
        // period, as a real fleet's (consecutive sources, one namespace, used to report within a
        // few ms of each other, so a namespace's answer held for most of each second).
        let delay = fleet_period.mul_f64((i as f64 * 0.618_033_988_749_894_9).fract());
        handles.push(driver(
            channels[i % channels.len()].clone(),
            sender(source_for(i, args.pods))?,
            fleet_period,
            delay,
            Payload::Summaries(pool.clone()),
            counters.clone(),
            stop.clone(),
        ));
    }
    let mut sources = fleet;
    if args.scenario == Scenario::Raw {
        let per_stream = args.raw_samples_per_sec as f64 / args.raw_streams as f64;
        let period = Duration::from_secs_f64(args.raw_batch as f64 / per_stream);
        for i in 0..args.raw_streams {
            let delay = period.mul_f64(i as f64 / args.raw_streams as f64);
            handles.push(driver(
                channels[i % channels.len()].clone(),
                sender(reports::source(
                    "bench-raw",
                    &format!("raw-{i}"),
                    "firehose",
                ))?,
                period,
                delay,
                Payload::Samples(reports::sample_batch(args.raw_batch, i as u64)),
                counters.clone(),
                stop.clone(),
            ));
        }
        sources += args.raw_streams;
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let warmup_cpu_s = warmup_cpu.cores() * warmup_cpu.elapsed_secs();
    let _ = std::fs::remove_file(&jwks);
    let ns = if args.scenario == Scenario::Fleet && args.streams > args.pods {
        "ns-000"
    } else {
        "bench-pods"
    };
    let paths = HpaPaths::new("seconds", ns, "bench-pods");
    let ingest_cpu = CpuMeter::start(pid);
    let acked_before = counters.acked.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.ingest_only)).await;
    let acked = counters.acked.load(Ordering::Relaxed) - acked_before;
    let ingest_cpu_per_report =
        ingest_cpu.cores() * ingest_cpu.elapsed_secs() / acked.max(1) as f64;
    let me = std::process::id();
    let (cpu, own_cpu) = (CpuMeter::start(pid), CpuMeter::start(me));
    let (acked0, accepted0, sent0) = (
        counters.acked.load(Ordering::Relaxed),
        counters.accepted.load(Ordering::Relaxed),
        counters.sent.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    let loaded = reads::all_kinds(
        agg.metrics_addr,
        &paths,
        args.read_rate,
        Duration::from_secs(args.duration),
    )
    .await?;
    let secs = t0.elapsed().as_secs_f64();
    let mut run = Run {
        reports_per_sec: (counters.acked.load(Ordering::Relaxed) - acked0) as f64 / secs,
        sent_per_sec: (counters.sent.load(Ordering::Relaxed) - sent0) as f64 / secs,
        ages_per_sec: (counters.accepted.load(Ordering::Relaxed) - accepted0) as f64 / secs,
        cpu_cores: cpu.cores(),
        loadgen_cpu: own_cpu.cores(),
        idle_rss,
        sources,
        ingest_cpu_per_report,
        warmup_cpu_s,
        ..Run::default()
    };
    let mem = procfs::memory(pid).unwrap_or_default();
    run.rss = mem.rss;
    run.peak_rss = mem.peak_rss;
    let solo = reads::paced(
        agg.metrics_addr,
        paths.object.clone(),
        args.read_rate,
        Duration::from_secs(args.solo),
    )
    .await?;
    run.solo = (solo.latencies.ms(50.0), solo.latencies.ms(99.0));
    stop.cancel();
    for h in handles {
        let _ = h.await;
    }
    run.behind = counters.behind.load(Ordering::Relaxed);
    run.errors = counters.errors.load(Ordering::Relaxed);
    if let Ok(Some(e)) = counters.first_error.lock().map(|e| e.clone()) {
        eprintln!("first stream error: {e}");
    }
    let quiet = reads::all_kinds(
        agg.metrics_addr,
        &paths,
        args.read_rate,
        Duration::from_secs(args.quiet),
    )
    .await?;
    for ((kind, l), (_, q)) in loaded.iter().zip(quiet.iter()) {
        report_errors(kind, l);
        run.reads.push((
            kind,
            l.latencies.ms(50.0),
            l.latencies.ms(99.0),
            q.latencies.ms(50.0),
            q.latencies.ms(99.0),
            l.latencies.errors,
            l.body_bytes,
        ));
    }
    agg.process.stop().await;
    Ok(run)
}

fn report_errors(kind: &str, r: &KindResult) {
    if let Some(e) = &r.first_error {
        eprintln!("{kind} read failed ({} times): {e}", r.latencies.errors);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dwell_bench::install_crypto();
    let args = Args::parse();
    let bin = match &args.aggregator {
        Some(bin) => bin.clone(),
        None => sibling_binary("dwell-aggregator")?,
    };
    let mut builds = vec![("measured", bin.clone(), args.tokens)];
    if let Some(base) = &args.baseline_aggregator {
        builds.push(("baseline", base.clone(), false));
    }
    if args.tokens {
        builds = vec![("tokens on", bin.clone(), true), ("tokens off", bin, false)];
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); builds.len()];
    for i in 0..args.runs {
        for k in 0..builds.len() {
            // Alternate which build goes first, so drift in the machine's load hits both.
            let b = (i + k) % builds.len();
            let (name, bin, tokens) = &builds[b];
            let r = one_run(&args, bin, *tokens).await?;
            eprintln!(
                "run {} {name}: {:.0} reports/s, {:.0} ages/s, aggregator {:.0}% CPU, {:.1} µs CPU/report, RSS {} (peak {}), reads {:?}, Object alone {:?}",
                i + 1,
                r.reports_per_sec,
                r.ages_per_sec,
                r.cpu_cores * 100.0,
                r.ingest_cpu_per_report * 1e6,
                mib(r.rss),
                mib(r.peak_rss),
                r.reads,
                r.solo
            );
            runs[b].push(r);
        }
    }
    for ((name, bin, _), runs) in builds.iter().zip(&runs) {
        print_tables(&args, name, bin, runs);
    }
    if let [measured, baseline] = runs.as_slice() {
        print_comparison(measured, baseline);
    }
    Ok(())
}

/// The headline figures of two builds measured in the same runs, and their ratio.
fn print_comparison(measured: &[Run], baseline: &[Run]) {
    println!("\n| figure (medians) | measured | baseline | ratio |");
    println!("|---|---|---|---|");
    let row = |what: &str, f: &dyn Fn(&Run) -> f64, unit: &str| {
        let (m, b) = (med(measured, f), med(baseline, f));
        println!(
            "| {what} | {m:.2} {unit} | {b:.2} {unit} | {} |",
            ratio(m, b)
        );
    };
    row("reports acked/s", &|r| r.reports_per_sec, "");
    row(
        "ingest CPU per report (no reads)",
        &|r| r.ingest_cpu_per_report * 1e6,
        "µs",
    );
    row(
        "aggregator CPU over the warm-up (all streams opening)",
        &|r| r.warmup_cpu_s,
        "s",
    );
    row("aggregator CPU under load", &|r| r.cpu_cores * 100.0, "%");
    row("RSS", &|r| r.rss as f64 / 1048576.0, "MiB");
    row(
        "RSS per source",
        &|r| (r.rss as f64 - r.idle_rss as f64) / r.sources.max(1) as f64,
        "B",
    );
    row("Object p99, load, alone", &|r| r.solo.1, "ms");
    let kinds = measured.first().map(|r| r.reads.len()).unwrap_or(0);
    for i in 0..kinds {
        let kind = measured[0].reads[i].0;
        row(&format!("{kind} p50, load"), &|r| r.reads[i].1, "ms");
        row(&format!("{kind} p99, load"), &|r| r.reads[i].2, "ms");
        row(&format!("{kind} p99, no load"), &|r| r.reads[i].4, "ms");
    }
}

fn med(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>())
}

fn print_tables(args: &Args, name: &str, bin: &std::path::Path, runs: &[Run]) {
    let n = runs.len();
    println!(
        "\n{} — `dwell-loadgen {:?}{}` — {name}: {}, median of {n} runs\n",
        dwell_bench::machine_line(),
        args.scenario,
        if args.unary { " --unary" } else { "" },
        bin.display()
    );
    let sources = runs.first().map(|r| r.sources).unwrap_or(0);
    let expected = match args.scenario {
        Scenario::Fleet => args.streams as f64 * args.rate,
        Scenario::Raw => args.pods as f64 + args.raw_samples_per_sec as f64 / args.raw_batch as f64,
    };
    let rps = med(runs, |r| r.reports_per_sec);
    let rss = med(runs, |r| r.rss as f64);
    let peak = med(runs, |r| r.peak_rss as f64);
    let idle = med(runs, |r| r.idle_rss as f64);
    println!("| figure | dwell | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    let sent = med(runs, |r| r.sent_per_sec);
    let how = if args.unary {
        "unary Push"
    } else {
        "one Stream each"
    };
    println!(
        "| reports acked/s ({sources} sources, {how}) | {rps:.0} | {expected:.0} offered, {sent:.0} sent | {} |",
        ratio(rps, expected)
    );
    if args.scenario == Scenario::Raw {
        let ages = med(runs, |r| r.ages_per_sec);
        let offered =
            args.raw_samples_per_sec as f64 + args.pods as f64 * args.ages_per_report as f64;
        println!(
            "| ages taken/s | {ages:.0} | {offered:.0} offered | {} |",
            ratio(ages, offered)
        );
    }
    println!(
        "| aggregator CPU | {:.0} % of a core | 200 % (2 cores) | {} |",
        med(runs, |r| r.cpu_cores) * 100.0,
        ratio(med(runs, |r| r.cpu_cores), 2.0)
    );
    println!(
        "| ingest CPU per report (load, no reads) | {:.1} µs | | |",
        med(runs, |r| r.ingest_cpu_per_report) * 1e6
    );
    println!(
        "| loadgen CPU (same machine) | {:.0} % of a core | | |",
        med(runs, |r| r.loadgen_cpu) * 100.0
    );
    println!(
        "| aggregator RSS / peak | {} / {} | 64 MiB target | {} |",
        mib(rss as u64),
        mib(peak as u64),
        ratio(peak, 64.0 * 1048576.0)
    );
    println!(
        "| RSS per source ((RSS − idle {}) / {sources}) | {:.0} B | | |",
        mib(idle as u64),
        (rss - idle) / sources.max(1) as f64
    );
    println!(
        "| ticks skipped (server behind) / stream errors | {} / {} | 0 | |",
        runs.iter().map(|r| r.behind).max().unwrap_or(0),
        runs.iter().map(|r| r.errors).max().unwrap_or(0)
    );
    for (i, (kind, ..)) in runs
        .first()
        .map(|r| r.reads.clone())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let p50 = med(runs, |r| r.reads[i].1);
        let p99 = med(runs, |r| r.reads[i].2);
        let q50 = med(runs, |r| r.reads[i].3);
        let q99 = med(runs, |r| r.reads[i].4);
        let errs: u64 = runs.iter().map(|r| r.reads[i].5).sum();
        let bytes = runs.first().map(|r| r.reads[i].6).unwrap_or(0);
        println!(
            "| {kind} read p50 / p99 under load ({bytes} B, {errs} errors) | {p50:.2} / {p99:.2} ms | {q50:.2} / {q99:.2} ms without load | {} (p99) |",
            ratio(p99, q99)
        );
    }
    let (s50, s99) = (med(runs, |r| r.solo.0), med(runs, |r| r.solo.1));
    let with_pods = med(runs, |r| r.reads.first().map_or(0.0, |k| k.2));
    println!(
        "| Object read p50 / p99 under load, no other read | {s50:.2} / {s99:.2} ms | {with_pods:.2} ms p99 beside Pods and External reads | {} (p99) |",
        ratio(with_pods, s99)
    );
}
