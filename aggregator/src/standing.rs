//! How the districts are compared: one average per area and the rank it
//! gives, the same for the board, `d06 report daily` and the daily alerts.
//!
//! An area's *average* is the mean, over the indicators that have a target
//! (> 0) **and whose baseline the plan knows**, of covered/target clamped
//! to [0, 1] (so running past one target cannot hide lagging on another).
//! An indicator whose baseline is unknown counts from a baseline of 0
//! (OUTPUTS-v1): its covered/target says nothing about how far the area
//! is, so it is left out of the average, and the caller is told which
//! indicators were ([`Average::left_out`]) so that it can say so. An area
//! with no such indicator has no average and no rank.
//!
//! Districts are ranked by the exact average, highest first; equal averages
//! share a rank and the next rank skips (1, 2, 2, 4).

use crate::coverage::Status;
use crate::fact::Indicator;

/// One area's average and what it leaves out.
#[derive(Clone, Debug, PartialEq)]
pub struct Average {
    /// Mean clamped covered/target over the indicators with a target and a
    /// known baseline; `None` when there is none.
    pub value: Option<f64>,
    /// The indicators with a target left out because their baseline is
    /// unknown, in the order given.
    pub left_out: Vec<Indicator>,
}

/// The average of one area's indicators (module docs).
pub fn average<'a>(statuses: impl IntoIterator<Item = (Indicator, &'a Status)>) -> Average {
    let mut sum = 0.0;
    let mut n = 0u32;
    let mut left_out = Vec::new();
    for (ind, s) in statuses {
        if s.target == 0 {
            continue;
        }
        if !s.baseline_known {
            left_out.push(ind);
            continue;
        }
        sum += (s.covered as f64 / s.target as f64).clamp(0.0, 1.0);
        n += 1;
    }
    Average { value: (n > 0).then(|| sum / f64::from(n)), left_out }
}

/// The rank of each average among all of them (1 = highest, ties share,
/// the next rank skips); `None` for an area without an average.
pub fn ranks(averages: &[Option<f64>]) -> Vec<Option<usize>> {
    averages
        .iter()
        .map(|mine| mine.map(|m| 1 + averages.iter().flatten().filter(|other| **other > m).count()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(covered: i64, target: u64, baseline_known: bool) -> Status {
        Status {
            covered,
            target,
            expected: 0,
            ratio: 0.0,
            gained_today: 0,
            days_behind: 0,
            eta: None,
            baseline_known,
            pace_per_day: 0.0,
            needed_per_day: 0.0,
        }
    }

    #[test]
    fn unknown_baselines_are_left_out_and_named() {
        let s = [st(50, 100, true), st(0, 100, true), st(1, 1000, false), st(9, 0, true), st(3, 10, false)];
        let a = average(Indicator::ALL.iter().copied().zip(&s));
        // (0.5 + 0) / 2: smartphone_4g (1/1000) and migrated_2g (3/10) would
        // have pulled it to (0.5 + 0 + 0.001 + 0.3) / 4 ≈ 0.2; sim_signature has no target.
        assert_eq!(a.value, Some(0.25));
        assert_eq!(a.left_out, [Indicator::Smartphone4g, Indicator::Migrated2g]);
    }

    #[test]
    fn over_the_target_counts_as_one_and_nothing_known_has_no_average() {
        let over = [st(300, 100, true), st(0, 100, true)];
        assert_eq!(average(Indicator::ALL.iter().copied().zip(&over)).value, Some(0.5));
        let unknown = [st(80, 100, false), st(0, 0, true)];
        let a = average(Indicator::ALL.iter().copied().zip(&unknown));
        assert_eq!(a, Average { value: None, left_out: vec![Indicator::Cccd] });
        assert_eq!(average(std::iter::empty()).value, None);
    }

    #[test]
    fn ties_share_a_rank_and_the_next_skips() {
        assert_eq!(
            ranks(&[Some(0.45), Some(0.5), None, Some(0.45), Some(0.1)]),
            [Some(2), Some(1), None, Some(2), Some(4)]
        );
        assert_eq!(ranks(&[]), Vec::<Option<usize>>::new());
    }
}
