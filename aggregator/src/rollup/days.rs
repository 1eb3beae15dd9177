//! One key's counts per day: a vector sorted by day.
//!
//! A key (indicator, area) is counted on the days its subjects entered or
//! left coverage: the campaign's days so far, a few hundred at most, and
//! nearly every new count lands on the newest of them. So the days are kept
//! in one sorted vector whose last entry is checked first; any other day is
//! found by binary search and inserted in place (a late event, rare, moves
//! at most a few hundred entries of 24 bytes). Before, a `BTreeMap` per key
//! walked its nodes for every count, three keys a fact (the area and the
//! areas it rolls up into): at national size, with 54,050 keys, each walk
//! missed the cache, and `Counts::add` was the costliest of d06's own
//! functions in a national replay (BENCHMARKS.md, "Days per key").
//!
//! The days are sparse: a day nothing was counted on has no entry, so a
//! count on a day far from the others costs one entry, not the days between.

use std::ops::{Bound, RangeBounds};

use chrono::NaiveDate;

use super::DayCounts;

/// A day and its counts.
type Entry = (NaiveDate, DayCounts);

/// An entry as the pair of references a map's iterator gives.
fn pair(e: &Entry) -> (&NaiveDate, &DayCounts) {
    (&e.0, &e.1)
}

/// Counts per day of one key, in day order (module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Days(Vec<Entry>);

impl Days {
    /// The counts of `day`, if anything was ever counted on it.
    pub fn get(&self, day: &NaiveDate) -> Option<&DayCounts> {
        let i = self.0.binary_search_by(|(d, _)| d.cmp(day)).ok()?;
        self.0.get(i).map(|(_, c)| c)
    }

    /// The days ever counted on, in order, with their counts.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&NaiveDate, &DayCounts)> + ExactSizeIterator {
        self.0.iter().map(pair)
    }

    /// The days ever counted on, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &NaiveDate> + ExactSizeIterator {
        self.0.iter().map(|(d, _)| d)
    }

    /// The days in `range`, in order, with their counts.
    pub fn range(
        &self,
        range: impl RangeBounds<NaiveDate>,
    ) -> impl DoubleEndedIterator<Item = (&NaiveDate, &DayCounts)> + ExactSizeIterator {
        let from = self.0.partition_point(|(d, _)| match range.start_bound() {
            Bound::Included(s) => d < s,
            Bound::Excluded(s) => d <= s,
            Bound::Unbounded => false,
        });
        let to = self.0.partition_point(|(d, _)| match range.end_bound() {
            Bound::Included(e) => d <= e,
            Bound::Excluded(e) => d < e,
            Bound::Unbounded => true,
        });
        self.0.get(from..to.max(from)).unwrap_or_default().iter().map(pair)
    }

    /// The number of days ever counted on.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was ever counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The counts of `day`, added at zero if it has none yet.
    pub(super) fn entry(&mut self, day: NaiveDate) -> &mut DayCounts {
        let i = match self.0.last() {
            Some((last, _)) if *last == day => self.0.len() - 1,
            Some((last, _)) if *last > day => match self.0.binary_search_by(|(d, _)| d.cmp(&day)) {
                Ok(i) => i,
                Err(i) => {
                    self.0.insert(i, (day, DayCounts::default()));
                    i
                }
            },
            // Empty, or a day after every day held.
            _ => {
                self.0.push((day, DayCounts::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    /// Appends `day` after the days held; `false` (and nothing added) unless
    /// it is later than all of them (a snapshot lists them in order).
    pub(super) fn push_next(&mut self, day: NaiveDate, counts: DayCounts) -> bool {
        if self.0.last().is_some_and(|(last, _)| *last >= day) {
            return false;
        }
        self.0.push((day, counts));
        true
    }
}

impl<'a> IntoIterator for &'a Days {
    type Item = (&'a NaiveDate, &'a DayCounts);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, Entry>, fn(&'a Entry) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(pair as fn(&'a Entry) -> Self::Item)
    }
}

impl FromIterator<(NaiveDate, DayCounts)> for Days {
    /// Days in any order; counts of a day listed twice are added.
    fn from_iter<I: IntoIterator<Item = (NaiveDate, DayCounts)>>(iter: I) -> Self {
        let mut days = Days::default();
        for (day, c) in iter {
            let e = days.entry(day);
            e.gained += c.gained;
            e.lost += c.lost;
        }
        days
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn day(n: i32) -> NaiveDate {
        NaiveDate::from_num_days_from_ce_opt(739_000 + n).unwrap()
    }

    proptest! {
        /// Any sequence of counts gives the same days, counts and ranges as
        /// a `BTreeMap` fed the same sequence (the structure it replaced).
        #[test]
        fn days_behave_as_an_ordered_map(
            adds in prop::collection::vec((0i32..40, 0u64..3, 0u64..2), 0..200),
            lo in 0i32..45,
            len in 0i32..45,
        ) {
            let mut days = Days::default();
            let mut map: BTreeMap<NaiveDate, DayCounts> = BTreeMap::new();
            for &(d, g, l) in &adds {
                let c = days.entry(day(d));
                c.gained += g;
                c.lost += l;
                let m = map.entry(day(d)).or_default();
                m.gained += g;
                m.lost += l;
            }
            prop_assert_eq!(days.iter().map(|(d, c)| (*d, *c)).collect::<Vec<_>>(),
                map.iter().map(|(d, c)| (*d, *c)).collect::<Vec<_>>());
            prop_assert_eq!(days.len(), map.len());
            for d in -1..42 {
                prop_assert_eq!(days.get(&day(d)), map.get(&day(d)));
            }
            let (a, b) = (day(lo), day(lo + len));
            let pairs = |it: Box<dyn Iterator<Item = (&NaiveDate, &DayCounts)> + '_>| it.map(|(d, c)| (*d, *c)).collect::<Vec<_>>();
            prop_assert_eq!(pairs(Box::new(days.range(a..b))), pairs(Box::new(map.range(a..b))));
            prop_assert_eq!(pairs(Box::new(days.range(a..=b))), pairs(Box::new(map.range(a..=b))));
            prop_assert_eq!(pairs(Box::new(days.range(..a))), pairs(Box::new(map.range(..a))));
            prop_assert_eq!(pairs(Box::new(days.range(a..))), pairs(Box::new(map.range(a..))));
            prop_assert_eq!(&Days::from_iter(map.iter().map(|(d, c)| (*d, *c))), &days);
        }
    }

    #[test]
    fn a_range_that_ends_before_it_starts_is_empty() {
        let days = Days::from_iter([(day(1), DayCounts { gained: 1, lost: 0 }), (day(5), DayCounts::default())]);
        assert_eq!(days.range(day(4)..day(2)).count(), 0);
        assert_eq!(days.range(day(1)..day(1)).count(), 0);
        assert_eq!(days.range(day(1)..=day(1)).count(), 1);
    }

    #[test]
    fn days_listed_out_of_order_are_refused() {
        let mut days = Days::default();
        assert!(days.push_next(day(3), DayCounts { gained: 2, lost: 0 }));
        assert!(!days.push_next(day(3), DayCounts::default()), "the same day again");
        assert!(!days.push_next(day(2), DayCounts::default()), "an earlier day");
        assert!(days.push_next(day(4), DayCounts::default()));
        assert_eq!(days.keys().copied().collect::<Vec<_>>(), [day(3), day(4)]);
    }
}
