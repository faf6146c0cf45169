//! Which `kind`/`apiVersion` a custom-metrics `{resource}` path segment describes, and its scope
//! (namespaced or root-scoped): the API renders `describedObject` from it and
//! [`crate::provider::CustomQuery::new`] decides a request's scope from it.
//! The segment is a GroupResource string: `pods` (core), `deployments.apps`,
//! `ingresses.networking.k8s.io`.

/// What a group-resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The GroupResource string as it appears in paths and discovery.
    pub resource: &'static str,
    /// `describedObject.kind`.
    pub kind: &'static str,
    /// `describedObject.apiVersion`: `v1` for core (never `/v1`).
    pub api_version: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

const fn kind(
    resource: &'static str,
    kind: &'static str,
    api_version: &'static str,
    namespaced: bool,
) -> Kind {
    Kind {
        resource,
        kind,
        api_version,
        namespaced,
    }
}

/// Built-in kinds an HPA can describe (and the namespace itself).
const KINDS: &[Kind] = &[
    kind("pods", "Pod", "v1", true),
    kind("services", "Service", "v1", true),
    kind("namespaces", "Namespace", "v1", false),
    kind("nodes", "Node", "v1", false),
    kind(
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        "v1",
        true,
    ),
    kind(
        "replicationcontrollers",
        "ReplicationController",
        "v1",
        true,
    ),
    kind("endpoints", "Endpoints", "v1", true),
    kind("configmaps", "ConfigMap", "v1", true),
    kind("deployments.apps", "Deployment", "apps/v1", true),
    kind("statefulsets.apps", "StatefulSet", "apps/v1", true),
    kind("replicasets.apps", "ReplicaSet", "apps/v1", true),
    kind("daemonsets.apps", "DaemonSet", "apps/v1", true),
    kind("jobs.batch", "Job", "batch/v1", true),
    kind("cronjobs.batch", "CronJob", "batch/v1", true),
    kind(
        "ingresses.networking.k8s.io",
        "Ingress",
        "networking.k8s.io/v1",
        true,
    ),
    kind(
        "horizontalpodautoscalers.autoscaling",
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
        true,
    ),
    kind(
        "poddisruptionbudgets.policy",
        "PodDisruptionBudget",
        "policy/v1",
        true,
    ),
];

/// Looks a GroupResource string up (exact, lower-case as Kubernetes sends it).
pub fn lookup(resource: &str) -> Option<Kind> {
    KINDS.iter().copied().find(|k| k.resource == resource)
}

/// Every known GroupResource, for error messages.
pub fn known() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_kinds_use_plain_v1() {
        let pod = lookup("pods").unwrap();
        assert_eq!(
            (pod.kind, pod.api_version, pod.namespaced),
            ("Pod", "v1", true)
        );
        let ns = lookup("namespaces").unwrap();
        assert!(!ns.namespaced);
        assert_eq!(lookup("deployments.apps").unwrap().api_version, "apps/v1");
        assert!(lookup("deployments").is_none());
        assert!(KINDS.iter().all(|k| !k.api_version.starts_with('/')));
    }
}
