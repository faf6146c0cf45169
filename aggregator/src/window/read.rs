//! Reading the window: the selected sources, each with its slots over a window merged into one
//! summary, and when that merge would change as time passes.
//!
//! A source's merge is kept with the source ([`Merged`]) and reused by the next read that asks
//! the same (window, quantiles) while nothing changed: no report or prune since (its version),
//! and no slot entering or leaving the window yet. A source reports once a second while the HPA
//! and its retries read it many times in between, and a Pods read over 1 000 pods otherwise
//! decodes ~7 000 packed slots (BENCHMARKS.md note A); it now decodes the few that changed.
//! Only serving reads ([`BucketsKept::Answering`]: a few buckets per source) are kept; `Explain`
//! merges everything afresh, which is what the engine's property test compares them with.
use std::collections::BTreeMap;
use std::sync::Arc;

use dwell_proto::summary::{AgeSummary, DenseAccumulator};

use super::{BucketsKept, SourceKey, SourceState, SourceWindow, WindowStore};

/// A source's slots merged over one window for one set of quantiles, and while it holds.
#[derive(Debug, Clone)]
pub struct Merged {
    window_ms: i64,
    quantiles: Box<[f64]>,
    /// The source's version when merged.
    version: u64,
    /// Holds from this time...
    computed_at_ms: i64,
    /// ...until (not including) this one, when a slot enters or leaves the window.
    slots_change_at_ms: i64,
    /// The start of the oldest slot counted (`i64::MAX`: none).
    counted_start_ms: i64,
    ages: AgeSummary,
}

impl Merged {
    fn holds(&self, window_ms: i64, quantiles: &[f64], version: u64, now_ms: i64) -> bool {
        self.window_ms == window_ms
            && *self.quantiles == *quantiles
            && self.version == version
            && (self.computed_at_ms..self.slots_change_at_ms).contains(&now_ms)
    }
}

/// Merges `state`'s slots over `(now_ms - window_ms, now_ms]` into `acc`, keeping `kept`.
fn merge(
    state: &SourceState,
    window_ms: i64,
    now_ms: i64,
    kept: BucketsKept<'_>,
    acc: &mut DenseAccumulator,
) -> Merged {
    let from = now_ms - window_ms;
    let mut counted_start_ms = i64::MAX;
    let mut slots_change_at_ms = i64::MAX;
    for slot in state.slots.iter() {
        let end = slot.start_ms + slot.width_ms;
        if slot.overlaps(from, now_ms) {
            slot.ages.add_to(acc);
            counted_start_ms = counted_start_ms.min(slot.start_ms);
            // It leaves the window once `now - window_ms` reaches its end.
            slots_change_at_ms = slots_change_at_ms.min(end.saturating_add(window_ms));
        } else if slot.start_ms > now_ms {
            // Not yet begun (only a reader's clock behind the writer's sees this).
            slots_change_at_ms = slots_change_at_ms.min(slot.start_ms);
        }
    }
    let (ages, quantiles) = match kept {
        BucketsKept::All => (acc.finish(), Box::default()),
        BucketsKept::Answering(quantiles) => (acc.finish_for(quantiles), quantiles.into()),
    };
    Merged {
        window_ms,
        quantiles,
        version: state.version,
        computed_at_ms: now_ms,
        slots_change_at_ms,
        counted_start_ms,
        ages,
    }
}

impl WindowStore {
    /// The selected sources with their ages over the last `window_ms` before `now_ms`, in key
    /// order. A slot counts when any part of it lies in the window.
    /// `namespace` narrows the walk to one namespace's sources (None: every source); `kept` says
    /// which buckets the merged summaries keep.
    pub fn window(
        &self,
        window_ms: i64,
        now_ms: i64,
        namespace: Option<&str>,
        kept: BucketsKept<'_>,
        mut keep: impl FnMut(&SourceKey, &BTreeMap<String, String>) -> bool,
    ) -> Vec<SourceWindow> {
        // One dense scratch array for the whole read: merging a slot is array adds, not a new
        // sparse vector per merge (BENCHMARKS.md note A).
        let mut acc = DenseAccumulator::new();
        let mut one = |key: &Arc<SourceKey>, state: &mut SourceState| {
            if !keep(key, &state.labels) {
                return None;
            }
            let (ages, counted_start_ms, slots_change_at_ms) = match (kept, &state.merged) {
                (BucketsKept::Answering(q), Some(m))
                    if m.holds(window_ms, q, state.version, now_ms) =>
                {
                    (m.ages.clone(), m.counted_start_ms, m.slots_change_at_ms)
                }
                (BucketsKept::Answering(_), _) => {
                    let m = merge(state, window_ms, now_ms, kept, &mut acc);
                    let taken = (m.ages.clone(), m.counted_start_ms, m.slots_change_at_ms);
                    state.merged = Some(Box::new(m));
                    taken
                }
                (BucketsKept::All, _) => {
                    let m = merge(state, window_ms, now_ms, kept, &mut acc);
                    (m.ages, m.counted_start_ms, m.slots_change_at_ms)
                }
            };
            let from = now_ms - window_ms;
            let earliest = from.min(counted_start_ms);
            let span_changes_at_ms = if earliest < from {
                now_ms + 1
            } else {
                // The span is the window until the window's start passes the oldest slot's.
                counted_start_ms.saturating_add(window_ms).saturating_add(1)
            };
            Some(SourceWindow {
                source: state.view(key),
                ages,
                span_ms: now_ms - earliest,
                slots_change_at_ms,
                span_changes_at_ms,
            })
        };
        match namespace {
            Some(ns) => {
                // Copy the keys first (cheap: shared), so no index lock is held while reading.
                let keys: Vec<Arc<SourceKey>> = self
                    .by_namespace
                    .get(ns)
                    .map(|ns| ns.keys.iter().cloned().collect())
                    .unwrap_or_default();
                keys.iter()
                    .filter_map(|k| {
                        let mut e = self.sources.get_mut(k)?;
                        let (key, state) = e.pair_mut();
                        one(key, state)
                    })
                    .collect()
            }
            None => {
                let mut out: Vec<SourceWindow> = self
                    .sources
                    .iter_mut()
                    .filter_map(|mut e| {
                        let (key, state) = e.pair_mut();
                        one(key, state)
                    })
                    .collect();
                out.sort_by(|a, b| a.source.key.cmp(&b.source.key));
                out
            }
        }
    }
}
