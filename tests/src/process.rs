//! A child process under test: started with its output captured line by line (so a test can wait
//! for a log line such as "listening on …"), stopped with SIGTERM and a deadline, and killed if it
//! is dropped, so a failing test leaves nothing running.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// A running child and everything it has printed so far.
pub struct Process {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<Notify>,
}

/// Drops terminal colour codes (`ESC [ … m`) so log lines can be matched as text.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn capture(
    stream: impl AsyncRead + Unpin + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
    echo: Option<String>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let line = strip_ansi(&line);
            if let Some(prefix) = &echo {
                eprintln!("[{prefix}] {line}");
            }
            if let Ok(mut l) = lines.lock() {
                l.push(line);
            }
            notify.notify_waiters();
        }
    });
}

impl Process {
    /// Starts `program` with `args` (and `NO_COLOR=1`), capturing stdout and stderr. Output is
    /// echoed to the test's stderr with a `[name]` prefix when `DWELL_E2E_ECHO=1`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start {}: {e}", program.display()))
        })?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let new_line = Arc::new(Notify::new());
        let echo = (std::env::var("DWELL_E2E_ECHO").as_deref() == Ok("1")).then(|| name.to_owned());
        if let Some(out) = child.stdout.take() {
            capture(out, lines.clone(), new_line.clone(), echo.clone());
        }
        if let Some(err) = child.stderr.take() {
            capture(err, lines.clone(), new_line.clone(), echo);
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            lines,
            new_line,
        })
    }

    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until some printed line gives `Some` through `find`, up to `deadline`; fails with
    /// the output so far when it never does or the process exits.
    pub async fn wait_for<T>(
        &mut self,
        deadline: Duration,
        mut find: impl FnMut(&str) -> Option<T>,
    ) -> Result<T, String> {
        let end = tokio::time::Instant::now() + deadline;
        let mut seen = 0;
        loop {
            let notified = self.new_line.notified();
            let lines = self.output();
            for line in &lines[seen..] {
                if let Some(found) = find(line) {
                    return Ok(found);
                }
            }
            seen = lines.len();
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before the expected line; output:\n{}",
                    self.name,
                    lines.join("\n")
                ));
            }
            let step = tokio::time::Instant::now() + Duration::from_millis(200);
            if tokio::time::timeout_at(end.min(step), notified)
                .await
                .is_err()
                && tokio::time::Instant::now() >= end
            {
                return Err(format!(
                    "{} did not print the expected line within {deadline:?}; output:\n{}",
                    self.name,
                    lines.join("\n")
                ));
            }
        }
    }

    /// Sends SIGTERM (through `kill`, so no libc binding is needed) and waits up to `grace` for
    /// the exit; kills it after that. Returns whether it exited on its own.
    pub async fn terminate(&mut self, grace: Duration) -> bool {
        let Some(pid) = self.child.id() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(_) => true,
            Err(_) => {
                let _ = self.child.kill().await;
                false
            }
        }
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// The first `ip:port` after `key` in a log line (e.g. `report_udp=Some(127.0.0.1:4242)`).
pub fn addr_after(line: &str, key: &str) -> Option<std::net::SocketAddr> {
    let rest = &line[line.find(key)? + key.len()..];
    let start = rest.find(|c: char| c.is_ascii_digit() || c == '[')?;
    let candidate: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    candidate.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_addresses_in_log_lines() {
        let line =
            "INFO dwell-sidecar started queue=q report_udp=Some(127.0.0.1:4242) telemetry=None";
        assert_eq!(
            addr_after(line, "report_udp"),
            Some("127.0.0.1:4242".parse().unwrap())
        );
        assert_eq!(addr_after(line, "telemetry"), None);
        assert_eq!(
            addr_after("gRPC listening on [::1]:50051", "listening on"),
            Some("[::1]:50051".parse().unwrap())
        );
        assert_eq!(strip_ansi("\u{1b}[32mINFO\u{1b}[0m x"), "INFO x");
    }
}
