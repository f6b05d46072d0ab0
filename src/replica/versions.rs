//! A set of twin versions as sorted, disjoint, non-adjacent ranges: the
//! versions a replica folded, small because a twin's versions are nearly
//! contiguous.

/// A set of versions. Union is commutative, associative, idempotent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Versions {
    /// Inclusive ranges, sorted, with a gap of at least one between two.
    ranges: Vec<(u64, u64)>,
}

impl Versions {
    /// The set of `ranges`, when they are sorted, each `low <= high`, and
    /// apart (a gap of at least one between two): `None` otherwise.
    pub(crate) fn from_ranges(ranges: Vec<(u64, u64)>) -> Option<Self> {
        let ok = ranges.iter().all(|(lo, hi)| lo <= hi)
            && ranges
                .windows(2)
                .all(|w| matches!(w, [(_, a), (b, _)] if a.checked_add(1).is_some_and(|n| n < *b)));
        ok.then_some(Versions { ranges })
    }

    /// The ranges, sorted.
    pub(crate) fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Whether `v` is in the set.
    pub(crate) fn contains(&self, v: u64) -> bool {
        let i = self.ranges.partition_point(|(_, hi)| *hi < v);
        self.ranges.get(i).is_some_and(|(lo, _)| *lo <= v)
    }

    /// Frees the room the ranges do not use.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.ranges.shrink_to_fit();
    }

    /// Adds `v`.
    pub(crate) fn insert(&mut self, v: u64) {
        self.add(v, v);
    }

    /// Adds every version of `other`.
    pub(crate) fn union(&mut self, other: &Versions) {
        for (lo, hi) in &other.ranges {
            self.add(*lo, *hi);
        }
    }

    fn add(&mut self, lo: u64, hi: u64) {
        // The ranges that touch or overlap [lo, hi] are replaced by their
        // union with it.
        let start = self
            .ranges
            .partition_point(|(_, h)| h.saturating_add(1) < lo);
        let end = self
            .ranges
            .partition_point(|(l, _)| *l <= hi.saturating_add(1));
        let (mut new_lo, mut new_hi) = (lo, hi);
        for (l, h) in self.ranges.get(start..end).unwrap_or_default() {
            new_lo = new_lo.min(*l);
            new_hi = new_hi.max(*h);
        }
        if start <= end && end <= self.ranges.len() {
            self.ranges.splice(start..end, [(new_lo, new_hi)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn is_the_set_of_what_was_inserted(vs in prop::collection::vec(0u64..40, 0..30)) {
            let mut set = Versions::default();
            for v in &vs {
                set.insert(*v);
            }
            let model: BTreeSet<u64> = vs.iter().copied().collect();
            for v in 0..45 {
                prop_assert_eq!(set.contains(v), model.contains(&v));
            }
            prop_assert_eq!(Versions::from_ranges(set.ranges().to_vec()), Some(set.clone()));
            let mut other = Versions::default();
            for v in model.iter().rev() {
                other.insert(*v);
            }
            prop_assert_eq!(&other, &set);
        }

        #[test]
        fn union_is_a_join(a in prop::collection::vec(0u64..40, 0..20), b in prop::collection::vec(0u64..40, 0..20)) {
            let of = |vs: &[u64]| {
                let mut s = Versions::default();
                for v in vs { s.insert(*v); }
                s
            };
            let (sa, sb) = (of(&a), of(&b));
            let mut ab = sa.clone();
            ab.union(&sb);
            let mut ba = sb.clone();
            ba.union(&sa);
            prop_assert_eq!(&ab, &ba);
            let mut again = ab.clone();
            again.union(&sb);
            prop_assert_eq!(&again, &ab);
            let all: Vec<u64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(ab, of(&all));
        }
    }

    #[test]
    fn refuses_ranges_out_of_order_or_touching() {
        assert!(Versions::from_ranges(vec![(1, 3), (5, 9)]).is_some());
        assert!(Versions::from_ranges(vec![(1, 3), (4, 9)]).is_none());
        assert!(Versions::from_ranges(vec![(5, 9), (1, 3)]).is_none());
        assert!(Versions::from_ranges(vec![(3, 1)]).is_none());
        assert!(Versions::from_ranges(vec![(0, u64::MAX)]).is_some());
    }
}
