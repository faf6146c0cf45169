//! Remembers which `(instance, seq)` reports a source has sent, so a sidecar's backlog resend is
//! idempotent. Constant memory: a few instances, each a high-water mark and a 64-seq bitmap.

/// How many sidecar instances (process lifetimes) are remembered per source.
const INSTANCES: usize = 4;

/// The reports recently seen from one source.
#[derive(Debug, Clone, Default)]
pub struct SeenReports {
    /// `(instance, highest seq, bitmap)`; bit `i` set means `highest - i` was seen.
    instances: Vec<(u64, u64, u64)>,
}

impl SeenReports {
    /// Marks `(instance, seq)` as seen; returns false when it had been seen before (a resend).
    /// Instance 0 means "no identity" (scripts, grpcurl): never deduplicated. A seq more than
    /// 64 behind the highest is taken as seen: resends come in order, so it must be old.
    pub fn first_time(&mut self, instance: u64, seq: u64) -> bool {
        if instance == 0 {
            return true;
        }
        let Some(pos) = self.instances.iter().position(|e| e.0 == instance) else {
            if self.instances.len() >= INSTANCES {
                self.instances.remove(0);
            }
            self.instances.push((instance, seq, 1));
            return true;
        };
        let entry = &mut self.instances[pos];
        let (_, high, bits) = entry;
        if seq > *high {
            let shift = seq - *high;
            *bits = if shift >= 64 { 1 } else { (*bits << shift) | 1 };
            *high = seq;
            return true;
        }
        let behind = *high - seq;
        if behind >= 64 || *bits & (1 << behind) != 0 {
            return false;
        }
        *bits |= 1 << behind;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_are_seen_and_new_seqs_are_not() {
        let mut seen = SeenReports::default();
        assert!(seen.first_time(7, 1));
        assert!(seen.first_time(7, 2));
        assert!(!seen.first_time(7, 1));
        assert!(!seen.first_time(7, 2));
        assert!(seen.first_time(7, 5));
        assert!(seen.first_time(7, 4), "a gap filled late is new");
        assert!(!seen.first_time(7, 4));
        assert!(seen.first_time(8, 1), "another instance has its own seqs");
        assert!(
            seen.first_time(0, 1) && seen.first_time(0, 1),
            "instance 0 is never deduped"
        );
        assert!(seen.first_time(7, 200));
        assert!(!seen.first_time(7, 100), "far behind counts as seen");
    }

    #[test]
    fn instances_are_bounded() {
        let mut seen = SeenReports::default();
        for i in 1..=100 {
            assert!(seen.first_time(i, 1));
        }
        assert_eq!(seen.instances.len(), INSTANCES);
    }
}
