//! The real `dwell-aggregator` binary under test: started on port 0 for both listeners (or on
//! given addresses, to restart it where its clients point), its bound addresses learned from its
//! log lines, a kubeconfig written that trusts its certificate, and killed when dropped.
//!
//! Log lines relied on (keep them stable):
//! - `metrics API listening on https://127.0.0.1:PORT`
//! - `gRPC listening on 127.0.0.1:PORT`
//! - `generated a self-signed TLS certificate for … (SHA-256 AA:BB:…)` or
//!   `serving TLS certificate from PATH (SHA-256 AA:BB:…)`
//! - `reloaded TLS certificate (SHA-256 AA:BB:…)`

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kube::Kubectl;
use crate::process::{Process, addr_after};

/// How long start-up may take before a test fails.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// How the aggregator's serving certificate is chosen.
#[derive(Debug, Clone)]
pub enum Tls {
    /// Self-signed, generated at start-up; its PEM is written to a file the harness reads.
    SelfSigned,
    /// `--tls-cert`/`--tls-key` files, trusted through `ca_pem` (the CA that signed them).
    Files {
        /// Certificate chain file.
        cert: PathBuf,
        /// Private key file.
        key: PathBuf,
        /// PEM of the CA clients should trust.
        ca_pem: String,
    },
}

/// A running aggregator.
pub struct Aggregator {
    /// The process (its output, SIGTERM, kill).
    pub process: Process,
    /// The HTTPS metrics API address.
    pub metrics_addr: SocketAddr,
    /// The gRPC address.
    pub grpc_addr: SocketAddr,
    /// The PEM clients trust for the metrics API.
    pub ca_pem: String,
    /// `kubectl` configured for this aggregator.
    pub kubectl: Kubectl,
    dir: tempfile::TempDir,
    /// Holds the `--config` file of [`Aggregator::start_with_rules`] (watched while running).
    rules_dir: Option<tempfile::TempDir>,
}

/// The closed-loop tests' rule: `wait_ms` = the longest wait among deliveries of the last 3 s,
/// in milliseconds. A whole rules file; more rules can be appended as list items.
pub const WAIT_MS_RULES: &str = r#"
stale_after: 10s
rules:
  - name: wait_ms
    window: 3s
    statistic: max
    combine: max
    unit: milliseconds
    stall_after: 5s
"#;

impl Aggregator {
    /// Starts the binary with a self-signed certificate and `extra_args`, waiting (30 s) for
    /// both listening lines.
    pub async fn start(extra_args: &[&str]) -> Result<Self, String> {
        Self::start_with(Tls::SelfSigned, extra_args).await
    }

    /// Starts the binary (self-signed) with `--config` pointing at a file holding `rules`, kept
    /// in the aggregator's scratch directory.
    pub async fn start_with_rules(rules: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let path = dir.path().join("rules.yaml");
        std::fs::write(&path, rules).map_err(|e| format!("write {}: {e}", path.display()))?;
        let mut agg = Self::start(&["--config", &path.display().to_string()]).await?;
        agg.rules_dir = Some(dir);
        Ok(agg)
    }

    /// Starts the binary with the given TLS source and `extra_args` (e.g. `--config FILE`).
    pub async fn start_with(tls: Tls, extra_args: &[&str]) -> Result<Self, String> {
        Self::start_program(&crate::binary("dwell-aggregator"), tls, extra_args).await
    }

    /// Like [`Aggregator::start_with`] for an explicit binary (in the aggregator crate's own
    /// tests: `env!("CARGO_BIN_EXE_dwell-aggregator")`, which cargo builds first).
    pub async fn start_program(
        program: &Path,
        tls: Tls,
        extra_args: &[&str],
    ) -> Result<Self, String> {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_program_on(program, tls, any_port, any_port, extra_args).await
    }

    /// Like [`Aggregator::start_program`] with the metrics API on `metrics_addr` and gRPC on
    /// `grpc_addr` instead of port 0: a test that killed an aggregator restarts it on the
    /// addresses its clients still point at.
    pub async fn start_program_on(
        program: &Path,
        tls: Tls,
        metrics_addr: SocketAddr,
        grpc_addr: SocketAddr,
        extra_args: &[&str],
    ) -> Result<Self, String> {
        Self::start_program_env(program, tls, metrics_addr, grpc_addr, extra_args, &[]).await
    }

    /// Like [`Aggregator::start_program_on`] with extra environment variables for the child
    /// (e.g. `RUST_LOG=debug`).
    pub async fn start_program_env(
        program: &Path,
        tls: Tls,
        metrics_addr: SocketAddr,
        grpc_addr: SocketAddr,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let ca_out = dir.path().join("self-signed.pem");
        let mut args: Vec<String> = vec![
            "--metrics-addr".into(),
            metrics_addr.to_string(),
            "--grpc-addr".into(),
            grpc_addr.to_string(),
        ];
        match &tls {
            Tls::SelfSigned => {
                args.push("--tls-self-signed-out".into());
                args.push(ca_out.display().to_string());
            }
            Tls::Files { cert, key, .. } => {
                args.push("--tls-cert".into());
                args.push(cert.display().to_string());
                args.push("--tls-key".into());
                args.push(key.display().to_string());
            }
        }
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let mut process =
            Process::spawn("aggregator", program, &args, env).map_err(|e| e.to_string())?;
        let metrics_addr = process
            .wait_for(START_DEADLINE, |l| {
                addr_after(l, "metrics API listening on https://")
            })
            .await?;
        let grpc_addr = process
            .wait_for(START_DEADLINE, |l| addr_after(l, "gRPC listening on"))
            .await?;
        let ca_pem = match tls {
            Tls::SelfSigned => std::fs::read_to_string(&ca_out)
                .map_err(|e| format!("aggregator did not write {}: {e}", ca_out.display()))?,
            Tls::Files { ca_pem, .. } => ca_pem,
        };
        let kubectl = Kubectl::new(dir.path(), &format!("https://{metrics_addr}"), &ca_pem)
            .map_err(|e| format!("kubeconfig: {e}"))?;
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).map_err(|e| e.to_string())?;
        Ok(Self {
            process,
            metrics_addr,
            grpc_addr,
            ca_pem,
            kubectl,
            dir,
            rules_dir: None,
        })
    }

    /// `https://127.0.0.1:PORT` of the metrics API.
    pub fn metrics_url(&self) -> String {
        format!("https://{}", self.metrics_addr)
    }

    /// A file holding the PEM clients trust (for `curl --cacert`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A scratch directory that lives as long as the aggregator.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The SHA-256 fingerprint from the start-up certificate log line.
    pub fn logged_fingerprint(&self) -> Option<String> {
        self.process.output().iter().find_map(|l| fingerprint_in(l))
    }

    /// SIGTERM, then waits up to `grace`; returns whether it exited on its own.
    pub async fn stop(mut self, grace: Duration) -> bool {
        self.process.terminate(grace).await
    }

    /// SIGKILL, as a crash would: no goodbye, no flush. Its ports are free once this returns.
    pub async fn kill(mut self) {
        self.process.kill().await;
    }
}

/// The `AA:BB:…` after `SHA-256 ` in a log line.
pub fn fingerprint_in(line: &str) -> Option<String> {
    let rest = &line[line.find("SHA-256 ")? + "SHA-256 ".len()..];
    let fp: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == ':')
        .collect();
    (fp.len() == 95).then_some(fp)
}
