//! A slot's ages at rest: the summary's scalars plus its sparse buckets as varints (index delta,
//! count), about 2–3 bytes per populated bucket instead of 16. This is what lets 10 000 sources
//! fit the memory budget whatever the spread of their ages.
use dwell_proto::summary::{AgeSummary, DenseAccumulator};
use dwell_proto::v1;

/// A packed [`AgeSummary`].
#[derive(Debug, Clone, Default)]
pub struct PackedSummary {
    /// Scalars only (`buckets` is always empty here).
    head: v1::Summary,
    /// `(index delta, count)` varint pairs, indexes strictly increasing.
    buckets: Box<[u8]>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

impl PackedSummary {
    /// Packs a summary.
    pub fn pack(s: &AgeSummary) -> Self {
        let mut head = s.to_proto();
        let mut out = Vec::with_capacity(head.buckets.len() * 3);
        let mut prev: i64 = -1;
        for b in head.buckets.drain(..) {
            put_varint(&mut out, (i64::from(b.index) - prev) as u64);
            put_varint(&mut out, b.count);
            prev = i64::from(b.index);
        }
        head.buckets = Vec::new();
        Self {
            head,
            buckets: out.into_boxed_slice(),
        }
    }

    /// The populated buckets, `(index, count)` in increasing index order.
    fn buckets(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        let mut pos = 0;
        let mut prev: i64 = -1;
        std::iter::from_fn(move || {
            let delta = get_varint(&self.buckets, &mut pos)?;
            let count = get_varint(&self.buckets, &mut pos)?;
            prev += delta as i64;
            Some((prev as i32, count))
        })
    }

    /// Unpacks into a summary (packed data is our own, so it always validates).
    pub fn unpack(&self) -> AgeSummary {
        let mut proto = self.head.clone();
        proto.buckets = self
            .buckets()
            .map(|(index, count)| v1::Bucket { index, count })
            .collect();
        AgeSummary::from_proto(&proto).unwrap_or_default()
    }

    /// Adds this slot's ages to `acc` without unpacking into a summary of its own.
    pub fn add_to(&self, acc: &mut DenseAccumulator) {
        acc.add_scalars(&self.head);
        for (index, count) in self.buckets() {
            acc.add_bucket(index, count);
        }
    }

    /// Adds `other`'s ages.
    pub fn merge(&mut self, other: &AgeSummary) {
        let mut all = self.unpack();
        all.merge(other);
        *self = Self::pack(&all);
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        let mut s = AgeSummary::new();
        for (i, age) in [0, 1, 2, 500, 501, 80_000, 3_600_000, 999_999_999_999]
            .into_iter()
            .enumerate()
        {
            s.record(age, i as i64, i % 2 == 0);
        }
        for _ in 0..300 {
            s.record(42, 100, false);
        }
        let packed = PackedSummary::pack(&s);
        assert_eq!(packed.unpack(), s);
        assert!(packed.heap_bytes() < s.buckets().len() * 4);
        assert_eq!(
            PackedSummary::pack(&AgeSummary::new()).unpack(),
            AgeSummary::new()
        );
        let mut m = PackedSummary::pack(&s);
        m.merge(&s);
        let mut twice = s.clone();
        twice.merge(&s);
        assert_eq!(m.unpack(), twice);
    }
}
