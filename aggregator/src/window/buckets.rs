//! A slot's populated buckets at rest: sorted `(index, count)` pairs packed as varints, the index
//! as its delta from the previous one. A pair whose delta is 1–7 is one varint `count << 3 |
//! (delta − 1)`: one byte for counts below 16, which is most buckets of a one-slot histogram
//! (neighbouring buckets, a few ages each). Other pairs spend one more varint on the delta. About
//! 1.2 bytes per bucket for spread-out ages instead of the 16 of an `(i32, u64)` pair (2 with a
//! varint each for delta and count, the previous form): this is what lets 10 000 sources fit
//! the memory budget whatever the spread of their ages.
//!
//! A summary merges into the packed form directly: one pass over the packed stream and the
//! summary's sorted buckets, writing the merged stream. Nothing is decoded into a vector of its
//! own, nothing is validated (only this module writes the stream), and nothing can be dropped.
//! A slot keeps its pairs after its scalars in one buffer (`super::slot`), so this module works
//! on byte slices; [`PackedBuckets`] is the pairs alone, owned (for the tests of the format).

/// Sorted `(index, count)` pairs packed as varints.
///
/// Well formed by construction: the bytes are private and written only by [`PairWriter`], so
/// reading them back never meets a truncated or malformed pair.
#[cfg(test)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedBuckets(Box<[u8]>);

/// Appends LEB128 varints: 7 bits a byte, low bits first, high bit set on all but the last.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Takes one varint off the front of `bytes`. Total on purpose: the stream is our own, so there is
/// no error to report, and a reader that could fail would invite a caller to drop data on it.
pub fn take_varint(bytes: &mut &[u8]) -> u64 {
    let mut v = 0u64;
    let mut shift = 0u32;
    while let Some((&b, rest)) = bytes.split_first() {
        *bytes = rest;
        // A u64 needs at most 10 bytes; bits beyond 64 are never written by `put_varint`.
        v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        shift += 7;
        if b < 0x80 {
            break;
        }
    }
    v
}

/// The low three bits of a pair's first varint that say "the delta follows as its own varint".
const LONG_DELTA: u64 = 7;

/// The largest count that fits beside three tag bits in one u64.
const SHORT_COUNT_MAX: u64 = u64::MAX >> 3;

/// Writes pairs in increasing index order.
pub struct PairWriter<'a> {
    out: &'a mut Vec<u8>,
    /// The previous index (−1 before the first, so index 0 is delta 1).
    prev: i64,
}

impl<'a> PairWriter<'a> {
    /// Appends pairs to `out` (after what it already holds).
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, prev: -1 }
    }

    /// Appends one pair; its index must exceed the previous one's.
    pub fn push(&mut self, index: i32, count: u64) {
        let index = i64::from(index);
        // Two i32-range values: the difference fits an i64, and the cast to u64 and back is
        // lossless even for a (never written) negative first index.
        let delta = index - self.prev;
        match (delta, count) {
            (1..=7, 0..=SHORT_COUNT_MAX) => put_varint(self.out, count << 3 | (delta - 1) as u64),
            (_, 1..=SHORT_COUNT_MAX) => {
                put_varint(self.out, count << 3 | LONG_DELTA);
                put_varint(self.out, delta as u64);
            }
            // Zero with a long delta, or a count too large to shift: both in full.
            _ => {
                put_varint(self.out, LONG_DELTA);
                put_varint(self.out, delta as u64);
                put_varint(self.out, count);
            }
        }
        self.prev = index;
    }

    /// Writes the merge of `mine` and `theirs` (both by increasing index): equal indexes add
    /// their counts, the rest interleave in order.
    pub fn merge(&mut self, mine: Pairs<'_>, theirs: impl IntoIterator<Item = (i32, u64)>) {
        let mut mine = mine.peekable();
        let mut theirs = theirs.into_iter().peekable();
        loop {
            let next = match (mine.peek().copied(), theirs.peek().copied()) {
                (Some((ia, ca)), Some((ib, cb))) if ia == ib => {
                    mine.next();
                    theirs.next();
                    (ia, ca.saturating_add(cb))
                }
                (Some(a), Some(b)) if a.0 < b.0 => {
                    mine.next();
                    a
                }
                (_, Some(b)) => {
                    theirs.next();
                    b
                }
                (Some(a), None) => {
                    mine.next();
                    a
                }
                (None, None) => break,
            };
            self.push(next.0, next.1);
        }
    }
}

/// The pairs packed in `bytes` (as [`PairWriter`] wrote them).
pub fn pairs(bytes: &[u8]) -> Pairs<'_> {
    Pairs { bytes, prev: -1 }
}

thread_local! {
    /// Where merges write before copying out, so the kept buffer is allocated once at its exact
    /// size. Writing into a fresh over-reserved buffer and shrinking it instead fragmented the
    /// heap: 56 MiB of RSS instead of 47 in `examples/window_memory.rs` at 200 ages a second.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `write` with an empty scratch buffer (a fresh one if the thread's is in use, which only a
/// re-entrant call could cause), then copies what it wrote into a buffer of exactly its size.
pub fn with_scratch(write: impl FnOnce(&mut Vec<u8>)) -> Box<[u8]> {
    let exact = |scratch: &mut Vec<u8>| {
        scratch.clear();
        write(scratch);
        Box::from(scratch.as_slice())
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => exact(&mut scratch),
        Err(_) => exact(&mut Vec::new()),
    })
}

#[cfg(test)]
impl PackedBuckets {
    /// Packs `pairs`, which must be sorted by strictly increasing index (as
    /// [`dwell_proto::summary::AgeSummary::buckets`] are).
    pub fn from_sorted(sorted: &[(i32, u64)]) -> Self {
        Self(with_scratch(|out| {
            let mut w = PairWriter::new(out);
            for &(index, count) in sorted {
                w.push(index, count);
            }
        }))
    }

    /// The pairs, `(index, count)` in increasing index order.
    pub fn iter(&self) -> Pairs<'_> {
        pairs(&self.0)
    }

    /// Adds `other`'s pairs (sorted by strictly increasing index) in one pass.
    pub fn merge_sorted(&mut self, other: impl IntoIterator<Item = (i32, u64)>) {
        let mut theirs = other.into_iter().peekable();
        if theirs.peek().is_none() {
            return;
        }
        let merged = with_scratch(|out| PairWriter::new(out).merge(self.iter(), theirs));
        self.0 = merged;
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

/// Reads packed pairs back as `(index, count)`, in increasing index order.
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    bytes: &'a [u8],
    prev: i64,
}

impl Iterator for Pairs<'_> {
    type Item = (i32, u64);

    fn next(&mut self) -> Option<(i32, u64)> {
        if self.bytes.is_empty() {
            return None;
        }
        let head = take_varint(&mut self.bytes);
        let (tag, short_count) = (head & 7, head >> 3);
        let (delta, count) = if tag != LONG_DELTA {
            (tag + 1, short_count)
        } else {
            let delta = take_varint(&mut self.bytes);
            match short_count {
                0 => (delta, take_varint(&mut self.bytes)),
                count => (delta, count),
            }
        };
        // Undoes `PairWriter::push` exactly (wrapping is the inverse of its cast).
        self.prev = self.prev.wrapping_add(delta as i64);
        Some((self.prev as i32, count))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn pairs_round_trip_whatever_their_size() {
        let pairs = [
            (0, 1),
            (1, 127),
            (2, 128),
            (300, u64::MAX),
            (1_395, 1),
            (i32::MAX, 7),
        ];
        let packed = PackedBuckets::from_sorted(&pairs);
        assert_eq!(packed.iter().collect::<Vec<_>>(), pairs);
        assert!(PackedBuckets::default().iter().next().is_none());
        let negative = [(i32::MIN, 2), (-1, 3), (0, 4)];
        let packed = PackedBuckets::from_sorted(&negative);
        assert_eq!(packed.iter().collect::<Vec<_>>(), negative);
        let zeros = [
            (3, 0),
            (4, 0),
            (100, 0),
            (101, 1 << 61),
            (102, (1 << 61) - 1),
        ];
        let packed = PackedBuckets::from_sorted(&zeros);
        assert_eq!(packed.iter().collect::<Vec<_>>(), zeros);
    }

    /// Strictly increasing indexes with any counts, biased towards near neighbours and small
    /// counts (the one-byte form) but covering every form.
    fn sorted_pairs() -> impl Strategy<Value = Vec<(i32, u64)>> {
        let step = prop_oneof![1i64..8, 8i64..200, 200i64..100_000];
        let count = prop_oneof![0u64..16, 16u64..100_000, any::<u64>()];
        (
            -1_000i64..2_000,
            proptest::collection::vec((step, count), 0..80),
        )
            .prop_map(|(start, steps)| {
                let mut index = start;
                let mut out = Vec::new();
                for (step, count) in steps {
                    index += step;
                    match i32::try_from(index) {
                        Ok(i) => out.push((i, count)),
                        Err(_) => break,
                    }
                }
                out
            })
    }

    proptest! {
        /// Whatever the pairs, they read back exactly as written.
        #[test]
        fn any_sorted_pairs_round_trip(pairs in sorted_pairs()) {
            let packed = PackedBuckets::from_sorted(&pairs);
            prop_assert_eq!(packed.iter().collect::<Vec<_>>(), pairs);
        }

        /// Merging equals adding the counts index by index (a map as the reference).
        #[test]
        fn merging_equals_adding_counts(a in sorted_pairs(), b in sorted_pairs()) {
            let mut want = std::collections::BTreeMap::new();
            for &(i, c) in a.iter().chain(&b) {
                let e: &mut u64 = want.entry(i).or_default();
                *e = e.saturating_add(c);
            }
            let mut packed = PackedBuckets::from_sorted(&a);
            packed.merge_sorted(b.iter().copied());
            prop_assert_eq!(packed.iter().collect::<Vec<_>>(), want.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn merging_adds_equal_indexes_and_interleaves_the_rest() {
        let mut packed = PackedBuckets::from_sorted(&[(1, 1), (5, 2), (9, 3)]);
        packed.merge_sorted([(0, 10), (5, 20), (7, 30), (12, 40)]);
        assert_eq!(
            packed.iter().collect::<Vec<_>>(),
            [(0, 10), (1, 1), (5, 22), (7, 30), (9, 3), (12, 40)]
        );
        let before = packed.clone();
        packed.merge_sorted([]);
        assert_eq!(packed, before);
        // Deltas 1, 1, 4, 2, 2, 3 with counts 10–40 (two bytes each: count << 3 is over 127).
        assert!(packed.heap_bytes() <= 6 * 2, "{packed:?}");
        let small = PackedBuckets::from_sorted(&[(0, 1), (1, 15), (8, 3), (20, 2)]);
        assert_eq!(
            small.heap_bytes(),
            3 + 2,
            "one byte per near neighbour with a small count"
        );
    }
}
