//! The verifier against ES256 tokens signed here with a fresh ring key (RS256 end to end in
//! `tests/ingest_auth.rs`, with an RSA key made by openssl).
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::*;
use crate::identity::jwks;

const NOW: i64 = 1_800_000_000;

struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Signer {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self { key, rng }
    }

    fn jwks(&self, kid: &str) -> KeySet {
        let point = self.key.public_key().as_ref();
        let doc = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}]});
        jwks::parse(doc.to_string().as_bytes()).unwrap()
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.key.sign(&self.rng, input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn expect() -> Expectations {
    Expectations {
        issuer: "https://kubernetes.default.svc.cluster.local".into(),
        audience: "dwell".into(),
        leeway_s: 60,
    }
}

fn claims() -> Value {
    json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "aud": ["dwell"], "exp": NOW + 3600, "iat": NOW - 10, "nbf": NOW - 10,
        "sub": "system:serviceaccount:shop:binder",
        "kubernetes.io": {"namespace": "shop", "pod": {"name": "binder-0", "uid": "u"},
            "serviceaccount": {"name": "binder", "uid": "v"}}
    })
}

fn header() -> Value {
    json!({"alg": "ES256", "kid": "k1"})
}

#[test]
fn a_valid_token_names_its_pod() {
    let s = Signer::new();
    let got = verify(&s.sign(&header(), &claims()), &s.jwks("k1"), &expect(), NOW).unwrap();
    assert_eq!(
        got,
        TokenClaims {
            namespace: "shop".into(),
            pod: Some("binder-0".into()),
            service_account: Some("binder".into()),
            expires_at_s: NOW + 3600,
        }
    );
    // A string audience is as good as an array.
    let mut c = claims();
    c["aud"] = json!("dwell");
    assert!(verify(&s.sign(&header(), &c), &s.jwks("k1"), &expect(), NOW).is_ok());
}

#[test]
fn every_claim_is_checked() {
    let s = Signer::new();
    let keys = s.jwks("k1");
    let with = |field: &str, value: Value| {
        let mut c = claims();
        if value.is_null() {
            c.as_object_mut().unwrap().remove(field);
        } else {
            c[field] = value;
        }
        verify(&s.sign(&header(), &c), &keys, &expect(), NOW)
    };
    assert_eq!(with("exp", json!(NOW - 61)), Err(TokenError::Expired));
    assert!(with("exp", json!(NOW - 59)).is_ok(), "within the leeway");
    assert_eq!(with("exp", Value::Null), Err(TokenError::Claim("exp")));
    assert_eq!(with("nbf", json!(NOW + 61)), Err(TokenError::NotYetValid));
    assert_eq!(with("iat", json!(NOW + 61)), Err(TokenError::NotYetValid));
    assert_eq!(with("iss", json!("https://evil")), Err(TokenError::Issuer));
    assert_eq!(with("iss", Value::Null), Err(TokenError::Issuer));
    assert_eq!(
        with("aud", json!(["api", "vault"])),
        Err(TokenError::Audience)
    );
    assert_eq!(with("aud", json!("api")), Err(TokenError::Audience));
    assert_eq!(with("aud", Value::Null), Err(TokenError::Audience));
    assert_eq!(
        with("kubernetes.io", Value::Null),
        Err(TokenError::Claim("kubernetes.io"))
    );
    assert!(matches!(
        with("exp", json!("soon")),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn signatures_keys_and_algorithms_are_checked() {
    let s = Signer::new();
    let keys = s.jwks("k1");
    let token = s.sign(&header(), &claims());
    let check = |t: &str| verify(t, &keys, &expect(), NOW);
    // Another key under the same kid, a kid not in the set, none at all.
    assert_eq!(
        verify(&token, &Signer::new().jwks("k1"), &expect(), NOW),
        Err(TokenError::Signature)
    );
    assert_eq!(
        check(&s.sign(&json!({"alg": "ES256", "kid": "k2"}), &claims())),
        Err(TokenError::UnknownKey)
    );
    assert_eq!(
        check(&s.sign(&json!({"alg": "ES256"}), &claims())),
        Err(TokenError::UnknownKey)
    );
    for alg in ["none", "HS256", "RS512", "ES384"] {
        let t = s.sign(&json!({"alg": alg, "kid": "k1"}), &claims());
        assert_eq!(check(&t), Err(TokenError::Algorithm), "{alg}");
    }
    let t = s.sign(&json!({"alg": "RS256", "kid": "k1"}), &claims());
    assert_eq!(check(&t), Err(TokenError::AlgorithmMismatch));
    // A payload swapped for another pod's keeps the old signature: refused.
    let parts: Vec<&str> = token.split('.').collect();
    let mut other = claims();
    other["kubernetes.io"]["pod"]["name"] = json!("binder-1");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(other.to_string()),
        parts[2]
    );
    assert_eq!(check(&forged), Err(TokenError::Signature));
    for bad in ["", "a.b", "a.b.c.d", "!.!.!", &format!("{token}x=")] {
        assert!(
            matches!(
                check(bad),
                Err(TokenError::Malformed(_) | TokenError::Signature)
            ),
            "{bad}"
        );
    }
    assert_eq!(
        check(&"a".repeat(MAX_TOKEN_BYTES + 1)),
        Err(TokenError::TooLarge)
    );
}

#[test]
fn errors_never_quote_the_token() {
    let s = Signer::new();
    let token = s.sign(&header(), &claims());
    let mut c = claims();
    c["aud"] = json!("other");
    let refused = [
        verify(&token, &Signer::new().jwks("k1"), &expect(), NOW),
        verify(&s.sign(&header(), &c), &s.jwks("k1"), &expect(), NOW),
        verify(&format!("{token}."), &s.jwks("k1"), &expect(), NOW),
    ];
    let signature = token.rsplit('.').next().unwrap();
    for e in refused {
        let text = format!("{} {:?}", e.clone().unwrap_err(), e);
        assert!(
            !text.contains(&token[..20]) && !text.contains(signature),
            "{text}"
        );
    }
}
