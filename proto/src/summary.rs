//! A mergeable, log-bucketed summary of message ages (a DDSketch-style histogram).
//!
//! Bucket `i` holds ages in `(GAMMA^(i-1), GAMMA^i]` milliseconds with `GAMMA = 1.02`, so any
//! quantile read back as the bucket's midpoint `2·GAMMA^i/(GAMMA+1)` is within
//! `(GAMMA-1)/(GAMMA+1) < 1 %` of a true value in the bucket. Ages below 1 ms are counted apart.
//! Buckets are kept sparse (sorted `(index, count)` pairs), so a summary's size depends on how
//! spread the ages are, never on how many there were. Merging is adding counts, so
//! `merge(summary(a), summary(b)) == summary(a ∪ b)` exactly.

use crate::v1;

/// Growth factor between bucket bounds; sets the relative error bound.
pub const GAMMA: f64 = 1.02;

/// Largest age accepted, in milliseconds (about 31.7 years): larger ages are input errors.
pub const MAX_AGE_MS: i64 = 1_000_000_000_000;

/// Most buckets a summary may carry on the wire (ages of 1 ms to `MAX_AGE_MS` need ~1 400).
pub const MAX_BUCKETS: usize = 2_048;

/// Why a summary received on the wire cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SummaryError {
    /// A count, sum, minimum or maximum contradicts the buckets.
    #[error("summary is inconsistent: {0}")]
    Inconsistent(&'static str),
    /// An age is negative, NaN or beyond `MAX_AGE_MS`.
    #[error("age {0} ms is out of range [0, {MAX_AGE_MS}]")]
    AgeOutOfRange(i64),
    /// Too many buckets, or bucket indexes out of range or not strictly increasing.
    #[error("summary buckets are malformed: {0}")]
    Buckets(&'static str),
}

/// A mergeable summary of ages in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgeSummary {
    count: u64,
    sum_ms: f64,
    min_ms: i64,
    max_ms: i64,
    zero_count: u64,
    /// Sorted by index, counts > 0.
    buckets: Vec<(i32, u64)>,
    redelivered: u64,
    last_age_ms: i64,
    last_observed_at_ms: i64,
}

/// The bucket index that holds `age_ms` (> 0).
pub fn bucket_index(age_ms: f64) -> i32 {
    // ceil(log_gamma(age)); ages are >= 1 ms here, so the index is >= 0 and small.
    (age_ms.ln() / GAMMA.ln()).ceil() as i32
}

/// The representative value (midpoint in relative terms) of bucket `index`, in milliseconds.
pub fn bucket_value(index: i32) -> f64 {
    2.0 * GAMMA.powi(index) / (GAMMA + 1.0)
}

impl AgeSummary {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one age observed at `observed_at_ms`. Ages must be validated by the caller
    /// (`0..=MAX_AGE_MS`); out-of-range values are clamped so the summary stays sound.
    pub fn record(&mut self, age_ms: i64, observed_at_ms: i64, redelivered: bool) {
        let age = age_ms.clamp(0, MAX_AGE_MS);
        if self.count == 0 {
            self.min_ms = age;
            self.max_ms = age;
        } else {
            self.min_ms = self.min_ms.min(age);
            self.max_ms = self.max_ms.max(age);
        }
        self.count += 1;
        self.sum_ms += age as f64;
        if redelivered {
            self.redelivered += 1;
        }
        if observed_at_ms >= self.last_observed_at_ms {
            self.last_observed_at_ms = observed_at_ms;
            self.last_age_ms = age;
        }
        if age < 1 {
            self.zero_count += 1;
        } else {
            self.add_bucket(bucket_index(age as f64), 1);
        }
    }

    fn add_bucket(&mut self, index: i32, n: u64) {
        match self.buckets.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(pos) => self.buckets[pos].1 += n,
            Err(pos) => self.buckets.insert(pos, (index, n)),
        }
    }

    /// Adds every age of `other` into `self`.
    pub fn merge(&mut self, other: &AgeSummary) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min_ms = other.min_ms;
            self.max_ms = other.max_ms;
        } else {
            self.min_ms = self.min_ms.min(other.min_ms);
            self.max_ms = self.max_ms.max(other.max_ms);
        }
        self.count += other.count;
        self.sum_ms += other.sum_ms;
        self.zero_count += other.zero_count;
        self.redelivered += other.redelivered;
        if other.last_observed_at_ms >= self.last_observed_at_ms {
            self.last_observed_at_ms = other.last_observed_at_ms;
            self.last_age_ms = other.last_age_ms;
        }
        // Merge two sorted sparse vectors in one pass.
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(ia, ca)), Some(&&(ib, cb))) => {
                    if ia == ib {
                        merged.push((ia, ca + cb));
                        a.next();
                        b.next();
                    } else if ia < ib {
                        merged.push((ia, ca));
                        a.next();
                    } else {
                        merged.push((ib, cb));
                        b.next();
                    }
                }
                (Some(&&x), None) => {
                    merged.push(x);
                    a.next();
                }
                (None, Some(&&y)) => {
                    merged.push(y);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.buckets = merged;
    }

    /// Number of ages summarised.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Sum of the ages in milliseconds.
    pub fn sum_ms(&self) -> f64 {
        self.sum_ms
    }
    /// Smallest age (None when empty).
    pub fn min_ms(&self) -> Option<i64> {
        (self.count > 0).then_some(self.min_ms)
    }
    /// Largest age (None when empty).
    pub fn max_ms(&self) -> Option<i64> {
        (self.count > 0).then_some(self.max_ms)
    }
    /// Mean age (None when empty).
    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms / self.count as f64)
    }
    /// Ages below 1 ms, counted apart from the buckets (so `count` = this + the bucket counts).
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }
    /// Ages from redelivered messages.
    pub fn redelivered(&self) -> u64 {
        self.redelivered
    }
    /// The most recent age and when it was observed (None when empty).
    pub fn last(&self) -> Option<(i64, i64)> {
        (self.count > 0).then_some((self.last_age_ms, self.last_observed_at_ms))
    }
    /// Populated buckets, sorted by index.
    pub fn buckets(&self) -> &[(i32, u64)] {
        &self.buckets
    }
    /// Releases spare bucket capacity (merging reserves room for both sides); call on summaries
    /// kept for long, such as window slots.
    pub fn shrink_to_fit(&mut self) {
        self.buckets.shrink_to_fit();
    }
    /// Approximate heap bytes held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(i32, u64)>()
    }

    /// The `q`-quantile (0.0..=1.0) in milliseconds, within 1 % relative error; None when empty.
    /// Uses the nearest-rank definition: the smallest value with at least `ceil(q·n)` ages ≤ it.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !q.is_finite() {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        if rank <= self.zero_count {
            return Some(self.min_ms as f64);
        }
        let mut seen = self.zero_count;
        for &(index, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                // Exact extremes are known: never answer outside [min, max].
                let v = bucket_value(index).clamp(self.min_ms as f64, self.max_ms as f64);
                return Some(v);
            }
        }
        Some(self.max_ms as f64)
    }

    /// Converts to the wire form.
    pub fn to_proto(&self) -> v1::Summary {
        v1::Summary {
            count: self.count,
            sum_ms: self.sum_ms,
            min_ms: self.min_ms,
            max_ms: self.max_ms,
            zero_count: self.zero_count,
            buckets: self
                .buckets
                .iter()
                .map(|&(index, count)| v1::Bucket { index, count })
                .collect(),
            redelivered: self.redelivered,
            last_age_ms: self.last_age_ms,
            last_observed_at_ms: self.last_observed_at_ms,
        }
    }

    /// Validates and converts a summary received on the wire.
    pub fn from_proto(p: &v1::Summary) -> Result<Self, SummaryError> {
        check(p)?;
        Ok(Self {
            count: p.count,
            sum_ms: p.sum_ms,
            min_ms: if p.count > 0 { p.min_ms } else { 0 },
            max_ms: if p.count > 0 { p.max_ms } else { 0 },
            zero_count: p.zero_count,
            buckets: p.buckets.iter().map(|b| (b.index, b.count)).collect(),
            redelivered: p.redelivered,
            last_age_ms: p.last_age_ms,
            last_observed_at_ms: p.last_observed_at_ms,
        })
    }
}

/// The checks of [`AgeSummary::from_proto`]: a wire summary that passes them is consistent with
/// itself (counts, extremes, sum, sorted in-range buckets) and safe to merge.
fn check(p: &v1::Summary) -> Result<(), SummaryError> {
    if p.buckets.len() > MAX_BUCKETS {
        return Err(SummaryError::Buckets("too many buckets"));
    }
    let max_index = bucket_index(MAX_AGE_MS as f64);
    let mut total = p.zero_count;
    let mut prev: Option<i32> = None;
    for b in &p.buckets {
        if b.index < 0 || b.index > max_index {
            return Err(SummaryError::Buckets("bucket index out of range"));
        }
        if prev.is_some_and(|pi| pi >= b.index) {
            return Err(SummaryError::Buckets(
                "bucket indexes must strictly increase",
            ));
        }
        if b.count == 0 {
            return Err(SummaryError::Buckets("empty bucket"));
        }
        prev = Some(b.index);
        total = total
            .checked_add(b.count)
            .ok_or(SummaryError::Inconsistent("bucket counts overflow"))?;
    }
    if total != p.count {
        return Err(SummaryError::Inconsistent(
            "count differs from the bucket total",
        ));
    }
    if p.redelivered > p.count {
        return Err(SummaryError::Inconsistent("more redelivered than counted"));
    }
    if p.count > 0 {
        for age in [p.min_ms, p.max_ms, p.last_age_ms] {
            if !(0..=MAX_AGE_MS).contains(&age) {
                return Err(SummaryError::AgeOutOfRange(age));
            }
        }
        if p.min_ms > p.max_ms {
            return Err(SummaryError::Inconsistent("min exceeds max"));
        }
        let lo = p.min_ms as f64 * p.count as f64;
        let hi = p.max_ms as f64 * p.count as f64;
        // Allow for float rounding in the sender's sum.
        let slack = 1e-9 * hi.max(1.0);
        if !p.sum_ms.is_finite() || p.sum_ms < lo - slack || p.sum_ms > hi + slack {
            return Err(SummaryError::Inconsistent("sum outside count × [min, max]"));
        }
    } else if p.sum_ms != 0.0 || p.redelivered != 0 {
        return Err(SummaryError::Inconsistent(
            "an empty summary must have zero sum",
        ));
    }
    Ok(())
}

/// A wire summary that passed [`AgeSummary::from_proto`]'s checks, kept in its wire form. The
/// aggregator merges it into a window slot directly: no [`AgeSummary`] (and no bucket vector of
/// its own) is built per report. Reads give what the equivalent [`AgeSummary`] would.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSummary(v1::Summary);

impl ValidSummary {
    /// Checks `p` exactly as [`AgeSummary::from_proto`] does.
    pub fn new(p: v1::Summary) -> Result<Self, SummaryError> {
        check(&p)?;
        Ok(Self(p))
    }

    /// Number of ages summarised.
    pub fn count(&self) -> u64 {
        self.0.count
    }
    /// Sum of the ages in milliseconds.
    pub fn sum_ms(&self) -> f64 {
        self.0.sum_ms
    }
    /// Smallest age (None when empty).
    pub fn min_ms(&self) -> Option<i64> {
        (self.0.count > 0).then_some(self.0.min_ms)
    }
    /// Largest age (None when empty).
    pub fn max_ms(&self) -> Option<i64> {
        (self.0.count > 0).then_some(self.0.max_ms)
    }
    /// Ages below 1 ms.
    pub fn zero_count(&self) -> u64 {
        self.0.zero_count
    }
    /// Ages from redelivered messages.
    pub fn redelivered(&self) -> u64 {
        self.0.redelivered
    }
    /// The most recent age and when it was observed (None when empty).
    pub fn last(&self) -> Option<(i64, i64)> {
        (self.0.count > 0).then_some((self.0.last_age_ms, self.0.last_observed_at_ms))
    }
    /// Populated buckets `(index, count)`, strictly increasing by index, counts > 0.
    pub fn buckets(&self) -> impl ExactSizeIterator<Item = (i32, u64)> + Clone + '_ {
        self.0.buckets.iter().map(|b| (b.index, b.count))
    }
    /// The same ages as an [`AgeSummary`] (what `from_proto` would have built).
    pub fn to_summary(&self) -> AgeSummary {
        let p = &self.0;
        AgeSummary {
            count: p.count,
            sum_ms: p.sum_ms,
            min_ms: if p.count > 0 { p.min_ms } else { 0 },
            max_ms: if p.count > 0 { p.max_ms } else { 0 },
            zero_count: p.zero_count,
            buckets: self.buckets().collect(),
            redelivered: p.redelivered,
            last_age_ms: p.last_age_ms,
            last_observed_at_ms: p.last_observed_at_ms,
        }
    }
}

impl From<&AgeSummary> for ValidSummary {
    /// An [`AgeSummary`] is valid by construction.
    fn from(s: &AgeSummary) -> Self {
        Self(s.to_proto())
    }
}

/// Merges many summaries into one through a dense bucket array that is reused from one result to
/// the next: each added bucket is one array write, and only [`DenseAccumulator::finish`]
/// allocates. The aggregator's read path merges every slot of every selected source, where
/// pairwise sparse merges (a new vector each) dominated the cost.
#[derive(Debug, Clone)]
pub struct DenseAccumulator {
    /// Scalars of everything added so far (its buckets stay empty).
    head: AgeSummary,
    counts: Vec<u64>,
    lo: usize,
    hi: usize,
}

impl Default for DenseAccumulator {
    fn default() -> Self {
        Self::new()
    }
}

impl DenseAccumulator {
    /// An empty accumulator sized for every valid bucket index.
    pub fn new() -> Self {
        let size = bucket_index(MAX_AGE_MS as f64) as usize + 1;
        Self {
            head: AgeSummary::new(),
            counts: vec![0; size],
            lo: usize::MAX,
            hi: 0,
        }
    }

    /// Adds the scalars (count, sum, extremes, zero count, redelivered, last) of a summary whose
    /// buckets are added separately with [`DenseAccumulator::add_bucket`].
    pub fn add_scalars(&mut self, s: &v1::Summary) {
        let scalars = AgeSummary {
            count: s.count,
            sum_ms: s.sum_ms,
            min_ms: s.min_ms,
            max_ms: s.max_ms,
            zero_count: s.zero_count,
            buckets: Vec::new(),
            redelivered: s.redelivered,
            last_age_ms: s.last_age_ms,
            last_observed_at_ms: s.last_observed_at_ms,
        };
        self.head.merge(&scalars);
    }

    /// Adds `count` ages to bucket `index`; indexes outside the valid range are ignored.
    pub fn add_bucket(&mut self, index: i32, count: u64) {
        let Ok(i) = usize::try_from(index) else {
            return;
        };
        if let Some(c) = self.counts.get_mut(i) {
            *c += count;
            self.lo = self.lo.min(i);
            self.hi = self.hi.max(i);
        }
    }

    /// Adds a whole summary.
    pub fn add(&mut self, s: &AgeSummary) {
        let mut scalars = s.clone();
        scalars.buckets = Vec::new();
        self.head.merge(&scalars);
        for &(index, count) in &s.buckets {
            self.add_bucket(index, count);
        }
    }

    /// The merged summary; the accumulator is empty again afterwards.
    pub fn finish(&mut self) -> AgeSummary {
        let mut out = std::mem::take(&mut self.head);
        if self.lo <= self.hi {
            let range = &mut self.counts[self.lo..=self.hi];
            // Sized exactly: a read holds one of these per source it selected at once.
            let mut buckets = Vec::with_capacity(range.iter().filter(|c| **c > 0).count());
            buckets.extend(
                range
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(i, c)| ((self.lo + i) as i32, *c)),
            );
            out.buckets = buckets;
            range.fill(0);
        }
        self.lo = usize::MAX;
        self.hi = 0;
        out
    }

    /// The merged summary, keeping only the buckets that answer `quantiles` (each as passed to
    /// [`AgeSummary::quantile_ms`]): that method gives exactly what it gives on the full merge
    /// for each of them, and every scalar is the full merge's. The buckets between two kept ones
    /// are folded into one (at the first's index), so the counts still add up. A read that holds
    /// many sources' summaries at once keeps a handful of buckets per source instead of hundreds.
    /// The accumulator is empty again afterwards.
    pub fn finish_for(&mut self, quantiles: &[f64]) -> AgeSummary {
        let mut out = std::mem::take(&mut self.head);
        if self.lo <= self.hi {
            // The ranks `quantile_ms` looks for, computed as it computes them.
            let mut ranks: Vec<u64> = quantiles
                .iter()
                .filter(|q| q.is_finite())
                .map(|q| ((q.clamp(0.0, 1.0) * out.count as f64).ceil() as u64).max(1))
                .filter(|&rank| rank > out.zero_count)
                .collect();
            ranks.sort_unstable();
            let mut ranks = ranks.into_iter().peekable();
            let mut buckets = Vec::with_capacity(2 * quantiles.len() + 1);
            let mut folded: Option<(i32, u64)> = None;
            let mut seen = out.zero_count;
            let range = &mut self.counts[self.lo..=self.hi];
            for (i, &c) in range.iter().enumerate().filter(|(_, c)| **c > 0) {
                let index = (self.lo + i) as i32;
                let before = seen;
                seen += c;
                while ranks.next_if(|&r| r <= before).is_some() {}
                if ranks.next_if(|&r| r <= seen).is_some() {
                    // This bucket answers a quantile: kept as it is.
                    while ranks.next_if(|&r| r <= seen).is_some() {}
                    buckets.extend(folded.take());
                    buckets.push((index, c));
                } else {
                    match &mut folded {
                        Some((_, n)) => *n += c,
                        None => folded = Some((index, c)),
                    }
                }
            }
            buckets.extend(folded);
            out.buckets = buckets;
            range.fill(0);
        }
        self.lo = usize::MAX;
        self.hi = 0;
        out
    }
}

#[cfg(test)]
mod tests;
