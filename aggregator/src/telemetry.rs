//! The aggregator's own Prometheus metrics, served at `/metrics` (logging is set up by
//! `dwell_runtime::logging`).
//!
//! One explicit registry (no globals). Each part registers its families through
//! [`Telemetry::register`] at start-up; the HTTP layer records requests with
//! [`Telemetry::observe_http`].
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of one HTTP request series: the matched route template and the status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (e.g. `custom_object`), never the raw path: bounded cardinality.
    pub route: String,
    /// The HTTP status code.
    pub code: u16,
}

/// The aggregator's self-observability registry.
#[derive(Debug)]
pub struct Telemetry {
    registry: Mutex<Registry>,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Family<HttpLabels, Histogram>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A registry holding the HTTP request families.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dwell");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            // 100 µs … ~3 s: HPA reads are expected in the sub-millisecond range.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0001, 2.0, 16,
            ))
        });
        registry.register(
            "http_requests",
            "HTTP requests served, by route and status code",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by route and status code",
            http_latency.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            http_requests,
            http_latency,
        }
    }

    /// Registers a metric family (call at start-up).
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register(name, help, metric);
        }
    }

    /// Records one served HTTP request.
    pub fn observe_http(&self, route: &str, code: u16, seconds: f64) {
        let labels = HttpLabels {
            route: route.to_string(),
            code,
        };
        self.http_requests.get_or_create(&labels).inc();
        self.http_latency.get_or_create(&labels).observe(seconds);
    }

    /// Renders every family in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}
