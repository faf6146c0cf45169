//! Path parsing: every route, the 404/400 table from the Go server's tests, and fuzzing.
use proptest::prelude::*;

use super::*;

const B1: &str = "/apis/custom.metrics.k8s.io/v1beta1";
const B2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";

fn custom(path: &str) -> CustomPath {
    match parse(path) {
        Ok(ApiPath::Custom(_, p)) => p,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn namespaced_objects_and_wildcard() {
    let p = custom(&format!(
        "{B1}/namespaces/default/deployments.apps/binder/dwell"
    ));
    assert_eq!(p.namespace.as_deref(), Some("default"));
    assert_eq!(p.resource, "deployments.apps");
    assert_eq!(p.object, ObjectName::Named("binder".into()));
    assert_eq!(p.metric, "dwell");
    assert_eq!(
        custom(&format!("{B2}/namespaces/default/pods/%2A/dwell")).object,
        ObjectName::All
    );
    assert_eq!(
        custom(&format!("{B2}/namespaces/default/pods/*/dwell")).object,
        ObjectName::All
    );
    // Custom metric names keep their case.
    assert_eq!(custom(&format!("{B1}/nodes/n1/Temp")).metric, "Temp");
}

#[test]
fn namespace_metric_is_root_scoped_namespaces() {
    let p = custom(&format!("{B1}/namespaces/demo/metrics/dwell"));
    assert_eq!(p.namespace, None);
    assert_eq!(p.resource, "namespaces");
    assert_eq!(p.object, ObjectName::Named("demo".into()));
}

#[test]
fn discovery_paths() {
    assert_eq!(parse(B1), Ok(ApiPath::Resources(CUSTOM_GROUP, "v1beta1")));
    assert_eq!(parse(B2), Ok(ApiPath::Resources(CUSTOM_GROUP, "v1beta2")));
    assert_eq!(
        parse(EXT),
        Ok(ApiPath::Resources(EXTERNAL_GROUP, "v1beta1"))
    );
    assert_eq!(
        parse("/apis/custom.metrics.k8s.io"),
        Ok(ApiPath::Group(CUSTOM_GROUP))
    );
}

#[test]
fn external_names_are_lower_cased() {
    assert_eq!(
        parse(&format!("{EXT}/namespaces/default/Queue_Dwell")),
        Ok(ApiPath::External {
            namespace: "default".into(),
            metric: "queue_dwell".into()
        })
    );
}

#[test]
fn go_server_not_found_table() {
    for path in [
        format!("{B1}/blah"),
        format!("{B1}/nodes/foo"),
        format!("{B1}/namespaces/ns/pods/bar"),
        format!("{EXT}/dwell"),
        format!("{EXT}/namespaces/foo/group/metric"),
        "/apis/custom.metrics.k8s.io/v1".to_string(),
        "/apis/external.metrics.k8s.io/v1beta2".to_string(),
        "/apis/apps/v1".to_string(),
        format!("{B1}/"),
        format!("{B1}//pods"),
        format!("{B1}/namespaces/ns/pods/bar/m/extra"),
    ] {
        assert!(
            matches!(parse(&path), Err(ApiError::NotFound(_))),
            "{path}: {:?}",
            parse(&path)
        );
    }
}

#[test]
fn bad_requests() {
    for path in [
        format!("{B1}/namespaces/ns/dwell"),
        format!("{B1}/namespaces/Bad_NS/pods/a/m"),
        format!("{B1}/namespaces/ns/pods/a%2Fb/m"),
        format!("{B1}/namespaces/ns/pods/a/%2E%2E"),
        format!("{B1}/namespaces/ns/pods/a/%FF"),
        format!("{B1}/namespaces/ns/pods/a/m%00"),
        format!("{EXT}/namespaces/-x/m"),
    ] {
        assert!(
            matches!(parse(&path), Err(ApiError::BadRequest(_))),
            "{path}: {:?}",
            parse(&path)
        );
    }
}

proptest! {
    #[test]
    fn arbitrary_paths_never_panic(tail in "[a-zA-Z0-9%*./_-]{0,60}") {
        let _ = parse(&format!("{B1}/{tail}"));
        let _ = parse(&format!("{EXT}/{tail}"));
        let _ = parse(&format!("/apis/{tail}"));
    }

    #[test]
    fn valid_object_paths_round_trip(
        ns in "[a-z][a-z0-9-]{0,10}[a-z0-9]",
        resource in prop_oneof![Just("pods"), Just("deployments.apps"), Just("services")],
        name in "[a-z0-9][a-z0-9.-]{0,20}",
        metric in "[A-Za-z_][A-Za-z0-9_:]{0,20}",
        star in any::<bool>(),
    ) {
        let segment = if star { "%2A".to_string() } else { name.clone() };
        let p = custom(&format!("{B2}/namespaces/{ns}/{resource}/{segment}/{metric}"));
        prop_assert_eq!(p.namespace, Some(ns));
        prop_assert_eq!(p.resource, resource);
        prop_assert_eq!(p.metric, metric);
        prop_assert_eq!(p.object, if star { ObjectName::All } else { ObjectName::Named(name) });
    }
}
