//! With mTLS ingest, the client certificate's SPIFFE ID binds the namespace: a certificate
//! made here with rcgen carrying the URI SAN `spiffe://cluster.local/ns/shop/sa/binder` may
//! report for any pod of `shop` and for nothing else (`PERMISSION_DENIED`); one for `bank` may
//! not report for `shop`; with `--ingest-require-identity`, a certificate of the client CA
//! without a SPIFFE ID (or of another trust domain) is `UNAUTHENTICATED`. Real binary, real
//! TLS on loopback, a tonic client.
mod ingest_support;

use std::path::Path;

use dwell_e2e::aggregator::{Aggregator, Tls};
use dwell_e2e::certs::TestCa;
use dwell_proto::v1::ingest_client::IngestClient;
use ingest_support::{object_value, report};
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// The client CA, and client certificates with the URI SANs asked for.
struct ClientCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl ClientCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "workload-ca");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("CA").pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    fn client(&self, uris: &[&str]) -> Identity {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, "binder");
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().expect("uri")))
            .collect();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        Identity::from_pem(cert.pem(), key.serialize_pem())
    }
}

async fn push(agg: &Aggregator, server_ca: &TestCa, id: Identity, ns: &str, pod: &str) -> Code {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca.pem()))
        .domain_name("localhost")
        .identity(id);
    let channel = Channel::from_shared(format!("https://{}", agg.grpc_addr))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect");
    match IngestClient::new(channel)
        .push(report(ns, pod, "q", &[4_000]))
        .await
    {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spiffe_certificate_binds_its_namespace() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let server_ca = TestCa::new("grpc-server-ca");
    let (cert, key) = server_ca.issue(&["localhost"]).write_as(dir.path(), "grpc");
    let clients = ClientCa::new();
    let client_ca = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca, &clients.pem).expect("write");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - {name: dwell-max, statistic: max, window: 5m}\n",
    )
    .expect("rules");
    let flags = [
        "--grpc-tls-cert",
        &cert.display().to_string(),
        "--grpc-tls-key",
        &key.display().to_string(),
        "--grpc-client-ca",
        &client_ca.display().to_string(),
        "--config",
        &rules.display().to_string(),
        "--ingest-require-identity",
        "--ingest-spiffe-trust-domain",
        "cluster.local",
    ]
    .map(String::from);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agg = Aggregator::start_program(
        Path::new(env!("CARGO_BIN_EXE_dwell-aggregator")),
        Tls::SelfSigned,
        &flags,
    )
    .await
    .expect("aggregator starts");

    let shop = || clients.client(&["spiffe://cluster.local/ns/shop/sa/binder"]);
    let bank = clients.client(&["spiffe://cluster.local/ns/bank/sa/teller"]);
    assert_eq!(
        push(&agg, &server_ca, shop(), "shop", "binder-0").await,
        Code::Ok
    );
    assert_eq!(
        push(&agg, &server_ca, shop(), "shop", "binder-7").await,
        Code::Ok,
        "any pod of shop"
    );
    assert_eq!(
        push(&agg, &server_ca, shop(), "bank", "binder-0").await,
        Code::PermissionDenied
    );
    assert_eq!(
        push(&agg, &server_ca, bank, "shop", "binder-0").await,
        Code::PermissionDenied
    );
    for uris in [
        &[][..],
        &["spiffe://other.domain/ns/shop/sa/binder"],
        &["https://shop.example/binder"],
    ] {
        let id = clients.client(uris);
        assert_eq!(
            push(&agg, &server_ca, id, "shop", "x").await,
            Code::Unauthenticated,
            "{uris:?}"
        );
    }
    assert_eq!(object_value(&agg, "shop", "dwell-max").await, Ok(4.0));
    let metrics = agg.kubectl.get_raw("/metrics").await.stdout;
    for line in [
        "dwell_ingest_denied_reports_total{reason=\"namespace\"} 2",
        "dwell_ingest_unauthenticated_streams_total{reason=\"missing\"} 3",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}
