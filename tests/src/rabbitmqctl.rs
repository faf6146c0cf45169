//! Operations on the shared test broker through `rabbitmqctl` (root on the test machines): close
//! one connection by its client-given name; a memory alarm held by a guard that restores the
//! previous watermark when dropped, even when the test panics; and the broker application
//! stopped under a guard that starts it again. The alarm blocks EVERY publisher on the broker and
//! a stopped app drops EVERY connection, so a test holds either for a few seconds at most.

use std::process::Command;

fn ctl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `rabbitmqctl` can talk to the node (it needs root and the node's cookie).
pub fn available() -> bool {
    ctl(&["-q", "status"]).is_ok()
}

/// Closes the connection whose `connection_name` client property is `name`, as an operator
/// would (`rabbitmqctl close_connection`). Returns once the broker has started closing it.
pub fn close_connection_named(name: &str, reason: &str) -> Result<(), String> {
    let list = ctl(&["-q", "list_connections", "pid", "client_properties"])?;
    let pid = list
        .lines()
        .find(|l| l.contains(&format!("\"{name}\"")) || l.contains(name))
        .and_then(|l| l.split('\t').next())
        .ok_or_else(|| format!("no connection named {name}"))?
        .to_owned();
    ctl(&["close_connection", &pid, reason]).map(|_| ())
}

/// The broker's memory alarm, set while this lives.
pub struct MemoryAlarm {
    previous: String,
}

impl MemoryAlarm {
    /// Sets the high watermark to 0 (the alarm fires at once: publishers are blocked).
    pub fn raise() -> Result<Self, String> {
        let previous = ctl(&[
            "-q",
            "eval",
            "vm_memory_monitor:get_vm_memory_high_watermark().",
        ])?
        .trim()
        .to_owned();
        // A relative watermark prints as a float (0.4); anything else: the broker default.
        let previous = if previous.parse::<f64>().is_ok_and(|v| v > 0.0) {
            previous
        } else {
            "0.4".to_owned()
        };
        ctl(&["set_vm_memory_high_watermark", "0"])?;
        Ok(Self { previous })
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        if let Err(e) = ctl(&["set_vm_memory_high_watermark", &self.previous]) {
            eprintln!("!!!!! could not restore the memory watermark: {e} !!!!!");
        }
    }
}

/// The broker application, stopped while this lives (`stop_app`; `start_app` and
/// `await_startup` when dropped, panics included).
pub struct AppStopped(());

impl AppStopped {
    /// Stops the broker application: every client connection is closed by the broker.
    pub fn stop() -> Result<Self, String> {
        let guard = Self(());
        ctl(&["stop_app"])?;
        Ok(guard)
    }
}

impl Drop for AppStopped {
    fn drop(&mut self) {
        let started = ctl(&["start_app"]).and_then(|_| ctl(&["await_startup", "--timeout", "60"]));
        if let Err(e) = started {
            eprintln!("!!!!! could not start the broker app again: {e} !!!!!");
        }
    }
}
