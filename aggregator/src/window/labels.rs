//! Pod label sets, held once however many sources carry them. The pods of one Deployment share
//! their labels (the template's, the same `pod-template-hash` per ReplicaSet), so a fleet of
//! 10 000 sources holds a handful of sets instead of 10 000 copies, and a read shares them with
//! the window (`Arc`) instead of cloning them.
use std::collections::BTreeMap;
use std::sync::Arc;

use dashmap::DashMap;

/// One label set.
pub type Labels = Arc<BTreeMap<String, String>>;

/// The distinct label sets in use. Bounded by the sources held: [`LabelSets::forget_unused`]
/// (run by every sweep) drops the sets no source holds any more.
#[derive(Debug, Default)]
pub struct LabelSets {
    sets: DashMap<Labels, ()>,
}

impl LabelSets {
    /// The shared copy of `labels` (this one becomes it when the set is new).
    pub fn intern(&self, labels: BTreeMap<String, String>) -> Labels {
        if let Some(held) = self.sets.get(&labels) {
            return held.key().clone();
        }
        self.sets
            .entry(Arc::new(labels))
            .or_insert(())
            .key()
            .clone()
    }

    /// Drops the sets held by nobody but this table.
    pub fn forget_unused(&self) {
        self.sets.retain(|set, _| Arc::strong_count(set) > 1);
    }

    /// Number of distinct sets held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("app".to_string(), app.to_string())])
    }

    #[test]
    fn equal_sets_are_one_and_unused_ones_go() {
        let sets = LabelSets::default();
        let a = sets.intern(set("a"));
        let again = sets.intern(set("a"));
        assert!(Arc::ptr_eq(&a, &again));
        let b = sets.intern(set("b"));
        assert_eq!(sets.len(), 2);
        drop(b);
        sets.forget_unused();
        assert_eq!(sets.len(), 1, "b is held by nobody");
        assert_eq!(*sets.intern(set("a")), set("a"));
        drop((a, again));
        sets.forget_unused();
        assert_eq!(sets.len(), 0);
    }
}
