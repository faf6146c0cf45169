//! Scale from zero: what queues the aggregator watches itself (`crate::watch`, window sources
//! with queue state and no ages, `crate::window::watched`) mean for a value. Kept apart from
//! [`super::evaluate`], which calls in at four marked places: which sources a request sees
//! ([`admits`]), when a source is stale ([`stale_after_ms`]), how a group's sources are read
//! ([`view`], [`contribution`]) and the floor of a waking value ([`View::wake`]).
//!
//! The semantics (aggregator/README.md, "Scale from zero"), per (queue, vhost) of a group:
//! - **A sidecar reports the queue**: the sidecars' sources rule, as without the watch; a
//!   sidecar source without queue state takes the watch's (stall detection, an empty queue's 0,
//!   `messages_ready` and `consumers` in formulas). The watched source adds nothing else.
//! - **No sidecar** (e.g. zero replicas): the watched source is the queue's input. Its age
//!   statistics are a lower bound of the head's age: since the watch first saw the backlog
//!   with no consumer, or the management API's head timestamp when that is older; 0 with nothing
//!   ready. `count` and `rate` are 0 (no delivery is seen). With ready messages the served
//!   value is at least 1 whatever `min`, so an HPA at zero wakes.
//! - **Idle** (the rule has `idle_after`): every source of the group shows nothing ready and no
//!   sidecar age within `idle_after`, and every watched queue has been seen empty for
//!   `idle_after` — or has no consumer and no sidecar at all, where nothing can be delivered —
//!   then the value is exactly 0, below `min`, so the HPA can scale to (and stay at) zero. Only a
//!   fresh watch can say so: a watched source is stale after three intervals without a
//!   successful poll (then `on_missing` decides), so a broker going away never yields a stale 0.
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use super::evaluate::{Contribution, Kind};
use crate::policy::{Rule, Statistic};
use crate::window::watched::is_watched;
use crate::window::{SourceKey, SourceView, SourceWindow};

/// A watched source counts as stale after this many intervals without a successful poll.
pub const STALE_INTERVALS: i64 = 3;

/// A head timestamp from the management API older than this is not used (its data is itself
/// up to ~10 s old; a read this old describes a head that may be gone).
const HEAD_READ_MAX_AGE_MS: i64 = 30_000;

/// Ages above this are not believed (a publisher clock far off).
const MAX_HEAD_AGE_MS: i64 = 30 * 86_400_000;

/// Whether a source can feed a request of `kind`: watched queues have no pod, so they never
/// answer a Pods request (its items must name real pods).
pub fn admits(kind: Kind, key: &SourceKey) -> bool {
    kind != Kind::Pods || !is_watched(key)
}

/// How long a source stays live after its last report: `stale_after`, and for a watched queue
/// at most [`STALE_INTERVALS`] of its poll interval.
pub fn stale_after_ms(source: &SourceView, stale_after_ms: i64) -> i64 {
    match &source.watched {
        Some(w) => stale_after_ms.min(STALE_INTERVALS * w.interval_ms),
        None => stale_after_ms,
    }
}

/// How one group's live sources are read.
pub struct View<'a> {
    /// The group is idle: the value is exactly 0 (why, and the newest watch observation).
    pub idle: Option<(String, i64)>,
    /// The sources to compute from, in order: sidecars (with the watch's queue state where they
    /// had none) and the watched queues no sidecar reports.
    pub members: Vec<Cow<'a, SourceWindow>>,
    /// Notes for Explain (queue state lent, watched sources not counted).
    pub notes: Vec<String>,
    /// A watched queue no sidecar reports has ready messages: serve at least 1.
    pub wake: bool,
}

/// Reads a group's live sources at `now_ms` under `rule`.
pub fn view<'a>(rule: &Rule, members: &[&'a SourceWindow], now_ms: i64) -> View<'a> {
    // Without a watched queue (every group of a deployment without `watch:`): as before, and
    // nothing allocated beyond the list itself.
    if !members.iter().any(|w| w.source.watched.is_some()) {
        return View {
            idle: None,
            members: members.iter().map(|w| Cow::Borrowed(*w)).collect(),
            notes: Vec::new(),
            wake: false,
        };
    }
    let queue_of = |w: &SourceWindow| (w.source.key.queue.clone(), w.source.key.vhost.clone());
    let reported: HashSet<(String, String)> = members
        .iter()
        .filter(|w| !is_watched(&w.source.key))
        .map(|w| queue_of(w))
        .collect();
    let mut watched_state = BTreeMap::new();
    for w in members.iter().filter(|w| is_watched(&w.source.key)) {
        if let Some(q) = w.source.queue_state {
            watched_state
                .entry(queue_of(w))
                .or_insert((q, w.source.key.pod.clone()));
        }
    }
    let mut view = View {
        idle: idle(rule, members, &reported, now_ms),
        members: Vec::new(),
        notes: Vec::new(),
        wake: false,
    };
    for w in members {
        let queue = queue_of(w);
        if is_watched(&w.source.key) {
            if reported.contains(&queue) {
                view.notes.push(format!(
                    "{}: not counted, a sidecar reports queue {}",
                    w.source.key.pod, queue.0
                ));
                continue;
            }
            view.wake |= w.source.queue_state.is_some_and(|q| q.messages_ready > 0);
            view.members.push(Cow::Borrowed(*w));
        } else if w.source.queue_state.is_none()
            && let Some((q, pod)) = watched_state.get(&queue)
        {
            let mut lent = (*w).clone();
            lent.source.queue_state = Some(*q);
            view.notes.push(format!(
                "{}/{}: queue state from {pod} ({} ready, {} consumers)",
                w.source.key.namespace, w.source.key.pod, q.messages_ready, q.consumers
            ));
            view.members.push(Cow::Owned(lent));
        } else {
            view.members.push(Cow::Borrowed(*w));
        }
    }
    view
}

/// Why the group is idle, if it is (and the newest watch observation).
fn idle(
    rule: &Rule,
    members: &[&SourceWindow],
    reported: &HashSet<(String, String)>,
    now_ms: i64,
) -> Option<(String, i64)> {
    let idle_after = rule.idle_after_ms?;
    let since = now_ms - idle_after;
    let mut watched = 0;
    let mut observed_at_ms = i64::MIN;
    for w in members {
        let queue = w.source.queue_state;
        if queue.is_some_and(|q| q.messages_ready > 0) {
            return None;
        }
        match &w.source.watched {
            Some(state) => {
                let q = queue?;
                let nobody = q.consumers == 0
                    && !reported
                        .contains(&(w.source.key.queue.clone(), w.source.key.vhost.clone()));
                if !nobody && state.quiet_since_ms.is_none_or(|t| t > since) {
                    return None;
                }
                watched += 1;
                observed_at_ms = observed_at_ms.max(q.observed_at_ms);
            }
            None => {
                if w.source.last_sample.is_some_and(|(_, at)| at > since) {
                    return None;
                }
            }
        }
    }
    (watched > 0).then(|| {
        (
            format!(
                "idle: nothing ready, no delivery and no sidecar age for {}s, seen by {watched} \
                 watched queue(s): exactly 0 (idle_after, below min {})",
                idle_after as f64 / 1000.0,
                rule.min
            ),
            observed_at_ms,
        )
    })
}

/// A watched queue's statistic (in the rule's unit) and formula variables: ages are the lower
/// bound of the head's age, `count` and `rate` 0.
pub(super) fn contribution(
    rule: &Rule,
    w: &SourceWindow,
    now_ms: i64,
    step: &mut dyn FnMut(&dyn Fn() -> String, f64),
) -> Contribution {
    let q = w.source.queue_state.unwrap_or_default();
    let (head_ms, how) = head_age(w, now_ms);
    let value_of = |s: Statistic| -> f64 {
        if s.is_age() {
            rule.unit.from_ms(head_ms as f64)
        } else {
            0.0
        }
    };
    let stat = value_of(rule.statistic);
    step(
        &|| {
            format!(
                "watched: {} ready, {} consumers; {} = head age >= {}s ({how})",
                q.messages_ready,
                q.consumers,
                rule.statistic,
                head_ms as f64 / 1000.0
            )
        },
        stat,
    );
    let mut vars = BTreeMap::new();
    if let Some(f) = &rule.formula {
        for s in f.statistics() {
            vars.insert(s.variable(), value_of(*s));
        }
    }
    Contribution {
        stat: Some(stat),
        vars,
        observed_at_ms: q.observed_at_ms,
        // The head's age grows with the clock.
        holds_until_ms: now_ms,
    }
}

/// The lower bound of a watched queue's head age, and where it comes from.
fn head_age(w: &SourceWindow, now_ms: i64) -> (i64, &'static str) {
    let Some(q) = w.source.queue_state else {
        return (0, "no queue state");
    };
    if q.messages_ready == 0 {
        return (0, "nothing ready");
    }
    let Some(state) = &w.source.watched else {
        return (0, "not watched");
    };
    let mut best = (
        0,
        "a consumer is attached and no head timestamp: unknown, 0",
    );
    if let Some(since) = state.backlog_since_ms {
        best = (
            (now_ms - since).max(0),
            "since the watch first saw the backlog",
        );
    }
    if let Some(head) = state.head
        && now_ms - head.read_at_ms <= HEAD_READ_MAX_AGE_MS
        && state
            .backlog_since_ms
            .is_none_or(|since| head.read_at_ms >= since)
    {
        let age = (now_ms - head.published_at_ms).clamp(0, MAX_HEAD_AGE_MS);
        if age > best.0 {
            best = (age, "the management API's head timestamp");
        }
    }
    best
}

#[cfg(test)]
mod tests;
