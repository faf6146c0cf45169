//! Delegated authorization: a `SubjectAccessReview` (authorization.k8s.io/v1) POSTed to the
//! cluster's API with the pod's service-account token, as every Go aggregated API server does
//! (k8s.io/apiserver `DelegatingAuthorizationOptions`: allowed and denied answers cached 10 s,
//! a 10 s client timeout). The token file is re-read for every review (the kubelet rotates it)
//! and never logged or put in an error; the connection is HTTPS (rustls, ring) verified against
//! the cluster CA. Bounded: the answer's size, the cache's entries, the request's time.
//!
//! An error or a timeout is not an answer: it is never cached and never allows (the Go
//! delegating authorizer's webhook then has no opinion, and its authorization filter answers
//! 500 InternalError; we do the same, in one attempt where Go retries with backoff).
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use dwell_runtime::clock::SharedClock;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::attributes::Target;
use crate::api::auth::Caller;

/// The SubjectAccessReview endpoint.
pub const SAR_PATH: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// The largest answer read (a review echoes the request: well under 64 KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The largest token or CA file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The cluster API's address (`https://host[:port]`, port 443 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeApi {
    /// A name or an IP (without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl KubeApi {
    /// Parses `https://host[:port]` (IPv6 in brackets); nothing after the authority but `/`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix("https://")
            .ok_or_else(|| format!("{text:?}: must start with https://"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let bad = || format!("{text:?}: expected https://host[:port]");
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            return Err(bad());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(bad)?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            None => 443,
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The in-cluster address, from `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    pub fn in_cluster() -> Option<Self> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT")
            .ok()?
            .parse()
            .ok()?;
        Some(Self { host, port })
    }
}

/// Where and how to ask.
#[derive(Debug, Clone)]
pub struct SarSettings {
    /// The cluster API's host (a name or an IP).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The CA bundle the API's serving certificate must chain to.
    pub ca_file: PathBuf,
    /// The bearer token file (re-read per review).
    pub token_file: PathBuf,
    /// The most one review may take.
    pub timeout: Duration,
    /// How long an allowed answer is reused.
    pub allowed_ttl: Duration,
    /// How long a denied answer is reused.
    pub denied_ttl: Duration,
    /// Most answers cached.
    pub max_cached: usize,
}

/// Why a review gave no answer (never holds the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SarError {
    /// The CA bundle could not be used.
    #[error("cluster CA {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The token file could not be read (or is empty).
    #[error("service-account token {0}: cannot read it or it is empty")]
    Token(String),
    /// Connecting, TLS or HTTP failed.
    #[error("SubjectAccessReview to {at}: {reason}")]
    Transport {
        /// host:port.
        at: String,
        /// Why.
        reason: String,
    },
    /// Not answered within the timeout.
    #[error("SubjectAccessReview to {at}: no answer within {timeout:?}")]
    Timeout {
        /// host:port.
        at: String,
        /// The timeout.
        timeout: Duration,
    },
    /// A status other than 200/201.
    #[error("SubjectAccessReview to {at}: HTTP {status}")]
    Status {
        /// host:port.
        at: String,
        /// The HTTP status.
        status: u16,
    },
    /// A 2xx body that is not a SubjectAccessReview.
    #[error("SubjectAccessReview to {at}: unreadable answer: {reason}")]
    Answer {
        /// host:port.
        at: String,
        /// Why.
        reason: String,
    },
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// `status.allowed`.
    pub allowed: bool,
    /// `status.reason` (may be empty).
    pub reason: String,
}

#[derive(Serialize)]
struct SarRequest<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    spec: Spec<'a>,
}

#[derive(Serialize)]
struct Spec<'a> {
    user: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    #[serde(rename = "resourceAttributes", skip_serializing_if = "Option::is_none")]
    resource: Option<ResourceAttrs<'a>>,
    #[serde(
        rename = "nonResourceAttributes",
        skip_serializing_if = "Option::is_none"
    )]
    non_resource: Option<NonResourceAttrs<'a>>,
}

/// Go's `ResourceAttributes`: every field `omitempty`.
#[derive(Serialize)]
struct ResourceAttrs<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    verb: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    resource: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    subresource: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
}

#[derive(Serialize)]
struct NonResourceAttrs<'a> {
    path: &'a str,
    verb: &'a str,
}

#[derive(Deserialize)]
struct SarAnswer {
    #[serde(default)]
    status: AnswerStatus,
}

#[derive(Deserialize, Default)]
struct AnswerStatus {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    reason: String,
}

/// The request body for `caller` doing `target`.
fn body(caller: &Caller, target: &Target) -> Vec<u8> {
    let (resource, non_resource) = match target {
        Target::Resource(r) => (
            Some(ResourceAttrs {
                namespace: &r.namespace,
                verb: r.verb,
                group: &r.group,
                version: &r.version,
                resource: &r.resource,
                subresource: &r.subresource,
                name: &r.name,
            }),
            None,
        ),
        Target::NonResource { path, verb } => (None, Some(NonResourceAttrs { path, verb })),
    };
    let request = SarRequest {
        api_version: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: Spec {
            user: &caller.user,
            groups: &caller.groups,
            resource,
            non_resource,
        },
    };
    serde_json::to_vec(&request).unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    user: String,
    groups: Vec<String>,
    target: Target,
}

#[derive(Debug, Clone)]
struct Cached {
    until_ms: i64,
    review: Review,
}

/// The reviewer: a client of the cluster API and the answers it gave.
pub struct Reviewer {
    settings: SarSettings,
    tls: tokio_rustls::TlsConnector,
    clock: SharedClock,
    cache: DashMap<Key, Cached>,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviewer")
            .field("at", &self.at())
            .field("cached", &self.cache.len())
            .finish()
    }
}

fn key(caller: &Caller, target: &Target) -> Key {
    let mut groups = caller.groups.clone();
    groups.sort();
    Key {
        user: caller.user.clone(),
        groups,
        target: target.clone(),
    }
}

impl Reviewer {
    /// Loads the CA bundle (at start-up: a bad one is a start-up error).
    pub fn new(settings: SarSettings, clock: SharedClock) -> Result<Self, SarError> {
        let tls = connector(&settings.ca_file)?;
        Ok(Self {
            settings,
            tls,
            clock,
            cache: DashMap::new(),
        })
    }

    fn at(&self) -> String {
        if self.settings.host.contains(':') {
            format!("[{}]:{}", self.settings.host, self.settings.port)
        } else {
            format!("{}:{}", self.settings.host, self.settings.port)
        }
    }

    /// The cached answer for `caller` doing `target`, while it holds.
    pub fn cached(&self, caller: &Caller, target: &Target) -> Option<Review> {
        let entry = self.cache.get(&key(caller, target))?;
        (self.clock.now_ms() < entry.until_ms).then(|| entry.review.clone())
    }

    /// Asks the cluster (cache first); answers are cached for their TTL, errors never.
    pub async fn review(&self, caller: &Caller, target: &Target) -> Result<Review, SarError> {
        if let Some(review) = self.cached(caller, target) {
            return Ok(review);
        }
        let timeout = self.settings.timeout;
        let review = tokio::time::timeout(timeout, self.ask(caller, target))
            .await
            .map_err(|_| SarError::Timeout {
                at: self.at(),
                timeout,
            })??;
        let ttl = if review.allowed {
            self.settings.allowed_ttl
        } else {
            self.settings.denied_ttl
        };
        self.remember(key(caller, target), review.clone(), ttl);
        Ok(review)
    }

    fn remember(&self, key: Key, review: Review, ttl: Duration) {
        let now = self.clock.now_ms();
        if self.cache.len() >= self.settings.max_cached.max(1) {
            self.cache.retain(|_, c| now < c.until_ms);
            if self.cache.len() >= self.settings.max_cached.max(1) {
                self.cache.clear();
            }
        }
        let until_ms = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.cache.insert(key, Cached { until_ms, review });
    }

    async fn ask(&self, caller: &Caller, target: &Target) -> Result<Review, SarError> {
        let at = self.at();
        let transport = |reason: String| SarError::Transport {
            at: at.clone(),
            reason,
        };
        let token = read_token(&self.settings.token_file).await?;
        let request = http::Request::post(SAR_PATH)
            .header(http::header::HOST, &at)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "dwell-aggregator")
            .body(Full::new(Bytes::from(body(caller, target))))
            .map_err(|e| transport(e.to_string()))?;
        drop(token);
        let tcp = TcpStream::connect((self.settings.host.as_str(), self.settings.port))
            .await
            .map_err(|e| transport(e.to_string()))?;
        let name = ServerName::try_from(self.settings.host.clone())
            .map_err(|e| transport(e.to_string()))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| transport(format!("TLS: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| transport(e.to_string()))?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| transport(e.to_string()))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| transport(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, SarError>((status, body))
        };
        tokio::pin!(connection, exchange);
        let (status, body) = tokio::select! {
            biased;
            done = &mut exchange => done?,
            ended = &mut connection => match ended {
                Ok(()) => exchange.await?,
                Err(e) => return Err(transport(e.to_string())),
            },
        };
        if !matches!(status, 200 | 201) {
            return Err(SarError::Status {
                at: self.at(),
                status,
            });
        }
        let answer: SarAnswer = serde_json::from_slice(&body).map_err(|e| SarError::Answer {
            at: at.clone(),
            reason: e.to_string(),
        })?;
        Ok(Review {
            allowed: answer.status.allowed,
            reason: answer.status.reason,
        })
    }
}

async fn read_token(file: &Path) -> Result<String, SarError> {
    let refused = || SarError::Token(file.display().to_string());
    let meta = tokio::fs::metadata(file).await.map_err(|_| refused())?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(refused());
    }
    let text = tokio::fs::read_to_string(file)
        .await
        .map_err(|_| refused())?;
    let token = text.trim();
    if token.is_empty() || token.contains(['\r', '\n']) {
        return Err(refused());
    }
    Ok(token.to_owned())
}

fn connector(ca_file: &Path) -> Result<tokio_rustls::TlsConnector, SarError> {
    let ca = |reason: String| SarError::Ca {
        path: ca_file.display().to_string(),
        reason,
    };
    let pem = std::fs::read(ca_file).map_err(|e| ca(e.to_string()))?;
    if pem.len() as u64 > MAX_FILE_BYTES {
        return Err(ca("larger than 1 MiB".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    crate::tls::client_auth::add_pem(&mut roots, &pem).map_err(|e| ca(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn kube_api_urls() {
        let api = |t: &str| KubeApi::parse(t).map(|a| (a.host, a.port));
        assert_eq!(api("https://10.96.0.1:443"), Ok(("10.96.0.1".into(), 443)));
        assert_eq!(
            api("https://kubernetes.default.svc/"),
            Ok(("kubernetes.default.svc".into(), 443))
        );
        assert_eq!(api("https://[fd00::1]:6443"), Ok(("fd00::1".into(), 6443)));
        for bad in [
            "http://a:1",
            "https://",
            "https://a:x",
            "https://a/b",
            "https://u@a",
        ] {
            assert!(api(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_body_is_the_documented_subject_access_review() {
        let caller = Caller {
            user: "system:serviceaccount:kube-system:horizontal-pod-autoscaler".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
        };
        let t = Target::of(
            &Method::GET,
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/dwell",
        );
        let v: serde_json::Value = serde_json::from_slice(&body(&caller, &t)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                    "groups": ["system:serviceaccounts", "system:authenticated"],
                    "resourceAttributes": {
                        "namespace": "shop", "verb": "get", "group": "custom.metrics.k8s.io",
                        "version": "v1beta2", "resource": "pods", "subresource": "dwell",
                        "name": "*"
                    }
                }
            })
        );
        let t = Target::of(&Method::GET, "/apis");
        let v: serde_json::Value = serde_json::from_slice(&body(&caller, &t)).unwrap();
        assert_eq!(
            v["spec"]["nonResourceAttributes"],
            serde_json::json!({"path": "/apis", "verb": "get"})
        );
        assert!(v["spec"].get("resourceAttributes").is_none());
    }
}
