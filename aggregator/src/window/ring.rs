//! A source's ring of time slots: slots kept in time order, created when a report lands in a
//! missing one, bounded in number, and dropped once they end before the longest window.
use std::collections::VecDeque;

use super::slot::SlotAges;

/// Hard cap on slots per source, whatever happens to the layout (e.g. several reloads changing
/// the slot width while old slots are still held).
const MAX_SLOTS: usize = 32;

/// A time slot of the ring: `[start_ms, start_ms + width_ms)` and the ages observed in it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Start of the slot (Unix ms), a multiple of its width.
    pub start_ms: i64,
    /// Width when created; a reload changes the width of new slots only.
    pub width_ms: i64,
    /// The ages observed in the slot.
    pub ages: SlotAges,
}

impl Slot {
    /// Whether any part of the slot lies in `(from_ms, to_ms]`: a slot counts whole or not at all.
    pub fn overlaps(&self, from_ms: i64, to_ms: i64) -> bool {
        self.start_ms + self.width_ms > from_ms && self.start_ms <= to_ms
    }

    fn end_ms(&self) -> i64 {
        self.start_ms + self.width_ms
    }
}

/// One source's slots, oldest first, non-overlapping.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    slots: VecDeque<Slot>,
}

impl Ring {
    /// The ages of the slot holding time `at`, the slot created (in time order, `width` wide)
    /// when missing.
    pub fn slot_for(&mut self, at: i64, width: i64) -> &mut SlotAges {
        let mut pos = self.slots.partition_point(|s| s.end_ms() <= at);
        let found = self
            .slots
            .get(pos)
            .is_some_and(|s| s.start_ms <= at && at < s.end_ms());
        if !found {
            if self.slots.len() >= MAX_SLOTS {
                if pos == 0 {
                    // Older than every slot held: fold into the oldest rather than grow.
                    return &mut self.slots[0].ages;
                }
                self.slots.pop_front();
                pos -= 1;
            }
            let start = at.div_euclid(width) * width;
            self.slots.insert(
                pos,
                Slot {
                    start_ms: start,
                    width_ms: width,
                    ages: SlotAges::default(),
                },
            );
        }
        &mut self.slots[pos].ages
    }

    /// Drops the slots that ended before `oldest`; returns how many.
    pub fn prune(&mut self, oldest: i64) -> usize {
        let held = self.slots.len();
        while self.slots.front().is_some_and(|s| s.end_ms() <= oldest) {
            self.slots.pop_front();
        }
        held - self.slots.len()
    }

    /// The slots, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }

    /// Approximate bytes the slots hold, inline and on the heap (for the memory estimate).
    pub fn approx_bytes(&self) -> usize {
        self.slots
            .iter()
            .map(|s| std::mem::size_of::<Slot>() + s.ages.heap_bytes())
            .sum()
    }
}
