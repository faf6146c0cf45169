//! The `dwell-sidecar` container and the volumes it needs, built from `sidecar.yaml` (the shape
//! `manifests/components/sidecar` adds, plus what `components/sidecar-tap` changes) and one pod's
//! settings. Env order: the component's, then the tap's, then the per-pod settings.
//!
//! Like the component, every injected sidecar gets the pod's bound service-account token: a
//! projected volume ([`TOKEN_VOLUME`], audience `dwell`, 3600 s, rotated by the kubelet) mounted
//! read-only, and `DWELL_TOKEN_FILE` naming its file, so the sidecar sends it on every report
//! stream (`authorization: Bearer`). An [`IngestToken`] in the injector's settings replaces the
//! audience, lifetime and mount; the token itself is never in the pod spec.

use super::InjectError;
use super::amqp_url::TAP_LISTEN;
use super::annotations::SecretKey;
use super::node::{self, Map, Node};

/// The container's name: its presence marks a pod as injected.
pub const NAME: &str = "dwell-sidecar";
/// The pod-info volume's name.
pub const PODINFO_VOLUME: &str = "dwell-podinfo";
/// The ingest-token volume's name.
pub const TOKEN_VOLUME: &str = "dwell-ingest-token";
/// The token's file name in its volume.
pub const TOKEN_FILE: &str = "token";
/// The header the tap reads before the timestamp property, as `components/sidecar-tap` sets it.
const TAP_TIMESTAMP_HEADER: &str = "timestamp_in_ms";

const TEMPLATE: &str = include_str!("sidecar.yaml");

/// **Another ingest token than the template's**: the projected service-account token volume
/// ([`TOKEN_VOLUME`]) is then for `audience`, with `expiration_seconds`, mounted read-only in
/// the sidecar at `mount_dir` (the file is [`TOKEN_FILE`], named by `DWELL_TOKEN_FILE`). Without
/// one the template's token is used: audience `dwell`, 3600 s, `/var/run/secrets/dwell` (what
/// the aggregator's token check expects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestToken {
    /// The token's audience (what the aggregator will check).
    pub audience: String,
    /// Requested lifetime; the kubelet refreshes the file before it ends (at least 600).
    pub expiration_seconds: u32,
    /// Directory the volume is mounted at.
    pub mount_dir: String,
}

/// The tap's part of one pod's sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tap {
    /// `--tap-upstream`.
    pub upstream: String,
}

/// Everything one pod's sidecar is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar<'a> {
    /// The image.
    pub image: &'a str,
    /// `DWELL_AGGREGATOR`.
    pub aggregator: &'a str,
    /// `DWELL_QUEUE`.
    pub queue: Option<&'a str>,
    /// `DWELL_INTERVAL`.
    pub interval: Option<&'a str>,
    /// The tap, when on.
    pub tap: Option<Tap>,
    /// `DWELL_AMQP_URL` from this Secret key (optional).
    pub stats: Option<&'a SecretKey>,
    /// The ingest-token hook.
    pub token: Option<&'a IngestToken>,
}

fn template_error(what: &str) -> InjectError {
    InjectError::Internal(format!("the built-in sidecar template has no {what}"))
}

fn env(name: &str, value: &str) -> Node {
    Node::map([("name", Node::str(name)), ("value", Node::str(value))])
}

impl Sidecar<'_> {
    /// The container, ready to go first in `initContainers`.
    pub fn container(&self) -> Result<Node, InjectError> {
        let mut template = template()?;
        let tap_resources = template.at(&["tap", "resources"]).cloned();
        let mut container = template
            .as_map_mut()
            .and_then(|m| m.get_mut("container"))
            .map(|n| std::mem::replace(n, Node::Null))
            .ok_or_else(|| template_error("container"))?;
        let c = container
            .as_map_mut()
            .ok_or_else(|| template_error("container mapping"))?;
        c.insert("image", Node::str(self.image));
        let env_list = c
            .get_mut("env")
            .and_then(Node::as_seq_mut)
            .ok_or_else(|| template_error("env"))?;
        for item in env_list.iter_mut() {
            if item.str_at("name") == Some("DWELL_AGGREGATOR") {
                *item = env("DWELL_AGGREGATOR", self.aggregator);
            }
        }
        if let Some(tap) = &self.tap {
            env_list.push(env("DWELL_TAP_LISTEN", TAP_LISTEN));
            env_list.push(env("DWELL_TAP_UPSTREAM", &tap.upstream));
            env_list.push(env("DWELL_TIMESTAMP_HEADER", TAP_TIMESTAMP_HEADER));
        }
        if let Some(queue) = self.queue {
            env_list.push(env("DWELL_QUEUE", queue));
        }
        if let Some(interval) = self.interval {
            env_list.push(env("DWELL_INTERVAL", interval));
        }
        if let Some(secret) = self.stats {
            env_list.push(Node::map([
                ("name", Node::str("DWELL_AMQP_URL")),
                (
                    "valueFrom",
                    Node::map([(
                        "secretKeyRef",
                        Node::map([
                            ("name", Node::str(&secret.name)),
                            ("key", Node::str(&secret.key)),
                            ("optional", Node::Bool(true)),
                        ]),
                    )]),
                ),
            ]));
        }
        if self.tap.is_some() {
            c.insert(
                "resources",
                tap_resources.ok_or_else(|| template_error("tap resources"))?,
            );
        }
        if let Some(token) = self.token {
            let dir = token.mount_dir.trim_end_matches('/');
            let file = format!("{dir}/{TOKEN_FILE}");
            let var = c
                .get_mut("env")
                .and_then(Node::as_seq_mut)
                .and_then(|env| {
                    env.iter_mut()
                        .find(|e| e.str_at("name") == Some("DWELL_TOKEN_FILE"))
                })
                .ok_or_else(|| template_error("DWELL_TOKEN_FILE"))?;
            *var = env("DWELL_TOKEN_FILE", &file);
            let mount = c
                .get_mut("volumeMounts")
                .and_then(Node::as_seq_mut)
                .and_then(|mounts| {
                    mounts
                        .iter_mut()
                        .find(|m| m.str_at("name") == Some(TOKEN_VOLUME))
                })
                .ok_or_else(|| template_error("token volumeMount"))?;
            *mount = Node::map([
                ("name", Node::str(TOKEN_VOLUME)),
                ("mountPath", Node::str(dir)),
                ("readOnly", Node::Bool(true)),
            ]);
        }
        Ok(container)
    }

    /// The volumes the container mounts, ready to go first in `volumes`.
    pub fn volumes(&self) -> Result<Vec<Node>, InjectError> {
        let template = template()?;
        let podinfo = template
            .get("volume")
            .cloned()
            .ok_or_else(|| template_error("volume"))?;
        let Some(token) = self.token else {
            let token = template
                .get("token_volume")
                .cloned()
                .ok_or_else(|| template_error("token_volume"))?;
            return Ok(vec![podinfo, token]);
        };
        let projection: Map = [
            ("audience", Node::str(&token.audience)),
            (
                "expirationSeconds",
                Node::int(token.expiration_seconds.into()),
            ),
            ("path", Node::str(TOKEN_FILE)),
        ]
        .into_iter()
        .collect();
        let token = Node::map([
            ("name", Node::str(TOKEN_VOLUME)),
            (
                "projected",
                Node::map([(
                    "sources",
                    Node::Seq(vec![Node::map([(
                        "serviceAccountToken",
                        Node::Map(projection),
                    )])]),
                )]),
            ),
        ]);
        Ok(vec![podinfo, token])
    }
}

fn template() -> Result<Node, InjectError> {
    node::from_yaml(TEMPLATE).map_err(|e| InjectError::Internal(format!("sidecar template: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(container: &Node) -> Vec<String> {
        container
            .get("env")
            .and_then(Node::as_seq)
            .unwrap()
            .iter()
            .map(|e| e.str_at("name").unwrap().to_owned())
            .collect()
    }

    fn plain() -> Sidecar<'static> {
        Sidecar {
            image: "registry.local/dwell-sidecar:1",
            aggregator: "https://agg.dwell.svc:50051",
            queue: Some("jobs"),
            interval: None,
            tap: None,
            stats: None,
            token: None,
        }
    }

    #[test]
    fn the_component_shape_with_this_pods_settings() {
        let c = plain().container().unwrap();
        assert_eq!(c.str_at("name"), Some(NAME));
        assert_eq!(c.str_at("image"), Some("registry.local/dwell-sidecar:1"));
        assert_eq!(c.str_at("restartPolicy"), Some("Always"));
        let env = names(&c);
        assert_eq!(env.first().map(String::as_str), Some("DWELL_AGGREGATOR"));
        assert_eq!(env.last().map(String::as_str), Some("DWELL_QUEUE"));
        assert!(!env.iter().any(|n| n.starts_with("DWELL_TAP")));
        let agg = c.get("env").and_then(Node::as_seq).unwrap()[0].str_at("value");
        assert_eq!(agg, Some("https://agg.dwell.svc:50051"));
        assert_eq!(
            c.at(&["resources", "limits", "memory"]),
            Some(&Node::str("64Mi"))
        );
        let v = plain().volumes().unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].str_at("name"), Some(PODINFO_VOLUME));
        // The bound token, as components/sidecar adds it: audience dwell, one hour.
        assert_eq!(v[1].str_at("name"), Some(TOKEN_VOLUME));
        let sa = &v[1]
            .at(&["projected", "sources"])
            .and_then(Node::as_seq)
            .unwrap()[0];
        assert_eq!(
            sa.at(&["serviceAccountToken", "audience"]),
            Some(&Node::str("dwell"))
        );
        assert_eq!(
            sa.at(&["serviceAccountToken", "expirationSeconds"]),
            Some(&Node::int(3600))
        );
        assert!(env.contains(&"DWELL_TOKEN_FILE".to_owned()));
        let mounts = c.get("volumeMounts").and_then(Node::as_seq).unwrap();
        assert_eq!(mounts[1].str_at("name"), Some(TOKEN_VOLUME));
        assert_eq!(
            mounts[1].str_at("mountPath"),
            Some("/var/run/secrets/dwell")
        );
    }

    #[test]
    fn the_tap_adds_its_env_and_resources() {
        let secret = SecretKey {
            name: "amqp".into(),
            key: "monitor".into(),
        };
        let s = Sidecar {
            tap: Some(Tap {
                upstream: "amqps://rabbit:5671".into(),
            }),
            queue: None,
            interval: Some("2s"),
            stats: Some(&secret),
            ..plain()
        };
        let c = s.container().unwrap();
        let env = names(&c);
        let tail: Vec<&str> = env.iter().rev().take(5).rev().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "DWELL_TAP_LISTEN",
                "DWELL_TAP_UPSTREAM",
                "DWELL_TIMESTAMP_HEADER",
                "DWELL_INTERVAL",
                "DWELL_AMQP_URL"
            ]
        );
        assert_eq!(
            c.at(&["resources", "limits", "memory"]),
            Some(&Node::str("128Mi"))
        );
    }

    #[test]
    fn another_ingest_token_replaces_the_templates() {
        let token = IngestToken {
            audience: "dwell-aggregator".into(),
            expiration_seconds: 3600,
            mount_dir: "/var/run/secrets/dwell-agg/".into(),
        };
        let s = Sidecar {
            token: Some(&token),
            ..plain()
        };
        let v = s.volumes().unwrap();
        assert_eq!(v[1].str_at("name"), Some(TOKEN_VOLUME));
        let sa = &v[1]
            .at(&["projected", "sources"])
            .and_then(Node::as_seq)
            .unwrap()[0];
        assert_eq!(
            sa.at(&["serviceAccountToken", "audience"]),
            Some(&Node::str("dwell-aggregator"))
        );
        assert_eq!(v.len(), 2, "replaced, not added");
        let c = s.container().unwrap();
        let mounts = c.get("volumeMounts").and_then(Node::as_seq).unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(
            mounts[1].str_at("mountPath"),
            Some("/var/run/secrets/dwell-agg")
        );
        let file = c
            .get("env")
            .and_then(Node::as_seq)
            .unwrap()
            .iter()
            .find(|e| e.str_at("name") == Some("DWELL_TOKEN_FILE"))
            .and_then(|e| e.str_at("value"));
        assert_eq!(file, Some("/var/run/secrets/dwell-agg/token"));
    }
}
