//! `dwell-bench-read`: requests per second of one metric read over HTTPS, in the same run,
//! against (1) the release `dwell-aggregator`, (2) the ceiling: a minimal hyper + rustls server
//! answering the same bytes from memory, and (3) the original article's design, a Node.js Express
//! HTTPS server answering a fixed MetricValueList. Each server is its own process; the same
//! client drives all three, in rotating order, and medians over `--runs` are reported. With
//! `--baseline-aggregator`, a second aggregator build (e.g. the previous commit's) is a fourth
//! server in the same rotation.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dwell_bench::child::{Process, first_word, sibling_binary};
use dwell_bench::https::{self, LoadResult};
use dwell_bench::ingest::{self, Counters, Payload};
use dwell_bench::procfs::CpuMeter;
use dwell_bench::reports;
use dwell_bench::stats::{median, ratio};
use dwell_bench::target::Aggregator;
use tokio_util::sync::CancellationToken;

/// Read-path throughput: dwell vs. the ceiling vs. the Node.js Express baseline.
#[derive(Debug, Parser)]
#[command(name = "dwell-bench-read")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Runs per server; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds of load per server and run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Directory of the Node.js baseline (server.js, package.json).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/node"))]
    node_dir: PathBuf,
    /// The aggregator binary measured (default: `dwell-aggregator` next to this one).
    #[arg(long)]
    aggregator: Option<PathBuf>,
    /// Another aggregator build measured in the same rotation.
    #[arg(long)]
    baseline_aggregator: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: serve the bytes of FILE over HTTPS on 127.0.0.1 (the ceiling server).
    ServeCeiling {
        /// The response body.
        body: PathBuf,
    },
}

const PATH: &str =
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench/deployments.apps/worker/seconds";

async fn serve_ceiling(body: PathBuf) -> anyhow::Result<()> {
    let bytes = std::fs::read(&body)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("ceiling listening on {}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        s.cancel();
    });
    https::serve_fixed(listener, bytes.into(), shutdown).await
}

/// Installs express into the Node baseline's directory when it is missing.
async fn npm_install(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.join("node_modules/express").exists() {
        return Ok(());
    }
    eprintln!("npm install express in {} …", dir.display());
    let status = tokio::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .await?;
    anyhow::ensure!(status.success(), "npm install failed in {}", dir.display());
    Ok(())
}

struct Server {
    name: &'static str,
    addr: SocketAddr,
    pid: u32,
}

async fn measure(s: &Server, args: &Args) -> anyhow::Result<(LoadResult, f64)> {
    let cpu = CpuMeter::start(s.pid);
    let r = https::closed_loop(
        s.addr,
        PATH,
        args.connections,
        Duration::from_secs(args.duration),
    )
    .await?;
    Ok((r, cpu.cores()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dwell_bench::install_crypto();
    let args = Args::parse();
    if let Some(Command::ServeCeiling { body }) = args.command {
        return serve_ceiling(body).await;
    }
    npm_install(&args.node_dir).await?;
    let work = std::env::temp_dir().join(format!("dwell-bench-read-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    // dwell, fed by one simulated sidecar so its value stays fresh for the whole run.
    let stop = CancellationToken::new();
    let bin = match &args.aggregator {
        Some(bin) => bin.clone(),
        None => sibling_binary("dwell-aggregator")?,
    };
    let (agg, body) = fed_aggregator(&bin, &stop).await?;
    let baseline = match &args.baseline_aggregator {
        Some(bin) => Some(fed_aggregator(bin, &stop).await?.0),
        None => None,
    };
    let body_file = work.join("body.json");
    std::fs::write(&body_file, &body)?;

    // The ceiling: this binary in serve-ceiling mode.
    let me = sibling_binary("dwell-bench-read")?;
    let ceiling = Process::spawn(
        "ceiling",
        &me,
        &["serve-ceiling".into(), body_file.display().to_string()],
    )?;
    let ceiling_addr: SocketAddr = first_word(
        &ceiling
            .wait_for("ceiling listening on ", Duration::from_secs(10))
            .await?,
    )
    .parse()?;

    // The Node.js baseline, with a self-signed certificate of its own.
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])?;
    std::fs::write(work.join("cert.pem"), cert.cert.pem())?;
    std::fs::write(work.join("key.pem"), cert.signing_key.serialize_pem())?;
    let node = spawn_node(&args, &work, &body_file)?;
    let node_addr: SocketAddr = first_word(
        &node
            .wait_for("node listening on ", Duration::from_secs(20))
            .await?,
    )
    .parse()?;
    let (_, node_body) = https::get_once(node_addr, PATH).await?;
    eprintln!(
        "body: dwell {} B, ceiling {} B, node {} B",
        body.len(),
        body.len(),
        node_body.len()
    );

    let mut servers = vec![
        Server {
            name: "dwell-aggregator",
            addr: agg.metrics_addr,
            pid: agg.process.pid()?,
        },
        Server {
            name: "ceiling (hyper + rustls, bytes from memory)",
            addr: ceiling_addr,
            pid: ceiling.pid()?,
        },
        Server {
            name: "Node.js Express HTTPS (article design)",
            addr: node_addr,
            pid: node.pid()?,
        },
    ];
    if let Some(base) = &baseline {
        servers.push(Server {
            name: "dwell-aggregator, baseline build",
            addr: base.metrics_addr,
            pid: base.process.pid()?,
        });
    }
    let n = servers.len();
    let mut rps = vec![vec![]; n];
    let mut p50 = vec![vec![]; n];
    let mut p99 = vec![vec![]; n];
    let mut cpu = vec![vec![]; n];
    let mut errors = vec![0u64; n];
    for run in 0..args.runs {
        for k in 0..n {
            let i = (run + k) % n;
            let (r, c) = measure(&servers[i], &args).await?;
            eprintln!(
                "run {} {}: {:.0} req/s, p99 {:.2} ms",
                run + 1,
                servers[i].name,
                r.rps,
                r.latencies.ms(99.0)
            );
            rps[i].push(r.rps);
            p50[i].push(r.latencies.ms(50.0));
            p99[i].push(r.latencies.ms(99.0));
            cpu[i].push(c);
            errors[i] += r.latencies.errors;
        }
    }
    stop.cancel();

    println!(
        "\n{} — `dwell-bench-read --runs {} --duration {} --connections {}`, GET {PATH} ({} B), median of {} runs\n",
        dwell_bench::machine_line(),
        args.runs,
        args.duration,
        args.connections,
        body.len(),
        args.runs
    );
    println!(
        "| server | req/s | p50 | p99 | server CPU | server CPU per request | errors | dwell ÷ this (req/s) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let dwell = median(&rps[0]);
    let cpu_per_req: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            cpu[i]
                .iter()
                .zip(&rps[i])
                .map(|(c, r)| c / r.max(1.0) * 1e6)
                .collect()
        })
        .collect();
    for i in 0..n {
        let m = median(&rps[i]);
        println!(
            "| {} | {m:.0} | {:.2} ms | {:.2} ms | {:.0} % | {:.1} µs | {} | {} |",
            servers[i].name,
            median(&p50[i]),
            median(&p99[i]),
            median(&cpu[i]) * 100.0,
            median(&cpu_per_req[i]),
            errors[i],
            ratio(dwell, m)
        );
    }
    agg.process.stop().await;
    if let Some(base) = baseline {
        base.process.stop().await;
    }
    ceiling.stop().await;
    node.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Starts the aggregator at `bin`, fed by one simulated sidecar (until `stop`) so its value stays
/// fresh for the whole run, and waits for its first 200 on [`PATH`] (returned).
async fn fed_aggregator(
    bin: &std::path::Path,
    stop: &CancellationToken,
) -> anyhow::Result<(Aggregator, hyper::body::Bytes)> {
    let agg = Aggregator::start_binary(bin, None, &[]).await?;
    let channel = ingest::connect(&agg.grpc_uri(), 1).await?.remove(0);
    tokio::spawn(ingest::sidecar(
        channel,
        ingest::Sender {
            source: reports::source("bench", "worker-0", "jobs"),
            token: None,
        },
        Duration::from_secs(1),
        Duration::ZERO,
        Payload::Summaries(Arc::new(reports::summary_pool(16, 50, 1))),
        Arc::new(Counters::default()),
        stop.clone(),
    ));
    for _ in 0..100 {
        if let Ok((200, b)) = https::get_once(agg.metrics_addr, PATH).await {
            return Ok((agg, b));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{} never answered 200 on {PATH}", bin.display())
}

fn spawn_node(
    args: &Args,
    work: &std::path::Path,
    body: &std::path::Path,
) -> anyhow::Result<Process> {
    // `env` passes the paths without touching this process's environment.
    let node_args = [
        format!("BODY_FILE={}", body.display()),
        format!("TLS_KEY={}", work.join("key.pem").display()),
        format!("TLS_CERT={}", work.join("cert.pem").display()),
        "node".into(),
        args.node_dir.join("server.js").display().to_string(),
    ];
    Process::spawn("node", std::path::Path::new("/usr/bin/env"), &node_args)
}
