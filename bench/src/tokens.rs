//! Ingest tokens for `dwell-loadgen --tokens`: one ES256 key made with ring, its JWKS for
//! `--ingest-jwks`, and per simulated sidecar a token shaped as Kubernetes' projected
//! service-account token for its own pod. ES256 because its verification is the dearer of the
//! two the aggregator accepts (RS256 verifies faster), so the figure is an upper bound.
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dwell_proto::v1;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;
use tonic::metadata::AsciiMetadataValue;

/// The issuer the aggregator is started with.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The signing key.
pub struct Issuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Issuer {
    /// A fresh P-256 key.
    pub fn new() -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("P-256 key generation failed"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| anyhow::anyhow!("P-256 key: {e}"))?;
        Ok(Self { key, rng })
    }

    /// Writes the JWKS (the public key) to `path`.
    pub fn write_jwks(&self, path: &Path) -> anyhow::Result<()> {
        let p = self.key.public_key().as_ref();
        let doc = json!({"keys": [{"use": "sig", "kty": "EC", "crv": "P-256", "kid": "bench",
            "alg": "ES256", "x": URL_SAFE_NO_PAD.encode(&p[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&p[33..])}]});
        std::fs::write(path, doc.to_string())?;
        Ok(())
    }

    /// `Bearer <token>` for the pod of `source`, valid for a day.
    pub fn bearer(&self, source: &v1::Source) -> anyhow::Result<AsciiMetadataValue> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let claims = json!({"iss": ISSUER, "aud": ["dwell"], "exp": now + 86_400, "iat": now,
            "nbf": now, "kubernetes.io": {"namespace": source.namespace,
            "pod": {"name": source.pod}, "serviceaccount": {"name": "bench"}}});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": "bench"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| anyhow::anyhow!("signing failed"))?;
        let value = format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Ok(value.parse()?)
    }
}
