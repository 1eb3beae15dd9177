//! `coverage_shard_recent`: one row per shard and key with the shard's last
//! days of the key one by one and the sum of every day before them. The
//! figures every instance shows (`ClickHouseSink::figures`) read these rows
//! instead of every day row: one row per (shard, key) however long the
//! campaign has run (docs/SCALING.md, "The read-back at national size").
//!
//! A row kept from an earlier flush stays exact as long as the shard counted
//! nothing new for its key: its days are still the shard's days. What makes
//! a row unusable is only a shard whose day is far *ahead* of the day shown
//! (its days before its last [`RECENT_DAYS`] are summed into one entry, which
//! may then fall inside the week shown). Keeping one day more than the week
//! the figures need absorbs a shard one day ahead: the wall clocks of two
//! instances either side of midnight. With the event clock the day shown is
//! never before any shard's day (`View::publish`).

use ::clickhouse::Row;
use aggregator::{AreaLevel, Indicator};
use chrono::NaiveDate;
use serde::Serialize;

use super::{date_to_wire, SinkError};

/// Days a row keeps one by one, ending on its `through`: the week the
/// figures need (net of the seven days ending on the day shown) and one.
pub const RECENT_DAYS: u64 = 8;

/// One shard's counts of one key: its last days and the sum of those before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoverageRecentRow {
    /// The indicator.
    pub indicator: Indicator,
    /// Level of `area`.
    pub area_level: AreaLevel,
    /// GSO code of the area.
    pub area: String,
    /// The shard these counts belong to.
    pub shard: u32,
    /// The shard's day when the row was made: the days from
    /// `through - (RECENT_DAYS - 1)` on are kept one by one.
    pub through: NaiveDate,
    /// (gained, lost) summed over every earlier day, pre-start days included.
    pub earlier: (u64, u64),
    /// (day, gained, lost) of the days kept one by one that have counts, in order.
    pub days: Vec<(NaiveDate, u64, u64)>,
    /// `ReplacingMergeTree` version, as the shard's day rows of the same flush.
    pub version: u64,
}

impl CoverageRecentRow {
    /// An empty row of `through`; days are then [`add`](Self::add)ed.
    pub fn new(
        indicator: Indicator,
        area_level: AreaLevel,
        area: String,
        shard: u32,
        through: NaiveDate,
        version: u64,
    ) -> Self {
        CoverageRecentRow { indicator, area_level, area, shard, through, earlier: (0, 0), days: Vec::new(), version }
    }

    /// The first day kept one by one.
    pub fn first_kept(&self) -> NaiveDate {
        self.through.checked_sub_days(chrono::Days::new(RECENT_DAYS - 1)).unwrap_or(NaiveDate::MIN)
    }

    /// Adds a day's counts; days come in order, each at most once.
    pub fn add(&mut self, day: NaiveDate, gained: u64, lost: u64) {
        if gained == 0 && lost == 0 {
            return;
        }
        if day < self.first_kept() {
            self.earlier.0 += gained;
            self.earlier.1 += lost;
        } else {
            self.days.push((day, gained, lost));
        }
    }
}

/// The row as RowBinary (field order = column order of the table).
#[derive(Row, Serialize)]
pub(super) struct RecentWire<'a> {
    indicator: &'a str,
    area_level: &'a str,
    area: &'a str,
    shard: u32,
    through: u16,
    earlier_gained: u64,
    earlier_lost: u64,
    days: Vec<u16>,
    gained: Vec<u64>,
    lost: Vec<u64>,
    version: u64,
}

impl<'a> RecentWire<'a> {
    pub(super) fn of(r: &'a CoverageRecentRow) -> Result<Self, SinkError> {
        let op = "insert coverage_shard_recent";
        Ok(RecentWire {
            indicator: r.indicator.as_str(),
            area_level: r.area_level.as_str(),
            area: &r.area,
            shard: r.shard,
            through: date_to_wire(r.through, op)?,
            earlier_gained: r.earlier.0,
            earlier_lost: r.earlier.1,
            days: r.days.iter().map(|(d, _, _)| date_to_wire(*d, op)).collect::<Result<_, _>>()?,
            gained: r.days.iter().map(|(_, g, _)| *g).collect(),
            lost: r.days.iter().map(|(_, _, l)| *l).collect(),
            version: r.version,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_last_days_are_kept_apart_and_the_earlier_ones_summed() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2024, 5, d).unwrap();
        let mut r = CoverageRecentRow::new(Indicator::Cccd, AreaLevel::District, "688".into(), 3, day(20), 7);
        assert_eq!(r.first_kept(), day(13));
        for (d, g, l) in [(1, 5, 0), (12, 2, 1), (13, 0, 0), (14, 3, 0), (20, 1, 1)] {
            r.add(day(d), g, l);
        }
        assert_eq!(r.earlier, (7, 1));
        assert_eq!(r.days, vec![(day(14), 3, 0), (day(20), 1, 1)], "days without counts are left out");
    }
}
