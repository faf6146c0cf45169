//! Kubernetes label selectors (`a=b,c!=d,e in (f,g),h notin (i),j,!k,l>3`), parsed once into a
//! type that matches label sets.
//!
//! Grammar, semantics, validation and `Display` follow apimachinery's `labels.Parse` and
//! `Selector.String()` (`pkg/labels/selector.go`): requirements are ANDed, sorted by key, and a
//! selector's text round-trips through `Display`.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod parse;
#[cfg(test)]
mod tests;

pub use parse::{LabelError, validate_label_key, validate_label_value};

/// A parse failure, with a message in the style of apimachinery's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

/// A requirement's operator, as apimachinery's `selection.Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// `k=v`
    Equals,
    /// `k==v`
    DoubleEquals,
    /// `k!=v`: also true when `k` is absent.
    NotEquals,
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)`: also true when `k` is absent.
    NotIn,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
    /// `k>n`: the label's value parses as an integer greater than `n`.
    GreaterThan,
    /// `k<n`: the label's value parses as an integer less than `n`.
    LessThan,
}

/// One requirement: a key, an operator and its (sorted, de-duplicated) values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted (empty for `Exists`/`DoesNotExist`).
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(String::as_str)
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let single = self.values.first().map(String::as_str).unwrap_or("");
        let list = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        let key = &self.key;
        match self.operator {
            Operator::Equals => write!(f, "{key}={single}"),
            Operator::DoubleEquals => write!(f, "{key}=={single}"),
            Operator::NotEquals => write!(f, "{key}!={single}"),
            Operator::In => write!(f, "{key} in ({})", list()),
            Operator::NotIn => write!(f, "{key} notin ({})", list()),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::GreaterThan => write!(f, "{key}>{single}"),
            Operator::LessThan => write!(f, "{key}<{single}"),
        }
    }
}

/// A parsed label selector: the AND of its requirements. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

impl Selector {
    /// Parses selector text; empty (or all-blank) text is the empty selector.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut reqs = parse::parse(text)?;
        // apimachinery sorts by key (stable), which makes `Display` canonical.
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { reqs })
    }

    /// True when the selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.reqs
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, req) in self.reqs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{req}")?;
        }
        Ok(())
    }
}
