//! What a request asks to do, in the terms a Kubernetes authorizer decides on: kube-apiserver's
//! `RequestInfoFactory` (k8s.io/apiserver `pkg/endpoints/request/requestinfo.go`) applied to our
//! paths, and the `Forbidden` message its `responsewriters.Forbidden` writes.
//!
//! `/apis/{group}/{version}/…` with at least one segment after the version is a resource request:
//! `namespaces/{ns}/` moves into the namespace, then `resource/name/subresource`; no name turns
//! `get` into `list`. So the HPA's Pods read is `get` `pods/<metric>` named `*`, a namespace's
//! metric `get` `metrics` named `<metric>`, and an external read `list` `<metric>`. Everything
//! else (`/apis`, `/apis/{g}`, `/apis/{g}/{v}`, `/openapi/…`, `/metrics`) is a non-resource
//! request on its path.
use percent_encoding::percent_decode_str;

/// Namespace subresources that stay on the `namespaces` resource (requestinfo.go).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// A resource request's attributes (`resourceAttributes` of a SubjectAccessReview).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceAttributes {
    /// The namespace (empty: cluster scope).
    pub namespace: String,
    /// The verb (`get`, `list`, …).
    pub verb: &'static str,
    /// The API group, e.g. `custom.metrics.k8s.io`.
    pub group: String,
    /// The API version, e.g. `v1beta2`.
    pub version: String,
    /// The resource, e.g. `pods` (the GroupResource segment as sent, e.g. `deployments.apps`).
    pub resource: String,
    /// The subresource (the metric of a custom-metrics object path), or empty.
    pub subresource: String,
    /// The object name (`*` for a selector read), or empty.
    pub name: String,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A resource request.
    Resource(ResourceAttributes),
    /// A non-resource request: its path and verb (the lower-case HTTP method).
    NonResource {
        /// The request path.
        path: String,
        /// The verb.
        verb: &'static str,
    },
}

fn verb_of(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "unknown",
    }
}

fn non_resource_verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "get",
        http::Method::HEAD => "head",
        http::Method::POST => "post",
        http::Method::PUT => "put",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "unknown",
    }
}

impl Target {
    /// The attributes of `method` on the raw (percent-encoded) `path`, as kube-apiserver builds
    /// them (segments are decoded, as Go's `URL.Path` is).
    pub fn of(method: &http::Method, path: &str) -> Self {
        let non_resource = || Target::NonResource {
            path: path.to_owned(),
            verb: non_resource_verb(method),
        };
        let Some(rest) = path.strip_prefix("/apis/") else {
            return non_resource();
        };
        let decoded: Option<Vec<String>> = rest
            .trim_end_matches('/')
            .split('/')
            .map(|s| {
                percent_decode_str(s)
                    .decode_utf8()
                    .ok()
                    .map(|s| s.into_owned())
            })
            .collect();
        let Some(parts) = decoded else {
            return non_resource();
        };
        // Group, version and at least one more segment, else discovery (non-resource).
        let [group, version, rest @ ..] = parts.as_slice() else {
            return non_resource();
        };
        if rest.is_empty() {
            return non_resource();
        }
        let mut namespace = String::new();
        let mut parts = rest;
        if parts[0] == "namespaces" && parts.len() > 1 {
            namespace = parts[1].clone();
            if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2].as_str()) {
                parts = &parts[2..];
            }
        }
        let at = |i: usize| parts.get(i).cloned().unwrap_or_default();
        let (resource, name, subresource) = (at(0), at(1), at(2));
        let mut verb = verb_of(method);
        if name.is_empty() {
            verb = match verb {
                "get" => "list",
                "delete" => "deletecollection",
                v => v,
            };
        }
        Target::Resource(ResourceAttributes {
            namespace,
            verb,
            group: group.clone(),
            version: version.clone(),
            resource,
            subresource,
            name,
        })
    }
}

/// kube-apiserver's 403 message for `user` denied `target` (responsewriters.Forbidden +
/// apierrors.NewForbidden): `pods.custom.metrics.k8s.io "*" is forbidden: User "u" cannot get
/// resource "pods/m" in API group "custom.metrics.k8s.io" in the namespace "ns"`, with
/// `: reason` appended when the authorizer gave one.
pub fn forbidden_message(user: &str, target: &Target, reason: &str) -> String {
    let (prefix, denial) = match target {
        Target::NonResource { path, verb } => (
            "forbidden".to_owned(),
            format!("User {user:?} cannot {verb} path {path:?}"),
        ),
        Target::Resource(r) => {
            let resource = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_owned()
            } else {
                format!("in the namespace {:?}", r.namespace)
            };
            let denial = format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                r.verb, r.group
            );
            let qualified = if r.group.is_empty() {
                r.resource.clone()
            } else {
                format!("{}.{}", r.resource, r.group)
            };
            let prefix = if r.name.is_empty() {
                format!("{qualified} is forbidden")
            } else {
                format!("{qualified} {:?} is forbidden", r.name)
            };
            (prefix, denial)
        }
    };
    if reason.is_empty() {
        format!("{prefix}: {denial}")
    } else {
        format!("{prefix}: {denial}: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn resource(path: &str) -> ResourceAttributes {
        match Target::of(&Method::GET, path) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn metric_paths_map_as_kube_apiserver_maps_them() {
        let r = resource("/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/dwell");
        assert_eq!(
            (r.verb, r.namespace.as_str(), r.resource.as_str()),
            ("get", "shop", "pods")
        );
        assert_eq!((r.name.as_str(), r.subresource.as_str()), ("*", "dwell"));
        assert_eq!(
            (r.group.as_str(), r.version.as_str()),
            ("custom.metrics.k8s.io", "v1beta2")
        );
        let r = resource("/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/metrics/dwell");
        assert_eq!(
            (
                r.verb,
                r.resource.as_str(),
                r.name.as_str(),
                r.subresource.as_str()
            ),
            ("get", "metrics", "dwell", "")
        );
        let r = resource("/apis/custom.metrics.k8s.io/v1beta1/nodes/n1/temp");
        assert_eq!((r.namespace.as_str(), r.resource.as_str()), ("", "nodes"));
        let r = resource("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_dwell");
        assert_eq!(
            (r.verb, r.resource.as_str(), r.name.as_str()),
            ("list", "queue_dwell", "")
        );
    }

    #[test]
    fn discovery_and_the_rest_are_non_resource() {
        for path in [
            "/apis",
            "/apis/custom.metrics.k8s.io",
            "/apis/custom.metrics.k8s.io/v1beta2",
            "/apis/custom.metrics.k8s.io/v1beta2/",
            "/openapi/v2",
            "/metrics",
        ] {
            assert_eq!(
                Target::of(&Method::GET, path),
                Target::NonResource {
                    path: path.into(),
                    verb: "get"
                }
            );
        }
    }

    #[test]
    fn the_message_is_kube_apiservers() {
        let t = Target::of(
            &Method::GET,
            "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/%2A/queue_dwell_seconds",
        );
        assert_eq!(
            forbidden_message("system:serviceaccount:default:someone", &t, ""),
            "pods.custom.metrics.k8s.io \"*\" is forbidden: User \
             \"system:serviceaccount:default:someone\" cannot get resource \
             \"pods/queue_dwell_seconds\" in API group \"custom.metrics.k8s.io\" in the \
             namespace \"default\""
        );
        let t = Target::of(
            &Method::GET,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/m",
        );
        assert_eq!(
            forbidden_message("bob", &t, "no rule"),
            "m.external.metrics.k8s.io is forbidden: User \"bob\" cannot list resource \"m\" in \
             API group \"external.metrics.k8s.io\" in the namespace \"ns\": no rule"
        );
        let t = Target::of(&Method::GET, "/metrics");
        assert_eq!(
            forbidden_message("bob", &t, ""),
            "forbidden: User \"bob\" cannot get path \"/metrics\""
        );
    }
}
