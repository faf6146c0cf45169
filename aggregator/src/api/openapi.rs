//! OpenAPI documents for the served paths: Swagger 2.0 at `/openapi/v2`, and OpenAPI 3.0 at
//! `/openapi/v3` (an index with hashed links) and `/openapi/v3/apis/{group}/{version}`.
//! kube-apiserver fetches both every minute and logs errors forever on a 404.
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::path::{CUSTOM_GROUP, CUSTOM_VERSIONS, EXTERNAL_GROUP, EXTERNAL_VERSION};

/// One served route template.
struct Route {
    path: String,
    params: &'static [&'static str],
    queries: &'static [&'static str],
    response: &'static str,
    description: &'static str,
}

fn routes(group: &str, version: &str) -> Vec<Route> {
    let base = format!("/apis/{group}/{version}");
    if group == EXTERNAL_GROUP {
        return vec![
            Route {
                path: format!("{base}/"),
                params: &[],
                queries: &[],
                response: "APIResourceList",
                description: "discovery: the external metrics served",
            },
            Route {
                path: format!("{base}/namespaces/{{namespace}}/{{metric}}"),
                params: &["namespace", "metric"],
                queries: &["labelSelector"],
                response: "ExternalMetricValueList",
                description: "an external metric's series (lower-case name), selected by labelSelector",
            },
        ];
    }
    vec![
        Route {
            path: format!("{base}/"),
            params: &[],
            queries: &[],
            response: "APIResourceList",
            description: "discovery: the custom metrics served",
        },
        Route {
            path: format!("{base}/namespaces/{{namespace}}/{{resource}}/{{name}}/{{metric}}"),
            params: &["namespace", "resource", "name", "metric"],
            queries: &["labelSelector", "metricLabelSelector"],
            response: "MetricValueList",
            description: "a metric of a namespaced object; name `*` selects objects by labelSelector",
        },
        Route {
            path: format!("{base}/namespaces/{{namespace}}/metrics/{{metric}}"),
            params: &["namespace", "metric"],
            queries: &["metricLabelSelector"],
            response: "MetricValueList",
            description: "a metric describing the namespace itself",
        },
        Route {
            path: format!("{base}/{{resource}}/{{name}}/{{metric}}"),
            params: &["resource", "name", "metric"],
            queries: &["labelSelector", "metricLabelSelector"],
            response: "MetricValueList",
            description: "a metric of a cluster-scoped object",
        },
    ]
}

fn definition_name(group: &str, version: &str, kind: &str) -> String {
    if kind == "APIResourceList" {
        return "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList".into();
    }
    let pkg = if group == CUSTOM_GROUP {
        "custom_metrics"
    } else {
        "external_metrics"
    };
    format!("io.k8s.metrics.pkg.apis.{pkg}.{version}.{kind}")
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

/// Schemas for one group-version; `reference` builds a `$ref` for the spec version.
fn definitions(group: &str, version: &str, reference: &dyn Fn(&str) -> String) -> Value {
    let string = json!({"type": "string"});
    let int = json!({"type": "integer", "format": "int64"});
    let labels = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let list = |item: &str| {
        object(
            &["items", "metadata"],
            json!({
                "kind": string, "apiVersion": string, "metadata": {"type": "object"},
                "items": {"type": "array", "items": {"$ref": reference(item)}},
            }),
        )
    };
    let resource_list = object(
        &["groupVersion", "resources"],
        json!({"kind": string, "apiVersion": string, "groupVersion": string,
               "resources": {"type": "array", "items": {"type": "object"}}}),
    );
    let mut defs = serde_json::Map::new();
    defs.insert(
        definition_name(group, version, "APIResourceList"),
        resource_list,
    );
    if group == EXTERNAL_GROUP {
        defs.insert(
            definition_name(group, version, "ExternalMetricValueList"),
            list(&definition_name(group, version, "ExternalMetricValue")),
        );
        defs.insert(
            definition_name(group, version, "ExternalMetricValue"),
            object(
                &["metricName", "metricLabels", "timestamp", "value"],
                json!({"metricName": string, "metricLabels": labels,
                       "timestamp": {"type": "string", "format": "date-time"},
                       "window": int, "value": string}),
            ),
        );
        return Value::Object(defs);
    }
    let reference_props = json!({"kind": string, "namespace": string, "name": string,
                                 "apiVersion": string});
    let value = if version == "v1beta1" {
        object(
            &[
                "describedObject",
                "metricName",
                "timestamp",
                "value",
                "selector",
            ],
            json!({"describedObject": {"type": "object", "properties": reference_props},
                   "metricName": string, "timestamp": {"type": "string", "format": "date-time"},
                   "window": int, "value": string, "selector": {"type": "object"}}),
        )
    } else {
        object(
            &["describedObject", "metric", "timestamp", "value"],
            json!({"describedObject": {"type": "object", "properties": reference_props},
                   "metric": {"type": "object", "required": ["name"],
                              "properties": {"name": string, "selector": {"type": "object"}}},
                   "timestamp": {"type": "string", "format": "date-time"},
                   "windowSeconds": int, "value": string}),
        )
    };
    defs.insert(
        definition_name(group, version, "MetricValueList"),
        list(&definition_name(group, version, "MetricValue")),
    );
    defs.insert(definition_name(group, version, "MetricValue"), value);
    Value::Object(defs)
}

fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = CUSTOM_VERSIONS.iter().map(|v| (CUSTOM_GROUP, *v)).collect();
    out.push((EXTERNAL_GROUP, EXTERNAL_VERSION));
    out
}

/// Path item for one route; `v3` switches parameter/response shapes to OpenAPI 3.0.
fn operation(group: &str, version: &str, route: &Route, v3: bool) -> Value {
    let schema_ref = if v3 {
        format!(
            "#/components/schemas/{}",
            definition_name(group, version, route.response)
        )
    } else {
        format!(
            "#/definitions/{}",
            definition_name(group, version, route.response)
        )
    };
    let param = |name: &str, location: &str| {
        if v3 {
            json!({"name": name, "in": location, "required": location == "path",
                   "schema": {"type": "string"}})
        } else {
            json!({"name": name, "in": location, "required": location == "path",
                   "type": "string"})
        }
    };
    let mut parameters: Vec<Value> = route.params.iter().map(|p| param(p, "path")).collect();
    parameters.extend(route.queries.iter().map(|q| param(q, "query")));
    let ok = if v3 {
        json!({"description": "OK",
               "content": {"application/json": {"schema": {"$ref": schema_ref}}}})
    } else {
        json!({"description": "OK", "schema": {"$ref": schema_ref}})
    };
    let mut op = json!({
        "description": route.description,
        "operationId": format!(
            "get{}",
            route.path.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ),
        "tags": [format!("{group}_{version}")],
        "parameters": parameters,
        "responses": {"200": ok, "400": {"description": "Bad Request"},
                      "404": {"description": "Not Found"}},
    });
    if !v3 {
        op["produces"] = json!(["application/json"]);
        op["schemes"] = json!(["https"]);
    }
    json!({"get": op})
}

fn info() -> Value {
    json!({"title": "dwell aggregator", "version": format!("v{}", env!("CARGO_PKG_VERSION"))})
}

/// The Swagger 2.0 document for every served group-version.
pub fn v2() -> Value {
    let mut paths = serde_json::Map::new();
    let mut defs = serde_json::Map::new();
    for (group, version) in group_versions() {
        for route in routes(group, version) {
            paths.insert(route.path.clone(), operation(group, version, &route, false));
        }
        if let Value::Object(d) = definitions(group, version, &|n| format!("#/definitions/{n}")) {
            defs.extend(d);
        }
    }
    json!({"swagger": "2.0", "info": info(), "paths": paths, "definitions": defs})
}

/// The OpenAPI 3.0 document of one group-version, if served.
pub fn v3_group_version(group: &str, version: &str) -> Option<Value> {
    let (group, version) = group_versions()
        .into_iter()
        .find(|(g, v)| *g == group && *v == version)?;
    let mut paths = serde_json::Map::new();
    for route in routes(group, version) {
        paths.insert(route.path.clone(), operation(group, version, &route, true));
    }
    let schemas = definitions(group, version, &|n| format!("#/components/schemas/{n}"));
    Some(json!({"openapi": "3.0.0", "info": info(), "paths": paths,
                "components": {"schemas": schemas}}))
}

/// The `/openapi/v3` index: each group-version with a content-hashed link.
pub fn v3_index() -> Value {
    let mut paths = serde_json::Map::new();
    for (group, version) in group_versions() {
        let doc = v3_group_version(group, version).unwrap_or(Value::Null);
        let hash: String = Sha256::digest(doc.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        paths.insert(
            format!("apis/{group}/{version}"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{group}/{version}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ref_resolves() {
        let doc = v2();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/definitions/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(doc["definitions"].get(name).is_some(), "{name}");
        }
        for (group, version) in group_versions() {
            let doc = v3_group_version(group, version).unwrap();
            let text = doc.to_string();
            for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
                let name = piece.split('"').next().unwrap();
                assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
            }
        }
        assert!(v3_group_version("apps", "v1").is_none());
    }
}
