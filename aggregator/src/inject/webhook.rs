//! The mutating admission webhook's logic, without HTTP: an `admission.k8s.io/v1`
//! `AdmissionReview` in, the `AdmissionReview` answer out. Every answer allows the pod
//! (`failurePolicy: Ignore` in spirit even when the API server would not apply it: a dwell
//! problem never blocks a pod): with a base64 `JSONPatch` from the same injector as `inject` when
//! it injects, without a patch otherwise, with a warning when the pod asked for dwell but cannot
//! get it. A review that is malformed, too large or not about creating a Pod gets the same
//! allowed answer (its `uid` echoed when it can be found), never an error status the API server
//! would retry. The webhook injects every pod it is sent except those annotated
//! `dwell.io/inject: disabled`: the MutatingWebhookConfiguration's selectors choose the pods.

use base64::Engine as _;
use serde_json::json;

use super::node::{self, Node};
use super::{InjectSettings, Outcome, Selection, Skip, patch};

/// Largest review read: a Pod is far smaller (etcd's limit is 1.5 MiB per object, and pods
/// near it are pathological); larger bodies are answered without injection.
pub const MAX_REVIEW_BYTES: usize = 1 << 20;
/// How far into an oversized body the request's `uid` is looked for (the API server writes it
/// first).
const UID_SCAN_BYTES: usize = 4096;
/// The API version this webhook speaks (`admissionReviewVersions: [v1]`).
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// What the webhook decided, for the metric label and the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The pod is injected (the answer carries a patch).
    Injected,
    /// Left alone by the injector's rules.
    Skipped(Skip),
    /// The pod asked for dwell, but its annotations cannot be honoured (the reason).
    Refused(String),
    /// Not a well-formed `admission.k8s.io/v1` review (what is wrong).
    Malformed(String),
    /// A review, but not of a Pod being created.
    NotPodCreate,
    /// Larger than [`MAX_REVIEW_BYTES`].
    Oversized,
}

impl Decision {
    /// The bounded `result` label of `dwell_webhook_reviews_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Injected => "injected",
            Decision::Skipped(skip) => skip.as_str(),
            Decision::Refused(_) => "refused",
            Decision::Malformed(_) => "malformed",
            Decision::NotPodCreate => "not_pod_create",
            Decision::Oversized => "oversized",
        }
    }
}

/// The answer to one review.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The request's uid ("" when none could be read).
    pub uid: String,
    /// What was decided.
    pub decision: Decision,
    /// The JSON Patch, when injected (the body carries it base64-encoded).
    pub patch: Option<Vec<patch::Op>>,
    /// The `AdmissionReview` JSON to send back (HTTP 200).
    pub body: Vec<u8>,
}

/// Answers one review body (at most [`MAX_REVIEW_BYTES`]; see [`oversized`] otherwise).
pub fn review(body: &[u8], settings: &InjectSettings) -> Answer {
    let parsed = match node::from_json(body) {
        Ok(n) => n,
        Err(e) => return answer(String::new(), Decision::Malformed(e.to_string()), None),
    };
    let uid = parsed
        .at(&["request", "uid"])
        .and_then(Node::as_str)
        .unwrap_or("")
        .to_owned();
    if let Err(reason) = check(&parsed, &uid) {
        return answer(uid, Decision::Malformed(reason), None);
    }
    let Some(request) = parsed.get("request") else {
        return answer(uid, Decision::Malformed("no request".into()), None);
    };
    let kind = |field: &str| request.at(&["kind", field]).and_then(Node::as_str);
    let is_pod =
        kind("group") == Some("") && kind("version") == Some("v1") && kind("kind") == Some("Pod");
    let create = request.str_at("operation") == Some("CREATE");
    let sub_resource = request.str_at("subResource").is_some_and(|s| !s.is_empty());
    let Some(pod) = request.get("object").filter(|o| o.as_map().is_some()) else {
        return answer(uid, Decision::NotPodCreate, None);
    };
    if !is_pod || !create || sub_resource {
        return answer(uid, Decision::NotPodCreate, None);
    }
    match super::inject(pod, settings, Selection::All) {
        Ok(Outcome::Skipped(skip)) => answer(uid, Decision::Skipped(skip), None),
        Ok(Outcome::Injected(injected)) => {
            let ops = patch::diff(pod, &injected);
            answer(uid, Decision::Injected, Some(ops))
        }
        Err(e) => answer(uid, Decision::Refused(e.to_string()), None),
    }
}

/// Answers a body that was cut off at [`MAX_REVIEW_BYTES`]: `prefix` is what was read.
pub fn oversized(prefix: &[u8]) -> Answer {
    answer(scan_uid(prefix), Decision::Oversized, None)
}

/// The envelope's fields: apiVersion, kind, a request with a uid.
fn check(review: &Node, uid: &str) -> Result<(), String> {
    if review.as_map().is_none() {
        return Err("not a JSON object".into());
    }
    if review.str_at("apiVersion") != Some(API_VERSION) {
        return Err(format!("apiVersion is not {API_VERSION}"));
    }
    if review.str_at("kind") != Some("AdmissionReview") {
        return Err("kind is not AdmissionReview".into());
    }
    if uid.is_empty() || uid.len() > 256 {
        return Err("request.uid is missing or longer than 256 bytes".into());
    }
    Ok(())
}

/// The first `"uid": "…"` in the first bytes of a body too large to parse.
fn scan_uid(prefix: &[u8]) -> String {
    let head = &prefix[..prefix.len().min(UID_SCAN_BYTES)];
    let text = String::from_utf8_lossy(head);
    let Some(at) = text.find("\"uid\"") else {
        return String::new();
    };
    let rest = text[at + 5..].trim_start();
    let Some(rest) = rest.strip_prefix(':') else {
        return String::new();
    };
    let Some(rest) = rest.trim_start().strip_prefix('"') else {
        return String::new();
    };
    match rest.find('"') {
        Some(end) if end <= 256 && !rest[..end].contains('\\') => rest[..end].to_owned(),
        _ => String::new(),
    }
}

/// The `AdmissionReview` answer: always allowed.
fn answer(uid: String, decision: Decision, ops: Option<Vec<patch::Op>>) -> Answer {
    let mut response = json!({ "uid": uid, "allowed": true });
    if let Some(ops) = ops.as_ref().filter(|ops| !ops.is_empty())
        && let Ok(bytes) = serde_json::to_vec(ops)
    {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    if let Decision::Refused(reason) = &decision {
        // Shown to whoever created the pod (kubectl prints warnings); kept short.
        let mut warning = format!("dwell-sidecar not injected: {reason}");
        if warning.len() > 512 {
            let mut cut = 509;
            while !warning.is_char_boundary(cut) {
                cut -= 1;
            }
            warning.truncate(cut);
            warning.push_str("...");
        }
        response["warnings"] = json!([warning]);
    }
    let body = serde_json::to_vec(&json!({
        "apiVersion": API_VERSION,
        "kind": "AdmissionReview",
        "response": response,
    }))
    .unwrap_or_default();
    Answer {
        uid,
        decision,
        patch: ops,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_is_found_at_the_start_of_an_oversized_body() {
        let body = br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid" : "705ab4f5-6393-11e8-b7cc-42010a800002","kind":"#;
        assert_eq!(scan_uid(body), "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(scan_uid(b"{\"request\":{\"object\":{}}"), "");
        assert_eq!(scan_uid(b"\"uid\": 5"), "");
        let a = oversized(body);
        assert_eq!(a.decision, Decision::Oversized);
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(v["response"]["allowed"], true);
    }

    #[test]
    fn long_warnings_are_cut_on_a_character_boundary() {
        let a = answer("u".into(), Decision::Refused("é".repeat(400)), None);
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        let w = v["response"]["warnings"][0].as_str().unwrap();
        assert!(w.len() <= 512 && w.ends_with("..."), "{}", w.len());
    }
}
