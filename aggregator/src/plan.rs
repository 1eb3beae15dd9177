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

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;
use toml::value::Datetime;

use crate::fact::Indicator;
use crate::geo::{AreaId, AreaLevel, Geography};

/// Why a plan did not load.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Not TOML, a key unknown or missing, a value of the wrong type.
    #[error("plan is not valid TOML for a plan: {0}")]
    Toml(#[from] toml::de::Error),
    /// A date field is not a plain local date (`2024-04-10`).
    #[error("{field} must be a local date like 2024-04-10")]
    Date {
        /// The field.
        field: String,
    },
    /// `end` is before `start`.
    #[error("end {end} is before start {start}")]
    DatesOutOfOrder {
        /// Campaign start.
        start: NaiveDate,
        /// Campaign end.
        end: NaiveDate,
    },
    /// `time_zone` is not an IANA zone name.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
    /// Neither or both of `target` and `target_ratio`, a ratio without a
    /// denominator, or a denominator without a ratio.
    #[error("{indicator}: give either `target` or `target_ratio` with `denominator`")]
    TargetSpec {
        /// The indicator.
        indicator: Indicator,
    },
    /// `target_ratio` is negative or not finite.
    #[error("{indicator}: target_ratio {ratio} must be a finite number ≥ 0")]
    Ratio {
        /// The indicator.
        indicator: Indicator,
        /// The ratio.
        ratio: f64,
    },
    /// `denominator` names no entry of `[denominators]`.
    #[error("{indicator}: unknown denominator {name:?}")]
    UnknownDenominator {
        /// The indicator.
        indicator: Indicator,
        /// The name.
        name: String,
    },
    /// Milestone dates must be strictly increasing, after `start` and not
    /// after `end`.
    #[error("{indicator}: milestone date {date} must be after start, not after end, and after the previous one")]
    MilestoneDate {
        /// The indicator.
        indicator: Indicator,
        /// The date.
        date: NaiveDate,
    },
    /// Shares must lie in 0..=1.5 and never decrease.
    #[error("{indicator}: milestone share {share} must be in 0..=1.5 and not below the previous one")]
    Share {
        /// The indicator.
        indicator: Indicator,
        /// The share.
        share: f64,
    },
    /// A code in `district_weights` or `areas` is not a district or commune
    /// of the geography.
    #[error("unknown area code {code:?} in {section}")]
    UnknownArea {
        /// Where.
        section: String,
        /// The code.
        code: String,
    },
    /// A weight of 0.
    #[error("district weight for {code} must be positive")]
    Weight {
        /// The district code.
        code: String,
    },
    /// Part of a province figure must be split, but a district that shares
    /// it has no weight.
    #[error("{indicator}: district {code} has no weight in [district_weights] to split the {what}")]
    MissingWeight {
        /// The indicator.
        indicator: Indicator,
        /// `target` or `baseline`.
        what: &'static str,
        /// The district code.
        code: String,
    },
    /// A district's baseline is `"unknown"` while the province's is a count:
    /// the rest of the province figure could not be split honestly.
    #[error("{indicator}: district {code} has an unknown baseline but the province baseline is a count; make the province baseline \"unknown\" too, or give the district's count")]
    UnknownUnderKnown {
        /// The indicator.
        indicator: Indicator,
        /// The district code.
        code: String,
    },
    /// A `baseline_source` is empty.
    #[error("{indicator}: baseline_source must not be empty ({code})")]
    EmptySource {
        /// The indicator.
        indicator: Indicator,
        /// The area code, or `province`.
        code: String,
    },
    /// District overrides exceed the province figure, or do not reach it
    /// while no district is left to take the rest.
    #[error("{indicator}: district {what}s sum to {sum}, the province {what} is {total}")]
    Split {
        /// The indicator.
        indicator: Indicator,
        /// `target` or `baseline`.
        what: &'static str,
        /// Sum of the overrides.
        sum: u64,
        /// The province figure.
        total: u64,
    },
}

/// The plan file (see the module documentation).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    /// A human name, e.g. the plan's reference number.
    #[serde(default)]
    name: Option<String>,
    /// First local day of the campaign (inclusive).
    start: Datetime,
    /// Last local day of the campaign (inclusive).
    end: Datetime,
    /// IANA time zone that defines local days; default `Asia/Ho_Chi_Minh`.
    #[serde(default)]
    time_zone: Option<String>,
    /// Named population figures that `target_ratio`s multiply.
    #[serde(default)]
    denominators: BTreeMap<String, u64>,
    /// District code → positive integer weight, for splitting province
    /// targets and baselines among districts.
    #[serde(default)]
    district_weights: BTreeMap<String, u64>,
    /// Per indicator.
    #[serde(default)]
    indicators: RawIndicators,
}

/// One optional section per indicator.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndicators {
    /// `cccd`: CCCD applications received.
    cccd: Option<RawIndicator>,
    /// `vneid`: level-2 VNeID activations.
    vneid: Option<RawIndicator>,
    /// `smartphone_4g`: swaps to a smartphone.
    smartphone_4g: Option<RawIndicator>,
    /// `sim_signature`: SIMs with an integrated signature.
    sim_signature: Option<RawIndicator>,
    /// `migrated_2g`: 2G subscribers moved.
    migrated_2g: Option<RawIndicator>,
}

/// One indicator's plan.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndicator {
    /// Absolute province target.
    #[serde(default)]
    target: Option<u64>,
    /// Province target as a ratio of `denominator`.
    #[serde(default)]
    target_ratio: Option<f64>,
    /// Name of an entry of `[denominators]`.
    #[serde(default)]
    denominator: Option<String>,
    /// Already achieved in the province before `start`: a count, or
    /// `"unknown"` when no source gives one.
    #[serde(default)]
    baseline: RawBaseline,
    /// Where the province baseline comes from (a report, a file).
    #[serde(default)]
    baseline_source: Option<String>,
    /// Dates and the share of the target expected by the end of each.
    #[serde(default)]
    milestones: Vec<RawMilestone>,
    /// Per-area overrides, by GSO district or commune code.
    #[serde(default)]
    areas: BTreeMap<String, RawArea>,
}

/// One milestone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMilestone {
    /// Local day by whose end the share is expected.
    date: Datetime,
    /// Share of the target, 0..=1.5.
    share: f64,
}

/// An area's own figures.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArea {
    /// The area's target (instead of its share of the province's).
    #[serde(default)]
    target: Option<u64>,
    /// The area's baseline (instead of its share of the province's): a
    /// count, or `"unknown"`.
    #[serde(default)]
    baseline: Option<RawBaseline>,
    /// Where the area's baseline comes from.
    #[serde(default)]
    baseline_source: Option<String>,
}

/// A baseline as written in a plan: a count or the word `"unknown"`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
enum RawBaseline {
    /// A count.
    Count(u64),
    /// `"unknown"`.
    Word(UnknownWord),
}

impl Default for RawBaseline {
    fn default() -> Self {
        RawBaseline::Count(0)
    }
}

/// The only word a baseline may be.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum UnknownWord {
    /// No source gives the figure.
    Unknown,
}

impl RawBaseline {
    fn typed(self) -> Baseline {
        match self {
            RawBaseline::Count(n) => Baseline::Known(n),
            RawBaseline::Word(UnknownWord::Unknown) => Baseline::Unknown,
        }
    }
}

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

fn local_date(field: &str, d: &Datetime) -> Result<NaiveDate, PlanError> {
    let err = || PlanError::Date { field: field.to_string() };
    match (d.date, d.time, d.offset) {
        (Some(date), None, None) => {
            NaiveDate::from_ymd_opt(i32::from(date.year), u32::from(date.month), u32::from(date.day)).ok_or_else(err)
        }
        _ => Err(err()),
    }
}

/// Splits `total` among `districts` (in code order): overrides first, the
/// rest by weight, largest remainder.
fn split(
    indicator: Indicator,
    what: &'static str,
    total: u64,
    districts: &[(AreaId, &str)],
    overrides: &BTreeMap<AreaId, u64>,
    weights: &BTreeMap<AreaId, u64>,
) -> Result<Vec<(AreaId, u64)>, PlanError> {
    let fixed: u64 = districts.iter().filter_map(|(a, _)| overrides.get(a)).sum();
    let rest = total.checked_sub(fixed).ok_or(PlanError::Split { indicator, what, sum: fixed, total })?;
    let sharing: Vec<(AreaId, &str)> = districts.iter().filter(|(a, _)| !overrides.contains_key(a)).copied().collect();
    let mut out: Vec<(AreaId, u64)> =
        districts.iter().filter_map(|(a, _)| overrides.get(a).map(|v| (*a, *v))).collect();
    if rest == 0 {
        out.extend(sharing.iter().map(|(a, _)| (*a, 0)));
        return Ok(out);
    }
    if sharing.is_empty() {
        return Err(PlanError::Split { indicator, what, sum: fixed, total });
    }
    let mut w = Vec::with_capacity(sharing.len());
    for (a, code) in &sharing {
        let weight = weights.get(a).copied().ok_or_else(|| PlanError::MissingWeight {
            indicator,
            what,
            code: code.to_string(),
        })?;
        w.push(u128::from(weight));
    }
    let sum_w: u128 = w.iter().sum();
    let rest_w = u128::from(rest);
    // (area, floor share, remainder numerator, order)
    let mut parts: Vec<(AreaId, u128, u128, usize)> = sharing
        .iter()
        .zip(&w)
        .enumerate()
        .map(|(i, ((a, _), wi))| (*a, rest_w * wi / sum_w, rest_w * wi % sum_w, i))
        .collect();
    let given: u128 = parts.iter().map(|p| p.1).sum();
    let mut left = rest_w - given; // < number of sharing districts
    let mut by_remainder: Vec<usize> = (0..parts.len()).collect();
    by_remainder.sort_by(|&i, &j| parts[j].2.cmp(&parts[i].2).then(parts[i].3.cmp(&parts[j].3)));
    for i in by_remainder {
        if left == 0 {
            break;
        }
        parts[i].1 += 1;
        left -= 1;
    }
    out.extend(parts.iter().map(|p| (p.0, u64::try_from(p.1).unwrap_or(u64::MAX))));
    Ok(out)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::geo::GeographyVersion;

    fn pre() -> Geography {
        Geography::load(GeographyVersion::Pre2025).unwrap()
    }

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, m, day).unwrap()
    }

    const FIXTURE: &str = include_str!("../../deploy/plans/binh-phuoc-2024.toml");

    /// Every district with weight 1, except 688 (weight 3).
    fn weights() -> String {
        let mut s = String::from("[district_weights]\n");
        for code in 688..=698 {
            s.push_str(&format!("\"{code}\" = {}\n", if code == 688 { 3 } else { 1 }));
        }
        s
    }

    fn small(extra: &str) -> Result<Plan, PlanError> {
        let text = format!(
            "start = 2024-04-10\nend = 2024-07-08\n[denominators]\nadults = 1000\nodd = 1001\n{}\n{extra}",
            weights()
        );
        Plan::from_toml(&text, &pre())
    }

    fn district(g: &Geography, code: &str) -> AreaId {
        g.find(AreaLevel::District, code).unwrap()
    }

    #[test]
    fn fixture_plan_has_the_reports_targets() {
        let g = pre();
        let p = Plan::from_toml(FIXTURE, &g).unwrap();
        assert_eq!((p.start(), p.end()), (d(4, 10), d(7, 8)));
        assert_eq!((p.end() - p.start()).num_days() + 1, 90);
        assert_eq!(p.time_zone(), chrono_tz::Asia::Ho_Chi_Minh);
        let prov = g.province();
        for (ind, target) in [
            (Indicator::Cccd, 7_101),
            (Indicator::Vneid, 334_507),
            (Indicator::Migrated2g, 211_000),
            (Indicator::Smartphone4g, 777_150), // round(0.9 × 863,500)
            (Indicator::SimSignature, 431_750), // round(0.5 × 863,500)
        ] {
            assert_eq!(p.target(ind, prov), target, "{ind}");
            assert_eq!(p.baseline(ind, prov), 0, "{ind}"); // 0 or unknown
            let sum: u64 = g.of_level(AreaLevel::District).map(|a| p.target(ind, a)).sum();
            assert_eq!(sum, target, "{ind}");
            assert!(g.of_level(AreaLevel::Commune).all(|a| p.target(ind, a) == 0));
            // Illustrative milestones: 30 % / 60 % / 100 % at days 30, 60, 90.
            assert_eq!(p.expected(ind, prov, d(7, 8)), target);
        }
        // cccd split by commune counts (Σ 111): 7101 ≡ −3 (mod 111), so a
        // district of weight w gets ⌊7101w/111⌋ = 64w − 1 with remainder
        // 111 − 3w. The floors sum to 64 × 111 − 11 = 7093; the 8 units left
        // go to the 8 largest remainders, i.e. every district but the three
        // heaviest (694: w 13, 692 and 696: w 16).
        let cccd: Vec<u64> = ["688", "689", "690", "691", "692", "693", "694", "695", "696", "697", "698"]
            .iter()
            .map(|c| p.target(Indicator::Cccd, district(&g, c)))
            .collect();
        assert_eq!(cccd, [448, 512, 384, 512, 1023, 448, 831, 704, 1023, 576, 640]);
        assert_eq!(p.expected(Indicator::Cccd, prov, d(5, 9)), 2130); // round(0.3 × 7101)
        assert_eq!(p.expected(Indicator::Vneid, prov, d(6, 8)), 200_704); // round(0.6 × 334507)
    }

    #[test]
    fn expected_follows_baseline_then_milestones_then_flat() {
        let p = small(
            "[indicators.cccd]\ntarget = 1000\nbaseline = 100\nmilestones = [ { date = 2024-04-20, share = 0.3 }, { date = 2024-05-10, share = 0.5 } ]",
        )
        .unwrap();
        let prov = pre().province();
        let e = |day| p.expected(Indicator::Cccd, prov, day);
        assert_eq!(e(d(4, 1)), 100); // before start
        assert_eq!(e(d(4, 10)), 100); // start: the baseline
        assert_eq!(e(d(4, 11)), 120); // 100 + 200 × 1/10
        assert_eq!(e(d(4, 15)), 200); // 100 + 200 × 5/10
        assert_eq!(e(d(4, 20)), 300); // on the milestone
        assert_eq!(e(d(4, 23)), 330); // 300 + 200 × 3/20
        assert_eq!(e(d(4, 24)), 340);
        assert_eq!(e(d(5, 10)), 500);
        assert_eq!(e(d(6, 1)), 500); // flat after the last
        assert_eq!(e(d(8, 1)), 500); // and after the end
        assert!(p.is_running(d(4, 10)) && p.is_running(d(7, 8)));
        assert!(!p.is_running(d(4, 9)) && !p.is_running(d(7, 9)));
    }

    #[test]
    fn expected_rounds_half_up_and_never_drops_below_the_baseline() {
        let p = small(
            "[indicators.vneid]\ntarget = 10\nbaseline = 5\nmilestones = [ { date = 2024-04-13, share = 0.1 }, { date = 2024-04-17, share = 0.8 } ]",
        )
        .unwrap();
        let prov = pre().province();
        let e = |day| p.expected(Indicator::Vneid, prov, day);
        // Milestone 1 = max(5, 1) = 5: flat. Then 5 → 8 over 4 days: 5.75, 6.5, 7.25, 8.
        assert_eq!([e(d(4, 12)), e(d(4, 13)), e(d(4, 14)), e(d(4, 15)), e(d(4, 16)), e(d(4, 17))], [5, 5, 6, 7, 7, 8]);
        // No milestones: flat at the baseline.
        let q = small("[indicators.vneid]\ntarget = 10\nbaseline = 4").unwrap();
        assert_eq!(q.expected(Indicator::Vneid, prov, d(7, 1)), 4);
        // Not in the plan: zero.
        assert_eq!(q.expected(Indicator::Cccd, prov, d(7, 1)), 0);
        assert_eq!(q.target(Indicator::Cccd, prov), 0);
    }

    #[test]
    fn districts_split_by_largest_remainder_with_overrides() {
        let g = pre();
        // Weights: 688 → 3, ten others → 1; Σ = 13. 100 × 3/13 = 23.08, 100/13 = 7.69.
        // Floors 23 + 10 × 7 = 93; 7 left: the ten 0.69 remainders beat 0.08,
        // lower codes first → 689..=695 get 8, 696..=698 keep 7.
        let p = small("[indicators.cccd]\ntarget = 100\nbaseline = 13").unwrap();
        let t = |c| p.target(Indicator::Cccd, district(&g, c));
        assert_eq!([t("688"), t("689"), t("695"), t("696"), t("698")], [23, 8, 8, 7, 7]);
        let b = |c| p.baseline(Indicator::Cccd, district(&g, c));
        assert_eq!([b("688"), b("689"), b("698")], [3, 1, 1]);
        // An override takes its part first; the rest is split among the others.
        let p = small("[indicators.cccd]\ntarget = 100\nareas.\"688\" = { target = 50 }\nareas.\"25216\" = { target = 9, baseline = 2 }").unwrap();
        let t = |c| p.target(Indicator::Cccd, district(&g, c));
        assert_eq!(t("688"), 50);
        assert_eq!(t("689"), 5); // 50 / 10 each
        let c = g.find(AreaLevel::Commune, "25216").unwrap();
        assert_eq!((p.target(Indicator::Cccd, c), p.baseline(Indicator::Cccd, c)), (9, 2));
        let other = g.find(AreaLevel::Commune, "25195").unwrap();
        assert_eq!(p.target(Indicator::Cccd, other), 0);
        let sum: u64 = g.of_level(AreaLevel::District).map(|a| p.target(Indicator::Cccd, a)).sum();
        assert_eq!(sum, 100);
    }

    #[test]
    fn ratio_targets_use_the_denominator() {
        let p = small("[indicators.smartphone_4g]\ntarget_ratio = 0.5\ndenominator = \"odd\"").unwrap();
        assert_eq!(p.target(Indicator::Smartphone4g, pre().province()), 501); // 500.5 rounds up
        let p = small("[indicators.smartphone_4g]\ntarget_ratio = 0.9\ndenominator = \"adults\"").unwrap();
        assert_eq!(p.target(Indicator::Smartphone4g, pre().province()), 900);
    }

    #[test]
    fn invalid_plans_are_rejected() {
        let bad = |extra: &str| small(extra).unwrap_err();
        assert!(matches!(
            bad("[indicators.cccd]\ntarget = 1\ntarget_ratio = 0.5\ndenominator = \"adults\""),
            PlanError::TargetSpec { .. }
        ));
        assert!(matches!(bad("[indicators.cccd]\ntarget_ratio = 0.5"), PlanError::TargetSpec { .. }));
        assert!(matches!(bad("[indicators.cccd]\nbaseline = 1"), PlanError::TargetSpec { .. }));
        assert!(matches!(
            bad("[indicators.cccd]\ntarget_ratio = 0.5\ndenominator = \"kids\""),
            PlanError::UnknownDenominator { .. }
        ));
        assert!(matches!(
            bad("[indicators.cccd]\ntarget_ratio = -0.5\ndenominator = \"adults\""),
            PlanError::Ratio { .. }
        ));
        assert!(matches!(
            bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-04-10, share = 0.5 }]"),
            PlanError::MilestoneDate { .. }
        ));
        assert!(matches!(
            bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-07-09, share = 0.5 }]"),
            PlanError::MilestoneDate { .. }
        ));
        assert!(matches!(
            bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-05-01, share = 0.5 }, { date = 2024-05-01, share = 0.6 }]"),
            PlanError::MilestoneDate { .. }
        ));
        assert!(matches!(
            bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-05-01, share = 0.5 }, { date = 2024-05-02, share = 0.4 }]"),
            PlanError::Share { .. }
        ));
        assert!(matches!(
            bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-05-01, share = 1.6 }]"),
            PlanError::Share { .. }
        ));
        assert!(matches!(
            bad("[indicators.cccd]\ntarget = 1\nareas.\"999\" = { target = 1 }"),
            PlanError::UnknownArea { .. }
        ));
        assert!(matches!(
            bad("[indicators.cccd]\ntarget = 10\nareas.\"688\" = { target = 11 }"),
            PlanError::Split { sum: 11, total: 10, .. }
        ));
        assert!(matches!(bad("[indicators.cccd]\ntarget = 1\ntypo = 2"), PlanError::Toml(_)));
        assert!(matches!(
            bad("[indicators.cccd]\ntarget = 1\nmilestones = [{ date = 2024-05-01T00:00:00, share = 0.5 }]"),
            PlanError::Date { .. }
        ));
        assert!(matches!(bad("[indicators.vneid2]\ntarget = 1"), PlanError::Toml(_)));

        let g = pre();
        let plan = |s: &str| Plan::from_toml(s, &g).unwrap_err();
        assert!(matches!(plan("start = 2024-04-10\nend = 2024-04-09"), PlanError::DatesOutOfOrder { .. }));
        assert!(matches!(
            plan("start = 2024-04-10\nend = 2024-04-19\ntime_zone = \"Asia/Saigon2\""),
            PlanError::TimeZone(_)
        ));
        assert!(matches!(
            plan("start = 2024-04-10\nend = 2024-04-19\n[district_weights]\n\"688\" = 0"),
            PlanError::Weight { .. }
        ));
        assert!(matches!(
            plan("start = 2024-04-10\nend = 2024-04-19\n[district_weights]\n\"25216\" = 1"),
            PlanError::UnknownArea { .. }
        ));
        // A split needs a weight for every sharing district.
        assert!(matches!(
            plan(
                "start = 2024-04-10\nend = 2024-04-19\n[district_weights]\n\"688\" = 1\n[indicators.cccd]\ntarget = 5"
            ),
            PlanError::MissingWeight { what: "target", .. }
        ));
        // Overrides of every district must add up to the province target.
        let all: String = (688..=698).map(|c| format!("areas.\"{c}\" = {{ target = 1 }}\n")).collect();
        assert!(matches!(
            plan(&format!("start = 2024-04-10\nend = 2024-04-19\n[indicators.cccd]\ntarget = 12\n{all}")),
            PlanError::Split { sum: 11, total: 12, .. }
        ));
        assert!(Plan::from_toml(
            &format!("start = 2024-04-10\nend = 2024-04-19\n[indicators.cccd]\ntarget = 11\n{all}"),
            &g
        )
        .is_ok());
    }

    #[test]
    fn baselines_can_be_unknown_per_indicator_and_area() {
        let g = pre();
        let c = |code| g.find(AreaLevel::Commune, code).unwrap();
        // Province unknown: districts with a count are known, the others and
        // the unlisted communes are not.
        let p = small(
            "[indicators.sim_signature]\ntarget = 100\nbaseline = \"unknown\"\n\
             areas.\"688\" = { baseline = 7, baseline_source = \"Viettel, 31/3/2024\" }\n\
             areas.\"25216\" = { baseline = 2 }",
        )
        .unwrap();
        let ind = Indicator::SimSignature;
        assert_eq!(p.baseline_of(ind, g.province()), Baseline::Unknown);
        assert_eq!(p.baseline_of(ind, district(&g, "688")), Baseline::Known(7));
        assert_eq!(p.baseline_source(ind, district(&g, "688")), Some("Viettel, 31/3/2024"));
        assert_eq!(p.baseline_of(ind, district(&g, "689")), Baseline::Unknown);
        assert_eq!(p.baseline(ind, district(&g, "689")), 0);
        assert_eq!(p.baseline_of(ind, c("25216")), Baseline::Known(2));
        assert_eq!(p.baseline_of(ind, c("25195")), Baseline::Unknown);
        // Targets are still split (100 × 3/13 → 23 for 688).
        assert_eq!(p.target(ind, district(&g, "688")), 23);
        // Other indicators are untouched.
        assert_eq!(p.baseline_of(Indicator::Cccd, g.province()), Baseline::Known(0));
        // Province known: a commune may be unknown, a district may not.
        let p = small("[indicators.cccd]\ntarget = 100\nbaseline = 13\nareas.\"25216\" = { baseline = \"unknown\" }")
            .unwrap();
        assert!(!p.baseline_known(Indicator::Cccd, c("25216")));
        assert!(p.baseline_known(Indicator::Cccd, c("25195")));
        assert!(p.baseline_known(Indicator::Cccd, district(&g, "689")));
        assert!(matches!(
            small("[indicators.cccd]\ntarget = 100\nbaseline = 13\nareas.\"688\" = { baseline = \"unknown\" }"),
            Err(PlanError::UnknownUnderKnown { .. })
        ));
        // Only a count or the word "unknown"; a source is not empty.
        assert!(matches!(small("[indicators.cccd]\ntarget = 1\nbaseline = \"unkown\""), Err(PlanError::Toml(_))));
        assert!(matches!(
            small("[indicators.cccd]\ntarget = 1\nbaseline = 0\nbaseline_source = \" \""),
            Err(PlanError::EmptySource { .. })
        ));
    }

    #[test]
    fn the_2024_plan_does_not_know_the_share_baselines() {
        let g = pre();
        let p = Plan::from_toml(FIXTURE, &g).unwrap();
        for ind in [Indicator::Smartphone4g, Indicator::SimSignature] {
            assert!(g.areas().iter().enumerate().all(|(i, _)| !p.baseline_known(ind, AreaId(i as u16))), "{ind}");
        }
        for ind in [Indicator::Cccd, Indicator::Vneid, Indicator::Migrated2g] {
            assert_eq!(p.baseline_of(ind, g.province()), Baseline::Known(0), "{ind}");
        }
    }

    #[test]
    fn needed_pace_follows_the_milestone_segments() {
        let p = small(
            "[indicators.cccd]\ntarget = 1000\nbaseline = 100\nmilestones = [ { date = 2024-04-20, share = 0.3 }, { date = 2024-05-10, share = 0.5 } ]",
        )
        .unwrap();
        let prov = pre().province();
        let n = |day| p.needed_per_day(Indicator::Cccd, prov, day);
        assert_eq!(n(d(4, 9)), 0.0); // before the start
        assert_eq!(n(d(4, 10)), 20.0); // 100 → 300 over 10 days
        assert_eq!(n(d(4, 20)), 20.0);
        assert_eq!(n(d(4, 21)), 10.0); // 300 → 500 over 20 days
        assert_eq!(n(d(5, 11)), 0.0); // after the last milestone
    }

    #[test]
    fn post2025_geography_has_no_district_split() {
        let g = Geography::load(GeographyVersion::Post2025).unwrap();
        let p = Plan::from_toml(
            "start = 2024-04-10\nend = 2024-04-19\n[indicators.cccd]\ntarget = 7\nareas.\"25217\" = { target = 3 }",
            &g,
        )
        .unwrap();
        assert_eq!(p.target(Indicator::Cccd, g.province()), 7);
        assert_eq!(p.target(Indicator::Cccd, g.find(AreaLevel::Commune, "25217").unwrap()), 3);
        assert!(matches!(Plan::from_toml(FIXTURE, &g), Err(PlanError::UnknownArea { .. })));
    }
}
