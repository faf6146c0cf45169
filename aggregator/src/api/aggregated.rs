//! Aggregated discovery: `/apis` as `apidiscovery.k8s.io` v2 or v2beta1
//! `APIGroupDiscoveryList` when the Accept header asks for it, with an `ETag` and 304 on
//! `If-None-Match`, and 406 when the Accept header lists nothing we can produce. kube-apiserver
//! (1.26+) fetches this every minute; a wrong answer marks our group-versions "Stale".
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::discovery::{Served, api_group_list};
use super::path::{CUSTOM_GROUP, CUSTOM_VERSIONS, EXTERNAL_GROUP, EXTERNAL_VERSION};
use super::status::ApiError;
use super::types::{APPLICATION_JSON, Empty};

/// The exact Content-Type of a v2 document.
pub const V2_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// The exact Content-Type of a v2beta1 document.
pub const V2BETA1_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which `/apis` document an Accept header selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// `apidiscovery.k8s.io/v2`.
    V2,
    /// `apidiscovery.k8s.io/v2beta1` (clusters 1.27–1.29).
    V2Beta1,
    /// The legacy `APIGroupList`.
    Legacy,
}

/// Picks the first acceptable representation, honouring `q` (highest first, then header order).
/// `None` means 406. A missing or empty header means legacy JSON.
pub fn negotiate(accept: Option<&str>) -> Option<Representation> {
    let accept = accept.map(str::trim).unwrap_or("");
    if accept.is_empty() {
        return Some(Representation::Legacy);
    }
    let mut ranges: Vec<(f32, Option<Representation>)> = Vec::new();
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let (mut q, mut g, mut v, mut as_) = (1.0f32, None, None, None);
        for param in parts {
            let Some((k, val)) = param.split_once('=') else {
                continue;
            };
            let val = val.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = val.parse().unwrap_or(0.0),
                "g" => g = Some(val.to_string()),
                "v" => v = Some(val.to_string()),
                "as" => as_ = Some(val.to_string()),
                _ => {}
            }
        }
        if q <= 0.0 || !q.is_finite() {
            continue;
        }
        let choice = match (media.as_str(), g.as_deref()) {
            ("application/json", Some("apidiscovery.k8s.io")) => {
                match (v.as_deref(), as_.as_deref()) {
                    (Some("v2"), Some("APIGroupDiscoveryList")) => Some(Representation::V2),
                    (Some("v2beta1"), Some("APIGroupDiscoveryList")) => {
                        Some(Representation::V2Beta1)
                    }
                    _ => None,
                }
            }
            ("application/json" | "application/*" | "*/*", None) => Some(Representation::Legacy),
            _ => None,
        };
        ranges.push((q, choice));
    }
    // Stable sort keeps header order among equal q.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges.into_iter().find_map(|(_, choice)| choice)
}

#[derive(Debug, Serialize)]
struct ResponseKind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

fn response_kind(kind: &'static str) -> ResponseKind {
    ResponseKind {
        group: "",
        version: "",
        kind,
    }
}

#[derive(Debug, Serialize)]
struct Subresource {
    subresource: String,
    #[serde(rename = "responseKind")]
    response_kind: ResponseKind,
    verbs: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
struct Resource {
    resource: String,
    #[serde(rename = "responseKind")]
    response_kind: ResponseKind,
    scope: &'static str,
    #[serde(rename = "singularResource")]
    singular_resource: &'static str,
    verbs: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subresources: Vec<Subresource>,
}

#[derive(Debug, Serialize)]
struct Version {
    version: &'static str,
    resources: Vec<Resource>,
    freshness: &'static str,
}

#[derive(Debug, Serialize)]
struct Name {
    name: &'static str,
}

#[derive(Debug, Serialize)]
struct Group {
    metadata: Name,
    versions: Vec<Version>,
}

#[derive(Debug, Serialize)]
struct GroupDiscoveryList {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Empty,
    items: Vec<Group>,
}

fn scope(namespaced: bool) -> &'static str {
    if namespaced { "Namespaced" } else { "Cluster" }
}

/// Custom resources grouped by parent, as kube-aggregator converts `parent/metric` entries:
/// parents have an empty `responseKind` and no verbs, metrics are `get`-able subresources.
fn custom_resources(served: &Served) -> Vec<Resource> {
    let mut out: Vec<Resource> = Vec::new();
    for entry in &served.custom {
        let Some(metric) = &entry.metric else {
            out.push(Resource {
                resource: entry.parent.clone(),
                response_kind: response_kind("MetricValueList"),
                scope: scope(entry.namespaced),
                singular_resource: "",
                verbs: vec!["get"],
                subresources: Vec::new(),
            });
            continue;
        };
        let sub = Subresource {
            subresource: metric.clone(),
            response_kind: response_kind("MetricValueList"),
            verbs: vec!["get"],
        };
        match out.iter_mut().find(|r| r.resource == entry.parent) {
            Some(parent) => parent.subresources.push(sub),
            None => out.push(Resource {
                resource: entry.parent.clone(),
                response_kind: response_kind(""),
                scope: scope(entry.namespaced),
                singular_resource: "",
                verbs: Vec::new(),
                subresources: vec![sub],
            }),
        }
    }
    out
}

fn document(served: &Served, api_version: &'static str) -> GroupDiscoveryList {
    let custom_versions = CUSTOM_VERSIONS
        .iter()
        .map(|version| Version {
            version,
            resources: custom_resources(served),
            freshness: "Current",
        })
        .collect();
    let external = served
        .external
        .iter()
        .map(|name| Resource {
            resource: name.clone(),
            response_kind: response_kind("ExternalMetricValueList"),
            scope: "Namespaced",
            singular_resource: "",
            verbs: vec!["get"],
            subresources: Vec::new(),
        })
        .collect();
    GroupDiscoveryList {
        kind: "APIGroupDiscoveryList",
        api_version,
        metadata: Empty {},
        items: vec![
            Group {
                metadata: Name { name: CUSTOM_GROUP },
                versions: custom_versions,
            },
            Group {
                metadata: Name {
                    name: EXTERNAL_GROUP,
                },
                versions: vec![Version {
                    version: EXTERNAL_VERSION,
                    resources: external,
                    freshness: "Current",
                }],
            },
        ],
    }
}

/// A strong ETag over a body.
pub fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether `If-None-Match` names `etag` (or `*`); weak validators compare equal too.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// A body with `Content-Type`, `ETag` and `Vary: Accept`, or 304 when the client has it.
pub fn cached(headers: &HeaderMap, body: Vec<u8>, content_type: &'static str) -> Response {
    let tag = etag(&body);
    let mut response = if not_modified(headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(value) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, value);
    }
    response
}

/// `GET /apis`.
pub fn apis(headers: &HeaderMap, served: &Served) -> Result<Response, ApiError> {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let chosen = negotiate(Some(&accept)).ok_or_else(|| {
        ApiError::NotAcceptable(format!(
            "only the following media types are accepted: {APPLICATION_JSON}, \
             {V2_CONTENT_TYPE}, {V2BETA1_CONTENT_TYPE}"
        ))
    })?;
    let (body, content_type) = match chosen {
        Representation::V2 => (
            serde_json::to_vec(&document(served, "apidiscovery.k8s.io/v2")),
            V2_CONTENT_TYPE,
        ),
        Representation::V2Beta1 => (
            serde_json::to_vec(&document(served, "apidiscovery.k8s.io/v2beta1")),
            V2BETA1_CONTENT_TYPE,
        ),
        Representation::Legacy => (serde_json::to_vec(&api_group_list()), APPLICATION_JSON),
    };
    let body = body.map_err(|_| ApiError::Internal("cannot serialize discovery".into()))?;
    Ok(cached(headers, body, content_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Representation::*;

    #[test]
    fn negotiation_follows_kube_aggregator_accept_headers() {
        let v130 = format!("{V2_CONTENT_TYPE},{V2BETA1_CONTENT_TYPE}");
        assert_eq!(negotiate(Some(&v130)), Some(V2));
        assert_eq!(negotiate(Some(V2BETA1_CONTENT_TYPE)), Some(V2Beta1));
        assert_eq!(negotiate(Some("application/json, */*")), Some(Legacy));
        assert_eq!(negotiate(None), Some(Legacy));
        assert_eq!(
            negotiate(Some(
                "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"
            )),
            None
        );
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")), None);
        assert_eq!(negotiate(Some("text/html")), None);
        assert_eq!(
            negotiate(Some(&format!("application/json;q=0.5, {V2_CONTENT_TYPE}"))),
            Some(V2)
        );
        assert_eq!(negotiate(Some("application/json;q=0")), None);
        assert_eq!(
            negotiate(Some(
                "application/json; as=APIGroupDiscoveryList; v=v2; g=apidiscovery.k8s.io"
            )),
            Some(V2)
        );
    }

    #[test]
    fn if_none_match_forms() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(not_modified(&headers, "\"abc\""));
        assert!(!not_modified(&headers, "\"abd\""));
    }
}
