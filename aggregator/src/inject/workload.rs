//! Where the pod template of each workload kind lives, and injecting one object (a `List`'s items
//! one by one). Kinds are matched with their API group, so a custom resource that happens to be
//! called `Deployment` is passed through untouched.

use super::node::Node;
use super::{InjectError, InjectSettings, Outcome, Selection, Skip};

/// The path from an object to its pod template (`[]`: the object is a Pod).
pub fn template_path(api_version: &str, kind: &str) -> Option<&'static [&'static str]> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("", "Pod") => Some(&[]),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some(&["spec", "template"]),
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// One object's result: what it now is (`None`: unchanged) and what happened to each template.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectOutcome {
    /// The object after injection, if anything changed.
    pub changed: Option<Node>,
    /// Per pod template: its object's name (`Deployment binder`) and what happened.
    pub templates: Vec<(String, Result<(), Skip>)>,
}

/// A failure inside one object (a List names the item).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {source}")]
pub struct ObjectError {
    /// `Deployment binder` (`List item 3: StatefulSet db`).
    pub object: String,
    /// Why.
    pub source: InjectError,
}

/// `Kind name` of an object, for messages.
pub fn describe(object: &Node) -> String {
    let kind = object.str_at("kind").unwrap_or("object");
    let name = object
        .at(&["metadata", "name"])
        .and_then(Node::as_str)
        .or_else(|| {
            object
                .at(&["metadata", "generateName"])
                .and_then(Node::as_str)
        })
        .unwrap_or("(unnamed)");
    format!("{kind} {name}")
}

/// Injects one object; anything that is not a workload or a list of them is unchanged.
pub fn inject_object(
    object: &Node,
    settings: &InjectSettings,
    selection: Selection,
) -> Result<ObjectOutcome, ObjectError> {
    let api_version = object.str_at("apiVersion").unwrap_or("");
    let kind = object.str_at("kind").unwrap_or("");
    if kind.ends_with("List")
        && let Some(items) = object.get("items").and_then(Node::as_seq)
    {
        let mut templates = Vec::new();
        let mut new_items = Vec::with_capacity(items.len());
        let mut changed = false;
        for (i, item) in items.iter().enumerate() {
            let one = inject_object(item, settings, selection).map_err(|e| ObjectError {
                object: format!("{kind} item {i}: {}", e.object),
                source: e.source,
            })?;
            templates.extend(one.templates);
            changed |= one.changed.is_some();
            new_items.push(one.changed.unwrap_or_else(|| item.clone()));
        }
        let changed = changed.then(|| {
            let mut out = object.clone();
            if let Some(map) = out.as_map_mut() {
                map.insert("items", Node::Seq(new_items));
            }
            out
        });
        return Ok(ObjectOutcome { changed, templates });
    }
    let Some(path) = template_path(api_version, kind) else {
        return Ok(ObjectOutcome {
            changed: None,
            templates: Vec::new(),
        });
    };
    let error = |source| ObjectError {
        object: describe(object),
        source,
    };
    let template = object.at(path).ok_or_else(|| {
        error(InjectError::Shape {
            field: path.join("."),
            reason: "is missing".into(),
        })
    })?;
    let outcome = super::inject(template, settings, selection).map_err(error)?;
    let (changed, result) = match outcome {
        Outcome::Skipped(skip) => (None, Err(skip)),
        Outcome::Injected(new_template) => {
            let mut out = object.clone();
            match out.at_mut(path) {
                Some(slot) => *slot = new_template,
                None => out = new_template,
            }
            (Some(out), Ok(()))
        }
    };
    Ok(ObjectOutcome {
        changed,
        templates: vec![(describe(object), result)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_matched_with_their_group() {
        assert_eq!(template_path("v1", "Pod"), Some(&[][..]));
        assert_eq!(
            template_path("apps/v1", "Deployment"),
            Some(&["spec", "template"][..])
        );
        assert_eq!(
            template_path("batch/v1", "Job"),
            Some(&["spec", "template"][..])
        );
        assert_eq!(
            template_path("batch/v1", "CronJob"),
            Some(&["spec", "jobTemplate", "spec", "template"][..])
        );
        assert_eq!(template_path("example.com/v1", "Deployment"), None);
        assert_eq!(template_path("v1", "ConfigMap"), None);
        assert_eq!(template_path("apps/v1", "Pod"), None);
    }
}
