//! One scaling rule, validated: which sources feed it, what statistic over which window, how
//! sources combine, the optional formula, and how the result becomes a whole number.
use std::collections::BTreeMap;
use std::fmt;

use crate::selector::Selector;
use crate::window::SourceKey;

use super::formula::Formula;
use super::statistic::Statistic;

/// How per-source values combine for Object and External requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// The largest (default): the worst queue head drives scaling.
    Max,
    /// The mean.
    Mean,
    /// The sum.
    Sum,
}

impl Combine {
    /// Combines values (None when there are none).
    pub fn apply(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        Some(match self {
            Self::Max => values.iter().copied().fold(f64::MIN, f64::max),
            Self::Sum => values.iter().sum(),
            Self::Mean => values.iter().sum::<f64>() / values.len() as f64,
        })
    }
}

/// The unit ages are served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Seconds (default).
    Seconds,
    /// Milliseconds.
    Milliseconds,
}

impl Unit {
    /// Converts milliseconds to this unit.
    pub fn from_ms(self, ms: f64) -> f64 {
        match self {
            Self::Seconds => ms / 1000.0,
            Self::Milliseconds => ms,
        }
    }
}

/// How the result is made whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Up (default): a 0.2 s wait still counts as 1.
    Ceil,
    /// Down.
    Floor,
    /// To the nearest.
    Round,
}

impl Rounding {
    /// Applies the rounding.
    pub fn apply(self, v: f64) -> f64 {
        match self {
            Self::Ceil => v.ceil(),
            Self::Floor => v.floor(),
            Self::Round => v.round(),
        }
    }
}

/// What to answer when there is no fresh data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnMissing {
    /// A 404 that says why (the HPA then holds its replica count).
    NotFound,
    /// A fixed value.
    Fallback(f64),
}

/// Which sources feed a rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this vhost.
    pub vhost: Option<String>,
    /// Sources of this namespace ("*": all) instead of the request's own.
    pub namespace: Option<String>,
    /// Over the source pod's labels.
    pub selector: Selector,
}

impl SourceFilter {
    /// The one namespace whose sources can feed a request in `request_ns` (None for a
    /// root-scoped request); None: any namespace.
    pub fn namespace_scope<'a>(&'a self, request_ns: Option<&'a str>) -> Option<&'a str> {
        match self.namespace.as_deref() {
            Some("*") => None,
            Some(ns) => Some(ns),
            None => request_ns,
        }
    }

    /// Whether a source feeds the rule for a request in `request_ns` (None: root-scoped).
    pub fn admits(
        &self,
        request_ns: Option<&str>,
        key: &SourceKey,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        let ns_ok = match self.namespace.as_deref() {
            Some("*") => true,
            Some(ns) => key.namespace == ns,
            None => request_ns.is_none_or(|ns| key.namespace == ns),
        };
        ns_ok
            && self.queue.as_ref().is_none_or(|q| *q == key.queue)
            && self.vhost.as_ref().is_none_or(|v| *v == key.vhost)
            && self.selector.matches(labels)
    }
}

/// A validated scaling rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The metric name the HPA asks for.
    pub name: String,
    /// Which sources feed it.
    pub sources: SourceFilter,
    /// The window, in milliseconds.
    pub window_ms: i64,
    /// The statistic over the window.
    pub statistic: Statistic,
    /// How sources combine (Object and External).
    pub combine: Combine,
    /// Optional CEL formula.
    pub formula: Option<Formula>,
    /// Served unit for ages.
    pub unit: Unit,
    /// How the value is made whole.
    pub rounding: Rounding,
    /// Lower clamp (default 1).
    pub min: f64,
    /// Upper clamp.
    pub max: Option<f64>,
    /// Answer when no fresh data.
    pub on_missing: OnMissing,
    /// Stall detection: `messages_ready > 0` and no sample for this long (None: off).
    pub stall_after_ms: Option<i64>,
    /// Group-resources listed in discovery besides pods.
    pub resources: Vec<String>,
    /// Also served as an external metric.
    pub external: bool,
    /// Scale to zero: after this long with nothing ready, no delivery and no sidecar age (seen
    /// by the queue watch), the value is exactly 0, below `min` (None: never; see
    /// `crate::engine::watched`).
    pub idle_after_ms: Option<i64>,
}

impl Rule {
    /// The built-in rule: `seconds` = p90 age over 30 s of the request's namespace, ceil, min 1.
    pub fn default_seconds() -> Self {
        Self {
            name: "seconds".into(),
            sources: SourceFilter::default(),
            window_ms: 30_000,
            statistic: Statistic::Percentile(90.0),
            combine: Combine::Max,
            formula: None,
            unit: Unit::Seconds,
            rounding: Rounding::Ceil,
            min: 1.0,
            max: None,
            on_missing: OnMissing::NotFound,
            stall_after_ms: Some(30_000),
            resources: default_resources(),
            external: true,
            idle_after_ms: None,
        }
    }

    /// Rounds and clamps a value in the rule's unit.
    pub fn finish(&self, v: f64) -> f64 {
        let mut out = self.rounding.apply(v).max(self.min);
        if let Some(max) = self.max {
            out = out.min(max);
        }
        out
    }
}

/// Group-resources a rule is listed under when the config names none.
pub fn default_resources() -> Vec<String> {
    ["pods", "deployments.apps", "statefulsets.apps", "services"]
        .map(String::from)
        .to_vec()
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {}: {} over {}s, combine {:?}, {:?}, {:?}, min {}",
            self.name,
            self.statistic,
            self.window_ms as f64 / 1000.0,
            self.combine,
            self.unit,
            self.rounding,
            self.min
        )?;
        if let Some(max) = self.max {
            write!(f, ", max {max}")?;
        }
        if let Some(formula) = &self.formula {
            write!(f, ", formula `{}`", formula.source())?;
        }
        if let Some(idle) = self.idle_after_ms {
            write!(f, ", idle after {}s", idle as f64 / 1000.0)?;
        }
        Ok(())
    }
}
