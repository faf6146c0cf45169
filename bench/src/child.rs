//! A process the benchmark drives (aggregator, sidecar, Node server): started with its output
//! captured line by line so the bench can wait for "listening on …", killed when dropped so an
//! interrupted run leaves nothing behind.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// A running child process and what it has printed.
pub struct Process {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<Notify>,
}

/// Path of a sibling binary of the running one (`target/release/<name>` for a release bench).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no parent directory", exe.display()))?;
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it first (cargo build --release -p dwell-bench -p dwell-aggregator -p dwell-sidecar)",
        path.display()
    );
    Ok(path)
}

fn capture(stream: impl AsyncRead + Unpin + Send + 'static, p: &Process, echo: bool) {
    let (lines, notify, name) = (p.lines.clone(), p.new_line.clone(), p.name.clone());
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if echo {
                eprintln!("[{name}] {line}");
            }
            if let Ok(mut l) = lines.lock() {
                // Keep memory bounded for chatty children: the bench only needs start-up lines.
                if l.len() < 10_000 {
                    l.push(line);
                }
            }
            notify.notify_waiters();
        }
    });
}

impl Process {
    /// Starts `program` with `args`, capturing stdout and stderr (echoed with `[name]` when
    /// `DWELL_BENCH_ECHO=1`).
    pub fn spawn(name: &str, program: &Path, args: &[String]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", program.display()))?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let p = Self {
            name: name.to_string(),
            child,
            lines: Arc::default(),
            new_line: Arc::default(),
        };
        let echo = std::env::var("DWELL_BENCH_ECHO").is_ok_and(|v| v == "1");
        if let Some(s) = stdout {
            capture(s, &p, echo);
        }
        if let Some(s) = stderr {
            capture(s, &p, echo);
        }
        Ok(p)
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .ok_or_else(|| anyhow::anyhow!("{} has exited", self.name))
    }

    /// Waits until a line containing `needle` is printed and returns the text after it.
    pub async fn wait_for(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.new_line.notified();
            if let Ok(lines) = self.lines.lock()
                && let Some(rest) = lines
                    .iter()
                    .find_map(|l| l.find(needle).map(|i| l[i + needle.len()..].to_string()))
            {
                return Ok(rest);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let tail = self.tail(20);
                anyhow::bail!(
                    "{} did not print {needle:?} within {timeout:?}; last lines:\n{tail}",
                    self.name
                );
            }
        }
    }

    /// The last `n` lines printed.
    pub fn tail(&self, n: usize) -> String {
        self.lines
            .lock()
            .map(|l| l[l.len().saturating_sub(n)..].join("\n"))
            .unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to 10 s, then kills.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }
}

/// The first whitespace-delimited word of `s`, trimmed of quotes and trailing punctuation.
pub fn first_word(s: &str) -> String {
    s.split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches(|c: char| c == '"' || c == ',')
        .to_string()
}

/// A free loopback port (bound then released; the bench runs alone on 127.0.0.1).
pub fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A free loopback TCP port.
pub fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
