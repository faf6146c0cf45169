//! The sidecar's AMQP tap under test: a `dwell-sidecar` process with the tap on a free loopback
//! port in front of the test broker (its address read back from the start-up log line), the app
//! URL that points at it, and the third-party client apps (`tests/clients/tap_app.py` with pika,
//! `tap_app.js` with amqplib) that the tests run once directly and once through the tap.
//!
//! Log line relied on: `dwell-sidecar started … tap=Some(127.0.0.1:PORT) … telemetry=Some(…)`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::process::{Process, addr_after};

/// A running sidecar with the tap on.
pub struct TapSidecar {
    /// The process.
    pub process: Process,
    /// Where apps connect instead of the broker.
    pub tap: SocketAddr,
    /// `/metrics` and `/healthz`.
    pub telemetry: SocketAddr,
}

/// The broker's `host:port` in an AMQP URL (no credentials, no vhost).
pub fn host_port(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let after_creds = after_scheme
        .rsplit_once('@')
        .map_or(after_scheme, |(_, h)| h);
    after_creds.split('/').next().unwrap_or("").to_owned()
}

/// `url` with its host:port replaced by `tap` (credentials and vhost kept: they are the app's).
pub fn via(url: &str, tap: SocketAddr) -> String {
    url.replacen(&host_port(url), &tap.to_string(), 1)
}

impl TapSidecar {
    /// Starts a sidecar whose tap forwards to the broker of `broker_url` (TLS for `amqps://`),
    /// pushing to `aggregator` (any address; nothing needs to listen there), with `extra` flags.
    pub async fn start(
        name: &str,
        broker_url: &str,
        aggregator: SocketAddr,
        extra: &[&str],
    ) -> Result<Self, String> {
        let scheme = if broker_url.starts_with("amqps://") {
            "amqps"
        } else {
            "amqp"
        };
        let mut args: Vec<String> = [
            "--aggregator",
            &format!("http://{aggregator}"),
            "--tap-listen",
            "127.0.0.1:0",
            "--tap-upstream",
            &format!("{scheme}://{}", host_port(broker_url)),
            "--telemetry-addr",
            "127.0.0.1:0",
            "--pod-name",
            name,
            "--pod-namespace",
            "jobs",
            "--label",
            "app=binder",
            "--interval",
            "250ms",
            "--shutdown-timeout",
            "2s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut process = Process::spawn(
            name,
            &crate::binary("dwell-sidecar"),
            &args,
            &[("RUST_LOG", "info")],
        )
        .map_err(|e| e.to_string())?;
        let (tap, telemetry) = process
            .wait_for(Duration::from_secs(30), |line| {
                if !line.contains("dwell-sidecar started") {
                    return None;
                }
                let telemetry = line.find("telemetry=Some(")?;
                Some((
                    crate::sidecar::tap_addr(line)?,
                    addr_after(&line[telemetry..], "telemetry=")?,
                ))
            })
            .await?;
        Ok(Self {
            process,
            tap,
            telemetry,
        })
    }

    /// The app URL for `broker_url`'s credentials and vhost, through this tap.
    pub fn url(&self, broker_url: &str) -> String {
        via(broker_url, self.tap)
    }

    /// The value of one series of the sidecar's `/metrics` (None when absent).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://{}/metrics", self.telemetry)])
            .output()
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The sidecar's resident memory in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.process.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }

    /// SIGTERM, then up to 10 s for the exit.
    pub async fn stop(mut self) -> bool {
        self.process.terminate(Duration::from_secs(10)).await
    }
}

/// A third-party client app the tap tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `tap_app.py`, pika from PyPI.
    Pika,
    /// `tap_app.js`, amqplib from npm.
    Amqplib,
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

impl Client {
    /// Both.
    pub const ALL: [Client; 2] = [Client::Pika, Client::Amqplib];

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Client::Pika => "pika",
            Client::Amqplib => "amqplib",
        }
    }

    fn command(self) -> (String, PathBuf) {
        match self {
            Client::Pika => ("python3".into(), clients_dir().join("tap_app.py")),
            Client::Amqplib => ("node".into(), clients_dir().join("tap_app.js")),
        }
    }

    /// Whether the client is installed. When it is not: panics if `DWELL_REQUIRE_SERVICES=1`
    /// (scripts/test.sh installs both), else prints a loud skip notice.
    pub async fn available(self, test: &str) -> bool {
        let ok = match self {
            Client::Pika => Command::new("python3")
                .args(["-c", "import pika"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success()),
            Client::Amqplib => clients_dir()
                .join("node_modules/amqplib/package.json")
                .exists(),
        };
        if !ok {
            let why = format!(
                "{} is not installed (scripts/test.sh installs it: source scripts/lib/services.sh; ensure_tap_clients)",
                self.name()
            );
            if std::env::var("DWELL_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: {why}");
            }
            eprintln!("\n!!!!! SKIPPED {test}: {why} !!!!!\n");
        }
        ok
    }

    /// Runs one mode to its end (within `deadline`) and returns its JSON lines.
    pub async fn run(self, args: &[&str], deadline: Duration) -> Result<Vec<Value>, String> {
        let (program, script) = self.command();
        let child = Command::new(program)
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(deadline, child)
            .await
            .map_err(|_| format!("{} {args:?} did not finish in {deadline:?}", self.name()))?
            .map_err(|e| format!("cannot run {}: {e}", self.name()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {:?} failed ({}): {}",
                self.name(),
                args.first(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        parse_lines(&String::from_utf8_lossy(&out.stdout))
    }

    /// Starts one mode in the background (its lines readable through [`Process::wait_for`]).
    pub fn spawn(self, args: &[&str]) -> Result<Process, String> {
        let (program, script) = self.command();
        let mut all = vec![script.display().to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let program = which(&program).ok_or_else(|| format!("{program} is not on PATH"))?;
        Process::spawn(self.name(), &program, &all, &[]).map_err(|e| e.to_string())
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| p.is_file())
}

/// Declares `queue` (non-durable), publishes `body` to it and gets it back on one channel of
/// `conn`, within 10 s: the app's connection works end to end.
pub async fn round_trip(conn: &lapin::Connection, queue: &str, body: &[u8]) -> Result<(), String> {
    use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
    let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
    let declare = QueueDeclareOptions::default();
    ch.queue_declare(queue.into(), declare, Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let props = lapin::BasicProperties::default().with_timestamp(1);
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .map_err(|e| e.to_string())?;
    let got = crate::poll::until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            match ch
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
            {
                Ok(Some(m)) => Ok(m.delivery.data.clone()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    let _ = ch.close(200, "round trip done".into()).await;
    if got == body {
        Ok(())
    } else {
        Err(format!(
            "got {} bytes back, not the {} sent",
            got.len(),
            body.len()
        ))
    }
}

/// One JSON value per non-empty line.
pub fn parse_lines(text: &str) -> Result<Vec<Value>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {l}")))
        .collect()
}

/// The first JSON line of `line` that has `key`, as its value.
pub fn field(line: &str, key: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(line).ok()?;
    v.get(key).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_pointed_at_the_tap() {
        let url = "amqp://guest:s3cret@127.0.0.1:5672/%2f";
        assert_eq!(host_port(url), "127.0.0.1:5672");
        let tap: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(via(url, tap), "amqp://guest:s3cret@127.0.0.1:40000/%2f");
        assert_eq!(host_port("amqp://rabbit"), "rabbit");
        assert_eq!(parse_lines("{\"a\":1}\n\n{\"b\":2}\n").unwrap().len(), 2);
        assert_eq!(field(r#"{"ready":true}"#, "ready"), Some(Value::Bool(true)));
        let off =
            "dwell-sidecar started tap=None tap_upstream=None report_udp=Some(127.0.0.1:9125)";
        assert_eq!(
            crate::sidecar::tap_addr(off),
            None,
            "tap=None is no address"
        );
        let on =
            "dwell-sidecar started tap=Some(127.0.0.1:41000) tap_upstream=Some(\"amqp://h:5672\")";
        assert_eq!(
            crate::sidecar::tap_addr(on),
            Some("127.0.0.1:41000".parse().unwrap())
        );
    }
}
