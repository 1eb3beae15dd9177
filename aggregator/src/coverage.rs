//! What the outputs need from a rollup and the plan: the daily coverage
//! series (ClickHouse `coverage_daily`) and the status as of one day
//! (Prometheus `d06_coverage_*`), per OUTPUTS-v1.
//!
//! Both take one key's per-day counts summed over shards; days absent from
//! the map count as zero.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};

use crate::plan::Plan;
use crate::rollup::{DayCounts, RollupKey};

/// One row of `coverage_daily`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoverageRow {
    /// The local day.
    pub day: NaiveDate,
    /// Subjects that entered coverage on this day.
    pub gained: u64,
    /// Subjects that left coverage on this day.
    pub lost: u64,
    /// Baseline + all gained − all lost up to the end of this day.
    pub covered: i64,
    /// The target in force.
    pub target: u64,
    /// What the plan expects covered to be by the end of this day.
    pub expected: u64,
}

/// Net change of one day.
fn net(c: &DayCounts) -> i64 {
    to_i64(c.gained) - to_i64(c.lost)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Baseline + net change of every day up to and including `day`.
fn covered_at(plan: &Plan, key: RollupKey, days: &BTreeMap<NaiveDate, DayCounts>, day: NaiveDate) -> i64 {
    to_i64(plan.baseline(key.0, key.1)) + days.range(..=day).map(|(_, c)| net(c)).sum::<i64>()
}

/// One row per day from `plan.start()` to `min(plan.end(), through)`
/// inclusive (empty if that is before the start). `covered` = baseline + all
/// gained − all lost up to the end of the day; events before the start
/// count in the first day's `covered` (not in its `gained`/`lost`).
pub fn series(
    plan: &Plan,
    key: RollupKey,
    days: &BTreeMap<NaiveDate, DayCounts>,
    through: NaiveDate,
) -> Vec<CoverageRow> {
    let last = plan.end().min(through);
    let (ind, area) = key;
    let target = plan.target(ind, area);
    let mut rows = Vec::new();
    let mut covered = to_i64(plan.baseline(ind, area)) + days.range(..plan.start()).map(|(_, c)| net(c)).sum::<i64>();
    let mut day = plan.start();
    while day <= last {
        let c = days.get(&day).copied().unwrap_or_default();
        covered += net(&c);
        rows.push(CoverageRow {
            day,
            gained: c.gained,
            lost: c.lost,
            covered,
            target,
            expected: plan.expected(ind, area, day),
        });
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    rows
}

/// Where one key stands as of a day.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Status {
    /// Baseline + all gained − all lost up to the end of the day.
    pub covered: i64,
    /// The target.
    pub target: u64,
    /// What the plan expects by the end of the day.
    pub expected: u64,
    /// `covered / target`; 0 when the target is 0. May exceed 1.
    pub ratio: f64,
    /// Gained on the day itself.
    pub gained_today: u64,
    /// How many days ago the plan expected what is covered now: 0 when on
    /// or ahead of the plan; otherwise `today − d` for the latest day `d`
    /// in `[start, today]` with `expected(d) ≤ covered`, or `today − start`
    /// when there is none (covered is below the plan's start value, the
    /// baseline).
    pub days_behind: u32,
    /// The day covered reaches the target at the average net gain per day
    /// of the last 7 days (today included): `today` if already reached,
    /// `None` if that pace is ≤ 0 or the baseline is unknown.
    pub eta: Option<NaiveDate>,
    /// Whether the plan knows the baseline. When it does not, `covered`
    /// counts from a baseline of 0, the area is never behind
    /// (`days_behind` 0, no ETA) and its pace is what it shows.
    pub baseline_known: bool,
    /// Net gain per day over the last 7 days (today included).
    pub pace_per_day: f64,
    /// The pace the plan needs today ([`Plan::needed_per_day`]).
    pub needed_per_day: f64,
}

/// The status as of `today` (live: the wall-clock local day; replay: the
/// event-time day). Days after `today` in `days` are ignored.
pub fn status(plan: &Plan, key: RollupKey, days: &BTreeMap<NaiveDate, DayCounts>, today: NaiveDate) -> Status {
    let (ind, area) = key;
    let covered = covered_at(plan, key, days, today);
    let target = plan.target(ind, area);
    let expected = plan.expected(ind, area, today);
    let ratio = if target == 0 { 0.0 } else { covered as f64 / target as f64 };
    let gained_today = days.get(&today).map_or(0, |c| c.gained);

    let baseline_known = plan.baseline_known(ind, area);
    let from = today.checked_sub_days(Days::new(6)).unwrap_or(NaiveDate::MIN);
    let net7: i64 = days.range(from..=today).map(|(_, c)| net(c)).sum();
    let pace_per_day = net7 as f64 / 7.0;
    let needed_per_day = plan.needed_per_day(ind, area, today);

    let days_behind = if !baseline_known || covered >= to_i64(expected) || today <= plan.start() {
        0
    } else {
        // `expected` never decreases: binary search for the latest day in
        // [start, today) whose expectation is met (today's is not).
        let met = |d: NaiveDate| to_i64(plan.expected(ind, area, d)) <= covered;
        let start = plan.start();
        let found = if met(start) {
            // Invariant: met(lo), !met(hi).
            let (mut lo, mut hi) = (start, today);
            while (hi - lo).num_days() > 1 {
                let mid = lo + Days::new(((hi - lo).num_days() / 2).unsigned_abs());
                if met(mid) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo
        } else {
            start
        };
        u32::try_from((today - found).num_days()).unwrap_or(u32::MAX)
    };

    let need = to_i64(target) - covered;
    let eta = if !baseline_known {
        None
    } else if need <= 0 {
        Some(today)
    } else {
        if net7 <= 0 {
            None
        } else {
            // First k with covered + k × net7 / 7 ≥ target.
            let k = (i128::from(need) * 7 + i128::from(net7) - 1) / i128::from(net7);
            u64::try_from(k).ok().and_then(|k| today.checked_add_days(Days::new(k)))
        }
    };

    Status {
        covered,
        target,
        expected,
        ratio,
        gained_today,
        days_behind,
        eta,
        baseline_known,
        pace_per_day,
        needed_per_day,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fact::Indicator;
    use crate::geo::{AreaLevel, Geography, GeographyVersion};
    use chrono::Datelike;

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, m, day).unwrap()
    }

    /// Target 100, baseline 10; 50 by 20/4, 100 by 30/4: expected rises
    /// 4 a day from 10 (10/4) to 50 (20/4), then 5 a day to 100 (30/4).
    fn setup() -> (Geography, Plan) {
        let g = Geography::load(GeographyVersion::Pre2025).unwrap();
        let weights: String = (688..=698).map(|c| format!("\"{c}\" = 1\n")).collect();
        let text = format!(
            "start = 2024-04-10\nend = 2024-04-30\n[district_weights]\n{weights}\n[indicators.cccd]\ntarget = 100\nbaseline = 10\n\
             milestones = [ {{ date = 2024-04-20, share = 0.5 }}, {{ date = 2024-04-30, share = 1.0 }} ]"
        );
        let p = Plan::from_toml(&text, &g).unwrap();
        (g, p)
    }

    fn counts(list: &[(NaiveDate, u64, u64)]) -> BTreeMap<NaiveDate, DayCounts> {
        list.iter().map(|&(day, gained, lost)| (day, DayCounts { gained, lost })).collect()
    }

    /// 5 before the start, then 3, 4 − 1, 10.
    fn history() -> BTreeMap<NaiveDate, DayCounts> {
        counts(&[(d(4, 8), 5, 0), (d(4, 10), 3, 0), (d(4, 12), 4, 1), (d(4, 15), 10, 0)])
    }

    #[test]
    fn series_has_a_row_per_day_with_running_coverage() {
        let (g, p) = setup();
        let key = (Indicator::Cccd, g.province());
        let rows = series(&p, key, &history(), d(4, 16));
        let got: Vec<_> = rows.iter().map(|r| (r.day.day(), r.gained, r.lost, r.covered, r.expected)).collect();
        assert_eq!(
            got,
            [
                (10, 3, 0, 18, 10), // 10 + 5 (before start) + 3; expected = baseline at start
                (11, 0, 0, 18, 14),
                (12, 4, 1, 21, 18),
                (13, 0, 0, 21, 22),
                (14, 0, 0, 21, 26),
                (15, 10, 0, 31, 30),
                (16, 0, 0, 31, 34),
            ]
        );
        assert!(rows.iter().all(|r| r.target == 100));
        // Through a day after the end: stops at the end, on the last milestone.
        let rows = series(&p, key, &history(), d(5, 10));
        assert_eq!(rows.len(), 21);
        assert_eq!(rows[10].day, d(4, 20));
        assert_eq!(rows[10].expected, 50); // exactly on a milestone
        assert_eq!(rows[15].expected, 75); // 50 + 5 × 5
        let last = rows.last().unwrap();
        assert_eq!((last.day, last.covered, last.expected), (d(4, 30), 31, 100));
        // Before the start: nothing.
        assert!(series(&p, key, &history(), d(4, 9)).is_empty());
        // An area without target or baseline.
        let c = g.find(AreaLevel::Commune, "25216").unwrap();
        let rows = series(&p, (Indicator::Cccd, c), &counts(&[(d(4, 11), 2, 0)]), d(4, 11));
        assert_eq!(rows[1], CoverageRow { day: d(4, 11), gained: 2, lost: 0, covered: 2, target: 0, expected: 0 });
    }

    #[test]
    fn status_behind_the_plan_with_a_known_pace() {
        let (g, p) = setup();
        let s = status(&p, (Indicator::Cccd, g.province()), &history(), d(4, 16));
        // expected(15/4) = 30 ≤ 31 < 34 = expected(16/4): one day behind.
        // Last 7 days (10/4–16/4): net 3 + 3 + 10 = 16; 69 to go at 16/7 a
        // day = 30.19 → 31 days → 17/5.
        assert_eq!(
            s,
            Status {
                covered: 31,
                target: 100,
                expected: 34,
                ratio: 0.31,
                gained_today: 0,
                days_behind: 1,
                eta: Some(d(5, 17)),
                baseline_known: true,
                pace_per_day: 16.0 / 7.0,
                needed_per_day: 4.0, // 10 → 50 over 10/4–20/4
            }
        );
        // On the milestone day 20/4 (expected 50): still met on 15/4 only.
        let s = status(&p, (Indicator::Cccd, g.province()), &history(), d(4, 20));
        assert_eq!((s.expected, s.days_behind), (50, 5));
        // Zero pace over the last 7 days (19/4–25/4): no ETA; 10 days behind.
        let s = status(&p, (Indicator::Cccd, g.province()), &history(), d(4, 25));
        assert_eq!((s.covered, s.expected, s.days_behind, s.eta), (31, 75, 10, None));
        // After the end the plan stays at 100: behind keeps growing.
        let s = status(&p, (Indicator::Cccd, g.province()), &history(), d(5, 5));
        assert_eq!((s.expected, s.days_behind), (100, 20));
    }

    #[test]
    fn status_ahead_of_the_plan() {
        let (g, p) = setup();
        let s = status(&p, (Indicator::Cccd, g.province()), &history(), d(4, 15));
        // 31 ≥ 30: on or ahead. Window 9/4–15/4 excludes 8/4: 16 again → 69 × 7 / 16 → 31 days.
        assert_eq!((s.covered, s.expected, s.gained_today, s.days_behind, s.eta), (31, 30, 10, 0, Some(d(5, 16))));
        // Before the start: the plan expects the baseline.
        let s = status(&p, (Indicator::Cccd, g.province()), &history(), d(4, 9));
        // covered 15; window 3/4–9/4 has the 5 of 8/4: 85 × 7 / 5 = 119 days → 6/8.
        assert_eq!((s.covered, s.expected, s.days_behind, s.eta), (15, 10, 0, Some(d(8, 6))));
    }

    #[test]
    fn unknown_baseline_shows_the_pace_and_is_never_behind() {
        let g = Geography::load(GeographyVersion::Pre2025).unwrap();
        let weights: String = (688..=698).map(|c| format!("\"{c}\" = 1\n")).collect();
        // Province unknown; district 688 has a count from a source.
        let text = format!(
            "start = 2024-04-10\nend = 2024-04-30\n[district_weights]\n{weights}\n[indicators.smartphone_4g]\ntarget = 110\n\
             baseline = \"unknown\"\nmilestones = [ {{ date = 2024-04-30, share = 1.0 }} ]\n\
             areas.\"688\" = {{ baseline = 4, baseline_source = \"survey\" }}"
        );
        let p = Plan::from_toml(&text, &g).unwrap();
        let prov = (Indicator::Smartphone4g, g.province());
        // 2 on 8/4 (before the start), 3 on each of 10/4..=14/4; as of 16/4
        // the plan expects round(110 × 6/20) = 33 from a baseline of 0 and
        // 17 are counted: a known baseline would be 3 days behind.
        let mut days = counts(&[(d(4, 8), 2, 0)]);
        for day in 10..=14 {
            days.insert(d(4, day), DayCounts { gained: 3, lost: 0 });
        }
        let s = status(&p, prov, &days, d(4, 16));
        assert!(!s.baseline_known);
        assert_eq!((s.covered, s.expected, s.days_behind, s.eta), (17, 33, 0, None));
        // Last 7 days 10/4–16/4: 15 gained → 15/7 a day; the plan rises
        // 110 over the 20 days from 10/4 to 30/4: 5.5 a day.
        assert_eq!((s.pace_per_day, s.needed_per_day), (15.0 / 7.0, 5.5));
        assert!(!LagRule::default().is_lagging(&s));
        // The district with a count is judged as before: expected
        // 4 + round((10 − 4) × 6/20) = 6 (its target is 10), covered 4;
        // expected was last ≤ 4 on 11/4 (4 + round(0.3)), 5 days ago.
        let d688 = g.find(AreaLevel::District, "688").unwrap();
        let s = status(&p, (Indicator::Smartphone4g, d688), &BTreeMap::new(), d(4, 16));
        assert!(s.baseline_known);
        assert_eq!((s.covered, s.expected, s.days_behind), (4, 6, 5));
        assert!(LagRule::default().is_lagging(&s));
    }

    #[test]
    fn status_target_reached_and_below_the_start_value() {
        let (g, p) = setup();
        let prov = (Indicator::Cccd, g.province());
        let s = status(&p, prov, &counts(&[(d(4, 11), 95, 0)]), d(4, 12));
        assert_eq!((s.covered, s.ratio, s.days_behind, s.eta), (105, 1.05, 0, Some(d(4, 12))));
        // Losses below the baseline: behind by the days since the start.
        let s = status(&p, prov, &counts(&[(d(4, 12), 0, 3)]), d(4, 14));
        assert_eq!((s.covered, s.expected, s.days_behind, s.eta), (7, 26, 4, None));
        // No target: ratio 0, ETA today.
        let c = g.find(AreaLevel::Commune, "25216").unwrap();
        let s = status(&p, (Indicator::Cccd, c), &counts(&[(d(4, 11), 2, 0)]), d(4, 12));
        assert_eq!((s.covered, s.target, s.ratio, s.days_behind, s.eta), (2, 0, 0.0, 0, Some(d(4, 12))));
        // Events after `today` are ignored.
        let s = status(&p, prov, &counts(&[(d(4, 11), 2, 0), (d(4, 13), 50, 0)]), d(4, 12));
        assert_eq!((s.covered, s.gained_today), (12, 0));
    }
}

/// When an area lags the plan on an indicator: `covered < expected × (1 − tolerance)`
/// or `days_behind ≥ days_behind`. One definition for the board's colours,
/// the daily alerts and the reports.
///
/// Defaults for the 2024 campaign: 5 % tolerance (a district a few people
/// short of a linear plan on a given evening is not lagging) and 3 days (a
/// district three days behind a 90-day plan needs a call, whatever the ratio).
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LagRule {
    /// Share of `expected` an area may fall short by (0.05 = 5 %).
    pub tolerance: f64,
    /// Days behind plan that make an area lag whatever its ratio.
    pub days_behind: u32,
}

impl Default for LagRule {
    fn default() -> Self {
        LagRule { tolerance: 0.05, days_behind: 3 }
    }
}

impl LagRule {
    /// Whether `status` lags under this rule. An area with no target, or
    /// whose baseline is unknown, never lags (its gap to the plan is not
    /// known: a data gap, not a lag).
    pub fn is_lagging(&self, status: &Status) -> bool {
        if status.target == 0 || !status.baseline_known {
            return false;
        }
        (status.covered as f64) < status.expected as f64 * (1.0 - self.tolerance)
            || status.days_behind >= self.days_behind
    }
}

#[cfg(test)]
mod lag_rule_tests {
    use super::*;

    fn status(covered: i64, expected: u64, days_behind: u32) -> Status {
        Status {
            covered,
            target: 1000,
            expected,
            ratio: 0.0,
            gained_today: 0,
            days_behind,
            eta: None,
            baseline_known: true,
            pace_per_day: 0.0,
            needed_per_day: 0.0,
        }
    }

    #[test]
    fn lagging_by_ratio_or_by_days() {
        let r = LagRule::default();
        // 95 % of 100 is the edge: 95 is not below it, 94 is.
        assert!(!r.is_lagging(&status(95, 100, 0)));
        assert!(r.is_lagging(&status(94, 100, 1)));
        assert!(r.is_lagging(&status(100, 100, 3)));
        assert!(!r.is_lagging(&status(100, 100, 2)));
        assert!(!r.is_lagging(&Status { target: 0, ..status(0, 100, 9) }));
        // Unknown baseline: a data gap, never a lag.
        assert!(!r.is_lagging(&Status { baseline_known: false, ..status(0, 100, 9) }));
    }
}
