//! The campaign plan as configuration: dates, targets, baselines, milestones
//! and how the province's targets are split among districts.
//!
//! A plan is a TOML file (`deploy/plans/*.toml`); unknown keys are errors.
//! A plan file may also name a per-area baseline file
//! (`baseline_file = "b.csv"`), resolved by [`crate::plan_source`] before
//! [`Plan::from_toml`], which refuses the key.
//!
//! ```toml
//! name = "Kế hoạch 128/KH-UBND"
//! start = 2024-04-10                 # local dates, both inclusive
//! end = 2024-07-08
//! time_zone = "Asia/Ho_Chi_Minh"     # the default
//!
//! [denominators]
//! adult_population = 863500
//!
//! [district_weights]                 # GSO district code → positive integer weight
//! "688" = 7
//! "689" = 8                          # … every district that shares a split
//!
//! [indicators.cccd]
//! target = 7101                      # or: target_ratio = 0.9, denominator = "adult_population"
//! baseline = 0                       # or "unknown"; default 0
//! baseline_source = "Báo cáo …"      # optional: where the baseline comes from
//! milestones = [ { date = 2024-05-09, share = 0.3 }, { date = 2024-07-08, share = 1.0 } ]
//! areas."688" = { target = 700 }     # optional overrides, districts or communes
//! areas."689" = { baseline = 1200, baseline_source = "Viettel, 31/3/2024" }
//! ```
//!
//! **Targets.** An indicator's province target is `target`, or
//! `target_ratio × denominators[denominator]` rounded to the nearest integer
//! (halves away from zero). A district's target is its override in `areas`
//! if it has one; the rest of the province target (province − overrides) is
//! split among the other districts in proportion to `district_weights` by
//! the largest-remainder method: each gets ⌊rest × w / Σw⌋, and the units
//! left over go one each to the largest remainders (ties: lower district
//! code first). So the district targets always sum to the province target.
//! A commune has a target only if `areas` lists it (otherwise 0). Baselines
//! are split the same way, independently (override or share of the
//! province baseline for districts; listed or 0 for communes). An indicator
//! the plan does not mention has target, baseline and expected 0 everywhere.
//!
//! **Unknown baselines.** `baseline = "unknown"` (for the province, or for
//! an area in `areas`) says no source gives the figure. With the province
//! baseline unknown nothing is split: a district or commune is known only
//! if `areas` gives it a count (`d06 plan import-baseline` writes these
//! from a CSV file); every other area is unknown. With the province
//! baseline a count, a commune may be declared unknown but a district may
//! not (the province figure could not be split). An unknown baseline counts
//! as 0 in `covered` and `expected`; the outputs say it is unknown, the
//! area shows its pace ([`Plan::needed_per_day`]) and never lags
//! (`coverage::LagRule`).
//!
//! **Expected.** What the plan expects covered to be by the end of a day: the
//! baseline up to and on `start`; from there it rises linearly (per day)
//! through the milestones, milestone *i* being worth
//! `max(baseline, round(share_i × target))`; after the last milestone it
//! stays flat; with no milestones it stays at the baseline. Between two
//! points (d₀, v₀) and (d₁, v₁) the value on day d is
//! `v₀ + round((v₁ − v₀) × (d − d₀) / (d₁ − d₀))` (halves up), so it never
//! decreases.

mod error;
mod file;
mod split;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::fact::Indicator;
use crate::geo::{AreaId, AreaLevel, Geography};

pub use self::error::PlanError;
use self::file::{local_date, RawBaseline, RawIndicators, RawPlan};
use self::split::split;

/// What an area had achieved before the campaign started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// A count from a source.
    Known(u64),
    /// No source gives one: the area's pace is shown, never its lag.
    Unknown,
}

/// A milestone: by the end of `date`, `share` of the target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Milestone {
    /// The local day.
    pub date: NaiveDate,
    /// Share of the target (0..=1.5).
    pub share: f64,
}

/// One indicator's figures, per area (indexed by [`AreaId`]).
#[derive(Clone, Debug, Default)]
struct IndicatorPlan {
    targets: Vec<u64>,
    /// 0 where unknown (see `known`).
    baselines: Vec<u64>,
    /// Whether each area's baseline is known.
    known: Vec<bool>,
    /// Where baselines come from, by area (the plan's `baseline_source`s).
    sources: BTreeMap<AreaId, String>,
    milestones: Vec<Milestone>,
}

/// A validated campaign plan for one geography.
#[derive(Clone, Debug)]
pub struct Plan {
    name: Option<String>,
    start: NaiveDate,
    end: NaiveDate,
    time_zone: Tz,
    /// The first area id of the plan's province: the per-area tables are
    /// indexed by an id's offset from it (a province's areas are contiguous).
    base: usize,
    /// Indexed by `Indicator as usize`.
    indicators: [IndicatorPlan; Indicator::COUNT],
}

impl Plan {
    /// Parses and validates a plan against `geo`: dates ordered, milestone
    /// dates strictly increasing within (start, end], shares in 0..=1.5 and
    /// non-decreasing, every area code known at the right level, weights
    /// positive, district targets and baselines summing exactly to the
    /// province's (largest-remainder rounding, see the module docs).
    pub fn from_toml(s: &str, geo: &Geography) -> Result<Plan, PlanError> {
        let raw: RawPlan = toml::from_str(s)?;
        let start = local_date("start", &raw.start)?;
        let end = local_date("end", &raw.end)?;
        if end < start {
            return Err(PlanError::DatesOutOfOrder { start, end });
        }
        let time_zone = match raw.time_zone {
            None => chrono_tz::Asia::Ho_Chi_Minh,
            Some(name) => name.parse::<Tz>().map_err(|_| PlanError::TimeZone(name))?,
        };

        let mut districts: Vec<(AreaId, &str)> =
            geo.of_level(AreaLevel::District).map(|a| (a, geo.area(a).code.as_str())).collect();
        districts.sort_by(|a, b| a.1.cmp(b.1));
        let mut weights = BTreeMap::new();
        for (code, w) in &raw.district_weights {
            let a = geo
                .find(AreaLevel::District, code)
                .ok_or_else(|| PlanError::UnknownArea { section: "district_weights".into(), code: code.clone() })?;
            if *w == 0 {
                return Err(PlanError::Weight { code: code.clone() });
            }
            weights.insert(a, *w);
        }

        // Tables cover the plan's province's own areas only.
        let span = geo.span();
        let (base, n) = (span.start, span.len());
        let at = |a: AreaId| usize::from(a.0) - base;
        let mut indicators: [IndicatorPlan; Indicator::COUNT] = Default::default();
        let RawIndicators { cccd, vneid, smartphone_4g, sim_signature, migrated_2g } = raw.indicators;
        let sections = [
            (Indicator::Cccd, cccd),
            (Indicator::Vneid, vneid),
            (Indicator::Smartphone4g, smartphone_4g),
            (Indicator::SimSignature, sim_signature),
            (Indicator::Migrated2g, migrated_2g),
        ];
        for (ind, section) in sections {
            let mut p = IndicatorPlan {
                targets: vec![0; n],
                baselines: vec![0; n],
                known: vec![true; n],
                sources: BTreeMap::new(),
                milestones: Vec::new(),
            };
            if let Some(r) = section {
                let target = match (r.target, r.target_ratio, &r.denominator) {
                    (Some(t), None, None) => t,
                    (None, Some(ratio), Some(name)) => {
                        if !ratio.is_finite() || ratio < 0.0 {
                            return Err(PlanError::Ratio { indicator: ind, ratio });
                        }
                        let den = raw
                            .denominators
                            .get(name)
                            .ok_or_else(|| PlanError::UnknownDenominator { indicator: ind, name: name.clone() })?;
                        // Exact for any realistic population (< 2^53).
                        (ratio * *den as f64).round() as u64
                    }
                    _ => return Err(PlanError::TargetSpec { indicator: ind }),
                };
                let mut prev: Option<Milestone> = None;
                for m in &r.milestones {
                    let date = local_date("milestones.date", &m.date)?;
                    if date <= start || date > end || prev.is_some_and(|p| date <= p.date) {
                        return Err(PlanError::MilestoneDate { indicator: ind, date });
                    }
                    if !(0.0..=1.5).contains(&m.share) || prev.is_some_and(|p| m.share < p.share) {
                        return Err(PlanError::Share { indicator: ind, share: m.share });
                    }
                    let here = Milestone { date, share: m.share };
                    p.milestones.push(here);
                    prev = Some(here);
                }
                let mut target_over = BTreeMap::new();
                let mut baseline_over = BTreeMap::new();
                let mut unknown_over = Vec::new();
                let source = |code: &str, text: &Option<String>| match text {
                    Some(t) if t.trim().is_empty() => {
                        Err(PlanError::EmptySource { indicator: ind, code: code.to_string() })
                    }
                    _ => Ok(text.clone()),
                };
                if let Some(t) = source("province", &r.baseline_source)? {
                    p.sources.insert(geo.province(), t);
                }
                for (code, a) in &r.areas {
                    let area = geo
                        .find(AreaLevel::District, code)
                        .or_else(|| geo.find(AreaLevel::Commune, code))
                        .ok_or_else(|| PlanError::UnknownArea {
                            section: format!("indicators.{ind}.areas"),
                            code: code.clone(),
                        })?;
                    if let Some(t) = a.target {
                        target_over.insert(area, t);
                    }
                    match a.baseline.map(RawBaseline::typed) {
                        Some(Baseline::Known(b)) => {
                            baseline_over.insert(area, b);
                        }
                        Some(Baseline::Unknown) => unknown_over.push((area, code)),
                        None => {}
                    }
                    if let Some(t) = source(code, &a.baseline_source)? {
                        p.sources.insert(area, t);
                    }
                }
                let province = at(geo.province());
                p.targets[province] = target;
                let has_districts = !districts.is_empty();
                if has_districts {
                    for (a, v) in split(ind, "target", target, &districts, &target_over, &weights)? {
                        p.targets[at(a)] = v;
                    }
                }
                match r.baseline.typed() {
                    Baseline::Known(total) => {
                        p.baselines[province] = total;
                        if let Some((_, code)) =
                            unknown_over.iter().find(|(a, _)| geo.area(*a).level == AreaLevel::District)
                        {
                            return Err(PlanError::UnknownUnderKnown { indicator: ind, code: code.to_string() });
                        }
                        if has_districts {
                            for (a, v) in split(ind, "baseline", total, &districts, &baseline_over, &weights)? {
                                p.baselines[at(a)] = v;
                            }
                        }
                    }
                    Baseline::Unknown => {
                        // Nothing to split: only the areas the plan gives a count are known.
                        for (i, area) in geo.areas()[span.clone()].iter().enumerate() {
                            if area.level != AreaLevel::Commune {
                                p.known[i] = false;
                            }
                        }
                        for (a, v) in &baseline_over {
                            p.baselines[at(*a)] = *v;
                            p.known[at(*a)] = true;
                        }
                    }
                }
                for (i, area) in geo.areas()[span.clone()].iter().enumerate() {
                    if area.level == AreaLevel::Commune {
                        // A commune the plan does not list: 0 if the province is known.
                        p.known[i] = p.known[province];
                    }
                }
                for (a, v) in &target_over {
                    if geo.area(*a).level == AreaLevel::Commune {
                        p.targets[at(*a)] = *v;
                    }
                }
                for (a, v) in &baseline_over {
                    if geo.area(*a).level == AreaLevel::Commune {
                        p.baselines[at(*a)] = *v;
                        p.known[at(*a)] = true;
                    }
                }
                for (a, _) in &unknown_over {
                    p.baselines[at(*a)] = 0;
                    p.known[at(*a)] = false;
                }
            }
            indicators[ind as usize] = p;
        }
        Ok(Plan { name: raw.name, start, end, time_zone, base, indicators })
    }

    /// The plan's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// First local day of the campaign.
    pub fn start(&self) -> NaiveDate {
        self.start
    }

    /// Last local day of the campaign (inclusive).
    pub fn end(&self) -> NaiveDate {
        self.end
    }

    /// The time zone that defines local days.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// Whether `day` is within the campaign (start and end included).
    pub fn is_running(&self, day: NaiveDate) -> bool {
        self.start <= day && day <= self.end
    }

    /// An indicator's milestones, in date order.
    pub fn milestones(&self, ind: Indicator) -> &[Milestone] {
        &self.indicators[ind as usize].milestones
    }

    /// Where `area` sits in the per-area tables (past their end when it is
    /// not in the plan's province).
    fn slot(&self, area: AreaId) -> usize {
        usize::from(area.0).wrapping_sub(self.base)
    }

    /// The target of an indicator in an area (0 where the plan sets none).
    pub fn target(&self, ind: Indicator, area: AreaId) -> u64 {
        self.indicators[ind as usize].targets.get(self.slot(area)).copied().unwrap_or(0)
    }

    /// What the area had achieved before the campaign started; 0 when the
    /// plan says it is unknown (see [`Plan::baseline_of`]).
    pub fn baseline(&self, ind: Indicator, area: AreaId) -> u64 {
        self.indicators[ind as usize].baselines.get(self.slot(area)).copied().unwrap_or(0)
    }

    /// Whether the plan knows the area's baseline (an indicator the plan
    /// does not mention has a known baseline of 0).
    pub fn baseline_known(&self, ind: Indicator, area: AreaId) -> bool {
        self.indicators[ind as usize].known.get(self.slot(area)).copied().unwrap_or(true)
    }

    /// The area's baseline, known or not.
    pub fn baseline_of(&self, ind: Indicator, area: AreaId) -> Baseline {
        if self.baseline_known(ind, area) {
            Baseline::Known(self.baseline(ind, area))
        } else {
            Baseline::Unknown
        }
    }

    /// Where the area's baseline comes from, if the plan says: the
    /// indicator's `baseline_source` for the province, the area's own for
    /// a district or commune (a district's share of the province figure
    /// has none of its own).
    pub fn baseline_source(&self, ind: Indicator, area: AreaId) -> Option<&str> {
        self.indicators[ind as usize].sources.get(&area).map(String::as_str)
    }

    /// The plan's rise per day on the milestone segment that holds `day`
    /// (from `start` to the first milestone, then between milestones): the
    /// pace the plan needs. 0 before the start and after the last
    /// milestone. With an unknown baseline it is computed from a baseline
    /// of 0, so it is an upper bound.
    pub fn needed_per_day(&self, ind: Indicator, area: AreaId, day: NaiveDate) -> f64 {
        if day < self.start {
            return 0.0;
        }
        let mut prev = self.start;
        for m in &self.indicators[ind as usize].milestones {
            if day <= m.date {
                let span = (m.date - prev).num_days().max(1) as f64;
                let rise = self.expected(ind, area, m.date) as f64 - self.expected(ind, area, prev) as f64;
                return rise / span;
            }
            prev = m.date;
        }
        0.0
    }

    /// What the plan expects covered to be by the end of `day` (see the
    /// module docs): the baseline up to `start`, linear between milestones,
    /// flat after the last one. Never decreases from one day to the next.
    pub fn expected(&self, ind: Indicator, area: AreaId, day: NaiveDate) -> u64 {
        let p = &self.indicators[ind as usize];
        let baseline = self.baseline(ind, area);
        let target = self.target(ind, area);
        let mut prev = (self.start, baseline);
        if day <= prev.0 {
            return baseline;
        }
        for m in &p.milestones {
            let value = baseline.max((m.share * target as f64).round() as u64);
            if day <= m.date {
                let span = i128::from((m.date - prev.0).num_days());
                let done = i128::from((day - prev.0).num_days());
                let rise = i128::from(value) - i128::from(prev.1);
                let step = (2 * rise * done + span).div_euclid(2 * span);
                return u64::try_from(i128::from(prev.1) + step).unwrap_or(0);
            }
            prev = (m.date, value);
        }
        prev.1
    }
}
