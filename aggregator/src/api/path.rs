//! Parses a raw request path under `/apis` into what it asks for. Each segment is
//! percent-decoded on its own (client-go sends `*` as `%2A`; a decoded `/` never splits a segment).
use percent_encoding::percent_decode_str;

use super::status::ApiError;

/// The custom metrics API group.
pub const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";
/// The external metrics API group.
pub const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";
/// Served custom-metrics versions, preferred first.
pub const CUSTOM_VERSIONS: [&str; 2] = ["v1beta2", "v1beta1"];
/// The served external-metrics version.
pub const EXTERNAL_VERSION: &str = "v1beta1";

/// A custom-metrics API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomVersion {
    /// `v1beta1`: `metricName`, `selector`, `window`.
    V1Beta1,
    /// `v1beta2`: `metric{name,selector}`, `windowSeconds`.
    V1Beta2,
}

impl CustomVersion {
    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            CustomVersion::V1Beta1 => "v1beta1",
            CustomVersion::V1Beta2 => "v1beta2",
        }
    }
}

/// The object part of a custom-metrics path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectName {
    /// A named object.
    Named(String),
    /// `*`: every object matching `labelSelector`.
    All,
}

/// A parsed custom-metrics value path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomPath {
    /// `None` for root-scoped paths.
    pub namespace: Option<String>,
    /// The GroupResource segment (`namespaces` for `/namespaces/{ns}/metrics/{m}`).
    pub resource: String,
    /// The object(s).
    pub object: ObjectName,
    /// The metric name.
    pub metric: String,
}

/// What a path under `/apis/` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    /// `/apis/{group}`.
    Group(&'static str),
    /// `/apis/{group}/{version}`: the APIResourceList.
    Resources(&'static str, &'static str),
    /// A custom-metrics value request.
    Custom(CustomVersion, CustomPath),
    /// `/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}`.
    External {
        /// The namespace.
        namespace: String,
        /// The metric name, lower-cased.
        metric: String,
    },
}

fn not_found(path: &str) -> ApiError {
    ApiError::NotFound(format!(
        "the server could not find the requested resource: no route for {path}"
    ))
}

fn decode(segment: &str) -> Result<String, ApiError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::BadRequest("invalid request path: not UTF-8".into()))
}

/// A DNS-1123 label (namespace names).
fn check_namespace(ns: &str) -> Result<(), ApiError> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid request path: namespace {ns:?} is not a valid DNS-1123 label"
        )))
    }
}

/// An object or metric name must be a usable path segment (as `IsValidPathSegmentName`).
fn check_segment(what: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value != "."
        && value != ".."
        && !value.contains(['/', '%'])
        && !value.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid request path: {what} {value:?} is not a valid path segment name"
        )))
    }
}

/// Parses a raw (still percent-encoded) path starting with `/apis/`.
pub fn parse(raw: &str) -> Result<ApiPath, ApiError> {
    let rest = raw.strip_prefix("/apis/").ok_or_else(|| not_found(raw))?;
    let raw_segments: Vec<&str> = rest.split('/').collect();
    if raw_segments.len() > 8 || raw_segments.iter().any(|s| s.is_empty()) {
        return Err(not_found(raw));
    }
    let segments = raw_segments
        .iter()
        .map(|s| decode(s))
        .collect::<Result<Vec<_>, _>>()?;
    let group = match segments[0].as_str() {
        CUSTOM_GROUP => CUSTOM_GROUP,
        EXTERNAL_GROUP => EXTERNAL_GROUP,
        _ => return Err(not_found(raw)),
    };
    let Some(version) = segments.get(1) else {
        return Ok(ApiPath::Group(group));
    };
    let rest: Vec<&str> = segments[2..].iter().map(String::as_str).collect();
    if group == EXTERNAL_GROUP {
        if version != EXTERNAL_VERSION {
            return Err(not_found(raw));
        }
        return match rest.as_slice() {
            [] => Ok(ApiPath::Resources(EXTERNAL_GROUP, EXTERNAL_VERSION)),
            ["namespaces", ns, metric] => {
                check_namespace(ns)?;
                check_segment("metric", metric)?;
                Ok(ApiPath::External {
                    namespace: ns.to_string(),
                    metric: metric.to_lowercase(),
                })
            }
            _ => Err(not_found(raw)),
        };
    }
    let (version, version_str) = match version.as_str() {
        "v1beta1" => (CustomVersion::V1Beta1, "v1beta1"),
        "v1beta2" => (CustomVersion::V1Beta2, "v1beta2"),
        _ => return Err(not_found(raw)),
    };
    let object = |name: &str| -> Result<ObjectName, ApiError> {
        if name == "*" {
            Ok(ObjectName::All)
        } else {
            check_segment("object name", name)?;
            Ok(ObjectName::Named(name.to_string()))
        }
    };
    let path = match rest.as_slice() {
        [] => return Ok(ApiPath::Resources(CUSTOM_GROUP, version_str)),
        ["namespaces", ns, "metrics", metric] => {
            check_namespace(ns)?;
            CustomPath {
                namespace: None,
                resource: "namespaces".into(),
                object: ObjectName::Named(ns.to_string()),
                metric: metric.to_string(),
            }
        }
        ["namespaces", ns, resource, name, metric] => {
            check_namespace(ns)?;
            CustomPath {
                namespace: Some(ns.to_string()),
                resource: resource.to_string(),
                object: object(name)?,
                metric: metric.to_string(),
            }
        }
        // Matches the root-scoped route's shape; the Go server rejects it the same way.
        ["namespaces", _, _] => {
            return Err(ApiError::BadRequest(format!(
                "invalid request path {raw}: use /namespaces/{{namespace}}/metrics/{{metric}} \
                 for a namespace's metric"
            )));
        }
        [resource, name, metric] => CustomPath {
            namespace: None,
            resource: resource.to_string(),
            object: object(name)?,
            metric: metric.to_string(),
        },
        _ => return Err(not_found(raw)),
    };
    check_segment("metric", &path.metric)?;
    Ok(ApiPath::Custom(version, path))
}

#[cfg(test)]
mod tests;
