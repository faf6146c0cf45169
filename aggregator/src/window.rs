//! Windowed state: per source (namespace, pod, queue, vhost), a ring of time slots ([`ring`])
//! covering the longest configured window, each slot holding the ages observed in it in the
//! window's own packed form ([`slot`], [`buckets`]). Memory per source is bounded by the slot
//! count and the summary's bucket limit, never by the message rate. `examples/window_memory.rs`:
//! 10 000 sources each reporting 50 ages a second spread over 0.5–8 s grow the RSS by 21 MiB
//! (≈ 2.3 KB a source), down from 41 MiB before issue 13 (two-varint bucket pairs, a 96-byte
//! slot beside its buffer, a label map and key strings per source and per index entry). Label
//! sets are shared ([`labels`]); keys are shared with the namespace index and with reads.
//!
//! Every change to a source (a report, a watch poll, a goodbye, an eviction) moves its namespace's stamp
//! ([`Stamp`]), which is how the engine's result cache knows an answer no longer holds; reads
//! ([`read`]) reuse each source's last merge while nothing changed.
//!
//! Sources are consumer pods (sidecar reports, through [`WindowStore::ingest`]) and the queues
//! the aggregator watches itself ([`watched`]: queue state, no ages, through
//! [`WindowStore::observe_watched`]). Every write goes through `ingest`, `observe_watched`,
//! `remove` or `sweep`.
//!
//! Concurrency: one `DashMap` (sharded locks, no global lock). Every method is synchronous and
//! holds a shard lock only for its own duration, so no lock is ever held across an `.await`.
//! Time is always passed in (`now_ms`), so tests control it.

mod buckets;
mod dedup;
mod labels;
mod read;
mod ring;
mod slot;
pub mod sweep;
mod types;
pub mod watched;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dashmap::DashMap;
use dwell_proto::summary::AgeSummary;

pub use dedup::SeenReports;
use labels::{LabelSets, Labels};
use ring::Ring;
pub use types::*;
pub use watched::{WatchPoll, WatchedQueue};

/// Target number of slots per longest window: the window's edge is exact to one slot width.
pub const SLOTS_PER_WINDOW: i64 = 6;

/// Everything held for one source (its key is the map's).
#[derive(Debug, Clone)]
struct SourceState {
    labels: Labels,
    peer: Arc<str>,
    first_seen_ms: i64,
    last_report_ms: i64,
    reports: u64,
    samples: u64,
    slots: Ring,
    last_sample: Option<(i64, i64)>,
    queue_state: Option<QueueState>,
    counters: SidecarCounters,
    seen: SeenReports,
    /// What the aggregator's own queue watch saw (watched sources only, see [`watched`]).
    watched: Option<WatchedQueue>,
    /// Bumped by every change to `slots` (a report, a prune).
    version: u64,
    /// The last merge a read made of this source's slots, reused while it holds.
    merged: Option<Box<read::Merged>>,
}

impl SourceState {
    fn new(now_ms: i64, labels: Labels, peer: Arc<str>) -> Self {
        Self {
            labels,
            peer,
            first_seen_ms: now_ms,
            last_report_ms: now_ms,
            reports: 0,
            samples: 0,
            slots: Ring::default(),
            last_sample: None,
            queue_state: None,
            counters: SidecarCounters::default(),
            seen: SeenReports::default(),
            watched: None,
            version: 0,
            merged: None,
        }
    }

    fn view(&self, key: &Arc<SourceKey>) -> SourceView {
        SourceView {
            key: key.clone(),
            labels: self.labels.clone(),
            peer: self.peer.clone(),
            first_seen_ms: self.first_seen_ms,
            last_report_ms: self.last_report_ms,
            reports: self.reports,
            samples: self.samples,
            last_sample: self.last_sample,
            queue_state: self.queue_state,
            counters: self.counters,
            watched: self.watched.clone(),
        }
    }
}

/// One namespace's sources (in key order, so a read needs no sort) and its change stamp.
#[derive(Debug)]
struct Namespace {
    keys: BTreeSet<Arc<SourceKey>>,
    /// The value of [`WindowStore::changes`] taken by the last change to any of these sources.
    /// Always replaced by a swap (a read-modify-write), so a reader's acquire load of any later
    /// value also sees every change made before an earlier one.
    stamp: AtomicU64,
}

/// What a read's answer depends on in the store, taken before the read: equal stamps mean that
/// nothing the read walked has changed since (no report, goodbye or eviction), so an answer
/// computed then still holds, as far as the store goes (time is the reader's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    namespace_held: bool,
    value: u64,
}

/// The per-source windows of every source.
#[derive(Debug)]
pub struct WindowStore {
    sources: DashMap<Arc<SourceKey>, SourceState>,
    /// Source keys by namespace, so a read walks only its namespace's sources. Lock order: a
    /// holder of an index shard may take a source shard, never the other way round.
    by_namespace: DashMap<String, Namespace>,
    labels: LabelSets,
    /// Counts every change to any source; its values are the stamps.
    changes: AtomicU64,
    slot_width_ms: AtomicI64,
    span_ms: AtomicI64,
}

/// Slot width for a longest window: a sixth of it, whole seconds, at least one second.
pub fn slot_width_for(longest_window_ms: i64) -> i64 {
    let sixth = (longest_window_ms.max(1) + SLOTS_PER_WINDOW - 1) / SLOTS_PER_WINDOW;
    ((sixth + 999) / 1000 * 1000).max(1000)
}

impl WindowStore {
    /// A store whose slots cover `longest_window_ms`.
    pub fn new(longest_window_ms: i64) -> Self {
        let store = Self {
            sources: DashMap::new(),
            by_namespace: DashMap::new(),
            labels: LabelSets::default(),
            changes: AtomicU64::new(1),
            slot_width_ms: AtomicI64::new(1000),
            span_ms: AtomicI64::new(1000),
        };
        store.set_longest_window(longest_window_ms);
        store
    }

    /// Re-sizes the ring for a new longest window (config reload). Existing slots keep their
    /// own bounds; new data uses the new width.
    pub fn set_longest_window(&self, longest_window_ms: i64) {
        let width = slot_width_for(longest_window_ms);
        self.slot_width_ms.store(width, Ordering::Relaxed);
        self.span_ms
            .store(longest_window_ms.max(1), Ordering::Relaxed);
    }

    /// The current slot width in milliseconds.
    pub fn slot_width_ms(&self) -> i64 {
        self.slot_width_ms.load(Ordering::Relaxed)
    }

    /// The stamp of what a read of `namespace` (None: every namespace) walks. Take it before
    /// the read: a change during the read then shows as a different stamp afterwards.
    pub fn stamp(&self, namespace: Option<&str>) -> Stamp {
        let held = namespace.and_then(|ns| {
            self.by_namespace
                .get(ns)
                .map(|n| n.stamp.load(Ordering::Acquire))
        });
        match held {
            Some(value) => Stamp {
                namespace_held: true,
                value,
            },
            // Every namespace, or one holding no source: any change anywhere counts (a source
            // appearing there and leaving again must not give back the earlier stamp).
            None => Stamp {
                namespace_held: false,
                value: self.changes.load(Ordering::Acquire),
            },
        }
    }

    /// Records a change to a source of `namespace`, after the change itself.
    fn touch(&self, namespace: &str) {
        let stamp = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(ns) = self.by_namespace.get(namespace) {
            ns.stamp.swap(stamp, Ordering::AcqRel);
        }
    }

    /// Takes one report into its source's window, unless it is a resend.
    pub fn ingest(&self, mut obs: Observation, now_ms: i64) -> Taken {
        let width = self.slot_width_ms();
        let oldest = now_ms - self.span_ms.load(Ordering::Relaxed);
        let key = std::mem::take(&mut obs.key);
        let taken = match self.sources.get_mut(&key) {
            Some(mut held) => self.take(held.value_mut(), obs, now_ms, width, oldest),
            None => {
                let key = Arc::new(key);
                let taken = {
                    let mut entry = self.sources.entry(key.clone()).or_insert_with(|| {
                        SourceState::new(now_ms, Labels::default(), obs.peer.clone())
                    });
                    self.take(entry.value_mut(), obs, now_ms, width, oldest)
                };
                // After the source's shard lock is released (see the lock order on `by_namespace`).
                self.index(&key);
                self.note(taken, &key.namespace);
                return taken;
            }
        };
        self.note(taken, &key.namespace);
        taken
    }

    /// Adds a new source's key to its namespace's index. Call it with no source shard held.
    fn index(&self, key: &Arc<SourceKey>) {
        let fresh = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        self.by_namespace
            .entry(key.namespace.clone())
            .or_insert_with(|| Namespace {
                keys: BTreeSet::new(),
                stamp: AtomicU64::new(fresh),
            })
            .keys
            .insert(key.clone());
    }

    /// Touches the namespace when a report changed its source.
    fn note(&self, taken: Taken, namespace: &str) {
        if taken != Taken::Duplicate {
            self.touch(namespace);
        }
    }

    fn take(
        &self,
        state: &mut SourceState,
        obs: Observation,
        now_ms: i64,
        width: i64,
        oldest: i64,
    ) -> Taken {
        if !state.seen.first_time(obs.instance, obs.seq) {
            return Taken::Duplicate;
        }
        state.version += 1;
        // Unchanged labels and peer (every report but the first, as a rule) cost no allocation.
        if *state.labels != obs.labels {
            state.labels = self.labels.intern(obs.labels);
        }
        if state.peer != obs.peer {
            state.peer = obs.peer;
        }
        state.last_report_ms = state.last_report_ms.max(now_ms);
        state.reports += 1;
        if let Some(q) = obs.queue_state
            && state
                .queue_state
                .is_none_or(|old| q.observed_at_ms >= old.observed_at_ms)
        {
            state.queue_state = Some(q);
        }
        if let Some(c) = obs.counters {
            state.counters = c;
        }
        let mut accepted = 0;
        match obs.ages {
            Ages::Samples(samples) => {
                // Batch the report's ages per slot, then pack each slot once.
                let mut batches: Vec<(i64, AgeSummary)> = Vec::new();
                for (age, at, redelivered) in samples {
                    note_last(&mut state.last_sample, age, at);
                    if at < oldest {
                        continue;
                    }
                    let start = at.div_euclid(width) * width;
                    let pos = match batches.iter().position(|(s, _)| *s == start) {
                        Some(pos) => pos,
                        None => {
                            batches.push((start, AgeSummary::new()));
                            batches.len() - 1
                        }
                    };
                    batches[pos].1.record(age, at, redelivered);
                    accepted += 1;
                }
                for (start, batch) in batches {
                    let at = batch.last().map_or(start, |(_, at)| at);
                    state.slots.slot_for(at, width).merge(&batch);
                }
            }
            Ages::Summary { summary, at_ms } => {
                if let Some((age, at)) = summary.last() {
                    note_last(&mut state.last_sample, age, at);
                }
                if at_ms >= oldest && summary.count() > 0 {
                    state.slots.slot_for(at_ms, width).merge_valid(&summary);
                    accepted = summary.count();
                }
            }
        }
        state.samples += accepted;
        state.slots.prune(oldest);
        Taken::Accepted(accepted)
    }

    /// Forgets a source at once (the sidecar said goodbye). Returns whether it was held.
    pub fn remove(&self, key: &SourceKey) -> bool {
        let held = self.sources.remove(key).is_some();
        if held {
            self.touch(&key.namespace);
        }
        self.unindex(key);
        held
    }

    /// Drops `key` from the namespace index unless the source is (again) held. Runs under the
    /// index shard's lock, so an ingest re-creating the source cannot slip between check and removal.
    fn unindex(&self, key: &SourceKey) {
        if let Some(mut ns) = self.by_namespace.get_mut(&key.namespace)
            && !self.sources.contains_key(key)
        {
            ns.keys.remove(key);
        }
        self.by_namespace
            .remove_if(&key.namespace, |_, ns| ns.keys.is_empty());
    }

    /// Whether `key` is held (a report for it takes no new source).
    pub fn contains(&self, key: &SourceKey) -> bool {
        self.sources.contains_key(key)
    }

    /// Number of sources a read of `namespace` (None: every namespace) walks.
    pub fn sources_in(&self, namespace: Option<&str>) -> usize {
        match namespace {
            Some(ns) => self.by_namespace.get(ns).map_or(0, |ns| ns.keys.len()),
            None => self.sources.len(),
        }
    }

    /// Number of sources held (live or stale).
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// True when no source is held.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Drops expired slots, evicts sources silent for `stale_after + evict_after`, and counts.
    pub fn sweep(&self, now_ms: i64, stale_after_ms: i64, evict_after_ms: i64) -> SweepCounts {
        let oldest = now_ms - self.span_ms.load(Ordering::Relaxed);
        let mut counts = SweepCounts::default();
        let mut evicted = Vec::new();
        // Dropping slots that ended before the longest window changes no read (no rule's window
        // reaches them), so it needs no touch; an eviction does.
        self.sources.retain(|key, state| {
            let silent = now_ms - state.last_report_ms;
            if silent > stale_after_ms.saturating_add(evict_after_ms) {
                counts.evicted += 1;
                evicted.push(key.clone());
                return false;
            }
            if silent > stale_after_ms {
                counts.stale += 1;
            } else {
                counts.live += 1;
            }
            if state.slots.prune(oldest) > 0 {
                state.version += 1;
            }
            true
        });
        for key in &evicted {
            self.touch(&key.namespace);
            self.unindex(key);
        }
        self.labels.forget_unused();
        counts
    }

    /// Snapshots of the sources `keep` selects (by identity and labels).
    pub fn list(
        &self,
        mut keep: impl FnMut(&SourceKey, &BTreeMap<String, String>) -> bool,
    ) -> Vec<SourceSnapshot> {
        let mut out: Vec<SourceSnapshot> = self
            .sources
            .iter()
            .filter(|e| keep(e.key(), &e.value().labels))
            .map(|e| e.value().view(e.key()).snapshot())
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Approximate bytes held per source (keys, labels, slots, summaries), for the memory bench.
    /// Shared label sets count once.
    pub fn approx_bytes(&self) -> usize {
        let labels: usize = self
            .sources
            .iter()
            .map(|e| {
                let set = &e.value().labels;
                let bytes: usize = set.iter().map(|(a, b)| a.len() + b.len() + 64).sum();
                bytes / Arc::strong_count(set).saturating_sub(1).max(1)
            })
            .sum();
        let per_source: usize = self
            .sources
            .iter()
            .map(|e| {
                let k = e.key();
                let s = e.value();
                let strings = k.namespace.len() + k.pod.len() + k.queue.len() + k.vhost.len();
                std::mem::size_of::<(Arc<SourceKey>, SourceState)>()
                    + std::mem::size_of::<SourceKey>()
                    + strings
                    + s.peer.len()
                    + s.slots.approx_bytes()
            })
            .sum();
        labels + per_source
    }
}

fn note_last(last: &mut Option<(i64, i64)>, age: i64, at: i64) {
    if last.is_none_or(|(_, t)| at >= t) {
        *last = Some((age, at));
    }
}

#[cfg(test)]
mod tests;
