//! Shared by the `api_*` tests: the real router served in-process (port-0 listener, the real TLS
//! accept loop with a self-signed certificate) over a provider of the test's choice (the fake
//! [`memstore`], or the engine), a kubeconfig trusting it, the fixtures, and JSON shape
//! comparison.
#![allow(dead_code)] // each test binary uses a different subset

pub mod fake_sar;
pub mod memstore;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dwell_aggregator::api::{ApiState, router};
use dwell_aggregator::provider::MetricsProvider;
use dwell_aggregator::telemetry::Telemetry;
use dwell_aggregator::tls::{TlsConfig, self_signed, serve, server_config};
use dwell_e2e::kube::{CurlResponse, Kubectl, curl};
use memstore::MemStore;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The fixtures' observation time, 2026-01-15T10:04:05Z.
pub fn fixture_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_768_471_445)
}

/// A fixture document from `tests/fixtures/` (copied from the shared reference).
pub fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Asserts `got` has the same shape as `want`: the same keys at every level (objects), arrays
/// of the same length item by item when `want` has items, and the same JSON type for every value.
pub fn assert_same_shape(got: &Value, want: &Value, at: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let gk: Vec<&String> = g.keys().collect();
            let wk: Vec<&String> = w.keys().collect();
            let mut gs = gk.clone();
            let mut ws = wk.clone();
            gs.sort();
            ws.sort();
            assert_eq!(gs, ws, "keys differ at {at}: got {got}, want {want}");
            for (k, wv) in w {
                assert_same_shape(&g[k], wv, &format!("{at}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if !w.is_empty() {
                assert_eq!(
                    g.len(),
                    w.len(),
                    "item count differs at {at}: got {got}, want {want}"
                );
            }
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                assert_same_shape(gv, wv, &format!("{at}[{i}]"));
            }
        }
        (g, w) => assert_eq!(
            std::mem::discriminant(g),
            std::mem::discriminant(w),
            "type differs at {at}: got {g}, want {w}"
        ),
    }
}

/// The metrics API running in this test's runtime, answering from `P`.
pub struct Server<P = MemStore> {
    /// What requests are answered from (a [`MemStore`] to write values into, or the engine).
    pub provider: Arc<P>,
    /// kubectl configured to trust this server.
    pub kubectl: Kubectl,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA file (the self-signed certificate) for curl.
    pub ca_file: PathBuf,
    /// The registry `/metrics` renders.
    pub telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server<MemStore> {
    /// Serves an empty fake store.
    pub async fn start() -> Self {
        Self::serve(Arc::new(MemStore::new())).await
    }
}

impl<P: MetricsProvider> Server<P> {
    /// Serves `provider` through the real router and TLS accept loop.
    pub async fn serve(provider: Arc<P>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let made = self_signed(&[]).expect("self-signed certificate");
        let config = TlsConfig::new(server_config(&made.identity).expect("server config"));
        let telemetry = Arc::new(Telemetry::new());
        let app = router(ApiState::new(provider.clone(), telemetry.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let listener = dwell_runtime::accept::Listener::new(listener, "metrics API", 64);
        let tracker = tokio_util::task::TaskTracker::new();
        let task = tokio::spawn(serve(listener, config, app, tracker, shutdown.clone()));
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &made.cert_pem).expect("write CA");
        let kubectl = Kubectl::new(dir.path(), &url, &made.cert_pem).expect("kubeconfig");
        Self {
            provider,
            kubectl,
            url,
            ca_file,
            telemetry,
            shutdown,
            task,
            _dir: dir,
        }
    }

    /// `kubectl get --raw PATH` as JSON (panics on failure).
    pub async fn get(&self, path: &str) -> Value {
        self.kubectl.get_json(path).await
    }

    /// `kubectl get --raw PATH`, expected to fail; returns kubectl's error text.
    pub async fn get_err(&self, path: &str) -> String {
        let out = self.kubectl.get_raw(path).await;
        assert!(!out.success, "GET {path} should fail, got {}", out.stdout);
        out.stderr
    }

    /// curl `PATH` with request headers and curl flags.
    pub async fn curl(&self, path: &str, headers: &[(&str, &str)], flags: &[&str]) -> CurlResponse {
        curl(
            &format!("{}{path}", self.url),
            &self.ca_file,
            headers,
            flags,
        )
        .await
    }

    /// Stops serving and waits for the drain.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
