//! Authorization of the metrics API, after authentication ([`super::auth`]): may this caller
//! `get` (or `list`) this resource in this namespace? Decided as a Go aggregated API server's
//! delegated authorizer decides (reference: metrics-api-contract.md §5.3), in this order:
//!
//! 1. `/healthz`, `/livez`, `/readyz`: always (they never reach here: see `auth`);
//! 2. group `system:masters`: always;
//! 3. the static policy (`--authorization-policy`, [`policy`]), when configured: allowed if a
//!    rule allows; otherwise, without delegation, denied;
//! 4. the cluster (`--authorization-delegated`, [`sar`]): a cached `SubjectAccessReview`.
//!
//! Denied: 403 `Forbidden` in kube-apiserver's words ([`attributes::forbidden_message`]); an
//! authorizer error or timeout: 500, never allowed. A caller without authentication (none
//! configured) is `system:anonymous` in `system:unauthenticated`, as kube names it. Decisions are
//! counted by decider and outcome. [`Authorizer::decide_now`] answers without waiting (the
//! policy, or a cached review), so the response memo authorizes exactly as the router does.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

pub mod attributes;
pub mod policy;
pub mod sar;

use super::ApiError;
use super::auth::Caller;
use super::status::StatusDetails;
use attributes::{Target, forbidden_message};
use policy::Policy;
use sar::{Reviewer, SarError, SarSettings};

/// The group every request from it is allowed (k8s.io/apiserver's `AlwaysAllowGroups`).
const MASTERS: &str = "system:masters";

/// What decides.
#[derive(Debug, Clone, Default)]
pub struct AuthzSettings {
    /// The static policy file, re-read on change.
    pub policy: Option<PathBuf>,
    /// How often the policy file is checked.
    pub policy_poll_interval: Duration,
    /// Delegated authorization through SubjectAccessReviews.
    pub delegated: Option<SarSettings>,
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decider {
    /// `system:masters`.
    Masters,
    /// The static policy.
    Policy,
    /// A SubjectAccessReview (fresh or cached).
    Review,
}

impl Decider {
    fn label(self) -> &'static str {
        match self {
            Decider::Masters => "masters",
            Decider::Policy => "policy",
            Decider::Review => "subjectaccessreview",
        }
    }
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allowed,
    /// Not allowed; the authorizer's reason (may be empty).
    Denied(String),
    /// No answer (the error, never holding a secret).
    Error(String),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decider: &'static str,
    decision: &'static str,
}

/// Why authorization could not be set up (start-up errors).
#[derive(Debug, thiserror::Error)]
pub enum AuthzSetupError {
    /// The policy file.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The delegated authorizer's CA.
    #[error(transparent)]
    Review(#[from] SarError),
}

/// The configured authorizers.
#[derive(Debug)]
pub struct Authorizer {
    policy: Option<Arc<ArcSwap<Policy>>>,
    policy_source: Option<(PathBuf, Vec<u8>, Duration)>,
    reviewer: Option<Reviewer>,
    decisions: Family<DecisionLabels, Counter>,
}

impl Authorizer {
    /// Loads the policy and the cluster CA; `None` when nothing is configured (everyone
    /// authenticated may read everything: the app warns).
    pub fn new(
        settings: &AuthzSettings,
        clock: dwell_runtime::clock::SharedClock,
    ) -> Result<Option<Self>, AuthzSetupError> {
        if settings.policy.is_none() && settings.delegated.is_none() {
            return Ok(None);
        }
        let (policy, policy_source) = match &settings.policy {
            None => (None, None),
            Some(file) => {
                let (policy, bytes) = Policy::load(file)?;
                (
                    Some(Arc::new(ArcSwap::from_pointee(policy))),
                    Some((file.clone(), bytes, settings.policy_poll_interval)),
                )
            }
        };
        let reviewer = settings
            .delegated
            .clone()
            .map(|s| Reviewer::new(s, clock))
            .transpose()?;
        Ok(Some(Self {
            policy,
            policy_source,
            reviewer,
            decisions: Family::default(),
        }))
    }

    /// Registers the decision counter.
    pub fn register(&self, telemetry: &crate::telemetry::Telemetry) {
        telemetry.register(
            "metrics_authorization_decisions",
            "Metrics API authorization decisions, by decider (masters, policy, \
             subjectaccessreview) and decision (allowed, denied, error)",
            self.decisions.clone(),
        );
    }

    /// The task that re-reads the policy file on change (None without a policy).
    pub fn policy_watcher(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let (file, bytes, every) = self.policy_source.clone()?;
        let into = self.policy.clone()?;
        Some(policy::watch(file, bytes, every, into, shutdown))
    }

    /// The decision, if it needs no request to the cluster (masters, the policy, a cached
    /// review); None: ask [`Authorizer::decide`]. Not counted: see [`Authorizer::count`].
    pub fn decide_now(&self, caller: &Caller, target: &Target) -> Option<(Decider, Decision)> {
        if caller.groups.iter().any(|g| g == MASTERS) {
            return Some((Decider::Masters, Decision::Allowed));
        }
        if let Some(policy) = &self.policy {
            if policy.load().allows(caller, target) {
                return Some((Decider::Policy, Decision::Allowed));
            }
            if self.reviewer.is_none() {
                return Some((Decider::Policy, Decision::Denied(String::new())));
            }
        }
        let review = self.reviewer.as_ref()?.cached(caller, target)?;
        Some((Decider::Review, from_review(review)))
    }

    /// The decision, asking the cluster when [`Authorizer::decide_now`] cannot answer.
    pub async fn decide(&self, caller: &Caller, target: &Target) -> (Decider, Decision) {
        if let Some(decided) = self.decide_now(caller, target) {
            return decided;
        }
        let Some(reviewer) = &self.reviewer else {
            return (Decider::Policy, Decision::Denied(String::new()));
        };
        let decision = match reviewer.review(caller, target).await {
            Ok(review) => from_review(review),
            Err(error) => Decision::Error(error.to_string()),
        };
        (Decider::Review, decision)
    }

    /// Counts a decision that was acted on.
    pub fn count(&self, decider: Decider, decision: &Decision) {
        let decision = match decision {
            Decision::Allowed => "allowed",
            Decision::Denied(_) => "denied",
            Decision::Error(_) => "error",
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                decider: decider.label(),
                decision,
            })
            .inc();
    }
}

fn from_review(review: sar::Review) -> Decision {
    if review.allowed {
        Decision::Allowed
    } else {
        Decision::Denied(review.reason)
    }
}

/// The caller kube-apiserver names a request without credentials.
pub fn anonymous() -> Caller {
    Caller {
        user: "system:anonymous".into(),
        groups: vec!["system:unauthenticated".into()],
    }
}

/// The response to a decision that is not `Allowed` (None for `Allowed`).
pub fn refusal(caller: &Caller, target: &Target, decision: &Decision) -> Option<ApiError> {
    match decision {
        Decision::Allowed => None,
        Decision::Denied(reason) => Some(ApiError::Forbidden {
            message: forbidden_message(&caller.user, target, reason),
            details: match target {
                Target::Resource(r) => StatusDetails {
                    name: r.name.clone(),
                    group: r.group.clone(),
                    kind: r.resource.clone(),
                },
                Target::NonResource { .. } => StatusDetails::default(),
            },
        }),
        Decision::Error(error) => {
            tracing::warn!(user = %caller.user, %error, "authorization failed; request refused");
            Some(ApiError::Internal(format!(
                "Internal error occurred: authorization failed: {error}"
            )))
        }
    }
}
