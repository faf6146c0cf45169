//! One time slot's ages at rest, in the window's own form: one buffer of exactly its size
//! holding a summary's scalars as varints (the sum as its 8 bytes) and then its buckets packed
//! ([`super::buckets`]): ~25 bytes of scalars instead of a 64-byte struct beside each slot, and
//! a slot of 32 bytes in the ring. A report's summary merges into a slot with the same rules as
//! [`AgeSummary::merge`]: a report's validated wire summary ([`ValidSummary`]) goes straight in,
//! with no [`AgeSummary`] built for it, and a read adds the slot to a [`DenseAccumulator`]
//! without unpacking it.
use dwell_proto::summary::{AgeSummary, DenseAccumulator, ValidSummary};
use dwell_proto::v1;

use super::buckets::{self, PairWriter, put_varint, take_varint};

/// Everything a slot's summary holds except the buckets; each field means what the
/// [`AgeSummary`] field of the same name does (extremes and last age are 0 while `count` is 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct SlotScalars {
    count: u64,
    sum_ms: f64,
    min_ms: i64,
    max_ms: i64,
    zero_count: u64,
    redelivered: u64,
    last_age_ms: i64,
    last_observed_at_ms: i64,
}

/// The scalars of a summary that holds ages, whatever its form.
#[derive(Debug, Clone, Copy)]
struct Head {
    count: u64,
    sum_ms: f64,
    min_ms: i64,
    max_ms: i64,
    zero_count: u64,
    redelivered: u64,
    last: (i64, i64),
}

impl Head {
    /// `s`'s scalars; None when it holds no ages (the three options are Some exactly then).
    fn of(s: &AgeSummary) -> Option<Self> {
        let (min, max, last) = (s.min_ms()?, s.max_ms()?, s.last()?);
        Some(Self::new(
            s.count(),
            s.sum_ms(),
            (min, max),
            s.zero_count(),
            s.redelivered(),
            last,
        ))
    }

    /// The same for a validated wire summary.
    fn of_valid(s: &ValidSummary) -> Option<Self> {
        let (min, max, last) = (s.min_ms()?, s.max_ms()?, s.last()?);
        Some(Self::new(
            s.count(),
            s.sum_ms(),
            (min, max),
            s.zero_count(),
            s.redelivered(),
            last,
        ))
    }

    fn new(
        count: u64,
        sum_ms: f64,
        (min_ms, max_ms): (i64, i64),
        zero_count: u64,
        redelivered: u64,
        last: (i64, i64),
    ) -> Self {
        Self {
            count,
            sum_ms,
            min_ms,
            max_ms,
            zero_count,
            redelivered,
            last,
        }
    }
}

impl SlotScalars {
    /// Adds `s`'s scalars, exactly as [`AgeSummary::merge`] does (same order of float additions,
    /// the same "latest observation wins, ties to the newcomer" rule for `last`).
    fn merge(&mut self, s: &Head) {
        if self.count == 0 {
            self.min_ms = s.min_ms;
            self.max_ms = s.max_ms;
        } else {
            self.min_ms = self.min_ms.min(s.min_ms);
            self.max_ms = self.max_ms.max(s.max_ms);
        }
        self.count = self.count.saturating_add(s.count);
        self.sum_ms += s.sum_ms;
        self.zero_count = self.zero_count.saturating_add(s.zero_count);
        self.redelivered = self.redelivered.saturating_add(s.redelivered);
        let (last_age_ms, last_observed_at_ms) = s.last;
        if last_observed_at_ms >= self.last_observed_at_ms {
            self.last_observed_at_ms = last_observed_at_ms;
            self.last_age_ms = last_age_ms;
        }
    }

    /// The scalars in the shape [`DenseAccumulator::add_scalars`] takes. Built per read on the
    /// stack (no buckets, so no allocation); the window never stores it.
    fn as_accumulator_head(&self) -> v1::Summary {
        v1::Summary {
            count: self.count,
            sum_ms: self.sum_ms,
            min_ms: self.min_ms,
            max_ms: self.max_ms,
            zero_count: self.zero_count,
            buckets: Vec::new(),
            redelivered: self.redelivered,
            last_age_ms: self.last_age_ms,
            last_observed_at_ms: self.last_observed_at_ms,
        }
    }
}

impl SlotScalars {
    /// Appends the scalars (an empty slot writes nothing).
    fn write(&self, out: &mut Vec<u8>) {
        if self.count == 0 {
            return;
        }
        put_varint(out, self.count);
        out.extend_from_slice(&self.sum_ms.to_le_bytes());
        for v in [
            self.min_ms,
            self.max_ms,
            self.last_age_ms,
            self.last_observed_at_ms,
        ] {
            put_varint(out, zigzag(v));
        }
        put_varint(out, self.zero_count);
        put_varint(out, self.redelivered);
    }

    /// Reads back what [`SlotScalars::write`] wrote; the rest of `bytes` is the pairs.
    fn read(bytes: &mut &[u8]) -> Self {
        if bytes.is_empty() {
            return Self::default();
        }
        let count = take_varint(bytes);
        let (sum, rest) = bytes.split_at_checked(8).unwrap_or((&[0; 8], &[]));
        *bytes = rest;
        let mut sum_bytes = [0u8; 8];
        sum_bytes.copy_from_slice(sum);
        let mut next = || unzigzag(take_varint(bytes));
        let (min_ms, max_ms, last_age_ms, last_observed_at_ms) = (next(), next(), next(), next());
        Self {
            count,
            sum_ms: f64::from_le_bytes(sum_bytes),
            min_ms,
            max_ms,
            last_age_ms,
            last_observed_at_ms,
            zero_count: take_varint(bytes),
            redelivered: take_varint(bytes),
        }
    }
}

/// Signed to unsigned, small magnitudes small (the sign in the low bit).
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// One slot's ages: an [`AgeSummary`] packed for keeping (see the module doc). Well formed by
/// construction: only this module writes the buffer. Empty (no allocation) while it holds no age.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlotAges(Box<[u8]>);

impl From<&AgeSummary> for SlotAges {
    /// Packs a summary (an empty one packs as the empty slot).
    fn from(s: &AgeSummary) -> Self {
        let mut slot = Self::default();
        slot.merge(s);
        slot
    }
}

impl SlotAges {
    /// Adds `s`'s ages in packed form: the result is exactly the packing of
    /// `AgeSummary::merge(self, s)` (a property test holds it to that).
    pub fn merge(&mut self, s: &AgeSummary) {
        // As `AgeSummary::merge`: an empty summary changes nothing.
        if let Some(head) = Head::of(s) {
            self.merge_parts(&head, s.buckets().iter().copied());
        }
    }

    /// Adds a report's validated wire summary in packed form: exactly `merge(&s.to_summary())`
    /// (a property test holds it to that), without building that summary.
    pub fn merge_valid(&mut self, s: &ValidSummary) {
        if let Some(head) = Head::of_valid(s) {
            self.merge_parts(&head, s.buckets());
        }
    }

    fn merge_parts(&mut self, head: &Head, pairs: impl IntoIterator<Item = (i32, u64)>) {
        let mut mine: &[u8] = &self.0;
        let mut scalars = SlotScalars::read(&mut mine);
        scalars.merge(head);
        self.0 = buckets::with_scratch(|out| {
            scalars.write(out);
            PairWriter::new(out).merge(buckets::pairs(mine), pairs);
        });
    }

    /// Adds this slot's ages to `acc` (the read path merges many slots there).
    pub fn add_to(&self, acc: &mut DenseAccumulator) {
        let mut bytes: &[u8] = &self.0;
        let scalars = SlotScalars::read(&mut bytes);
        acc.add_scalars(&scalars.as_accumulator_head());
        for (index, count) in buckets::pairs(bytes) {
            acc.add_bucket(index, count);
        }
    }

    /// Heap bytes held (the buffer; the slot itself is its pointer and length).
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use dwell_proto::summary::MAX_AGE_MS;
    use proptest::prelude::*;

    use super::*;

    /// What a read gives back for `slot` alone.
    fn read(slot: &SlotAges) -> AgeSummary {
        let mut acc = DenseAccumulator::new();
        slot.add_to(&mut acc);
        acc.finish()
    }

    fn summary(ages: &[(i64, i64, bool)]) -> AgeSummary {
        let mut s = AgeSummary::new();
        for &(age, at, redelivered) in ages {
            s.record(age, at, redelivered);
        }
        s
    }

    #[test]
    fn packs_and_reads_back_exactly() {
        let mut ages: Vec<(i64, i64, bool)> = [0, 1, 2, 500, 501, 80_000, 3_600_000, MAX_AGE_MS]
            .into_iter()
            .enumerate()
            .map(|(i, age)| (age, i as i64, i % 2 == 0))
            .collect();
        ages.extend(std::iter::repeat_n((42, 100, false), 300));
        let s = summary(&ages);
        let packed = SlotAges::from(&s);
        assert_eq!(read(&packed), s);
        // A few dozen bytes of scalars, then the pairs (a few bytes each at most).
        assert!(
            packed.heap_bytes() < 48 + s.buckets().len() * 4,
            "{packed:?}"
        );
        assert_eq!(read(&SlotAges::from(&AgeSummary::new())), AgeSummary::new());
        assert_eq!(SlotAges::from(&AgeSummary::new()), SlotAges::default());
        let mut m = packed.clone();
        m.merge(&s);
        let mut twice = s.clone();
        twice.merge(&s);
        assert_eq!(m, SlotAges::from(&twice));
        assert_eq!(read(&m), twice);
    }

    /// Ages over the whole range, biased towards the small and the sub-millisecond so that
    /// summaries share buckets, have zero counts and spread wide.
    fn age() -> impl Strategy<Value = i64> {
        prop_oneof![0i64..2, 1i64..200, 1i64..100_000, 0i64..=MAX_AGE_MS]
    }

    /// A summary of up to 60 ages; observation times are never negative (ingest refuses them).
    fn any_summary() -> impl Strategy<Value = AgeSummary> {
        proptest::collection::vec((age(), 0i64..2_000_000_000_000, any::<bool>()), 0..60)
            .prop_map(|ages| summary(&ages))
    }

    proptest! {
        /// Packing the first summary and merging the rest in packed form is exactly packing
        /// their `AgeSummary::merge`; starting from the empty slot (what the window does) too;
        /// and reading either back through the dense accumulator gives the merge itself.
        #[test]
        fn merging_packed_equals_packing_the_merge(
            summaries in proptest::collection::vec(any_summary(), 1..6)
        ) {
            let mut merged = summaries[0].clone();
            let mut packed = SlotAges::from(&summaries[0]);
            let mut from_empty = SlotAges::default();
            from_empty.merge(&summaries[0]);
            // What ingest does: the validated wire form of each report, merged straight in.
            let mut from_wire = SlotAges::default();
            for s in &summaries {
                let wire = ValidSummary::new(s.to_proto()).expect("a summary's own wire form is valid");
                prop_assert_eq!(&wire.to_summary(), s);
                from_wire.merge_valid(&wire);
            }
            for s in &summaries[1..] {
                merged.merge(s);
                packed.merge(s);
                from_empty.merge(s);
            }
            prop_assert_eq!(&packed, &SlotAges::from(&merged));
            prop_assert_eq!(&from_empty, &packed);
            prop_assert_eq!(&from_wire, &packed);
            prop_assert_eq!(read(&packed), merged);
        }

        /// Slots read into one accumulator give the merge of everything they hold.
        #[test]
        fn slots_read_together_give_the_merge_of_all(
            summaries in proptest::collection::vec(any_summary(), 1..6)
        ) {
            let mut merged = AgeSummary::new();
            let mut acc = DenseAccumulator::new();
            for s in &summaries {
                merged.merge(s);
                SlotAges::from(s).add_to(&mut acc);
            }
            prop_assert_eq!(acc.finish(), merged);
        }
    }
}
