//! A stand-in for kube-apiserver's SubjectAccessReview endpoint: HTTPS on 127.0.0.1:0 with a
//! test CA, answering `POST /apis/authorization.k8s.io/v1/subjectaccessreviews` with the JSON
//! the authorization.k8s.io/v1 API documents (`status.allowed`, `status.denied`,
//! `status.reason`). No kube-apiserver can run here, so this follows the documented wire format;
//! it records every request (headers and body) so tests can check what was asked.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dwell_e2e::certs::TestCa;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How the fake answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 201 with `status.allowed: true`.
    Allow,
    /// 201 with `status.allowed: false, denied: true` and this reason.
    Deny(String),
    /// An HTTP status with a `Status` body.
    Fail(u16),
    /// Answers `Allow` after this long.
    Slow(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request path.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: String,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// The running fake.
pub struct FakeSar {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA its certificate chains to (PEM).
    pub ca_pem: String,
    answer: Arc<Mutex<Answer>>,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSar {
    /// Starts answering `answer`.
    pub async fn start(answer: Answer) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = TestCa::new("fake-kube-ca");
        let cert = ca.issue(&["127.0.0.1"]);
        let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let answer = Arc::new(Mutex::new(answer));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (a, r) = (answer.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, a, r) = (acceptor.clone(), a.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let (a, r) = (a.clone(), r.clone());
                        async move { Ok::<_, hyper::Error>(respond(req, &a, &r).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            url,
            ca_pem: ca.pem().to_owned(),
            answer,
            received,
            task,
        }
    }

    /// Answers `answer` from now on.
    pub fn set(&self, answer: Answer) {
        *self.answer.lock().expect("lock") = answer;
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

async fn respond(
    req: hyper::Request<hyper::body::Incoming>,
    answer: &Mutex<Answer>,
    received: &Mutex<Vec<Received>>,
) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    received.lock().expect("lock").push(Received {
        path,
        authorization,
        body: body.clone(),
    });
    let answer = answer.lock().expect("lock").clone();
    let status = match answer {
        Answer::Allow => serde_json::json!({"allowed": true}),
        Answer::Deny(reason) => {
            serde_json::json!({"allowed": false, "denied": true, "reason": reason})
        }
        Answer::Fail(code) => {
            let status = serde_json::json!({"kind": "Status", "apiVersion": "v1",
                "status": "Failure", "message": "etcdserver: request timed out", "code": code});
            return hyper::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(status.to_string())))
                .expect("response");
        }
        Answer::Slow(pause) => {
            tokio::time::sleep(pause).await;
            serde_json::json!({"allowed": true})
        }
    };
    // kube-apiserver answers a create with 201 and the review, its spec echoed.
    let review = serde_json::json!({
        "kind": "SubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": body.get("spec").cloned().unwrap_or_default(),
        "status": status,
    });
    hyper::Response::builder()
        .status(201)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(review.to_string())))
        .expect("response")
}
