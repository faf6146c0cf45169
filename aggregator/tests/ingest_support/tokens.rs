//! Real signed tokens for the ingest-authentication tests, shaped as Kubernetes' projected
//! service-account tokens (`iss`, `aud`, `exp`, `iat`, `nbf`, `kubernetes.io.{namespace, pod,
//! serviceaccount}`). Keys are made here and never leave the test's temporary directory: ES256
//! with ring (P-256 PKCS#8), RS256 from a 2048-bit key the `openssl` CLI generates (ring signs
//! with it but cannot generate RSA keys).
#![allow(dead_code)]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

/// The issuer the tests configure.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

enum Key {
    Rsa { pair: RsaKeyPair, n: Vec<u8> },
    Ec(EcdsaKeyPair),
}

/// A signing key with its `kid`.
pub struct Signer {
    key: Key,
    /// The key id tokens name.
    pub kid: String,
    rng: SystemRandom,
}

impl Signer {
    /// A fresh P-256 key.
    pub fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("P-256 pair");
        Self {
            key: Key::Ec(pair),
            kid: kid.into(),
            rng,
        }
    }

    /// A fresh 2048-bit RSA key, made by `openssl` in `dir`.
    pub fn rs256(kid: &str, dir: &Path) -> Self {
        let pem = dir.join(format!("{kid}.pem"));
        let der = dir.join(format!("{kid}.der"));
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("the openssl CLI (Debian: package openssl) makes the test's RSA key");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
            out.stdout
        };
        let p = pem.display().to_string();
        let d = der.display().to_string();
        run(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &p,
        ]);
        run(&["pkey", "-in", &p, "-outform", "DER", "-out", &d]);
        let modulus = run(&["rsa", "-in", &p, "-noout", "-modulus"]);
        let hex = String::from_utf8(modulus).expect("hex");
        let hex = hex.trim().trim_start_matches("Modulus=");
        let n = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex byte"))
            .collect();
        // OpenSSL 3.0 writes PKCS#1 here, later versions PKCS#8: ring reads either.
        let bytes = std::fs::read(&der).expect("key");
        let pair = RsaKeyPair::from_pkcs8(&bytes)
            .or_else(|_| RsaKeyPair::from_der(&bytes))
            .expect("RSA pair");
        for f in [pem, der] {
            let _ = std::fs::remove_file(f);
        }
        Self {
            key: Key::Rsa { pair, n },
            kid: kid.into(),
            rng: SystemRandom::new(),
        }
    }

    /// `RS256` or `ES256`.
    pub fn alg(&self) -> &'static str {
        match self.key {
            Key::Rsa { .. } => "RS256",
            Key::Ec(_) => "ES256",
        }
    }

    /// The public key as a JWK, as `/openid/v1/jwks` lists it.
    pub fn jwk(&self) -> Value {
        match &self.key {
            Key::Rsa { n, .. } => json!({"use": "sig", "kty": "RSA", "kid": self.kid,
                "alg": "RS256", "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"}),
            Key::Ec(pair) => {
                let p = pair.public_key().as_ref();
                json!({"use": "sig", "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256",
                    "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])})
            }
        }
    }

    /// A JWS compact token of `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg(), "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = match &self.key {
            Key::Rsa { pair, .. } => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("RSA sign");
                sig
            }
            Key::Ec(pair) => pair
                .sign(&self.rng, input.as_bytes())
                .expect("ECDSA sign")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// A valid token for pod `ns/pod` (audience `dwell`, an hour left).
    pub fn token(&self, ns: &str, pod: &str) -> String {
        self.sign(&claims(ns, pod))
    }
}

/// Seconds since the epoch.
pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The claims of a projected token for `ns/pod`, valid for an hour.
pub fn claims(ns: &str, pod: &str) -> Value {
    let now = now_s();
    json!({
        "iss": ISSUER, "aud": ["dwell"], "exp": now + 3600, "iat": now - 5, "nbf": now - 5,
        "sub": format!("system:serviceaccount:{ns}:binder"),
        "kubernetes.io": {"namespace": ns, "pod": {"name": pod, "uid": "0c1e"},
            "serviceaccount": {"name": "binder", "uid": "5a9b"}}
    })
}

/// Writes the JWKS of `signers` to `path` atomically (as a ConfigMap swap).
pub fn write_jwks(path: &Path, signers: &[&Signer]) {
    let doc = json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()});
    write_atomically(path, doc.to_string().as_bytes());
}

/// Writes `bytes` to `path` by rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}
