//! The injector itself, pure: a pod template (or a Pod: anything with `metadata` and `spec`) in,
//! the injected template out. It puts `dwell-sidecar` first in `initContainers` and its volumes
//! first in `volumes` (where `manifests/components/sidecar` puts them), and with
//! `dwell.io/amqp-url-env` points that variable of every container at the tap.
//!
//! **The app's URL.** A literal `value` is split by [`amqp_url`]: the broker becomes the tap's
//! upstream, the app keeps its user, password, vhost and query on `127.0.0.1:5672`. A URL from a
//! Secret (`secretKeyRef`) or ConfigMap (`configMapKeyRef`) is never read: the injector points the
//! reference at another key of the same object, named by `dwell.io/tap-url-key`, which holds the
//! same URL on `127.0.0.1:5672`, and takes the broker from `dwell.io/tap-upstream` (host and
//! port, no secret). Both annotations are required then, and the error says so. Variables from
//! `envFrom` cannot be seen, so they cannot be rewritten: the error says to move it to `env`.

use super::amqp_url::{self, UrlError};
use super::annotations::{self, Opt, PodAnnotations};
use super::node::Node;
use super::sidecar::{self, Sidecar, Tap};
use super::{InjectError, InjectSettings, Selection};

/// What the injector did with a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The injected template.
    Injected(Node),
    /// Left as it was, and why.
    Skipped(Skip),
}

/// Why a template was left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It already has a container named `dwell-sidecar`.
    AlreadyInjected,
    /// `dwell.io/inject: disabled`.
    Disabled,
    /// Not annotated `dwell.io/inject: enabled` (and not `--all`).
    NotSelected,
}

impl Skip {
    /// A short reason, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::AlreadyInjected => "already_injected",
            Skip::Disabled => "disabled",
            Skip::NotSelected => "not_selected",
        }
    }
}

/// The container lists of a pod spec, init containers first (the order they start in).
const CONTAINER_LISTS: [&str; 2] = ["initContainers", "containers"];

fn shape(field: &str, reason: &str) -> InjectError {
    InjectError::Shape {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn bad(annotation: &str, reason: String) -> InjectError {
    InjectError::Annotation {
        annotation: annotation.to_owned(),
        reason,
    }
}

/// Injects `template` (see the module doc).
pub fn inject(
    template: &Node,
    settings: &InjectSettings,
    selection: Selection,
) -> Result<Outcome, InjectError> {
    let spec = template
        .get("spec")
        .filter(|s| s.as_map().is_some())
        .ok_or_else(|| shape("spec", "is missing or not a mapping"))?;
    if has_sidecar(spec)? {
        return Ok(Outcome::Skipped(Skip::AlreadyInjected));
    }
    let metadata = template.get("metadata");
    match (annotations::opt(metadata)?, selection) {
        (Opt::Out, _) => return Ok(Outcome::Skipped(Skip::Disabled)),
        (Opt::Unset, Selection::Annotated) => return Ok(Outcome::Skipped(Skip::NotSelected)),
        _ => {}
    }
    let pod = annotations::parse(metadata)?;
    let mut out = template.clone();
    let spec = out
        .get_mut("spec")
        .and_then(Node::as_map_mut)
        .ok_or_else(|| shape("spec", "is not a mapping"))?;
    let tap = tap(&pod, spec)?;
    if tap.is_none() && pod.queue.is_none() {
        return Err(bad(
            annotations::QUEUE,
            "is required unless dwell.io/amqp-url-env turns the tap on (the sidecar needs a queue)"
                .into(),
        ));
    }
    let sidecar = Sidecar {
        image: pod.image.as_deref().unwrap_or(&settings.image),
        aggregator: pod.aggregator.as_deref().unwrap_or(&settings.aggregator),
        queue: pod.queue.as_deref(),
        interval: pod.interval.as_deref(),
        tap,
        stats: pod.stats_url_secret.as_ref(),
        token: settings.ingest_token.as_ref(),
    };
    let volumes = sidecar.volumes()?;
    let names = volume_names(spec.get("volumes"))?;
    if let Some(taken) = volumes
        .iter()
        .filter_map(|v| v.str_at("name"))
        .find(|n| names.contains(n))
    {
        return Err(shape(
            "spec.volumes",
            &format!("already has a volume named {taken} (dwell's own)"),
        ));
    }
    prepend(
        spec.entry("initContainers", || Node::Seq(Vec::new())),
        vec![sidecar.container()?],
        "spec.initContainers",
    )?;
    prepend(
        spec.entry("volumes", || Node::Seq(Vec::new())),
        volumes,
        "spec.volumes",
    )?;
    Ok(Outcome::Injected(out))
}

fn has_sidecar(spec: &Node) -> Result<bool, InjectError> {
    for list in CONTAINER_LISTS {
        for container in containers(spec.get(list), list)? {
            if container.str_at("name") == Some(sidecar::NAME) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The entries of a container list (absent or null: none).
fn containers<'a>(list: Option<&'a Node>, field: &str) -> Result<&'a [Node], InjectError> {
    match list {
        None | Some(Node::Null) => Ok(&[]),
        Some(Node::Seq(items)) => Ok(items),
        Some(_) => Err(shape(&format!("spec.{field}"), "is not a list")),
    }
}

fn volume_names(volumes: Option<&Node>) -> Result<Vec<&str>, InjectError> {
    Ok(containers(volumes, "volumes")?
        .iter()
        .filter_map(|v| v.str_at("name"))
        .collect())
}

fn prepend(list: &mut Node, items: Vec<Node>, field: &str) -> Result<(), InjectError> {
    if *list == Node::Null {
        *list = Node::Seq(Vec::new());
    }
    let seq = list
        .as_seq_mut()
        .ok_or_else(|| shape(field, "is not a list"))?;
    seq.splice(0..0, items);
    Ok(())
}

/// The tap's settings, pointing the app's URL variable at it on the way.
fn tap(pod: &PodAnnotations, spec: &mut super::node::Map) -> Result<Option<Tap>, InjectError> {
    let Some(var) = &pod.amqp_url_env else {
        if pod.tap_url_key.is_some() {
            return Err(bad(
                annotations::TAP_URL_KEY,
                "needs dwell.io/amqp-url-env (the variable to point at the tap)".into(),
            ));
        }
        // The app may already connect to 127.0.0.1:5672 on its own: then only the tap is needed.
        return Ok(pod.tap_upstream.clone().map(|upstream| Tap { upstream }));
    };
    let mut found = 0;
    let mut derived: Option<String> = None;
    for list in CONTAINER_LISTS {
        let Some(Node::Seq(items)) = spec.get_mut(list) else {
            continue;
        };
        for container in items.iter_mut() {
            let name = container.str_at("name").unwrap_or("").to_owned();
            let Some(Node::Seq(env)) = container.get_mut("env") else {
                continue;
            };
            for entry in env
                .iter_mut()
                .filter(|e| e.str_at("name") == Some(var.as_str()))
            {
                found += 1;
                if let Some(upstream) = point_at_tap(entry, var, &name, pod)? {
                    match &derived {
                        Some(d) if *d != upstream && pod.tap_upstream.is_none() => {
                            return Err(bad(
                                annotations::AMQP_URL_ENV,
                                format!(
                                    "{var} names different brokers in different containers; one \
                                     tap has one upstream: set dwell.io/tap-upstream"
                                ),
                            ));
                        }
                        _ => derived = Some(upstream),
                    }
                }
            }
        }
    }
    if found == 0 {
        return Err(bad(
            annotations::AMQP_URL_ENV,
            format!(
                "no container sets {var} in env (a variable from envFrom cannot be rewritten: \
                 set it in env)"
            ),
        ));
    }
    let upstream = pod.tap_upstream.clone().or(derived).ok_or_else(|| {
        bad(
            annotations::TAP_UPSTREAM,
            "is required: no literal URL names the broker".into(),
        )
    })?;
    Ok(Some(Tap { upstream }))
}

/// Points one env entry at the tap; the broker it named, when it was a literal URL.
fn point_at_tap(
    entry: &mut Node,
    var: &str,
    container: &str,
    pod: &PodAnnotations,
) -> Result<Option<String>, InjectError> {
    let here = format!("{var} in container {container:?}");
    if let Some(value) = entry.str_at("value") {
        return match amqp_url::split(value) {
            Ok(split) => {
                if let Some(map) = entry.as_map_mut() {
                    map.insert("value", Node::str(split.app_url));
                }
                Ok(Some(split.upstream))
            }
            // Already on the tap, and the broker is named: nothing to change.
            Err(UrlError::Loopback) if pod.tap_upstream.is_some() => Ok(None),
            Err(e) => Err(bad(annotations::AMQP_URL_ENV, format!("{here} {e}"))),
        };
    }
    let reference = ["secretKeyRef", "configMapKeyRef"]
        .into_iter()
        .find_map(|kind| entry.at(&["valueFrom", kind]).map(|r| (kind, r)));
    let Some((kind, reference)) = reference else {
        return Err(bad(
            annotations::AMQP_URL_ENV,
            format!("{here} is neither a literal value nor from a secretKeyRef or configMapKeyRef"),
        ));
    };
    let object = if kind == "secretKeyRef" {
        "Secret"
    } else {
        "ConfigMap"
    };
    let from = format!(
        "{here} comes from {object} {:?}",
        reference.str_at("name").unwrap_or("")
    );
    let Some(key) = &pod.tap_url_key else {
        return Err(bad(
            annotations::TAP_URL_KEY,
            format!(
                "is required: {from}, which the injector does not read; add a key holding the \
                 same URL on 127.0.0.1:5672 and name it here"
            ),
        ));
    };
    if pod.tap_upstream.is_none() {
        return Err(bad(
            annotations::TAP_UPSTREAM,
            format!("is required: {from}, so the broker must be named (amqp[s]://host:port)"),
        ));
    }
    if let Some(map) = entry
        .at_mut(&["valueFrom", kind])
        .and_then(Node::as_map_mut)
    {
        map.insert("key", Node::str(key));
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
