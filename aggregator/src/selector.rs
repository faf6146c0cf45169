//! Kubernetes label selectors (`a=b,c!=d,e in (f,g),h notin (i),j,!k`), parsed once into a type.
//!
//! PLACEHOLDER: equality-only stub so the crate compiles; the full grammar lands with the API work.
//! The public API (`Selector::parse`, `matches`, `is_empty`, `Display`) is the contract.
use std::collections::BTreeMap;
use std::fmt;

/// A parse failure, with a message in the style of apimachinery's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

/// A parsed label selector: the AND of its requirements. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    reqs: Vec<(String, String)>,
}

impl Selector {
    /// Parses selector text; empty text is the empty selector.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| SelectorError(format!("unsupported requirement {part:?}")))?;
            reqs.push((
                k.trim().to_string(),
                v.trim_start_matches('=').trim().to_string(),
            ));
        }
        Ok(Self { reqs })
    }

    /// True when the selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.reqs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}
