//! Why a plan did not load: one variant per rule of the plan file.

use chrono::NaiveDate;

use crate::fact::Indicator;

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
