//! Legacy discovery: `/apis` (`APIGroupList`), `/apis/{group}` (`APIGroup`) and
//! `/apis/{group}/{version}` (`APIResourceList`), built from what the provider serves.
//!
//! A resource list is never empty (a placeholder stands in when nothing is served yet) and each
//! parent resource has one scope, because kube-aggregator's conversion to aggregated discovery
//! fails the whole group-version otherwise.
use serde::Serialize;

use super::path::{CUSTOM_GROUP, CUSTOM_VERSIONS, EXTERNAL_GROUP, EXTERNAL_VERSION};
use crate::kinds;
use crate::provider::MetricInfo;

/// Placeholder listed when no custom metric is served (as the Go custom-metrics-apiserver does).
pub const CUSTOM_PLACEHOLDER: &str = "custommetrics";
/// Placeholder listed when no external metric is served.
pub const EXTERNAL_PLACEHOLDER: &str = "externalmetrics";

/// One custom-metrics discovery entry: `parent/metric`, or a bare placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomEntry {
    /// The GroupResource (`pods`, `deployments.apps`, `namespaces`) or the placeholder.
    pub parent: String,
    /// The metric (`None` for the placeholder).
    pub metric: Option<String>,
    /// The parent's scope.
    pub namespaced: bool,
}

/// What discovery lists, computed once per request from the provider's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Custom-metrics entries (same for both versions), never empty.
    pub custom: Vec<CustomEntry>,
    /// External metric names, or the placeholder; never empty.
    pub external: Vec<String>,
}

impl Served {
    /// Lists each metric under its resources (known kinds only, scope from the kind table) and
    /// under `namespaces` (root-scoped); external metrics by name.
    pub fn new(metrics: &[MetricInfo]) -> Self {
        let mut custom: Vec<CustomEntry> = Vec::new();
        let mut external: Vec<String> = Vec::new();
        for info in metrics {
            if info.external && !external.contains(&info.name) {
                external.push(info.name.clone());
            }
            if info.resources.is_empty() {
                continue;
            }
            let resources = info
                .resources
                .iter()
                .map(String::as_str)
                .chain(["namespaces"]);
            for resource in resources {
                let Some(kind) = kinds::lookup(resource) else {
                    tracing::debug!(resource, metric = %info.name, "not listing an unknown resource");
                    continue;
                };
                let entry = CustomEntry {
                    parent: kind.resource.to_string(),
                    metric: Some(info.name.clone()),
                    namespaced: kind.namespaced,
                };
                if !custom.contains(&entry) {
                    custom.push(entry);
                }
            }
        }
        if custom.is_empty() {
            custom.push(CustomEntry {
                parent: CUSTOM_PLACEHOLDER.into(),
                metric: None,
                namespaced: true,
            });
        }
        if external.is_empty() {
            external.push(EXTERNAL_PLACEHOLDER.into());
        }
        Self { custom, external }
    }
}

#[derive(Debug, Serialize)]
struct GroupVersion {
    #[serde(rename = "groupVersion")]
    group_version: String,
    version: &'static str,
}

/// `APIGroup` (also an item of `APIGroupList`, where `kind`/`apiVersion` are omitted).
#[derive(Debug, Serialize)]
pub struct ApiGroup {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(rename = "apiVersion", skip_serializing_if = "Option::is_none")]
    api_version: Option<&'static str>,
    name: &'static str,
    versions: Vec<GroupVersion>,
    #[serde(rename = "preferredVersion")]
    preferred_version: GroupVersion,
}

fn versions(group: &'static str) -> &'static [&'static str] {
    if group == CUSTOM_GROUP {
        &CUSTOM_VERSIONS
    } else {
        &[EXTERNAL_VERSION]
    }
}

/// `/apis/{group}`; `standalone` adds `kind`/`apiVersion`.
pub fn api_group(group: &'static str, standalone: bool) -> ApiGroup {
    let gv = |version: &'static str| GroupVersion {
        group_version: format!("{group}/{version}"),
        version,
    };
    let versions = versions(group);
    ApiGroup {
        kind: standalone.then_some("APIGroup"),
        api_version: standalone.then_some("v1"),
        name: group,
        versions: versions.iter().map(|v| gv(v)).collect(),
        preferred_version: gv(versions[0]),
    }
}

/// `APIGroupList` for `/apis`.
#[derive(Debug, Serialize)]
pub struct ApiGroupList {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    groups: Vec<ApiGroup>,
}

/// `/apis` (legacy form).
pub fn api_group_list() -> ApiGroupList {
    ApiGroupList {
        kind: "APIGroupList",
        api_version: "v1",
        groups: vec![
            api_group(CUSTOM_GROUP, false),
            api_group(EXTERNAL_GROUP, false),
        ],
    }
}

#[derive(Debug, Serialize)]
struct ApiResource {
    name: String,
    #[serde(rename = "singularName")]
    singular_name: &'static str,
    namespaced: bool,
    kind: &'static str,
    verbs: [&'static str; 1],
}

/// `APIResourceList` for `/apis/{group}/{version}`.
#[derive(Debug, Serialize)]
pub struct ApiResourceList {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    #[serde(rename = "groupVersion")]
    group_version: String,
    resources: Vec<ApiResource>,
}

/// The resource list of one group-version.
pub fn api_resource_list(group: &str, version: &str, served: &Served) -> ApiResourceList {
    let resources = if group == CUSTOM_GROUP {
        served
            .custom
            .iter()
            .map(|e| ApiResource {
                name: match &e.metric {
                    Some(metric) => format!("{}/{metric}", e.parent),
                    None => e.parent.clone(),
                },
                singular_name: "",
                namespaced: e.namespaced,
                kind: "MetricValueList",
                verbs: ["get"],
            })
            .collect()
    } else {
        served
            .external
            .iter()
            .map(|name| ApiResource {
                name: name.clone(),
                singular_name: "",
                namespaced: true,
                kind: "ExternalMetricValueList",
                verbs: ["get"],
            })
            .collect()
    };
    ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version: format!("{group}/{version}"),
        resources,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, resources: &[&str], external: bool) -> MetricInfo {
        MetricInfo {
            name: name.into(),
            resources: resources.iter().map(|r| r.to_string()).collect(),
            external,
        }
    }

    #[test]
    fn placeholders_when_nothing_is_served() {
        let served = Served::new(&[]);
        assert_eq!(served.custom[0].parent, CUSTOM_PLACEHOLDER);
        assert_eq!(served.external, vec![EXTERNAL_PLACEHOLDER.to_string()]);
    }

    #[test]
    fn scopes_are_consistent_and_namespaces_root_scoped() {
        let served = Served::new(&[
            info("a", &["pods", "deployments.apps", "nodes", "bogus"], true),
            info("b", &["pods", "namespaces"], false),
        ]);
        for entry in &served.custom {
            let scopes: Vec<bool> = served
                .custom
                .iter()
                .filter(|e| e.parent == entry.parent)
                .map(|e| e.namespaced)
                .collect();
            assert!(scopes.iter().all(|s| *s == entry.namespaced));
        }
        let names: Vec<String> = served
            .custom
            .iter()
            .map(|e| format!("{}/{}", e.parent, e.metric.clone().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                "pods/a",
                "deployments.apps/a",
                "nodes/a",
                "namespaces/a",
                "pods/b",
                "namespaces/b"
            ]
        );
        assert_eq!(served.external, vec!["a".to_string()]);
    }
}
