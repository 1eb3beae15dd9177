//! The rows d06 writes to ClickHouse and reads back from its views, as the
//! rest of d06 sees them (typed: days, indicators, area levels). Their
//! RowBinary form is in `wire.rs`.

use aggregator::{AreaLevel, Indicator};
use chrono::{DateTime, NaiveDate, Utc};

use super::recent::CoverageRecentRow;

/// One shard's coverage counts for one (day, indicator, area).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoverageShardRow {
    /// Local day.
    pub day: NaiveDate,
    /// The indicator.
    pub indicator: Indicator,
    /// Level of `area`.
    pub area_level: AreaLevel,
    /// GSO code of the area.
    pub area: String,
    /// The shard these counts belong to.
    pub shard: u32,
    /// Subjects of this shard first counted on this day.
    pub gained: u64,
    /// Subjects of this shard removed on this day.
    pub lost: u64,
    /// Cumulative `gained - lost` of this shard through this day. Stored for
    /// checks and debugging; the views derive `covered` from the per-day
    /// counts, so a shard need not write a row for a day without changes.
    pub net: i64,
    /// `ReplacingMergeTree` version: the highest one of a key wins.
    pub version: u64,
}

/// The campaign plan for one (day, indicator, area); the rows of
/// `coverage_daily` are the rows of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRow {
    /// Local day.
    pub day: NaiveDate,
    /// The indicator.
    pub indicator: Indicator,
    /// Level of `area`.
    pub area_level: AreaLevel,
    /// GSO code of the area.
    pub area: String,
    /// Covered before the first counted event.
    pub baseline: u64,
    /// Target in force on this day.
    pub target: u64,
    /// What the plan expects covered to be by the end of this day.
    pub expected: u64,
    /// `ReplacingMergeTree` version.
    pub version: u64,
}

/// One row of `coverage_baseline` (OUTPUTS-v1): an area's baseline as the
/// plan gives it, and whether it is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineRow {
    /// The indicator.
    pub indicator: Indicator,
    /// Level of `area`.
    pub area_level: AreaLevel,
    /// GSO code of the area.
    pub area: String,
    /// The baseline (0 when unknown).
    pub baseline: u64,
    /// Whether the plan knows the baseline.
    pub baseline_known: bool,
    /// Where the baseline comes from ("" when the plan does not say).
    pub source: String,
    /// `ReplacingMergeTree` version.
    pub version: u64,
}

/// One row of `areas` (OUTPUTS-v1): an area of the geography.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaRow {
    /// Its level.
    pub area_level: AreaLevel,
    /// GSO code.
    pub area: String,
    /// Official name, with diacritics.
    pub name: String,
    /// GSO code of the area it rolls up into ("" for the province).
    pub parent: String,
    /// `ReplacingMergeTree` version.
    pub version: u64,
}

/// One shard's hotline ticket counts for one (day received, area).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotlineShardRow {
    /// Local day the tickets were received.
    pub day: NaiveDate,
    /// Level of `area`.
    pub area_level: AreaLevel,
    /// GSO code of the area.
    pub area: String,
    /// The shard these counts belong to.
    pub shard: u32,
    /// The tickets received that day, classified as of the pipeline's clock.
    pub counts: aggregator::hotline::HotlineCounts,
    /// `ReplacingMergeTree` version.
    pub version: u64,
}

/// A rejected message (never personal data: `detail` names the rule, not a value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterRow {
    /// When d06 read the message (whole seconds are stored).
    pub received_at: DateTime<Utc>,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: u32,
    /// Source offset; with topic and partition, the key that redelivery rewrites.
    pub offset: u64,
    /// The rejection reason code.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
}

/// Everything one flush writes. Each non-empty table is one `INSERT`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Rows for `coverage_shard_daily`.
    pub coverage: Vec<CoverageShardRow>,
    /// Rows for `coverage_shard_recent`: one per key a shard wrote day rows of.
    pub recent: Vec<CoverageRecentRow>,
    /// Rows for `plan_daily`.
    pub plan: Vec<PlanRow>,
    /// Rows for `coverage_baseline`.
    pub baselines: Vec<BaselineRow>,
    /// Rows for `areas`.
    pub areas: Vec<AreaRow>,
    /// Rows for `hotline_shard_daily`.
    pub hotline: Vec<HotlineShardRow>,
    /// Rows for `dead_letters`.
    pub dead_letters: Vec<DeadLetterRow>,
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of rows over all tables.
    pub fn len(&self) -> usize {
        self.coverage.len()
            + self.recent.len()
            + self.plan.len()
            + self.baselines.len()
            + self.areas.len()
            + self.hotline.len()
            + self.dead_letters.len()
    }
}

/// A row of the `coverage_daily` view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoverageDailyRow {
    /// Local day.
    pub day: NaiveDate,
    /// Indicator name.
    pub indicator: String,
    /// `province`, `district` or `commune`.
    pub area_level: String,
    /// GSO code.
    pub area: String,
    /// Gained this day, all shards.
    pub gained: u64,
    /// Lost this day, all shards.
    pub lost: u64,
    /// Baseline + all gained - all lost through this day.
    pub covered: i64,
    /// Target in force.
    pub target: u64,
    /// Expected by the end of this day.
    pub expected: u64,
}

/// A row of the `hotline_daily` view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotlineDailyRow {
    /// Local day received.
    pub day: NaiveDate,
    /// `province`, `district` or `commune`.
    pub area_level: String,
    /// GSO code.
    pub area: String,
    /// Tickets received.
    pub received: u64,
    /// Answered.
    pub answered: u64,
    /// Forwarded.
    pub forwarded: u64,
    /// Processed.
    pub processed: u64,
    /// In progress.
    pub in_progress: u64,
    /// Spam.
    pub spam: u64,
    /// Overdue at specialist level.
    pub overdue_specialist: u64,
    /// Overdue at leadership level.
    pub overdue_leadership: u64,
}

impl HotlineDailyRow {
    /// The row's eight counts, as the aggregator keeps them.
    pub fn counts(&self) -> aggregator::hotline::HotlineCounts {
        aggregator::hotline::HotlineCounts {
            received: self.received,
            answered: self.answered,
            forwarded: self.forwarded,
            processed: self.processed,
            in_progress: self.in_progress,
            spam: self.spam,
            overdue_specialist: self.overdue_specialist,
            overdue_leadership: self.overdue_leadership,
        }
    }
}
