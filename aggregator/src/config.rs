//! The rules file (`--config`, YAML): parsed strictly (unknown fields are errors), validated with
//! precise errors (`rules[1].statistic: unknown statistic "p0"…`) and turned into a [`RuleSet`].
//! Durations use the grammar of every flag of both binaries ([`dwell_runtime::duration`]: `500ms`,
//! `1.5s`, `1m30s`, `7d`, a bare number is seconds). The `brokers:` and `watch:` sections (the
//! queues the aggregator watches itself) are [`brokers`]'s. See aggregator/README.md for the
//! format.

mod brokers;
pub mod watch;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use dwell_runtime::duration;
use serde::Deserialize;

use crate::policy::rule::default_resources;
use crate::policy::{Combine, Formula, OnMissing, Rounding, Rule, RuleSet, SourceFilter, Unit};
use crate::selector::Selector;

/// Largest window a rule may ask for (the ring's memory grows with it only in slot width).
const MAX_WINDOW_MS: i64 = 24 * 3_600_000;

/// Why a config was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not parse into the expected shape.
    #[error("{0}")]
    Yaml(String),
    /// Fields parse but are invalid; every problem, as `path: reason`.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    stale_after: Option<String>,
    evict_after: Option<String>,
    brokers: Option<BTreeMap<String, brokers::RawBroker>>,
    watch: Option<Vec<brokers::RawWatch>>,
    rules: Option<Vec<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSources {
    queue: Option<String>,
    vhost: Option<String>,
    namespace: Option<String>,
    selector: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawOnMissing {
    NotFound,
    Fallback(f64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    sources: Option<RawSources>,
    window: Option<String>,
    statistic: Option<String>,
    combine: Option<String>,
    formula: Option<String>,
    unit: Option<String>,
    rounding: Option<String>,
    min: Option<f64>,
    max: Option<f64>,
    on_missing: Option<RawOnMissing>,
    stall_after: Option<String>,
    resources: Option<Vec<String>>,
    external: Option<bool>,
    idle_after: Option<String>,
}

/// Reads and validates a rules file.
pub fn load(path: &Path) -> Result<RuleSet, ConfigError> {
    load_with_text(path).map(|(rules, _)| rules)
}

/// Reads and validates a rules file; also returns the bytes read, so a watcher started with them
/// reloads only when the content changes. Bytes that are not UTF-8 are read as the watcher reads
/// them (replaced, then parsed), so a file means the same at start-up and on reload.
pub fn load_with_text(path: &Path) -> Result<(RuleSet, Vec<u8>), ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let rules = parse(&String::from_utf8_lossy(&bytes))?;
    Ok((rules, bytes))
}

/// Parses and validates rules YAML.
pub fn parse(text: &str) -> Result<RuleSet, ConfigError> {
    let raw: RawConfig =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    let mut errors = Vec::new();
    let defaults = RuleSet::default();
    let mut duration = |path: &str, text: Option<&String>, default: i64| match text {
        None => default,
        Some(t) => duration::parse_ms(t).unwrap_or_else(|e| {
            errors.push(format!("{path}: {e}"));
            default
        }),
    };
    let stale_after_ms = duration(
        "stale_after",
        raw.stale_after.as_ref(),
        defaults.stale_after_ms,
    );
    let evict_after_ms = duration(
        "evict_after",
        raw.evict_after.as_ref(),
        defaults.evict_after_ms,
    );
    let watch = brokers::watch_set(raw.brokers, raw.watch, stale_after_ms, &mut errors);
    let rules = match raw.rules {
        None => defaults.rules,
        Some(raws) if raws.is_empty() => {
            errors.push(
                "rules: at least one rule is needed (omit `rules` for the built-in one)".into(),
            );
            Vec::new()
        }
        Some(raws) => {
            let mut names = HashSet::new();
            let mut rules = Vec::new();
            for (i, raw) in raws.into_iter().enumerate() {
                let at = format!("rules[{i}]");
                if !names.insert(raw.name.to_ascii_lowercase()) {
                    errors.push(format!(
                        "{at}.name: {:?} is already used (names are unique, ignoring case)",
                        raw.name
                    ));
                }
                if let Some(rule) = rule(&at, raw, &mut errors) {
                    rules.push(rule);
                }
            }
            rules
        }
    };
    if errors.is_empty() {
        Ok(RuleSet {
            stale_after_ms,
            evict_after_ms,
            rules,
            watch,
        })
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

fn rule(at: &str, raw: RawRule, errors: &mut Vec<String>) -> Option<Rule> {
    let before = errors.len();
    let mut fail = |field: &str, reason: String| errors.push(format!("{at}.{field}: {reason}"));
    let valid_name = !raw.name.is_empty()
        && raw.name.len() <= 253
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if !valid_name {
        fail(
            "name",
            format!(
                "{:?} is not a metric name (1-253 of A-Z a-z 0-9 _ - . :)",
                raw.name
            ),
        );
    }
    let mut base = Rule::default_seconds();
    base.name = raw.name;
    if let Some(w) = &raw.window {
        match duration::parse_ms(w) {
            Ok(ms) if ms > MAX_WINDOW_MS => fail("window", format!("{w:?} is longer than 24h")),
            Ok(ms) => base.window_ms = ms,
            Err(e) => fail("window", e.to_string()),
        }
    }
    if let Some(s) = &raw.statistic {
        match s.parse() {
            Ok(s) => base.statistic = s,
            Err(e) => fail("statistic", format!("{e}")),
        }
    }
    if let Some(c) = &raw.combine {
        match c.as_str() {
            "max" => base.combine = Combine::Max,
            "mean" => base.combine = Combine::Mean,
            "sum" => base.combine = Combine::Sum,
            _ => fail(
                "combine",
                format!("unknown {c:?}: expected max, mean or sum"),
            ),
        }
    }
    if let Some(u) = &raw.unit {
        match u.as_str() {
            "seconds" => base.unit = Unit::Seconds,
            "milliseconds" => base.unit = Unit::Milliseconds,
            _ => fail(
                "unit",
                format!("unknown {u:?}: expected seconds or milliseconds"),
            ),
        }
    }
    if let Some(r) = &raw.rounding {
        match r.as_str() {
            "ceil" => base.rounding = Rounding::Ceil,
            "floor" => base.rounding = Rounding::Floor,
            "round" => base.rounding = Rounding::Round,
            _ => fail(
                "rounding",
                format!("unknown {r:?}: expected ceil, floor or round"),
            ),
        }
    }
    if let Some(f) = &raw.formula {
        match Formula::compile(f) {
            Ok(f) => base.formula = Some(f),
            Err(e) => fail("formula", e.to_string()),
        }
    }
    if let Some(min) = raw.min {
        if min.is_finite() && min >= 0.0 {
            base.min = min;
        } else {
            fail("min", format!("{min} must be a number >= 0"));
        }
    }
    if let Some(max) = raw.max {
        if !max.is_finite() || max < base.min.max(0.0) {
            fail(
                "max",
                format!("{max} must be a number >= min ({})", base.min),
            );
        } else {
            base.max = Some(max);
        }
    }
    match raw.on_missing {
        None | Some(RawOnMissing::NotFound) => {}
        Some(RawOnMissing::Fallback(v)) if v.is_finite() && v >= 0.0 => {
            base.on_missing = OnMissing::Fallback(v)
        }
        Some(RawOnMissing::Fallback(v)) => {
            fail("on_missing.fallback", format!("{v} must be a number >= 0"))
        }
    }
    base.stall_after_ms = match raw.stall_after.as_deref() {
        None => Some(base.window_ms),
        Some("off") => None,
        Some(s) => match duration::parse_ms(s) {
            Ok(ms) => Some(ms),
            Err(e) => {
                fail("stall_after", format!("{e} (or \"off\")"));
                None
            }
        },
    };
    if let Some(src) = raw.sources {
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let selector = match Selector::parse(src.selector.as_deref().unwrap_or("")) {
            Ok(s) => s,
            Err(e) => {
                fail("sources.selector", e.to_string());
                Selector::default()
            }
        };
        base.sources = SourceFilter {
            queue: nonempty(src.queue),
            vhost: nonempty(src.vhost),
            namespace: nonempty(src.namespace),
            selector,
        };
    }
    if let Some(resources) = raw.resources {
        for (i, r) in resources.iter().enumerate() {
            let ok = !r.is_empty()
                && r.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')
                });
            if !ok {
                fail(
                    &format!("resources[{i}]"),
                    format!("{r:?} is not a group-resource like deployments.apps"),
                );
            }
        }
        base.resources = resources;
        if !base.resources.iter().any(|r| r == "pods") {
            base.resources.insert(0, "pods".into());
        }
    } else {
        base.resources = default_resources();
    }
    if let Some(e) = raw.external {
        base.external = e;
    }
    if let Some(idle) = &raw.idle_after {
        match duration::parse_ms(idle) {
            Ok(ms) => base.idle_after_ms = Some(ms),
            Err(e) => fail("idle_after", e.to_string()),
        }
    }
    (errors.len() == before).then_some(base)
}

#[cfg(test)]
mod tests;
