//! A small, strict verifier of JWS compact tokens (RFC 7515/7519) as Kubernetes issues them to
//! pods (projected service-account tokens): `header.payload.signature`, base64url without
//! padding, `alg` RS256 or ES256 (matching the key's type; `none` and HMAC never), the key
//! found by `kid`, then the claims: `exp` (required), `nbf` and `iat` (when present) within a
//! small leeway, `iss` equal to the configured issuer, `aud` (a string or an array) holding
//! the configured audience, and the `kubernetes.io` claim naming the pod.
//!
//! Errors name what failed and never quote the token (not even a prefix): a token is a
//! credential for as long as it is valid.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::jwks::{Algorithm, KeySet};

/// Longest token accepted (a Kubernetes projected token is about 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a token must say to be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// `iss` must equal this.
    pub issuer: String,
    /// `aud` must hold this.
    pub audience: String,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_s: i64,
}

/// The pod a valid token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `kubernetes.io.namespace`.
    pub namespace: String,
    /// `kubernetes.io.pod.name` (absent for a token not bound to a pod).
    pub pod: Option<String>,
    /// `kubernetes.io.serviceaccount.name`.
    pub service_account: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at_s: i64,
}

/// Why a token was refused. [`TokenError::reason`] is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three base64url parts with JSON header and payload.
    #[error("token is not a JWS compact serialization: {0}")]
    Malformed(&'static str),
    /// `alg` other than RS256/ES256.
    #[error("token algorithm is not RS256 or ES256")]
    Algorithm,
    /// No key with the header's `kid`.
    #[error("token is signed by a key not in --ingest-jwks")]
    UnknownKey,
    /// `alg` does not fit the key type.
    #[error("token algorithm does not match its key's type")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("token signature does not verify")]
    Signature,
    /// `exp` passed.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` differs.
    #[error("token issuer is not --ingest-token-issuer")]
    Issuer,
    /// `aud` lacks ours.
    #[error("token audience does not include --ingest-token-audience")]
    Audience,
    /// A required claim is missing or of the wrong type.
    #[error("token lacks the {0} claim")]
    Claim(&'static str),
}

impl TokenError {
    /// A bounded label for `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge | Self::Malformed(_) => "malformed",
            Self::Algorithm | Self::AlgorithmMismatch => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Claim(_) => "claims",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<Kubernetes>,
}

#[derive(Deserialize)]
struct Kubernetes {
    namespace: String,
    #[serde(default)]
    pod: Option<Named>,
    #[serde(default)]
    serviceaccount: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

const HEADER: (&str, &str) = ("header is not base64url", "header is not the expected JSON");
const PAYLOAD: (&str, &str) = (
    "payload is not base64url",
    "payload is not the expected JSON",
);

/// Verifies `token` against `keys` and `expect` at `now_s` (seconds since the epoch).
pub fn verify(
    token: &str,
    keys: &KeySet,
    expect: &Expectations,
    now_s: i64,
) -> Result<TokenClaims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three parts"));
    };
    let header: Header = json(header, HEADER)?;
    let alg = Algorithm::from_name(&header.alg).ok_or(TokenError::Algorithm)?;
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.get(kid))
        .ok_or(TokenError::UnknownKey)?;
    if key.algorithm() != alg {
        return Err(TokenError::AlgorithmMismatch);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    // The signing input is the first two parts exactly as sent.
    let signed = &token[..token.len() - parts_len(token)];
    if !key.verifies(signed.as_bytes(), &signature) {
        return Err(TokenError::Signature);
    }
    let claims: Claims = json(payload, PAYLOAD)?;
    let exp = claims.exp.ok_or(TokenError::Claim("exp"))?;
    if now_s > exp + expect.leeway_s {
        return Err(TokenError::Expired);
    }
    if claims
        .nbf
        .into_iter()
        .chain(claims.iat)
        .any(|t| t > now_s + expect.leeway_s)
    {
        return Err(TokenError::NotYetValid);
    }
    if claims.iss.as_deref() != Some(expect.issuer.as_str()) {
        return Err(TokenError::Issuer);
    }
    let audience_ok = match &claims.aud {
        Some(Audience::One(aud)) => *aud == expect.audience,
        Some(Audience::Many(auds)) => auds.contains(&expect.audience),
        None => false,
    };
    if !audience_ok {
        return Err(TokenError::Audience);
    }
    let k8s = claims
        .kubernetes
        .ok_or(TokenError::Claim("kubernetes.io"))?;
    Ok(TokenClaims {
        namespace: k8s.namespace,
        pod: k8s.pod.map(|p| p.name),
        service_account: k8s.serviceaccount.map(|s| s.name),
        expires_at_s: exp,
    })
}

/// Length of the last part with its dot (the split found exactly three parts).
fn parts_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

/// Decodes one JSON part; `errors` are the messages for bad base64url and for bad JSON.
fn json<T: serde::de::DeserializeOwned>(
    part: &str,
    errors: (&'static str, &'static str),
) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(errors.0))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(errors.1))
}

#[cfg(test)]
mod tests;
