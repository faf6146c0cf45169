//! Who is calling the metrics API, as a Kubernetes aggregated API server decides it; what they
//! may do is [`super::authz`]'s, asked here once the caller is known. Two authenticators, tried
//! in order:
//!
//! 1. **Request header** (`--requestheader-client-ca`, `--requestheader-allowed-names`): a
//!    certificate from the front-proxy CA whose CN is allowed (any, when the list is empty)
//!    proves the caller is kube-apiserver's aggregation layer; the user it vouches for is then
//!    `X-Remote-User`, the groups `X-Remote-Group` (one header per group).
//! 2. **x509** (`--client-ca`): an ordinary client certificate; user = CN, groups = O.
//!
//! Everything but `/healthz`, `/livez`, `/readyz` needs one of them, else 401 with a `Status`.
//! `X-Remote-*` headers are stripped from every request before handlers see it, so a header
//! from anyone but the front proxy can never be mistaken for an identity.
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use rustls::RootCertStore;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;

use crate::tls::client_auth::{self, Presence};
use crate::tls::{PeerCertificates, TlsError};

use super::{ApiError, ApiState};

/// Paths anyone may call (kubelet probes carry no certificate), as in kube's delegated authz.
const OPEN_PATHS: [&str; 3] = ["/healthz", "/livez", "/readyz"];
/// The header prefix kube-apiserver's front proxy uses for identities.
const REMOTE_PREFIX: &str = "x-remote-";
/// Added to every authenticated caller, as kube-apiserver does.
const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Which authenticators to configure (the CA bundles are read once, at start-up).
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// The front-proxy CA bundle (`requestheader-client-ca-file`).
    pub requestheader_client_ca: Option<PathBuf>,
    /// Front-proxy CNs accepted (`requestheader-allowed-names`; empty: any from that CA).
    pub requestheader_allowed_names: Vec<String>,
    /// CA bundle for ordinary x509 client certificates (`client-ca-file`).
    pub client_ca: Option<PathBuf>,
}

/// The front-proxy CNs accepted (`requestheader-allowed-names`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedNames(pub Vec<String>);

/// Allowed names that are neither a comma-separated list nor a JSON array of strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a JSON array of strings ({reason}): {text}")]
pub struct AllowedNamesError {
    /// What the JSON parser said.
    reason: String,
    /// The text given.
    text: String,
}

impl AllowedNames {
    /// Parses `a,b` or the JSON array form of extension-apiserver-authentication's
    /// `requestheader-allowed-names` (`["a","b"]`, `[]`); blanks are dropped.
    pub fn parse(text: &str) -> Result<Self, AllowedNamesError> {
        let text = text.trim();
        let names: Vec<String> = if text.starts_with('[') {
            serde_json::from_str(text).map_err(|e| AllowedNamesError {
                reason: e.to_string(),
                text: text.to_owned(),
            })?
        } else {
            text.split(',').map(str::to_owned).collect()
        };
        Ok(Self(
            names
                .into_iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
        ))
    }
}

/// An authenticated caller, attached to the request for handlers and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The Kubernetes user name.
    pub user: String,
    /// Its groups (always including `system:authenticated`).
    pub groups: Vec<String>,
}

/// Why a request's caller is not trusted (the 401 message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No certificate came with the connection.
    #[error("no client certificate")]
    NoCertificate,
    /// The certificate chains to neither CA.
    #[error("client certificate (CN {0:?}) is not from a trusted CA")]
    UntrustedCa(String),
    /// A front-proxy certificate whose CN is not allowed (and no x509 CA accepts it).
    #[error("front-proxy certificate CN {0:?} is not in requestheader-allowed-names")]
    NameNotAllowed(String),
    /// An x509 user certificate without the CN that names the user.
    #[error("client certificate has no CN (the user name)")]
    NoCommonName,
    /// A trusted front proxy that did not say who it speaks for.
    #[error("front-proxy request without a valid X-Remote-User")]
    NoRemoteUser,
}

struct FrontProxy {
    verifier: Arc<dyn ClientCertVerifier>,
    allowed_names: Vec<String>,
}

/// The configured authenticators, and the handshake verifier that accepts what either trusts.
pub struct Authenticator {
    front_proxy: Option<FrontProxy>,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
    handshake: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("front_proxy", &self.front_proxy.is_some())
            .field("client_ca", &self.client_ca.is_some())
            .finish()
    }
}

impl Authenticator {
    /// Loads the CA bundles; `None` when neither CA is configured (the API is then open).
    pub fn new(settings: &AuthSettings) -> Result<Option<Self>, TlsError> {
        let load =
            |path: &Option<PathBuf>| path.as_deref().map(client_auth::load_roots).transpose();
        let front_proxy_roots = load(&settings.requestheader_client_ca)?;
        let client_roots = load(&settings.client_ca)?;
        let mut union = RootCertStore::empty();
        for roots in [&front_proxy_roots, &client_roots].into_iter().flatten() {
            union.roots.extend(roots.roots.iter().cloned());
        }
        if union.is_empty() {
            return Ok(None);
        }
        let front_proxy = front_proxy_roots
            .map(|roots| -> Result<_, TlsError> {
                Ok(FrontProxy {
                    verifier: client_auth::verifier(roots, Presence::Required)?,
                    allowed_names: settings.requestheader_allowed_names.clone(),
                })
            })
            .transpose()?;
        let client_ca = client_roots
            .map(|roots| client_auth::verifier(roots, Presence::Required))
            .transpose()?;
        Ok(Some(Self {
            front_proxy,
            client_ca,
            handshake: client_auth::verifier(union, Presence::Optional)?,
        }))
    }

    /// For the TLS server: requests a client certificate from either CA but lets clients
    /// without one connect (they may only reach the health routes).
    pub fn handshake_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.handshake.clone()
    }

    /// Decides who sent a request that arrived with `chain` (verified at the handshake) and
    /// `headers`; the error says why nobody is trusted.
    pub fn authenticate(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
        headers: &HeaderMap,
    ) -> Result<Caller, AuthError> {
        let chain = chain
            .filter(|c| !c.is_empty())
            .ok_or(AuthError::NoCertificate)?;
        let subject = chain
            .first()
            .and_then(client_auth::subject)
            .unwrap_or_default();
        let cn = subject.common_name.clone().unwrap_or_default();
        let mut refusal = AuthError::UntrustedCa(cn.clone());
        if let Some(proxy) = &self.front_proxy
            && client_auth::verifies(proxy.verifier.as_ref(), chain)
        {
            if proxy.allowed_names.is_empty() || proxy.allowed_names.contains(&cn) {
                return front_proxy_caller(headers);
            }
            // As kube: the headers are not trusted, but the x509 authenticator may still apply.
            refusal = AuthError::NameNotAllowed(cn.clone());
        }
        if let Some(ca) = &self.client_ca
            && client_auth::verifies(ca.as_ref(), chain)
        {
            if cn.is_empty() {
                return Err(AuthError::NoCommonName);
            }
            let mut groups = subject.organizations;
            groups.push(AUTHENTICATED_GROUP.into());
            return Ok(Caller { user: cn, groups });
        }
        Err(refusal)
    }
}

fn front_proxy_caller(headers: &HeaderMap) -> Result<Caller, AuthError> {
    let user = headers
        .get("x-remote-user")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or(AuthError::NoRemoteUser)?;
    let mut groups: Vec<String> = headers
        .get_all("x-remote-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    groups.push(AUTHENTICATED_GROUP.into());
    Ok(Caller {
        user: user.to_owned(),
        groups,
    })
}

fn strip_remote_headers(headers: &mut HeaderMap) {
    let remote: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(REMOTE_PREFIX))
        .cloned()
        .collect();
    for name in remote {
        headers.remove(name);
    }
}

/// The middleware: authenticates (when configured) and authorizes (when configured) every
/// request but the health routes, and strips `X-Remote-*` headers always.
pub(super) async fn require(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    if OPEN_PATHS.contains(&request.uri().path()) {
        strip_remote_headers(request.headers_mut());
        return next.run(request).await;
    }
    let caller = match &state.auth {
        None => None,
        Some(auth) => {
            let chain = request.extensions().get::<PeerCertificates>().cloned();
            match auth.authenticate(chain.as_ref().map(|c| c.0.as_slice()), request.headers()) {
                Ok(caller) => Some(caller),
                Err(reason) => {
                    tracing::debug!(path = %request.uri().path(), %reason,
                        "unauthenticated request refused");
                    return super::labelled(
                        "unauthorized",
                        ApiError::Unauthorized(reason.to_string()),
                    );
                }
            }
        }
    };
    strip_remote_headers(request.headers_mut());
    if let Some(caller) = &caller {
        tracing::debug!(
            user = %caller.user,
            groups = ?caller.groups,
            method = %request.method(),
            path = %request.uri().path(),
            "authenticated request"
        );
    }
    if let Some(authz) = &state.authz {
        let who = caller.clone().unwrap_or_else(super::authz::anonymous);
        let target = super::authz::attributes::Target::of(request.method(), request.uri().path());
        let (decider, decision) = authz.decide(&who, &target).await;
        authz.count(decider, &decision);
        if let Some(refusal) = super::authz::refusal(&who, &target, &decision) {
            let route = match refusal {
                ApiError::Forbidden { .. } => "forbidden",
                _ => "authorization_error",
            };
            return super::labelled(route, refusal);
        }
    }
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}

/// Whether `req` is authenticated and authorized as [`require`] would decide, without waiting
/// (the response memo serves only then; anything else goes through the router). Counts the
/// authorization decision when it says yes.
pub(super) fn admitted_now<B>(state: &ApiState, req: &axum::http::Request<B>) -> bool {
    let caller = match &state.auth {
        None => None,
        Some(auth) => {
            let chain = req.extensions().get::<PeerCertificates>();
            match auth.authenticate(chain.map(|c| c.0.as_slice()), req.headers()) {
                Ok(caller) => Some(caller),
                Err(_) => return false,
            }
        }
    };
    let Some(authz) = &state.authz else {
        return true;
    };
    let who = caller.unwrap_or_else(super::authz::anonymous);
    let target = super::authz::attributes::Target::of(req.method(), req.uri().path());
    match authz.decide_now(&who, &target) {
        Some((decider, decision @ super::authz::Decision::Allowed)) => {
            authz.count(decider, &decision);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn front_proxy_headers_give_user_and_groups() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-remote-user",
            HeaderValue::from_static("system:serviceaccount:kube-system:hpa"),
        );
        h.append(
            "x-remote-group",
            HeaderValue::from_static("system:serviceaccounts"),
        );
        h.append("x-remote-group", HeaderValue::from_static("ops"));
        let caller = front_proxy_caller(&h).unwrap();
        assert_eq!(caller.user, "system:serviceaccount:kube-system:hpa");
        assert_eq!(
            caller.groups,
            ["system:serviceaccounts", "ops", AUTHENTICATED_GROUP]
        );
        h.remove("x-remote-user");
        assert!(front_proxy_caller(&h).is_err());
        h.insert("x-remote-user", HeaderValue::from_static("  "));
        assert!(front_proxy_caller(&h).is_err());
    }

    #[test]
    fn allowed_names_parse_as_a_list_or_json() {
        let names = |t: &str| AllowedNames::parse(t).map(|n| n.0);
        assert_eq!(
            names("front-proxy-client"),
            Ok(vec!["front-proxy-client".into()])
        );
        assert_eq!(names(" a, b ,,"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(names(r#"["a", "b"]"#), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(names("[]"), Ok(vec![]));
        assert_eq!(names(""), Ok(vec![]));
        assert!(names("[a").is_err());
        assert!(names("[1]").is_err());
    }

    #[test]
    fn remote_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", HeaderValue::from_static("admin"));
        h.insert("x-remote-extra-scopes", HeaderValue::from_static("x"));
        h.insert("accept", HeaderValue::from_static("application/json"));
        strip_remote_headers(&mut h);
        assert_eq!(h.len(), 1);
    }
}
