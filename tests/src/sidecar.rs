//! One `dwell-sidecar` process beside one test worker: started with its own pod identity, its
//! report source on a free loopback UDP port (read back from its start-up log line), and the
//! stats source on the test broker; or, with `tap`, its AMQP tap on a free loopback port in front
//! of the broker, for a worker that connects through it and reports nothing. Stopped with SIGTERM
//! so it says goodbye to the aggregator.

use std::net::SocketAddr;
use std::time::Duration;

use crate::process::{Process, addr_after};

/// How a sidecar is started.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// The aggregator's gRPC address.
    pub aggregator: SocketAddr,
    /// The queue observed.
    pub queue: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod labels (`key=value`).
    pub labels: Vec<String>,
    /// Broker URL for the stats source (None: report source only).
    pub amqp_url: Option<String>,
    /// Report interval.
    pub interval: Duration,
    /// The AMQP tap on (in front of the broker of `amqp_url`): the worker connects through it.
    pub tap: bool,
}

impl SidecarConfig {
    /// The sidecar of the tests' consumer pods: namespace `jobs`, label `app=binder`, reports every
    /// 250 ms, the stats source on the broker at `amqp_url` (`pod` is filled in per pod).
    pub fn binder(aggregator: SocketAddr, queue: &str, amqp_url: &str) -> Self {
        Self {
            aggregator,
            queue: queue.into(),
            namespace: "jobs".into(),
            pod: String::new(),
            labels: vec!["app=binder".into()],
            amqp_url: Some(amqp_url.into()),
            interval: Duration::from_millis(250),
            tap: false,
        }
    }

    /// The same with the AMQP tap as the age source (the worker makes no report call).
    pub fn with_tap(mut self) -> Self {
        self.tap = true;
        self
    }
}

/// A running sidecar.
pub struct Sidecar {
    /// The process.
    pub process: Process,
    /// Where the worker sends its delivery lines.
    pub report_udp: SocketAddr,
    /// Where the worker connects instead of the broker, when the tap is on.
    pub tap: Option<SocketAddr>,
}

/// The tap's address in the start-up line (`tap=Some(127.0.0.1:PORT)`), if it is on.
pub fn tap_addr(line: &str) -> Option<SocketAddr> {
    let at = line.find("tap=Some(")?;
    addr_after(&line[at..], "tap=")
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

impl Sidecar {
    /// Starts a sidecar and waits for its "dwell-sidecar started" line (30 s deadline).
    pub async fn start(config: &SidecarConfig) -> Result<Self, String> {
        let mut args = vec![
            "--aggregator".to_owned(),
            format!("http://{}", config.aggregator),
            "--queue".into(),
            config.queue.clone(),
            "--pod-name".into(),
            config.pod.clone(),
            "--pod-namespace".into(),
            config.namespace.clone(),
            "--interval".into(),
            millis(config.interval),
            "--report-udp".into(),
            "127.0.0.1:0".into(),
            "--report-http".into(),
            "off".into(),
            "--telemetry-addr".into(),
            "off".into(),
            "--shutdown-timeout".into(),
            "3s".into(),
        ];
        for label in &config.labels {
            args.push("--label".into());
            args.push(label.clone());
        }
        if let Some(url) = &config.amqp_url {
            args.extend(["--amqp-url".into(), url.clone()]);
            args.extend(["--stats-interval".into(), "1s".into()]);
            if config.tap {
                let upstream = format!("amqp://{}", crate::tap::host_port(url));
                args.extend(["--tap-listen".into(), "127.0.0.1:0".into()]);
                args.extend(["--tap-upstream".into(), upstream]);
                args.extend(["--timestamp-header".into(), "timestamp_in_ms".into()]);
            }
        }
        let mut process = Process::spawn(
            &config.pod,
            &crate::binary("dwell-sidecar"),
            &args,
            &[("RUST_LOG", "info")],
        )
        .map_err(|e| e.to_string())?;
        let (report_udp, tap) = process
            .wait_for(Duration::from_secs(30), |line| {
                if !line.contains("dwell-sidecar started") {
                    return None;
                }
                let tap = match config.tap {
                    // `tap=None` must not pick up the next address on the line.
                    true => Some(tap_addr(line)?),
                    false => None,
                };
                Some((addr_after(line, "report_udp")?, tap))
            })
            .await?;
        Ok(Self {
            process,
            report_udp,
            tap,
        })
    }

    /// SIGTERM, then up to 10 s for the goodbye report and the exit.
    pub async fn stop(mut self) -> bool {
        self.process.terminate(Duration::from_secs(10)).await
    }
}
