//! `dwell-bench-sidecar`: the release `dwell-sidecar`'s RSS and CPU at idle, at 1 000 and at
//! 20 000 messages/s through its report source (one UDP datagram per delivery, as a consumer app
//! sends them), pushing to a release aggregator. Beside it, in the same run, a minimal tokio UDP
//! sink (receive and count lines, nothing else): the irreducible cost of taking the datagrams.
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use dwell_bench::child::{Process, free_tcp_port, free_udp_port, sibling_binary};
use dwell_bench::plainhttp;
use dwell_bench::procfs::{self, CpuMeter, mib};
use dwell_bench::reports::now_ms;
use dwell_bench::stats::{median, ratio};
use dwell_bench::target::Aggregator;

/// Sidecar footprint under report-source load.
#[derive(Debug, Parser)]
#[command(name = "dwell-bench-sidecar")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Message rates measured (0 = idle).
    #[arg(long, value_delimiter = ',', default_value = "0,1000,20000")]
    rates: Vec<u64>,
    /// Seconds per rate (the first 3 s of each are not measured).
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Runs; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: the baseline UDP sink on 127.0.0.1:PORT.
    Sink {
        /// The port.
        port: u16,
    },
}

/// The baseline: a current-thread tokio loop that receives datagrams and counts lines.
fn sink(port: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let sock = tokio::net::UdpSocket::bind(("127.0.0.1", port)).await?;
        println!("sink listening on {}", sock.local_addr()?);
        let mut buf = vec![0u8; 8193];
        let mut lines = 0u64;
        loop {
            let (n, _) = sock.recv_from(&mut buf).await?;
            lines += buf[..n].split(|b| *b == b'\n').count() as u64;
            std::hint::black_box(lines);
        }
    })
}

/// Sends `rate` datagrams/s (one `jobs <ts>ms` line each) to `to` until `stop`, from a thread.
fn blast(to: SocketAddr, rate: u64, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
            return;
        };
        let start = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // Paced in 2 ms steps: send what the schedule says is due, then sleep.
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while n < due {
                let line = format!("jobs {}ms", now_ms() - 1500);
                if sock.send_to(line.as_bytes(), to).is_ok() {
                    n += 1;
                }
            }
            sent.store(n, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
    });
}

#[derive(Debug, Clone, Copy, Default)]
struct Phase {
    cpu: f64,
    rss: u64,
    peak: u64,
    sink_cpu: f64,
    sink_rss: u64,
    sent: u64,
    counted: f64,
}

async fn phase(
    rate: u64,
    secs: u64,
    targets: [(u32, SocketAddr); 2],
    telemetry: SocketAddr,
) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
    let before = ages(telemetry).await;
    if rate > 0 {
        for (i, (_, addr)) in targets.iter().enumerate() {
            blast(*addr, rate, stop.clone(), sent[i].clone());
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (c0, c1) = (CpuMeter::start(targets[0].0), CpuMeter::start(targets[1].0));
    tokio::time::sleep(Duration::from_secs(secs.saturating_sub(3).max(1))).await;
    let (cpu, sink_cpu) = (c0.cores(), c1.cores());
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mem = procfs::memory(targets[0].0).unwrap_or_default();
    let sink_mem = procfs::memory(targets[1].0).unwrap_or_default();
    Ok(Phase {
        cpu,
        rss: mem.rss,
        peak: mem.peak_rss,
        sink_cpu,
        sink_rss: sink_mem.rss,
        sent: sent[0].load(Ordering::Relaxed),
        counted: ages(telemetry).await - before,
    })
}

async fn ages(telemetry: SocketAddr) -> f64 {
    plainhttp::get(telemetry, "/metrics", "text/plain")
        .await
        .map(|t| plainhttp::sum_metric(&t, "dwell_sidecar_ages_total"))
        .unwrap_or(f64::NAN)
}

async fn one_run(args: &Args) -> anyhow::Result<Vec<Phase>> {
    let agg = Aggregator::start(None, &[]).await?;
    let (udp, tele, sink_port) = (free_udp_port()?, free_tcp_port()?, free_udp_port()?);
    let sidecar_args: Vec<String> = [
        "--aggregator",
        &agg.grpc_uri(),
        "--queue",
        "jobs",
        "--interval",
        "1s",
        "--report-udp",
        &format!("127.0.0.1:{udp}"),
        "--report-http",
        "off",
        "--telemetry-addr",
        &format!("127.0.0.1:{tele}"),
        "--pod-name",
        "worker-0",
        "--pod-namespace",
        "bench",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sidecar = Process::spawn("sidecar", &sibling_binary("dwell-sidecar")?, &sidecar_args)?;
    sidecar
        .wait_for("dwell-sidecar started", Duration::from_secs(20))
        .await?;
    let me = sibling_binary("dwell-bench-sidecar")?;
    let sink = Process::spawn("sink", &me, &["sink".into(), sink_port.to_string()])?;
    sink.wait_for("sink listening on", Duration::from_secs(10))
        .await?;
    let targets = [
        (sidecar.pid()?, SocketAddr::from(([127, 0, 0, 1], udp))),
        (sink.pid()?, SocketAddr::from(([127, 0, 0, 1], sink_port))),
    ];
    let telemetry = SocketAddr::from(([127, 0, 0, 1], tele));
    let mut out = Vec::new();
    for &rate in &args.rates {
        let p = phase(rate, args.duration, targets, telemetry).await?;
        eprintln!(
            "rate {rate}/s: sidecar {:.1} % CPU, RSS {} (peak {}); sink {:.1} % CPU, RSS {}; sent {}, sidecar counted {}",
            p.cpu * 100.0,
            mib(p.rss),
            mib(p.peak),
            p.sink_cpu * 100.0,
            mib(p.sink_rss),
            p.sent,
            p.counted
        );
        out.push(p);
    }
    sidecar.stop().await;
    sink.stop().await;
    agg.process.stop().await;
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    dwell_bench::install_crypto();
    let args = Args::parse();
    if let Some(Command::Sink { port }) = args.command {
        return sink(port);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure(args))
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        runs.push(one_run(&args).await?);
    }
    println!(
        "\n{} — `dwell-bench-sidecar --runs {} --duration {}`, median of {} runs\n",
        dwell_bench::machine_line(),
        args.runs,
        args.duration,
        args.runs
    );
    println!(
        "| messages/s | sidecar CPU | UDP sink CPU (baseline) | CPU ratio | sidecar RSS (peak) | sink RSS | ratio | ages counted / sent |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, rate) in args.rates.iter().enumerate() {
        let m =
            |f: &dyn Fn(&Phase) -> f64| median(&runs.iter().map(|r| f(&r[i])).collect::<Vec<_>>());
        let (cpu, scpu) = (m(&|p| p.cpu), m(&|p| p.sink_cpu));
        let (rss, peak, srss) = (
            m(&|p| p.rss as f64),
            m(&|p| p.peak as f64),
            m(&|p| p.sink_rss as f64),
        );
        let (counted, sent) = (m(&|p| p.counted), m(&|p| p.sent as f64));
        println!(
            "| {rate} | {:.1} % | {:.1} % | {} | {} ({}) | {} | {} | {counted:.0} / {sent:.0} |",
            cpu * 100.0,
            scpu * 100.0,
            ratio(cpu, scpu),
            mib(rss as u64),
            mib(peak as u64),
            mib(srss as u64),
            ratio(rss, srss)
        );
    }
    Ok(())
}
