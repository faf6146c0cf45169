//! Who this sidecar is: pod name, namespace and labels from the Downward API (`POD_NAME`,
//! `POD_NAMESPACE`, a mounted `labels` file of `key="value"` lines), each overridable by the
//! operator.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where the Downward API labels file is usually mounted.
pub const DEFAULT_LABELS_FILE: &str = "/etc/podinfo/labels";

/// The consumer pod's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod labels.
    pub labels: HashMap<String, String>,
}

/// Why the identity cannot be established.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The labels file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of the labels file is not `key="value"`.
    #[error("{path}:{line}: expected key=\"value\"")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// An extra label is not `key=value`.
    #[error("{0:?}: expected key=value")]
    Label(String),
}

/// Inputs, highest precedence first within each field.
pub struct Sources<'a> {
    /// The pod name the operator gave (wins over the environment).
    pub pod: Option<&'a str>,
    /// The namespace the operator gave (wins over the environment).
    pub namespace: Option<&'a str>,
    /// The labels file (None: [`DEFAULT_LABELS_FILE`] when it exists).
    pub labels_file: Option<&'a Path>,
    /// Extra `key=value` labels, overriding the file's.
    pub labels: &'a [String],
    /// Environment lookup (the real one, or a test's).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Identity {
    /// Resolves the identity: what the operator gave, then the Downward API, then the hostname
    /// and "default".
    pub fn resolve(src: &Sources<'_>) -> Result<Self, IdentityError> {
        let env = |k: &str| (src.env)(k).filter(|v| !v.is_empty());
        let pod = src
            .pod
            .map(str::to_owned)
            .or_else(|| env("POD_NAME"))
            .or_else(|| env("HOSTNAME"))
            .unwrap_or_else(|| "unknown".to_owned());
        let namespace = src
            .namespace
            .map(str::to_owned)
            .or_else(|| env("POD_NAMESPACE"))
            .unwrap_or_else(|| "default".to_owned());
        let mut labels = match src.labels_file {
            Some(path) => read_labels(path)?,
            None if Path::new(DEFAULT_LABELS_FILE).exists() => {
                read_labels(Path::new(DEFAULT_LABELS_FILE))?
            }
            None => HashMap::new(),
        };
        for label in src.labels.iter().filter(|l| !l.is_empty()) {
            let (k, v) = label
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| IdentityError::Label(label.clone()))?;
            labels.insert(k.to_owned(), v.to_owned());
        }
        Ok(Self {
            namespace,
            pod,
            labels,
        })
    }
}

fn read_labels(path: &Path) -> Result<HashMap<String, String>, IdentityError> {
    let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_labels(&text).map_err(|line| IdentityError::Syntax {
        path: path.to_owned(),
        line,
    })
}

/// Parses the Downward API format: one `key="value"` per line, the value a quoted string with
/// Go escapes. Returns the 1-based number of the first bad line on error.
pub fn parse_labels(text: &str) -> Result<HashMap<String, String>, usize> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (key, quoted) = line.split_once('=').ok_or(i + 1)?;
        if key.is_empty() {
            return Err(i + 1);
        }
        let value = unquote(quoted).ok_or(i + 1)?;
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(match chars.next()? {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' => '\\',
                '"' => '"',
                _ => return None,
            }),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downward_api_labels() {
        let text = "app=\"binder\"\npod-template-hash=\"5d9f\"\nnote=\"a \\\"quoted\\\" word\"\n\n";
        let l = parse_labels(text).unwrap();
        assert_eq!(l["app"], "binder");
        assert_eq!(l["pod-template-hash"], "5d9f");
        assert_eq!(l["note"], "a \"quoted\" word");
        assert_eq!(parse_labels("app=binder"), Err(1));
        assert_eq!(parse_labels("a=\"x\"\n=\"y\""), Err(2));
        assert_eq!(parse_labels("a=\"x\"y\""), Err(1));
    }

    #[test]
    fn flags_override_the_downward_api() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("labels");
        std::fs::write(&file, "app=\"binder\"\ntier=\"web\"\n").unwrap();
        let env = |k: &str| match k {
            "POD_NAME" => Some("binder-abc".to_owned()),
            "POD_NAMESPACE" => Some("shop".to_owned()),
            _ => None,
        };
        let flags = vec!["tier=worker".to_owned()];
        let id = Identity::resolve(&Sources {
            pod: None,
            namespace: Some("other"),
            labels_file: Some(&file),
            labels: &flags,
            env: &env,
        })
        .unwrap();
        assert_eq!(id.pod, "binder-abc");
        assert_eq!(id.namespace, "other");
        assert_eq!(id.labels["app"], "binder");
        assert_eq!(id.labels["tier"], "worker");
        let bad = vec!["novalue".to_owned()];
        let err = Identity::resolve(&Sources {
            pod: None,
            namespace: None,
            labels_file: Some(&dir.path().join("missing")),
            labels: &bad,
            env: &env,
        });
        assert!(err.is_err());
    }
}
