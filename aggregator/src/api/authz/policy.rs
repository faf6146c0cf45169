//! The static authorization policy (`--authorization-policy FILE`): who may read which metrics
//! API, optionally only in some namespaces, plus the non-resource paths a rule opens. Strict YAML
//! (unknown keys are errors), every error naming the file and the rule; re-read on change by
//! [`watch`], a bad version logged and the policy in force kept.
//!
//! ```yaml
//! allow:
//!   - users: [system:serviceaccount:kube-system:horizontal-pod-autoscaler]
//!   - groups: [system:masters]
//!   - groups: [ops]
//!     apis: [custom]          # custom, external (default: both)
//!     namespaces: [shop]      # default: every namespace
//!   - groups: [system:monitoring]
//!     apis: []
//!     paths: [/metrics]       # exact, or a prefix ending in `*`
//! ```
//!
//! A rule grants the metrics APIs' read verbs (`get`, `list`); nothing grants anything else.
//! Discovery (`/apis…`, `/openapi…`, `/version`) is open to every authenticated caller, as the
//! `system:discovery` ClusterRole bound to `system:authenticated` opens it on a cluster.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dwell_runtime::periodic::{First, Ticker};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::attributes::Target;
use crate::api::auth::Caller;
use crate::api::path::{CUSTOM_GROUP, EXTERNAL_GROUP};

/// The largest policy file read.
const MAX_FILE_BYTES: usize = 1 << 20;
/// Most rules in one policy.
const MAX_RULES: usize = 1_000;
/// The `system:discovery` ClusterRole's paths, open to every authenticated caller.
const DISCOVERY_PATHS: [&str; 7] = [
    "/apis",
    "/apis/*",
    "/openapi",
    "/openapi/*",
    "/api",
    "/api/*",
    "/version",
];
/// The group kube-apiserver (and our authenticator) adds to every authenticated caller.
const AUTHENTICATED: &str = "system:authenticated";

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("authorization policy {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("authorization policy {path}: {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the rule's position.
        problem: String,
    },
}

/// A metrics API a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsApi {
    /// `custom.metrics.k8s.io`.
    Custom,
    /// `external.metrics.k8s.io`.
    External,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    allow: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    apis: Option<Vec<MetricsApi>>,
    namespaces: Option<Vec<String>>,
    #[serde(default)]
    paths: Vec<String>,
}

/// One rule: who (any of `users`, or a member of any of `groups`) may do what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    users: Vec<String>,
    groups: Vec<String>,
    apis: Vec<MetricsApi>,
    /// None: every namespace.
    namespaces: Option<Vec<String>>,
    paths: Vec<String>,
}

/// A validated policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
}

fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

impl Rule {
    fn names(&self, caller: &Caller) -> bool {
        self.users.contains(&caller.user) || caller.groups.iter().any(|g| self.groups.contains(g))
    }

    fn grants(&self, target: &Target) -> bool {
        match target {
            Target::NonResource { path, verb } => {
                *verb == "get" && self.paths.iter().any(|p| path_matches(p, path))
            }
            Target::Resource(r) => {
                let api = match r.group.as_str() {
                    CUSTOM_GROUP => MetricsApi::Custom,
                    EXTERNAL_GROUP => MetricsApi::External,
                    _ => return false,
                };
                matches!(r.verb, "get" | "list")
                    && self.apis.contains(&api)
                    && self
                        .namespaces
                        .as_ref()
                        .is_none_or(|ns| ns.contains(&r.namespace))
            }
        }
    }
}

impl Policy {
    /// Parses and validates policy YAML; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, PolicyError> {
        let invalid = |problem: String| PolicyError::Invalid {
            path: file.display().to_string(),
            problem,
        };
        let raw: RawPolicy = serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.allow.len() > MAX_RULES {
            return Err(invalid(format!(
                "{} rules; at most {MAX_RULES}",
                raw.allow.len()
            )));
        }
        let mut rules = Vec::with_capacity(raw.allow.len());
        for (i, r) in raw.allow.into_iter().enumerate() {
            let at = |what: &str| invalid(format!("allow[{i}]: {what}"));
            if r.users.is_empty() && r.groups.is_empty() {
                return Err(at("names no users and no groups"));
            }
            if r.users.iter().chain(&r.groups).any(|n| n.trim().is_empty()) {
                return Err(at("an empty user or group name"));
            }
            if let Some(ns) = &r.namespaces
                && (ns.is_empty() || ns.iter().any(|n| n.trim().is_empty()))
            {
                return Err(at(
                    "namespaces is empty or holds an empty name (omit it for every namespace)",
                ));
            }
            if let Some(p) = r.paths.iter().find(|p| !p.starts_with('/')) {
                return Err(at(&format!("path {p:?} does not start with /")));
            }
            rules.push(Rule {
                users: r.users,
                groups: r.groups,
                apis: r
                    .apis
                    .unwrap_or_else(|| vec![MetricsApi::Custom, MetricsApi::External]),
                namespaces: r.namespaces,
                paths: r.paths,
            });
        }
        Ok(Self { rules })
    }

    /// Reads and validates `file`; also returns its bytes (the watcher's starting point).
    pub fn load(file: &Path) -> Result<(Self, Vec<u8>), PolicyError> {
        let bytes = read_bounded(file)?;
        let policy = Self::parse(file, &String::from_utf8_lossy(&bytes))?;
        Ok((policy, bytes))
    }

    /// Whether the policy allows `caller` to do `target`.
    pub fn allows(&self, caller: &Caller, target: &Target) -> bool {
        if let Target::NonResource { path, verb: "get" } = target
            && caller.groups.iter().any(|g| g == AUTHENTICATED)
            && DISCOVERY_PATHS.iter().any(|p| path_matches(p, path))
        {
            return true;
        }
        self.rules
            .iter()
            .any(|rule| rule.names(caller) && rule.grants(target))
    }
}

fn read_bounded(file: &Path) -> Result<Vec<u8>, PolicyError> {
    let read = |source| PolicyError::Read {
        path: file.display().to_string(),
        source,
    };
    let bytes = std::fs::read(file).map_err(read)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(PolicyError::Invalid {
            path: file.display().to_string(),
            problem: format!("{} bytes; at most {MAX_FILE_BYTES}", bytes.len()),
        });
    }
    Ok(bytes)
}

/// Polls `file` every `every` until `shutdown`, storing each new valid policy in `into`;
/// `current` holds the bytes the policy in force came from. A bad or unreadable version is
/// logged and the policy in force stays.
pub async fn watch(
    file: PathBuf,
    current: Vec<u8>,
    every: Duration,
    into: Arc<ArcSwap<Policy>>,
    shutdown: CancellationToken,
) {
    let mut last = Some(current);
    let mut ticks = Ticker::new(every, First::AfterPeriod, &shutdown);
    while ticks.tick().await {
        let bytes = match read_bounded(&file) {
            Ok(b) => b,
            Err(error) => {
                if last.take().is_some() {
                    tracing::error!(%error, "authorization policy rejected; keeping the policy in force");
                }
                continue;
            }
        };
        if last.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        let parsed = Policy::parse(&file, &String::from_utf8_lossy(&bytes));
        last = Some(bytes);
        match parsed {
            Ok(policy) => {
                tracing::info!(path = %file.display(), rules = policy.rules.len(),
                    "authorization policy reloaded");
                into.store(Arc::new(policy));
            }
            Err(error) => {
                tracing::error!(%error, "authorization policy rejected; keeping the policy in force");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn caller(user: &str, groups: &[&str]) -> Caller {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        groups.push(AUTHENTICATED.into());
        Caller {
            user: user.into(),
            groups,
        }
    }

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(Path::new("/etc/dwell/policy.yaml"), text)
    }

    const PODS: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/m";
    const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/m";

    fn allows(p: &Policy, c: &Caller, path: &str) -> bool {
        p.allows(c, &Target::of(&Method::GET, path))
    }

    #[test]
    fn rules_grant_by_user_group_api_and_namespace() {
        let p = parse(
            "allow:\n  - users: [hpa]\n  - groups: [ops]\n    apis: [custom]\n    namespaces: [shop]\n  \
             - groups: [mon]\n    apis: []\n    paths: [/metrics]\n",
        )
        .unwrap();
        let hpa = caller("hpa", &[]);
        assert!(allows(&p, &hpa, PODS) && allows(&p, &hpa, EXTERNAL));
        let ops = caller("alice", &["ops"]);
        assert!(allows(&p, &ops, PODS));
        assert!(!allows(&p, &ops, EXTERNAL), "custom only");
        assert!(
            !allows(&p, &ops, &PODS.replace("/shop/", "/other/")),
            "shop only"
        );
        assert!(!allows(&p, &ops, "/metrics"));
        let mon = caller("prom", &["mon"]);
        assert!(allows(&p, &mon, "/metrics") && !allows(&p, &mon, PODS));
        // Only reads: a POST (create) is never granted.
        assert!(!p.allows(&hpa, &Target::of(&Method::POST, PODS)));
        // Another group's resources are never granted.
        assert!(!allows(
            &p,
            &hpa,
            "/apis/apps/v1/namespaces/shop/deployments/x"
        ));
        // Discovery is open to the authenticated, not to the anonymous.
        let stranger = caller("bob", &[]);
        assert!(allows(&p, &stranger, "/apis/custom.metrics.k8s.io/v1beta2"));
        assert!(allows(&p, &stranger, "/openapi/v2") && !allows(&p, &stranger, PODS));
        let anonymous = Caller {
            user: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        };
        assert!(!allows(&p, &anonymous, "/apis"));
    }

    #[test]
    fn bad_policies_name_the_file_and_the_problem() {
        for (text, says) in [
            (
                "allow:\n  - apis: [custom]\n",
                "allow[0]: names no users and no groups",
            ),
            (
                "allow:\n  - users: [a]\n    apis: [metrics]\n",
                "unknown variant",
            ),
            ("allow:\n  - users: [a]\n    verbs: [get]\n", "verbs"),
            (
                "allow:\n  - users: [a]\n  - users: [b]\n    namespaces: []\n",
                "allow[1]: namespaces",
            ),
            (
                "allow:\n  - users: [a]\n    paths: [metrics]\n",
                "does not start with /",
            ),
            ("allow:\n  - users: ['']\n", "empty user or group"),
            ("rules: []\n", "allow"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with("authorization policy /etc/dwell/policy.yaml: "),
                "{e}"
            );
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_file_is_applied_and_a_bad_one_keeps_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, "allow:\n  - users: [a]\n").unwrap();
        let (policy, bytes) = Policy::load(&file).unwrap();
        let swap = Arc::new(ArcSwap::from_pointee(policy));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watch(
            file.clone(),
            bytes,
            Duration::from_secs(1),
            swap.clone(),
            shutdown.clone(),
        ));
        let (a, b) = (caller("a", &[]), caller("b", &[]));
        std::fs::write(&file, "allow:\n  - users: [b]\n").unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(allows(&swap.load(), &b, PODS) && !allows(&swap.load(), &a, PODS));
        std::fs::write(&file, "allow: [nonsense\n").unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            allows(&swap.load(), &b, PODS),
            "the bad file kept the policy"
        );
        shutdown.cancel();
        task.await.unwrap();
    }
}
