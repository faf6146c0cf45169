//! One evaluation of a rule for one request, recording every step. Serving and `Explain` both
//! run this same code, so what Explain shows is what the HPA gets; serving only skips building
//! the steps' text and the inputs' copies ([`Mode`]). Every evaluation also says until when its
//! answer holds as time passes with the window unchanged ([`Evaluation::valid_until_ms`]), which
//! is what lets the engine cache answers exactly.
use std::collections::BTreeMap;

use crate::clock::rfc3339;
use crate::policy::{OnMissing, Rule, RuleSet, Statistic};
use crate::selector::Selector;
use crate::window::{BucketsKept, SourceSnapshot, SourceWindow, WindowStore};

use super::watched;

/// The kind of request being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One object; one combined value.
    Object,
    /// Pods; one value per pod.
    Pods,
    /// An external metric; one combined value.
    External,
}

/// Which pods a Pods request is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Pods {
    /// Not a Pods request (every pod counts).
    Any,
    /// One pod by name.
    Named(String),
    /// Pods whose labels match.
    Selected(Selector),
}

/// Whose sources a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One namespace's (the request's, or the rule's `sources.namespace`).
    Namespace(String),
    /// A root-scoped object (e.g. a node): every namespace's, unless the rule names one. Served
    /// only by rules that list the resource.
    Cluster,
}

/// What is asked, in the engine's terms (built by [`super::request`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Metric name.
    pub metric: String,
    /// Request kind.
    pub kind: Kind,
    /// Whose sources count.
    pub scope: Scope,
    /// The group-resource described (custom requests only).
    pub resource: Option<String>,
    /// Pods narrowing (Pods requests).
    pub pods: Pods,
    /// Narrows the metric's series (`queue`, `vhost` and the pod's labels).
    pub metric_selector: Selector,
    /// The described object's name (`*` for all), as served.
    pub object_name: String,
    /// The object, for messages (e.g. `deployments.apps default/binder`, `nodes n1`).
    pub object: String,
}

impl Request {
    /// The request's namespace; None for root-scoped requests.
    fn namespace(&self) -> Option<&str> {
        match &self.scope {
            Scope::Namespace(ns) => Some(ns),
            Scope::Cluster => None,
        }
    }
}

/// One step of the computation.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What the step did.
    pub description: String,
    /// The value after it (NaN when it produced none).
    pub value: f64,
}

/// One value computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The object it describes (the pod, for Pods requests).
    pub object_name: String,
    /// The series' labels (`queue`, `vhost` when every input shares them).
    pub labels: BTreeMap<String, String>,
    /// The served value, rounded and clamped.
    pub value: f64,
    /// Observation time of the newest data used (Unix ms).
    pub observed_at_ms: i64,
}

/// The whole evaluation: inputs, steps, and values or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The rule used (None when no rule has the name; also None when serving).
    pub rule: Option<Rule>,
    /// Every source the rule selected, live or stale (empty when serving).
    pub inputs: Vec<SourceSnapshot>,
    /// Steps in order (empty when serving).
    pub steps: Vec<Step>,
    /// Values; empty when there are none.
    pub outcomes: Vec<Outcome>,
    /// Why there is no value (when `outcomes` is empty).
    pub missing: Option<String>,
    /// The rule's window (None when no rule has the name).
    pub window_ms: Option<i64>,
    /// The answer (outcomes and missing) is the same at every time from the evaluation's `now`
    /// up to and including this one, as long as the window and the rules do not change. Each
    /// step that reads the clock lowers it (slots entering or leaving the window, a source going
    /// stale, a stall starting or growing, a rate's span, a fallback stamped now).
    pub valid_until_ms: i64,
    /// Whether steps and inputs are recorded.
    mode: Mode,
}

/// What an evaluation records besides the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything `Explain` shows: the rule, the inputs, every step's text.
    Explain,
    /// Only the answer (what the HPA gets): no step text is formatted, nothing is copied.
    Serve,
}

/// A source's contribution to a group.
pub(super) struct Contribution {
    /// The rule's statistic, in the rule's unit (None: no ages).
    pub(super) stat: Option<f64>,
    /// The formula's statistics.
    pub(super) vars: BTreeMap<String, f64>,
    /// Observation time of the newest data used.
    pub(super) observed_at_ms: i64,
    /// The contribution is the same up to this time (a stall starts, or grows).
    pub(super) holds_until_ms: i64,
}

/// Evaluates `req` against the rules and the window at `now_ms`, with every step (`Explain`).
pub fn evaluate(rules: &RuleSet, store: &WindowStore, req: &Request, now_ms: i64) -> Evaluation {
    evaluate_as(Mode::Explain, rules, store, req, now_ms)
}

/// The rule `req` asks for.
pub fn rule_for<'a>(rules: &'a RuleSet, req: &Request) -> Option<&'a Rule> {
    match req.kind {
        Kind::External => rules.external(&req.metric),
        _ => rules.custom(&req.metric),
    }
}

/// The namespace whose sources `req` reads (None: every namespace), once its rule is known.
pub fn scope_of<'a>(rule: &'a Rule, req: &'a Request) -> Option<&'a str> {
    rule.sources.namespace_scope(req.namespace())
}

/// Evaluates `req` at `now_ms`, recording what `mode` asks for. The answer is the same in both
/// modes.
pub fn evaluate_as(
    mode: Mode,
    rules: &RuleSet,
    store: &WindowStore,
    req: &Request,
    now_ms: i64,
) -> Evaluation {
    let rule = rule_for(rules, req);
    let mut ev = Evaluation {
        rule: if mode == Mode::Explain {
            rule.cloned()
        } else {
            None
        },
        inputs: Vec::new(),
        steps: Vec::new(),
        outcomes: Vec::new(),
        missing: None,
        window_ms: rule.map(|r| r.window_ms),
        valid_until_ms: i64::MAX,
        mode,
    };
    let Some(rule) = rule else {
        ev.missing = Some(format!("no rule serves a metric named {:?}", req.metric));
        return ev;
    };
    if let (Scope::Cluster, Some(resource)) = (&req.scope, &req.resource)
        && !rule.resources.contains(resource)
    {
        ev.missing = Some(format!(
            "rule {} does not serve {resource}, a cluster-scoped resource (it serves {}); list \
             {resource} in the rule's resources to serve it from the sources of every namespace",
            rule.name,
            rule.resources.join(", ")
        ));
        return ev;
    }
    ev.step(|| format!("{rule}"), f64::NAN);
    let request_ns = req.namespace();
    let scope = scope_of(rule, req);
    // Serving keeps only the buckets the rule's percentiles need; Explain, the reference, all.
    let quantiles: Vec<f64> = std::iter::once(rule.statistic)
        .chain(
            rule.formula
                .iter()
                .flat_map(|f| f.statistics().iter().copied()),
        )
        .filter_map(|s| match s {
            Statistic::Percentile(p) => Some(p / 100.0),
            _ => None,
        })
        .collect();
    let kept = match mode {
        Mode::Explain => BucketsKept::All,
        Mode::Serve => BucketsKept::Answering(&quantiles),
    };
    let windows = store.window(rule.window_ms, now_ms, scope, kept, |key, labels| {
        rule.sources.admits(request_ns, key, labels)
            && watched::admits(req.kind, key)
            && (req.metric_selector.is_empty()
                || req
                    .metric_selector
                    .matches(&series_labels(&key.queue, &key.vhost, labels)))
            && match &req.pods {
                Pods::Any => true,
                Pods::Named(pod) => key.pod == *pod,
                Pods::Selected(sel) => sel.matches(labels),
            }
    });
    if mode == Mode::Explain {
        ev.inputs = windows.iter().map(|w| w.source.snapshot()).collect();
    }
    let uses_rate = rule.statistic == Statistic::Rate
        || rule
            .formula
            .as_ref()
            .is_some_and(|f| f.statistics().contains(&Statistic::Rate));
    // A watched queue goes stale sooner than a sidecar (engine/watched.rs).
    let stale_since = |w: &SourceWindow| {
        w.source
            .last_report_ms
            .saturating_add(watched::stale_after_ms(&w.source, rules.stale_after_ms))
    };
    for w in &windows {
        // A live source goes stale (stale ones stay so until evicted, which changes the window);
        // its slots enter or leave the window; a rate's span moves.
        let live_until = stale_since(w);
        if now_ms <= live_until {
            ev.holds_until(live_until);
        }
        ev.holds_until(w.slots_change_at_ms - 1);
        if uses_rate {
            ev.holds_until(w.span_changes_at_ms - 1);
        }
    }
    let (live, stale): (Vec<&SourceWindow>, Vec<&SourceWindow>) =
        windows.iter().partition(|w| now_ms <= stale_since(w));
    for w in &stale {
        let since = stale_since(w);
        ev.step(
            || format!("{}: stale since {}, not counted", name(w), rfc3339(since)),
            f64::NAN,
        );
    }
    let mut groups: BTreeMap<&str, Vec<&SourceWindow>> = BTreeMap::new();
    for w in &live {
        let group = match req.kind {
            Kind::Pods => w.source.key.pod.as_str(),
            _ => req.object_name.as_str(),
        };
        groups.entry(group).or_default().push(w);
    }
    let mut reasons = Vec::new();
    for (object_name, members) in &groups {
        match ev.group(rule, req.kind, object_name, members, now_ms) {
            Ok(outcome) => ev.outcomes.push(outcome),
            Err(reason) => reasons.push(reason),
        }
    }
    if ev.outcomes.is_empty() {
        let reason = if !reasons.is_empty() {
            reasons.join("; ")
        } else if let Some(newest) = stale.iter().map(|w| stale_since(w)).max() {
            format!("every source is stale (stale since {})", rfc3339(newest))
        } else {
            "no source has reported it (never seen)".to_string()
        };
        match (rule.on_missing, &req.pods) {
            (OnMissing::Fallback(v), Pods::Any | Pods::Named(_)) => {
                ev.step(|| format!("no data ({reason}): fallback"), v);
                // Stamped with the time of the request.
                ev.holds_until(now_ms);
                let object_name = match &req.pods {
                    Pods::Named(p) => p.clone(),
                    _ => req.object_name.clone(),
                };
                ev.outcomes.push(Outcome {
                    object_name,
                    labels: BTreeMap::new(),
                    value: v,
                    observed_at_ms: now_ms,
                });
            }
            _ => ev.missing = Some(reason),
        }
    }
    ev
}

impl Evaluation {
    /// Records a step when explaining; when serving its text is never built.
    fn step(&mut self, description: impl FnOnce() -> String, value: f64) {
        if self.mode == Mode::Explain {
            self.steps.push(Step {
                description: description(),
                value,
            });
        }
    }

    /// Notes that the answer may differ after `t_ms`.
    fn holds_until(&mut self, t_ms: i64) {
        self.valid_until_ms = self.valid_until_ms.min(t_ms);
    }

    /// Computes one group's value (all of an Object/External request, or one pod).
    fn group(
        &mut self,
        rule: &Rule,
        kind: Kind,
        object_name: &str,
        members: &[&SourceWindow],
        now_ms: i64,
    ) -> Result<Outcome, String> {
        let prefix = || match kind {
            Kind::Pods => format!("[pod {object_name}] "),
            _ => String::new(),
        };
        // Queues the aggregator watches itself: idle → exactly 0, otherwise which sources count
        // and what a sidecar borrows from the watch (engine/watched.rs).
        // Their answers move with the clock (quiet and backlog stretches, `idle_after`), so
        // none is kept past the time of the request.
        if members.iter().any(|w| w.source.watched.is_some()) {
            self.holds_until(now_ms);
        }
        let view = watched::view(rule, members, now_ms);
        for note in &view.notes {
            self.step(|| format!("{}{note}", prefix()), f64::NAN);
        }
        if let Some((why, observed_at_ms)) = view.idle {
            self.step(|| format!("{}{why}", prefix()), 0.0);
            return Ok(Outcome {
                object_name: object_name.to_string(),
                labels: shared_labels(members),
                value: 0.0,
                observed_at_ms: observed_at_ms.min(now_ms),
            });
        }
        let members: Vec<&SourceWindow> = view.members.iter().map(|w| w.as_ref()).collect();
        let members = members.as_slice();
        let mut parts = Vec::new();
        for w in members {
            let c = match w.source.watched {
                Some(_) => watched::contribution(rule, w, now_ms, &mut |d, v| {
                    self.step(|| format!("{}{}: {}", prefix(), name(w), d()), v)
                }),
                None => contribution(rule, w, now_ms, &mut |d, v| {
                    self.step(|| format!("{}{}: {}", prefix(), name(w), d()), v)
                }),
            };
            self.holds_until(c.holds_until_ms);
            parts.push(c);
        }
        let stats: Vec<f64> = parts.iter().filter_map(|c| c.stat).collect();
        let Some(mut value) = rule.combine.apply(&stats) else {
            let window = rule.window_ms as f64 / 1000.0;
            return Err(format!(
                "no ages in the last {window}s from {} live source(s)",
                members.len()
            ));
        };
        self.step(
            || {
                format!(
                    "{}combine {:?} over {} source(s)",
                    prefix(),
                    rule.combine,
                    stats.len()
                )
            },
            value,
        );
        if let Some(formula) = &rule.formula {
            let mut vars = BTreeMap::new();
            vars.insert("value".to_string(), value);
            vars.insert("sources".to_string(), stats.len() as f64);
            let queue = members.iter().filter_map(|w| w.source.queue_state);
            let (ready, consumers) = queue.fold((0u64, 0u32), |(r, c), q| {
                (r.max(q.messages_ready), c.max(q.consumers))
            });
            vars.insert("messages_ready".to_string(), ready as f64);
            vars.insert("consumers".to_string(), f64::from(consumers));
            for s in formula.statistics() {
                let name = s.variable();
                let values: Vec<f64> = parts
                    .iter()
                    .filter_map(|c| c.vars.get(&name))
                    .copied()
                    .collect();
                vars.insert(name, rule.combine.apply(&values).unwrap_or(0.0));
            }
            let shown = || {
                let shown: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
                shown.join(", ")
            };
            value = formula.evaluate(&vars).map_err(|e| {
                self.step(
                    || format!("{}formula `{}`: {e}", prefix(), formula.source()),
                    f64::NAN,
                );
                e.to_string()
            })?;
            self.step(
                || {
                    format!(
                        "{}formula `{}` with {}",
                        prefix(),
                        formula.source(),
                        shown()
                    )
                },
                value,
            );
        }
        let mut served = rule.finish(value);
        self.step(
            || {
                let max = rule.max.map(|m| format!(", max {m}")).unwrap_or_default();
                format!(
                    "{}{:?}, clamp min {}{max}",
                    prefix(),
                    rule.rounding,
                    rule.min
                )
            },
            served,
        );
        if view.wake && served < 1.0 {
            served = 1.0;
            self.step(
                || {
                    format!(
                        "{}a watched queue with no sidecar has ready messages: at least 1",
                        prefix()
                    )
                },
                served,
            );
        }
        let newest = parts
            .iter()
            .filter(|c| c.stat.is_some())
            .map(|c| c.observed_at_ms)
            .max();
        if newest.is_none_or(|t| t > now_ms) {
            // Stamped with, or clamped to, the time of the request.
            self.holds_until(now_ms);
        }
        let observed_at_ms = newest.unwrap_or(now_ms).min(now_ms);
        Ok(Outcome {
            object_name: object_name.to_string(),
            labels: shared_labels(members),
            value: served,
            observed_at_ms,
        })
    }
}

/// One source's statistic (in the rule's unit), formula variables and observation time.
/// `step` gets each step's text as a closure, called only when explaining.
fn contribution(
    rule: &Rule,
    w: &SourceWindow,
    now_ms: i64,
    step: &mut dyn FnMut(&dyn Fn() -> String, f64),
) -> Contribution {
    let window_s = rule.window_ms as f64 / 1000.0;
    let ages = &w.ages;
    let src = &w.source;
    let mut observed_at_ms = ages.last().map(|(_, at)| at).unwrap_or(i64::MIN);
    let queue = src.queue_state;
    // An empty queue with no ages: nothing waits, so ages are 0 (not "no data").
    let empty_queue = ages.count() == 0 && queue.is_some_and(|q| q.messages_ready == 0);
    let mut holds_until_ms = i64::MAX;
    // Stall: messages wait but no sample arrived for stall_after: the head keeps ageing.
    let stall_ms = match (rule.stall_after_ms, queue) {
        (Some(after), Some(q)) if q.messages_ready > 0 => {
            let (last_age, last_at) = src.last_sample.unwrap_or((0, src.first_seen_ms));
            let silence = now_ms - last_at;
            // Stalled, the head age grows with the clock; not yet, it stalls after `after`.
            holds_until_ms = if silence >= after {
                now_ms
            } else {
                last_at.saturating_add(after) - 1
            };
            (silence >= after).then(|| {
                step(
                    &|| {
                        format!(
                            "stalled: {} ready, no sample for {}s; head age >= {}s",
                            q.messages_ready,
                            silence as f64 / 1000.0,
                            (last_age + silence) as f64 / 1000.0
                        )
                    },
                    rule.unit.from_ms((last_age + silence) as f64),
                );
                (last_age + silence, q.observed_at_ms)
            })
        }
        _ => None,
    };
    if empty_queue || stall_ms.is_some() {
        observed_at_ms = observed_at_ms.max(queue.map(|q| q.observed_at_ms).unwrap_or(now_ms));
    }
    let value_of = |s: Statistic| -> Option<f64> {
        let mut v = s.compute(ages, w.span_ms.max(rule.window_ms));
        if s.is_age() {
            if v.is_none() && empty_queue {
                v = Some(0.0);
            }
            if let Some((stall, _)) = stall_ms {
                v = Some(v.map_or(stall as f64, |x| x.max(stall as f64)));
            }
            v.map(|ms| rule.unit.from_ms(ms))
        } else {
            v
        }
    };
    let stat = value_of(rule.statistic);
    let detail = || {
        if empty_queue {
            "queue empty, no ages".to_string()
        } else {
            format!("{} ages", ages.count())
        }
    };
    step(
        &|| format!("{} over {window_s}s ({})", rule.statistic, detail()),
        stat.unwrap_or(f64::NAN),
    );
    let mut vars = BTreeMap::new();
    if let Some(f) = &rule.formula {
        for s in f.statistics() {
            if let Some(v) = value_of(*s) {
                vars.insert(s.variable(), v);
            }
        }
    }
    Contribution {
        stat,
        vars,
        observed_at_ms,
        holds_until_ms,
    }
}

/// A source's series labels: the pod's labels plus `queue` and `vhost`.
pub fn series_labels(
    queue: &str,
    vhost: &str,
    labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = labels.clone();
    out.insert("queue".into(), queue.into());
    out.insert("vhost".into(), vhost.into());
    out
}

/// `queue` and `vhost` when every member shares them.
fn shared_labels(members: &[&SourceWindow]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(first) = members.first() {
        let k = &first.source.key;
        if members.iter().all(|w| w.source.key.queue == k.queue) {
            out.insert("queue".to_string(), k.queue.clone());
        }
        if members.iter().all(|w| w.source.key.vhost == k.vhost) {
            out.insert("vhost".to_string(), k.vhost.clone());
        }
    }
    out
}

fn name(w: &SourceWindow) -> String {
    let k = &w.source.key;
    format!(
        "source {}/{} (queue {}, vhost {})",
        k.namespace, k.pod, k.queue, k.vhost
    )
}
