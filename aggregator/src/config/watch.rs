//! Watches the rules file and applies each valid new version atomically. Polls the file's
//! content (Kubernetes swaps ConfigMap volumes through a symlink, so content is what counts; a
//! poll every few seconds is cheap). A bad version is logged with the precise error and the
//! rules in force stay.
use std::path::PathBuf;
use std::time::Duration;

use dwell_runtime::periodic::{First, Ticker};
use tokio_util::sync::CancellationToken;

use crate::policy::RuleSet;

/// Polls `path` every `every` until `shutdown`; calls `apply` with each new valid rule set.
/// `current` is the content the rules in force came from (no reload until it changes).
pub async fn watch(
    path: PathBuf,
    current: Option<Vec<u8>>,
    every: Duration,
    apply: impl Fn(RuleSet) + Send + 'static,
    shutdown: CancellationToken,
) {
    let mut last = current;
    // The rules in force were just loaded: the first check is one period away.
    let mut ticks = Ticker::new(every, First::AfterPeriod, &shutdown);
    while ticks.tick().await {
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                if last.is_some() {
                    tracing::warn!(path = %path.display(), error = %e,
                        "cannot read the config; keeping the rules in force");
                    last = None;
                }
                continue;
            }
        };
        if last.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        last = Some(bytes);
        match super::parse(&text) {
            Ok(rules) => {
                tracing::info!(path = %path.display(), rules = rules.rules.len(), "config reloaded");
                apply(rules);
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e,
                    "config rejected; keeping the rules in force");
            }
        }
    }
}
