//! Windowed state: per source (namespace, pod, queue, vhost), a ring of time slots ([`ring`])
//! covering the longest configured window, each slot holding the ages observed in it in the
//! window's own packed form ([`slot`], [`buckets`]). Memory per source is bounded by the slot
//! count and the summary's bucket limit, never by the message rate. `examples/window_memory.rs`:
//! 10 000 sources each reporting 50 ages a second spread over 0.5–8 s grow the RSS by 41 MiB
//! (≈ 4.3 KB a source; 47 MiB at 200 ages a second), down from 44 and 49 MiB when slots held
//! the wire type.
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
mod ring;
mod slot;
pub mod sweep;
mod types;
pub mod watched;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};

use dashmap::DashMap;
use dwell_proto::summary::{AgeSummary, DenseAccumulator};

pub use dedup::SeenReports;
use ring::Ring;
pub use types::*;
pub use watched::{WatchPoll, WatchedQueue};

/// Target number of slots per longest window: the window's edge is exact to one slot width.
pub const SLOTS_PER_WINDOW: i64 = 6;

/// Everything held for one source.
#[derive(Debug, Clone)]
struct SourceState {
    labels: BTreeMap<String, String>,
    peer: String,
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
}

impl SourceState {
    /// A source first seen at `now_ms`, with nothing observed yet.
    fn new(now_ms: i64) -> Self {
        Self {
            labels: BTreeMap::new(),
            peer: String::new(),
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
        }
    }
}

/// The per-source windows of every source.
#[derive(Debug)]
pub struct WindowStore {
    sources: DashMap<SourceKey, SourceState>,
    /// Source keys by namespace, so a read walks only its namespace's sources. Lock order: a
    /// holder of an index shard may take a source shard, never the other way round.
    by_namespace: DashMap<String, HashSet<SourceKey>>,
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

    /// Takes one report into its source's window, unless it is a resend.
    pub fn ingest(&self, obs: Observation, now_ms: i64) -> Taken {
        let width = self.slot_width_ms();
        let oldest = now_ms - self.span_ms.load(Ordering::Relaxed);
        let key = obs.key.clone();
        let mut created = false;
        let taken = self.ingest_into(obs, now_ms, width, oldest, &mut created);
        if created {
            // After the source's shard lock is released (see the lock order on `by_namespace`).
            self.by_namespace
                .entry(key.namespace.clone())
                .or_default()
                .insert(key);
        }
        taken
    }

    fn ingest_into(
        &self,
        obs: Observation,
        now_ms: i64,
        width: i64,
        oldest: i64,
        created: &mut bool,
    ) -> Taken {
        let mut entry = self.sources.entry(obs.key).or_insert_with(|| {
            *created = true;
            SourceState::new(now_ms)
        });
        let state = entry.value_mut();
        if !state.seen.first_time(obs.instance, obs.seq) {
            return Taken::Duplicate;
        }
        state.labels = obs.labels;
        state.peer = obs.peer;
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
                    state.slots.slot_for(at_ms, width).merge(&summary);
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
        self.unindex(key);
        held
    }

    /// Drops `key` from the namespace index unless the source is (again) held. Runs under the
    /// index shard's lock, so an ingest re-creating the source cannot slip between check and removal.
    fn unindex(&self, key: &SourceKey) {
        if let Some(mut keys) = self.by_namespace.get_mut(&key.namespace)
            && !self.sources.contains_key(key)
        {
            keys.remove(key);
        }
        self.by_namespace
            .remove_if(&key.namespace, |_, keys| keys.is_empty());
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
            state.slots.prune(oldest);
            true
        });
        for key in &evicted {
            self.unindex(key);
        }
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
            .map(|e| snapshot(e.key(), e.value()))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// The selected sources with their ages over the last `window_ms` before `now_ms`. A slot
    /// counts when any part of it lies in the window.
    /// `namespace` narrows the walk to one namespace's sources (None: every source).
    pub fn window(
        &self,
        window_ms: i64,
        now_ms: i64,
        namespace: Option<&str>,
        mut keep: impl FnMut(&SourceKey, &BTreeMap<String, String>) -> bool,
    ) -> Vec<SourceWindow> {
        let from = now_ms - window_ms;
        // One dense scratch array for the whole read: merging a slot is array adds, not a new
        // sparse vector per merge (BENCHMARKS.md note A).
        let mut acc = DenseAccumulator::new();
        let mut one = |key: &SourceKey, state: &SourceState| {
            if !keep(key, &state.labels) {
                return None;
            }
            let mut earliest = from;
            for slot in state.slots.iter() {
                if slot.overlaps(from, now_ms) {
                    slot.ages.add_to(&mut acc);
                    earliest = earliest.min(slot.start_ms);
                }
            }
            Some(SourceWindow {
                source: snapshot(key, state),
                ages: acc.finish(),
                span_ms: now_ms - earliest,
            })
        };
        let mut out: Vec<SourceWindow> = match namespace {
            Some(ns) => {
                // Copy the keys first: no source lock is taken while an index lock is held here.
                let keys: Vec<SourceKey> = self
                    .by_namespace
                    .get(ns)
                    .map(|keys| keys.iter().cloned().collect())
                    .unwrap_or_default();
                keys.iter()
                    .filter_map(|k| self.sources.get(k).and_then(|e| one(e.key(), e.value())))
                    .collect()
            }
            None => self
                .sources
                .iter()
                .filter_map(|e| one(e.key(), e.value()))
                .collect(),
        };
        out.sort_by(|a, b| a.source.key.cmp(&b.source.key));
        out
    }

    /// Approximate bytes held per source (keys, labels, slots, summaries), for the memory bench.
    pub fn approx_bytes(&self) -> usize {
        self.sources
            .iter()
            .map(|e| {
                let k = e.key();
                let s = e.value();
                let strings = k.namespace.len() + k.pod.len() + k.queue.len() + k.vhost.len();
                let labels: usize = s.labels.iter().map(|(a, b)| a.len() + b.len() + 64).sum();
                std::mem::size_of::<(SourceKey, SourceState)>()
                    + strings
                    + labels
                    + s.slots.approx_bytes()
            })
            .sum()
    }
}

fn note_last(last: &mut Option<(i64, i64)>, age: i64, at: i64) {
    if last.is_none_or(|(_, t)| at >= t) {
        *last = Some((age, at));
    }
}

fn snapshot(key: &SourceKey, s: &SourceState) -> SourceSnapshot {
    SourceSnapshot {
        key: key.clone(),
        labels: s.labels.clone(),
        peer: s.peer.clone(),
        first_seen_ms: s.first_seen_ms,
        last_report_ms: s.last_report_ms,
        reports: s.reports,
        samples: s.samples,
        last_sample: s.last_sample,
        queue_state: s.queue_state,
        counters: s.counters,
        watched: s.watched.clone(),
    }
}

#[cfg(test)]
mod tests;
