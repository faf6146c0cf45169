//! The memo with the real engine behind the real router: a repeated read is the router's own
//! answer, byte for byte and counted alike, until a report, the clock or a reload changes the
//! answer; refusals and missing values are never remembered; callers the router would refuse
//! are not served from it.
use std::collections::BTreeMap;

use axum::body::Body as AxumBody;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::api::auth::{AuthSettings, Authenticator};
use crate::api::{Api, router};
use crate::clock::{Clock, ManualClock};
use crate::engine::Engine;
use crate::policy::RuleSet;
use crate::telemetry::Telemetry;
use crate::tls::PeerCertificates;
use crate::window::{Ages, Observation, SourceKey, WindowStore};

const T0: i64 = 1_700_000_000_000;
const PATH: &str =
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/deployments.apps/binder/seconds";

struct Fixture {
    api: Api,
    engine: Arc<Engine>,
    store: Arc<WindowStore>,
    clock: Arc<ManualClock>,
    telemetry: Arc<Telemetry>,
}

fn fixture(auth: Option<Arc<Authenticator>>) -> Fixture {
    fixture_with(auth, None)
}

fn fixture_with(
    auth: Option<Arc<Authenticator>>,
    authz: Option<Arc<crate::api::authz::Authorizer>>,
) -> Fixture {
    let clock = ManualClock::new(T0);
    let store = Arc::new(WindowStore::new(30_000));
    let engine = Arc::new(Engine::new(
        RuleSet::default(),
        store.clone(),
        clock.clone(),
    ));
    let telemetry = Arc::new(Telemetry::new());
    let state = ApiState::new(engine.clone(), telemetry.clone())
        .with_held_answers(engine.clone())
        .with_authenticator(auth)
        .with_authorizer(authz);
    Fixture {
        api: router(state),
        engine,
        store,
        clock,
        telemetry,
    }
}

impl Fixture {
    fn report(&self, seq: u64, age_ms: i64) {
        let now = self.clock.now_ms();
        self.store.ingest(
            Observation {
                key: SourceKey {
                    namespace: "ns".into(),
                    pod: "p".into(),
                    queue: "q".into(),
                    vhost: "/".into(),
                },
                labels: BTreeMap::new(),
                peer: "test".into(),
                instance: 1,
                seq,
                ages: Ages::Samples(vec![(age_ms, now, false)]),
                queue_state: None,
                counters: None,
            },
            now,
        );
    }

    /// Through the router: status and body.
    async fn routed(&self, req: Request<AxumBody>) -> (StatusCode, Bytes) {
        let response = self
            .api
            .router()
            .clone()
            .oneshot(req)
            .await
            .expect("infallible");
        let status = response.status();
        (
            status,
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes(),
        )
    }

    /// From the memo, if it answers.
    async fn remembered(&self, req: &Request<AxumBody>) -> Option<(StatusCode, Bytes)> {
        let response = self.api.remembered(req)?;
        let status = response.status();
        Some((
            status,
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes(),
        ))
    }
}

fn get(path: &str) -> Request<AxumBody> {
    Request::get(path).body(AxumBody::empty()).expect("request")
}

#[tokio::test]
async fn repeated_reads_are_the_routers_answer_until_it_changes() {
    let f = fixture(None);
    f.report(1, 3_000);
    assert!(
        f.remembered(&get(PATH)).await.is_none(),
        "nothing remembered yet"
    );
    let first = f.routed(get(PATH)).await;
    assert_eq!(first.0, StatusCode::OK);
    assert!(
        std::str::from_utf8(&first.1)
            .expect("utf-8")
            .contains(r#""value":"3""#)
    );
    f.clock.advance(1_000);
    assert_eq!(f.remembered(&get(PATH)).await, Some(first.clone()));
    assert_eq!(f.routed(get(PATH)).await, first, "the router agrees");
    let counted = f.telemetry.encode();
    assert!(
        counted.contains(r#"dwell_http_requests_total{route="custom_object",code="200"} 3"#),
        "{counted}"
    );
    // Another query string is another request.
    assert!(
        f.remembered(&get(&format!("{PATH}?pretty=1")))
            .await
            .is_none()
    );
    // A report changes the answer: the memo lets go, the router answers anew.
    f.report(2, 9_000);
    assert!(f.remembered(&get(PATH)).await.is_none());
    let second = f.routed(get(PATH)).await;
    assert!(
        std::str::from_utf8(&second.1)
            .expect("utf-8")
            .contains(r#""value":"9""#)
    );
    assert_eq!(f.remembered(&get(PATH)).await, Some(second));
    // So does a reload, and the clock: once the ages leave the window there is no value, and a
    // 404 is never remembered.
    f.engine.set_rules(RuleSet::default());
    assert!(f.remembered(&get(PATH)).await.is_none());
    assert_eq!(f.routed(get(PATH)).await.0, StatusCode::OK);
    assert!(f.remembered(&get(PATH)).await.is_some());
    f.clock.advance(40_000);
    assert!(f.remembered(&get(PATH)).await.is_none());
    assert_eq!(f.routed(get(PATH)).await.0, StatusCode::NOT_FOUND);
    assert!(f.remembered(&get(PATH)).await.is_none());
}

#[tokio::test]
async fn callers_the_router_would_refuse_are_not_served_from_it() {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ca");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca_pem = params.self_signed(&ca_key).expect("ca").pem();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "hpa");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = leaf
        .signed_by(&leaf_key, &issuer)
        .expect("leaf")
        .der()
        .clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write");
    let auth = Authenticator::new(&AuthSettings {
        client_ca: Some(ca_file),
        ..AuthSettings::default()
    })
    .expect("authenticator");
    let f = fixture(auth.map(Arc::new));
    f.report(1, 3_000);
    let with_cert = || {
        let mut req = get(PATH);
        req.extensions_mut()
            .insert(PeerCertificates(Arc::new(vec![leaf.clone()])));
        req
    };
    assert_eq!(f.routed(get(PATH)).await.0, StatusCode::UNAUTHORIZED);
    assert!(
        f.remembered(&with_cert()).await.is_none(),
        "a 401 is not remembered"
    );
    let ok = f.routed(with_cert()).await;
    assert_eq!(ok.0, StatusCode::OK);
    assert_eq!(f.remembered(&with_cert()).await, Some(ok));
    assert!(
        f.remembered(&get(PATH)).await.is_none(),
        "no certificate: the router's 401"
    );
}

/// A client CA written to `dir`, and client-certificate chains (DER) it signs by CN.
fn client_ca(dir: &std::path::Path, cns: &[&str]) -> (std::path::PathBuf, Vec<PeerCertificates>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ca");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca_pem = params.self_signed(&ca_key).expect("ca").pem();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let chains = cns
        .iter()
        .map(|cn| {
            let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            leaf.distinguished_name.push(rcgen::DnType::CommonName, *cn);
            leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let key = rcgen::KeyPair::generate().expect("key");
            let der = leaf.signed_by(&key, &issuer).expect("leaf").der().clone();
            PeerCertificates(Arc::new(vec![der]))
        })
        .collect();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write");
    (ca_file, chains)
}

/// An allowed caller warms the memo; a denied caller asking the same path then gets the
/// router's 403, never the remembered value (the memo authorizes exactly as the router does).
#[tokio::test]
async fn a_denied_caller_never_gets_a_remembered_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_file, chains) = client_ca(dir.path(), &["hpa", "mallory"]);
    let auth = Authenticator::new(&AuthSettings {
        client_ca: Some(ca_file),
        ..AuthSettings::default()
    })
    .expect("authenticator");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "allow:\n  - users: [hpa]\n    namespaces: [ns]\n").expect("write");
    let authz = crate::api::authz::Authorizer::new(
        &crate::api::authz::AuthzSettings {
            policy: Some(policy),
            ..Default::default()
        },
        ManualClock::new(T0),
    )
    .expect("authorizer");
    let f = fixture_with(auth.map(Arc::new), authz.map(Arc::new));
    f.report(1, 3_000);
    let as_caller = |chain: &PeerCertificates| {
        let mut req = get(PATH);
        req.extensions_mut().insert(chain.clone());
        req
    };
    let (hpa, mallory) = (&chains[0], &chains[1]);
    let ok = f.routed(as_caller(hpa)).await;
    assert_eq!(ok.0, StatusCode::OK);
    assert_eq!(f.remembered(&as_caller(hpa)).await, Some(ok), "warmed");
    assert!(
        f.remembered(&as_caller(mallory)).await.is_none(),
        "a denied caller is not served from the memo"
    );
    let (code, body) = f.routed(as_caller(mallory)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let status: serde_json::Value = serde_json::from_slice(&body).expect("Status");
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        "deployments.apps.custom.metrics.k8s.io \"binder\" is forbidden: User \"mallory\" cannot \
         get resource \"deployments.apps/seconds\" in API group \"custom.metrics.k8s.io\" in the \
         namespace \"ns\""
    );
    assert!(
        !String::from_utf8_lossy(&body).contains("\"items\""),
        "no value in the refusal"
    );
    // The allowed caller is still served from the memo afterwards.
    assert!(f.remembered(&as_caller(hpa)).await.is_some());
}
