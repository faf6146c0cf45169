//! Injection of `dwell-sidecar` into workloads that do not use the kustomize component: one pure
//! injector ([`pod::inject`]: pod template in, pod template out) behind two front ends, the
//! `dwell-aggregator inject` command ([`stream`]: any YAML or JSON stream, e.g. as Helm's
//! post-renderer) and the `POST /mutate/pods` admission webhook ([`webhook`]: a JSONPatch from
//! [`patch`]). Both add exactly what `manifests/components/sidecar` (and, with the tap,
//! `components/sidecar-tap`) add: the native sidecar first in `initContainers`, the pod-info
//! volume first in `volumes`, and per-pod settings from the `dwell.io/…` annotations
//! ([`annotations`], with their defaults).
//!
//! Guarantees: a pod that already has a container named `dwell-sidecar` is never touched (so
//! injecting twice changes nothing); nothing outside the sidecar, its volumes and the app's AMQP
//! URL variable changes; every refusal names the annotation it is about and never quotes a value
//! that could be a secret.

pub mod amqp_url;
pub mod annotations;
pub mod command;
pub mod node;
pub mod patch;
pub mod pod;
pub mod sidecar;
pub mod stream;
pub mod webhook;
pub mod workload;

pub use pod::{Outcome, Skip, inject};
pub use sidecar::IngestToken;

/// The sidecar image injected unless `dwell.io/image` or the injector's settings say otherwise
/// (the one `manifests/components/sidecar` sets).
pub const DEFAULT_IMAGE: &str = "ghcr.io/dwell-autoscaler/dwell-sidecar:0.1.0";
/// The aggregator the sidecar streams to unless `dwell.io/aggregator` says otherwise: the
/// headless gRPC Service of `manifests/base` (one stream per replica).
pub const DEFAULT_AGGREGATOR: &str = "http://dwell-aggregator-grpc.custom-metrics.svc:50051";

/// The injector's own settings (per-pod ones come from annotations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectSettings {
    /// The sidecar image.
    pub image: String,
    /// The aggregator's gRPC URL.
    pub aggregator: String,
    /// Another ingest token than the template's (`None`: audience `dwell`, 3600 s, mounted at
    /// `/var/run/secrets/dwell`; see [`IngestToken`]).
    pub ingest_token: Option<IngestToken>,
}

impl Default for InjectSettings {
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.to_owned(),
            aggregator: DEFAULT_AGGREGATOR.to_owned(),
            ingest_token: None,
        }
    }
}

/// Which pod templates are injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Only those annotated `dwell.io/inject: enabled`.
    Annotated,
    /// Every one not annotated `dwell.io/inject: disabled` (`inject --all`; the webhook, whose
    /// MutatingWebhookConfiguration already chose the pods it is sent).
    All,
}

/// Why a pod template cannot be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// A `dwell.io/…` annotation is missing, malformed, or asks for something impossible.
    #[error("{annotation}: {reason}")]
    Annotation {
        /// The annotation, e.g. `dwell.io/amqp-url-env`.
        annotation: String,
        /// What is wrong (never the value of a variable).
        reason: String,
    },
    /// The pod template is not shaped like one.
    #[error("{field}: {reason}")]
    Shape {
        /// The field, e.g. `spec.containers`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The built-in sidecar template is broken (a bug; tests keep it from shipping).
    #[error("internal: {0}")]
    Internal(String),
}
