//! The RowBinary rows d06 sends and reads back: one struct per table or
//! view (field order = column order), made from and into the public rows
//! of `rows.rs`, and ClickHouse's `Date` and `DateTime` encodings.

use ::clickhouse::Row;
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::rows::{
    AreaRow, BaselineRow, CoverageDailyRow, CoverageShardRow, DeadLetterRow, HotlineDailyRow, HotlineShardRow, PlanRow,
};
use super::SinkError;

#[derive(Row, Serialize)]
pub(super) struct CoverageWire<'a> {
    day: u16,
    indicator: &'a str,
    area_level: &'a str,
    area: &'a str,
    shard: u32,
    gained: u64,
    lost: u64,
    net: i64,
    version: u64,
}

#[derive(Row, Serialize)]
pub(super) struct PlanWire<'a> {
    day: u16,
    indicator: &'a str,
    area_level: &'a str,
    area: &'a str,
    baseline: u64,
    target: u64,
    expected: u64,
    version: u64,
}

#[derive(Row, Serialize)]
pub(super) struct BaselineWire<'a> {
    indicator: &'a str,
    area_level: &'a str,
    area: &'a str,
    baseline: u64,
    baseline_known: u8,
    source: &'a str,
    version: u64,
}

#[derive(Row, Serialize)]
pub(super) struct AreaWire<'a> {
    area_level: &'a str,
    area: &'a str,
    name: &'a str,
    parent: &'a str,
    version: u64,
}

#[derive(Row, Serialize)]
pub(super) struct HotlineWire<'a> {
    day: u16,
    area_level: &'a str,
    area: &'a str,
    shard: u32,
    received: u64,
    answered: u64,
    forwarded: u64,
    processed: u64,
    in_progress: u64,
    spam: u64,
    overdue_specialist: u64,
    overdue_leadership: u64,
    version: u64,
}

#[derive(Row, Serialize, Deserialize)]
pub(super) struct DeadLetterWire<'a> {
    received_at: u32,
    topic: &'a str,
    partition: u32,
    offset: u64,
    reason: &'a str,
    detail: &'a str,
}

#[derive(Row, Deserialize)]
pub(super) struct DeadLetterRead {
    received_at: u32,
    topic: String,
    partition: u32,
    offset: u64,
    reason: String,
    detail: String,
}

#[derive(Row, Deserialize)]
pub(super) struct CoverageDailyRead {
    day: u16,
    indicator: String,
    area_level: String,
    area: String,
    gained: u64,
    lost: u64,
    covered: i64,
    target: u64,
    expected: u64,
}

#[derive(Row, Deserialize)]
pub(super) struct HotlineDailyRead {
    day: u16,
    area_level: String,
    area: String,
    received: u64,
    answered: u64,
    forwarded: u64,
    processed: u64,
    in_progress: u64,
    spam: u64,
    overdue_specialist: u64,
    overdue_leadership: u64,
}

impl<'a> CoverageWire<'a> {
    pub(super) fn of(r: &'a CoverageShardRow) -> Result<Self, SinkError> {
        Ok(CoverageWire {
            day: date_to_wire(r.day, "insert coverage_shard_daily")?,
            indicator: r.indicator.as_str(),
            area_level: r.area_level.as_str(),
            area: &r.area,
            shard: r.shard,
            gained: r.gained,
            lost: r.lost,
            net: r.net,
            version: r.version,
        })
    }
}

impl<'a> PlanWire<'a> {
    pub(super) fn of(r: &'a PlanRow) -> Result<Self, SinkError> {
        Ok(PlanWire {
            day: date_to_wire(r.day, "insert plan_daily")?,
            indicator: r.indicator.as_str(),
            area_level: r.area_level.as_str(),
            area: &r.area,
            baseline: r.baseline,
            target: r.target,
            expected: r.expected,
            version: r.version,
        })
    }
}

impl<'a> BaselineWire<'a> {
    pub(super) fn of(r: &'a BaselineRow) -> Result<Self, SinkError> {
        Ok(BaselineWire {
            indicator: r.indicator.as_str(),
            area_level: r.area_level.as_str(),
            area: &r.area,
            baseline: r.baseline,
            baseline_known: u8::from(r.baseline_known),
            source: &r.source,
            version: r.version,
        })
    }
}

impl<'a> AreaWire<'a> {
    pub(super) fn of(r: &'a AreaRow) -> Result<Self, SinkError> {
        Ok(AreaWire {
            area_level: r.area_level.as_str(),
            area: &r.area,
            name: &r.name,
            parent: &r.parent,
            version: r.version,
        })
    }
}

impl<'a> HotlineWire<'a> {
    pub(super) fn of(r: &'a HotlineShardRow) -> Result<Self, SinkError> {
        Ok(HotlineWire {
            day: date_to_wire(r.day, "insert hotline_shard_daily")?,
            area_level: r.area_level.as_str(),
            area: &r.area,
            shard: r.shard,
            received: r.counts.received,
            answered: r.counts.answered,
            forwarded: r.counts.forwarded,
            processed: r.counts.processed,
            in_progress: r.counts.in_progress,
            spam: r.counts.spam,
            overdue_specialist: r.counts.overdue_specialist,
            overdue_leadership: r.counts.overdue_leadership,
            version: r.version,
        })
    }
}

impl<'a> DeadLetterWire<'a> {
    pub(super) fn of(r: &'a DeadLetterRow) -> Result<Self, SinkError> {
        Ok(DeadLetterWire {
            received_at: datetime_to_wire(r.received_at, "insert dead_letters")?,
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            reason: &r.reason,
            detail: &r.detail,
        })
    }
}

impl From<CoverageDailyRead> for CoverageDailyRow {
    fn from(r: CoverageDailyRead) -> Self {
        CoverageDailyRow {
            day: date_from_wire(r.day),
            indicator: r.indicator,
            area_level: r.area_level,
            area: r.area,
            gained: r.gained,
            lost: r.lost,
            covered: r.covered,
            target: r.target,
            expected: r.expected,
        }
    }
}

impl From<HotlineDailyRead> for HotlineDailyRow {
    fn from(r: HotlineDailyRead) -> Self {
        HotlineDailyRow {
            day: date_from_wire(r.day),
            area_level: r.area_level,
            area: r.area,
            received: r.received,
            answered: r.answered,
            forwarded: r.forwarded,
            processed: r.processed,
            in_progress: r.in_progress,
            spam: r.spam,
            overdue_specialist: r.overdue_specialist,
            overdue_leadership: r.overdue_leadership,
        }
    }
}

impl From<DeadLetterRead> for DeadLetterRow {
    fn from(r: DeadLetterRead) -> Self {
        DeadLetterRow {
            received_at: datetime_from_wire(r.received_at),
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            reason: r.reason,
            detail: r.detail,
        }
    }
}

/// ClickHouse `Date`: days since 1970-01-01 as UInt16.
pub(super) fn date_to_wire(day: NaiveDate, op: &str) -> Result<u16, SinkError> {
    let days = day.signed_duration_since(NaiveDate::default()).num_days();
    u16::try_from(days)
        .map_err(|_| SinkError::permanent("invalid_row", op, format!("day {day} outside ClickHouse Date range")))
}

pub(super) fn date_from_wire(days: u16) -> NaiveDate {
    // 1970-01-01 + at most 65535 days (year 2149) cannot overflow NaiveDate.
    NaiveDate::default().checked_add_days(Days::new(u64::from(days))).unwrap_or(NaiveDate::MAX)
}

/// ClickHouse `DateTime`: seconds since the epoch as UInt32.
pub(super) fn datetime_to_wire(t: DateTime<Utc>, op: &str) -> Result<u32, SinkError> {
    u32::try_from(t.timestamp())
        .map_err(|_| SinkError::permanent("invalid_row", op, format!("time {t} outside ClickHouse DateTime range")))
}

pub(super) fn datetime_from_wire(secs: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(secs), 0).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn dates_use_days_since_epoch() {
        assert_eq!(date_to_wire(date(1970, 1, 1), "t").unwrap(), 0);
        // 2024-01-01 is day 19723 (SELECT toUInt16(toDate('2024-01-01')) on ClickHouse).
        assert_eq!(date_to_wire(date(2024, 1, 1), "t").unwrap(), 19723);
        assert_eq!(date_from_wire(19723), date(2024, 1, 1));
        assert_eq!(date_from_wire(u16::MAX), date(2149, 6, 6));
        let err = date_to_wire(date(1969, 12, 31), "insert plan_daily").unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(err.kind(), "invalid_row");
        assert!(date_to_wire(date(2149, 6, 7), "t").is_err());
    }

    #[test]
    fn datetimes_use_seconds_since_epoch() {
        let t = DateTime::parse_from_rfc3339("2024-01-01T00:00:05Z").unwrap().with_timezone(&Utc);
        assert_eq!(datetime_to_wire(t, "t").unwrap(), 1_704_067_205);
        assert_eq!(datetime_from_wire(1_704_067_205), t);
        let before = DateTime::parse_from_rfc3339("1969-12-31T23:59:59Z").unwrap().with_timezone(&Utc);
        assert!(datetime_to_wire(before, "t").is_err());
    }
}
