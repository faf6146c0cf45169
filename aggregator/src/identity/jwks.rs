//! The service-account issuer's public keys: the JWK Set `kubectl get --raw /openid/v1/jwks`
//! returns (RFC 7517), read strictly into keys ring verifies with. Kubernetes publishes RSA keys
//! (`"kty": "RSA", "alg": "RS256"`) and, with an ECDSA signing key, P-256 ones (`"kty": "EC",
//! "crv": "P-256"`); each has a `kid`, which tokens name in their header. Keys for other uses
//! (`"use": "enc"`) or of other types are skipped and counted, since a set may mix them; a set
//! with no usable key at all is an error.
use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Largest JWKS document read (Kubernetes' holds one or two keys: a few KiB).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Most keys kept from one document.
pub const MAX_KEYS: usize = 64;

/// The algorithms accepted, each bound to one key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Kubernetes' default).
    Rs256,
    /// ECDSA P-256 with SHA-256, the signature as `r || s`.
    Es256,
}

impl Algorithm {
    /// The JOSE name (`RS256`, `ES256`); anything else is not accepted.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }
}

/// One verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA modulus and exponent (big-endian).
    Rsa {
        /// `n`.
        n: Vec<u8>,
        /// `e`.
        e: Vec<u8>,
    },
    /// P-256 point, uncompressed (`04 || x || y`).
    P256(Vec<u8>),
}

impl PublicKey {
    /// The one algorithm this key verifies (alg must match the key type).
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Rsa { .. } => Algorithm::Rs256,
            Self::P256(_) => Algorithm::Es256,
        }
    }

    /// Whether `signature` signs `message` under this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature;
        match self {
            Self::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            Self::P256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

/// The keys of one JWKS document, by `kid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: HashMap<String, PublicKey>,
    /// Keys of the document not kept (other use or type, no kid).
    pub skipped: usize,
}

impl KeySet {
    /// The key named `kid`.
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    /// How many keys were kept.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key was kept.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why a JWKS document cannot be used (names the problem, never key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Over [`MAX_JWKS_BYTES`].
    #[error("larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not a JWK Set.
    #[error("not a JWK Set (RFC 7517): {0}")]
    Json(String),
    /// A key that claims a supported type is broken.
    #[error("key {index} (kid {kid:?}): {problem}")]
    Key {
        /// Its position in `keys`.
        index: usize,
        /// Its kid.
        kid: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Two keys with one kid.
    #[error("kid {0:?} appears twice")]
    DuplicateKid(String),
    /// Over [`MAX_KEYS`].
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
    /// Nothing usable in it.
    #[error("no RS256 or ES256 signing key with a kid in it")]
    NoUsableKey,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// Parses a JWKS document.
pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| JwksError::Json(e.to_string()))?;
    let mut set = KeySet::default();
    for (index, jwk) in doc.keys.into_iter().enumerate() {
        let Some(kid) = jwk.kid.clone() else {
            set.skipped += 1;
            continue;
        };
        let broken = |problem| JwksError::Key {
            index,
            kid: kid.clone(),
            problem,
        };
        if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
            set.skipped += 1;
            continue;
        }
        let key = match jwk.kty.as_str() {
            "RSA" => {
                let n = field(jwk.n.as_deref()).ok_or_else(|| broken("n is not base64url"))?;
                let e = field(jwk.e.as_deref()).ok_or_else(|| broken("e is not base64url"))?;
                if n.len() < 256 {
                    return Err(broken("RSA modulus under 2048 bits"));
                }
                PublicKey::Rsa { n, e }
            }
            "EC" if jwk.crv.as_deref() == Some("P-256") => {
                let x = field(jwk.x.as_deref()).ok_or_else(|| broken("x is not base64url"))?;
                let y = field(jwk.y.as_deref()).ok_or_else(|| broken("y is not base64url"))?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(broken("P-256 coordinates must be 32 bytes each"));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicKey::P256(point)
            }
            _ => {
                set.skipped += 1;
                continue;
            }
        };
        if let Some(alg) = jwk.alg.as_deref()
            && Algorithm::from_name(alg) != Some(key.algorithm())
        {
            return Err(broken("alg does not match the key type"));
        }
        if set.keys.len() == MAX_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        if set.keys.insert(kid.clone(), key).is_some() {
            return Err(JwksError::DuplicateKid(kid));
        }
    }
    if set.keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(set)
}

fn field(text: Option<&str>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text?)
        .ok()
        .filter(|bytes| !bytes.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn reads_rsa_and_p256_and_skips_the_rest() {
        let doc = format!(
            r#"{{"keys":[
              {{"use":"sig","kty":"RSA","kid":"r","alg":"RS256","n":"{n}","e":"AQAB"}},
              {{"kty":"EC","crv":"P-256","kid":"e","x":"{c}","y":"{c}"}},
              {{"kty":"OKP","crv":"Ed25519","kid":"o","x":"AA"}},
              {{"use":"enc","kty":"RSA","kid":"enc","n":"{n}","e":"AQAB"}},
              {{"kty":"RSA","n":"{n}","e":"AQAB"}}]}}"#,
            n = b64(&[0xC5; 256]),
            c = b64(&[7; 32]),
        );
        let set = parse(doc.as_bytes()).unwrap();
        assert_eq!((set.len(), set.skipped), (2, 3));
        assert_eq!(set.get("r").unwrap().algorithm(), Algorithm::Rs256);
        let Some(PublicKey::P256(point)) = set.get("e") else {
            panic!("no P-256 key");
        };
        assert_eq!((point.len(), point[0]), (65, 4));
        assert!(set.get("o").is_none());
    }

    #[test]
    fn refuses_broken_sets() {
        let n = b64(&[0xC5; 256]);
        let cases = [
            ("not json".to_string(), "not a JWK Set"),
            (r#"{"keys":[]}"#.to_string(), "no RS256"),
            (
                format!(
                    r#"{{"keys":[{{"kty":"RSA","kid":"a","n":"{}","e":"AQAB"}}]}}"#,
                    b64(&[1; 128])
                ),
                "under 2048 bits",
            ),
            (
                format!(
                    r#"{{"keys":[{{"kty":"RSA","kid":"a","alg":"ES256","n":"{n}","e":"AQAB"}}]}}"#
                ),
                "alg does not match",
            ),
            (
                format!(
                    r#"{{"keys":[{{"kty":"RSA","kid":"a","n":"{n}","e":"AQAB"}},{{"kty":"RSA","kid":"a","n":"{n}","e":"AQAB"}}]}}"#
                ),
                "appears twice",
            ),
            (
                r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"AA","y":"AA"}]}"#.to_string(),
                "32 bytes",
            ),
            (
                r#"{"keys":[{"kty":"RSA","kid":"a","n":"!!","e":"AQAB"}]}"#.to_string(),
                "n is not base64url",
            ),
        ];
        for (doc, want) in cases {
            let e = parse(doc.as_bytes()).expect_err(&doc).to_string();
            assert!(e.contains(want), "{doc}: {e}");
        }
        assert_eq!(
            parse(&vec![b' '; MAX_JWKS_BYTES + 1]),
            Err(JwksError::TooLarge)
        );
    }
}
