//! The plan file as written: the TOML shapes `serde` reads (unknown keys
//! refused), before [`super::Plan::from_toml`] checks and types them.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Deserialize;
use toml::value::Datetime;

use super::{Baseline, PlanError};

/// The plan file (see the module documentation).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlan {
    /// A human name, e.g. the plan's reference number.
    #[serde(default)]
    pub(super) name: Option<String>,
    /// First local day of the campaign (inclusive).
    pub(super) start: Datetime,
    /// Last local day of the campaign (inclusive).
    pub(super) end: Datetime,
    /// IANA time zone that defines local days; default `Asia/Ho_Chi_Minh`.
    #[serde(default)]
    pub(super) time_zone: Option<String>,
    /// Named population figures that `target_ratio`s multiply.
    #[serde(default)]
    pub(super) denominators: BTreeMap<String, u64>,
    /// District code → positive integer weight, for splitting province
    /// targets and baselines among districts.
    #[serde(default)]
    pub(super) district_weights: BTreeMap<String, u64>,
    /// Per indicator.
    #[serde(default)]
    pub(super) indicators: RawIndicators,
}

/// One optional section per indicator.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIndicators {
    /// `cccd`: CCCD applications received.
    pub(super) cccd: Option<RawIndicator>,
    /// `vneid`: level-2 VNeID activations.
    pub(super) vneid: Option<RawIndicator>,
    /// `smartphone_4g`: swaps to a smartphone.
    pub(super) smartphone_4g: Option<RawIndicator>,
    /// `sim_signature`: SIMs with an integrated signature.
    pub(super) sim_signature: Option<RawIndicator>,
    /// `migrated_2g`: 2G subscribers moved.
    pub(super) migrated_2g: Option<RawIndicator>,
}

/// One indicator's plan.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIndicator {
    /// Absolute province target.
    #[serde(default)]
    pub(super) target: Option<u64>,
    /// Province target as a ratio of `denominator`.
    #[serde(default)]
    pub(super) target_ratio: Option<f64>,
    /// Name of an entry of `[denominators]`.
    #[serde(default)]
    pub(super) denominator: Option<String>,
    /// Already achieved in the province before `start`: a count, or
    /// `"unknown"` when no source gives one.
    #[serde(default)]
    pub(super) baseline: RawBaseline,
    /// Where the province baseline comes from (a report, a file).
    #[serde(default)]
    pub(super) baseline_source: Option<String>,
    /// Dates and the share of the target expected by the end of each.
    #[serde(default)]
    pub(super) milestones: Vec<RawMilestone>,
    /// Per-area overrides, by GSO district or commune code.
    #[serde(default)]
    pub(super) areas: BTreeMap<String, RawArea>,
}

/// One milestone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMilestone {
    /// Local day by whose end the share is expected.
    pub(super) date: Datetime,
    /// Share of the target, 0..=1.5.
    pub(super) share: f64,
}

/// An area's own figures.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArea {
    /// The area's target (instead of its share of the province's).
    #[serde(default)]
    pub(super) target: Option<u64>,
    /// The area's baseline (instead of its share of the province's): a
    /// count, or `"unknown"`.
    #[serde(default)]
    pub(super) baseline: Option<RawBaseline>,
    /// Where the area's baseline comes from.
    #[serde(default)]
    pub(super) baseline_source: Option<String>,
}

/// A baseline as written in a plan: a count or the word `"unknown"`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub(super) enum RawBaseline {
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
pub(super) enum UnknownWord {
    /// No source gives the figure.
    Unknown,
}

impl RawBaseline {
    pub(super) fn typed(self) -> Baseline {
        match self {
            RawBaseline::Count(n) => Baseline::Known(n),
            RawBaseline::Word(UnknownWord::Unknown) => Baseline::Unknown,
        }
    }
}

/// A plan date: a plain local date (`2024-04-10`), no time, no offset.
pub(super) fn local_date(field: &str, d: &Datetime) -> Result<NaiveDate, PlanError> {
    let err = || PlanError::Date { field: field.to_string() };
    match (d.date, d.time, d.offset) {
        (Some(date), None, None) => {
            NaiveDate::from_ymd_opt(i32::from(date.year), u32::from(date.month), u32::from(date.day)).ok_or_else(err)
        }
        _ => Err(err()),
    }
}
