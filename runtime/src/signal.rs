//! The one way a dwell process learns it must stop: SIGTERM (Kubernetes' graceful stop) or SIGINT
//! (Ctrl-C) cancels a token that every server and task watches.
use tokio_util::sync::CancellationToken;

/// Returns a token cancelled on the first SIGTERM or SIGINT. The watching task ends with the
/// token, so cancelling it by other means (a failed server) leaves nothing behind.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let watched = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = watched.cancelled() => {}
            name = wait_for_signal() => {
                tracing::info!(signal = name, "shutdown signal received ({name}); stopping");
                watched.cancel();
            }
        }
    });
    token
}

/// Waits for SIGTERM or SIGINT and names the one that came.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        // No SIGTERM handler could be installed: Ctrl-C still works.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
