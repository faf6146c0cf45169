//! The team's scaling logic, as data: rules (which sources, statistic, window, combine, formula,
//! unit, rounding, clamps, missing-data answer, stall detection, scale to zero) and the rule set
//! in force, with the queues the aggregator watches itself.
pub mod formula;
pub mod rule;
pub mod statistic;

pub use formula::{Formula, FormulaError};
pub use rule::{Combine, OnMissing, Rounding, Rule, SourceFilter, Unit};
pub use statistic::Statistic;

/// The rules in force plus the source lifetime settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    /// A source silent this long stops counting.
    pub stale_after_ms: i64,
    /// A stale source is forgotten this long after it went stale.
    pub evict_after_ms: i64,
    /// The rules, names unique (case-insensitively).
    pub rules: Vec<Rule>,
    /// The brokers and queues the aggregator watches itself (`brokers:`, `watch:`).
    pub watch: crate::watch::WatchSet,
}

impl Default for RuleSet {
    /// The built-in rule set: metric `seconds` (see [`Rule::default_seconds`]).
    fn default() -> Self {
        Self {
            stale_after_ms: 30_000,
            evict_after_ms: 300_000,
            rules: vec![Rule::default_seconds()],
            watch: crate::watch::WatchSet::default(),
        }
    }
}

impl RuleSet {
    /// The rule for a custom metric (exact name first, then case-insensitive).
    pub fn custom(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name).or_else(|| {
            self.rules
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(name))
        })
    }

    /// The rule for an external metric (the HPA lower-cases names: matched case-insensitively).
    pub fn external(&self, name: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.external && r.name.eq_ignore_ascii_case(name))
    }

    /// The longest window of any rule (what the window ring must cover).
    pub fn longest_window_ms(&self) -> i64 {
        self.rules
            .iter()
            .map(|r| r.window_ms)
            .max()
            .unwrap_or(30_000)
    }
}
