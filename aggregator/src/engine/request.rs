//! The one translation from what was asked, already scoped by
//! [`CustomQuery::new`](crate::provider::CustomQuery::new), to the engine's [`Request`]. Serving
//! and `Explain` both come through here, so Explain describes exactly the request that was served.
use crate::provider::{CustomQuery, ExternalQuery, ObjectRef, ProviderError};

use super::evaluate::{Kind, Pods, Request, Scope};

/// The engine's request for a custom-metrics query.
pub fn custom(q: &CustomQuery) -> Result<Request, ProviderError> {
    let pods = q.resource == "pods";
    let scope = match (&q.namespace, &q.object) {
        (Some(ns), _) => Scope::Namespace(ns.clone()),
        // `namespaces/{ns}` is root-scoped: the namespace is the object's name.
        (None, ObjectRef::Named(name)) if q.resource == "namespaces" => {
            Scope::Namespace(name.clone())
        }
        (None, ObjectRef::All(_)) if q.resource == "namespaces" => {
            return Err(ProviderError::BadRequest(
                "metrics of every namespace (namespaces/*) are not served: name the namespace"
                    .into(),
            ));
        }
        (None, _) => Scope::Cluster,
    };
    let (object_name, pod_filter) = match (&q.object, pods) {
        (ObjectRef::Named(n), true) => (n.clone(), Pods::Named(n.clone())),
        (ObjectRef::All(sel), true) => ("*".to_string(), Pods::Selected(sel.clone())),
        (ObjectRef::Named(n), false) => (n.clone(), Pods::Any),
        (ObjectRef::All(_), false) => ("*".to_string(), Pods::Any),
    };
    let object = match (&scope, q.namespace.is_some()) {
        (Scope::Namespace(ns), true) => format!("{} {ns}/{object_name}", q.resource),
        _ => format!("{} {object_name}", q.resource),
    };
    Ok(Request {
        metric: q.metric.clone(),
        kind: if pods { Kind::Pods } else { Kind::Object },
        scope,
        resource: Some(q.resource.clone()),
        pods: pod_filter,
        metric_selector: q.metric_selector.clone(),
        object_name,
        object,
    })
}

/// The engine's request for an external-metrics query.
pub fn external(q: &ExternalQuery) -> Request {
    Request {
        metric: q.metric.clone(),
        kind: Kind::External,
        scope: Scope::Namespace(q.namespace.clone()),
        resource: None,
        pods: Pods::Any,
        metric_selector: q.selector.clone(),
        object_name: q.metric.clone(),
        object: format!("external metric in namespace {}", q.namespace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Selector;

    fn query(resource: &str, namespace: Option<&str>, object: ObjectRef) -> CustomQuery {
        CustomQuery::new(
            "seconds".into(),
            resource.into(),
            namespace.map(str::to_owned),
            object,
            Selector::default(),
        )
        .expect("a known resource")
    }

    #[test]
    fn namespaced_objects_keep_their_namespace() {
        let r = custom(&query(
            "deployments.apps",
            Some("default"),
            ObjectRef::Named("binder".into()),
        ))
        .unwrap();
        assert_eq!(r.scope, Scope::Namespace("default".into()));
        assert_eq!(
            (r.kind, r.object.as_str(), r.object_name.as_str()),
            (Kind::Object, "deployments.apps default/binder", "binder")
        );
    }

    #[test]
    fn root_scoped_kinds_are_answered_as_root_scoped() {
        // The HPA asks for nodes under its own namespace; the query drops it.
        let r = custom(&query(
            "nodes",
            Some("default"),
            ObjectRef::Named("n1".into()),
        ))
        .unwrap();
        assert_eq!((r.scope, r.object.as_str()), (Scope::Cluster, "nodes n1"));
        let r = custom(&query(
            "namespaces",
            None,
            ObjectRef::Named("team-a".into()),
        ))
        .unwrap();
        assert_eq!(r.scope, Scope::Namespace("team-a".into()));
        assert!(matches!(
            custom(&query(
                "namespaces",
                None,
                ObjectRef::All(Selector::default())
            )),
            Err(ProviderError::BadRequest(_))
        ));
    }

    #[test]
    fn pods_requests_filter_by_name_or_selector() {
        let sel = Selector::parse("app=binder").unwrap();
        let r = custom(&query("pods", Some("ns"), ObjectRef::All(sel.clone()))).unwrap();
        assert_eq!((r.kind, r.pods), (Kind::Pods, Pods::Selected(sel)));
        assert_eq!(r.object, "pods ns/*");
        let r = custom(&query("pods", Some("ns"), ObjectRef::Named("p".into()))).unwrap();
        assert_eq!(r.pods, Pods::Named("p".into()));
    }
}
