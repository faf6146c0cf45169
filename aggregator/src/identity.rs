//! Who is sending reports, so that a pod reports only for itself. A stream is authenticated
//! once, when it opens ([`IngestAuth::authenticate`]): a bound service-account token
//! (`authorization: Bearer …`, verified offline against `--ingest-jwks`: [`jwt`], [`jwks`],
//! [`keys`]) names the pod and its namespace; a client certificate's SPIFFE ID ([`spiffe`])
//! names a namespace. Every report on the stream is then bound to that identity
//! ([`binding`]).
//!
//! Tokens are credentials: no log line or error holds one, not even a prefix.
pub mod binding;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod spiffe;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

pub use binding::{Denial, Identity};
use jwt::{Expectations, TokenError};
use keys::{KeyFile, KeyFileError, ReloadMetrics};

/// Clock skew allowed on a token's `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// Offline verification of bound service-account tokens.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The issuer's JWKS (`kubectl get --raw /openid/v1/jwks`).
    pub jwks: PathBuf,
    /// How often the file is checked for new keys.
    pub jwks_poll_interval: Duration,
    /// `iss` every token must carry.
    pub issuer: String,
    /// The audience every token must be for.
    pub audience: String,
}

/// How ingest streams are authenticated.
#[derive(Debug, Clone, Default)]
pub struct IngestAuthSettings {
    /// Tokens are verified (and bind the pod) when set.
    pub tokens: Option<TokenSettings>,
    /// A stream without a verified identity is refused (`UNAUTHENTICATED`).
    pub required: bool,
    /// The SPIFFE trust domain client certificates must be in to bind a namespace (any, when
    /// `None`).
    pub spiffe_trust_domain: Option<String>,
}

/// Why a stream was refused (an `UNAUTHENTICATED`). Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token failed verification.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// An `authorization` header that is not `Bearer <token>`.
    #[error("the authorization header is not `Bearer <token>`")]
    Scheme,
    /// Neither a token nor a certificate identity, while one is required.
    #[error(
        "no identity: send the pod's service-account token as `authorization: Bearer` \
         (--ingest-require-identity)"
    )]
    Missing,
    /// Token and certificate name different namespaces.
    #[error("the token and the client certificate name different namespaces")]
    Disagree,
}

impl AuthError {
    /// A bounded label for `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Token(e) => e.reason(),
            Self::Scheme => "malformed",
            Self::Missing => "missing",
            Self::Disagree => "disagree",
        }
    }
}

/// The ingest authenticator.
#[derive(Debug, Clone)]
pub struct IngestAuth {
    tokens: Option<(Arc<KeyFile>, Expectations)>,
    required: bool,
    trust_domain: Option<String>,
}

impl Default for IngestAuth {
    /// Authenticates nobody and requires nothing (every stream unbound).
    fn default() -> Self {
        Self {
            tokens: None,
            required: false,
            trust_domain: None,
        }
    }
}

/// The authenticator and, with tokens, its key file's watcher to run (content, period).
pub type Loaded = (IngestAuth, Option<(Arc<KeyFile>, Vec<u8>, Duration)>);

impl IngestAuth {
    /// Loads the key file (a bad one fails here, naming it).
    pub fn load(
        settings: &IngestAuthSettings,
        metrics: ReloadMetrics,
    ) -> Result<Loaded, KeyFileError> {
        let mut watch = None;
        let tokens = match &settings.tokens {
            None => None,
            Some(t) => {
                let (file, bytes) = KeyFile::load(&t.jwks, metrics)?;
                let file = Arc::new(file);
                watch = Some((file.clone(), bytes, t.jwks_poll_interval));
                let expect = Expectations {
                    issuer: t.issuer.clone(),
                    audience: t.audience.clone(),
                    leeway_s: LEEWAY.as_secs() as i64,
                };
                Some((file, expect))
            }
        };
        let auth = Self {
            tokens,
            required: settings.required,
            trust_domain: settings.spiffe_trust_domain.clone(),
        };
        Ok((auth, watch))
    }

    /// Who opened a stream with `authorization` (the header's value) over a connection whose
    /// client presented `certs` (leaf first), at `now_ms`. `Ok(None)`: nobody, and nobody is
    /// required. A token is only read when tokens are configured.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        certs: Option<&[CertificateDer<'_>]>,
        now_ms: i64,
    ) -> Result<Option<Identity>, AuthError> {
        let by_token = match (&self.tokens, authorization) {
            (Some((keys, expect)), Some(value)) => {
                let token = bearer(value).ok_or(AuthError::Scheme)?;
                let claims = jwt::verify(token, &keys.current(), expect, now_ms.div_euclid(1000))?;
                Some(Identity {
                    namespace: claims.namespace.into(),
                    pod: claims.pod.map(Into::into),
                    expires_at_ms: Some(
                        (claims.expires_at_s + LEEWAY.as_secs() as i64).saturating_mul(1000),
                    ),
                    proof: "token",
                })
            }
            _ => None,
        };
        let by_cert = certs.and_then(|c| c.first()).and_then(|leaf| {
            let uris = crate::tls::client_auth::uri_sans(leaf);
            let ns = spiffe::namespace(
                uris.iter().map(String::as_str),
                self.trust_domain.as_deref(),
            )?;
            Some(Identity {
                namespace: ns.into(),
                pod: None,
                expires_at_ms: None,
                proof: "certificate",
            })
        });
        match (by_token, by_cert) {
            (Some(token), Some(cert)) if token.namespace != cert.namespace => {
                Err(AuthError::Disagree)
            }
            (Some(id), _) | (None, Some(id)) => Ok(Some(id)),
            (None, None) if self.required => Err(AuthError::Missing),
            (None, None) => Ok(None),
        }
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_tokens_only() {
        assert_eq!(bearer(b"Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer(b"bearer  abc "), Some("abc"));
        assert_eq!(bearer(b"Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"abc"), None);
        assert_eq!(bearer(&[0xff, b' ', b'a']), None);
    }

    #[test]
    fn nothing_configured_binds_nobody_and_required_refuses() {
        let open = IngestAuth::default();
        assert_eq!(open.authenticate(Some(b"Bearer x"), None, 0), Ok(None));
        let required = IngestAuth {
            required: true,
            ..IngestAuth::default()
        };
        assert_eq!(
            required.authenticate(None, None, 0),
            Err(AuthError::Missing)
        );
        assert_eq!(AuthError::Missing.reason(), "missing");
    }
}
