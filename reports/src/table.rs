//! The daily table: every district and the province, each indicator's
//! cell rebuilt from its `coverage_daily` series and checked against it.

use std::collections::BTreeMap;

use aggregator::plan::Plan;
use aggregator::rollup::DayCounts;
use aggregator::{coverage, standing};
use aggregator::{AreaId, AreaLevel, Geography, Indicator};
use anyhow::{bail, Context, Result};
use chrono::{Days, NaiveDate};
use sinks::clickhouse::CoverageDailyRow;

use crate::hotline::official_name;

/// Short column label and full description of each indicator, in
/// [`Indicator::ALL`] order.
pub const INDICATORS: [(Indicator, &str, &str); 5] = [
    (Indicator::Cccd, "CCCD", "hồ sơ cấp căn cước công dân đã thu nhận"),
    (Indicator::Vneid, "ĐDĐT mức 2", "tài khoản định danh điện tử mức 2 đã kích hoạt"),
    (Indicator::Smartphone4g, "ĐTTM 4G", "thuê bao chuyển sang điện thoại thông minh 4G/5G"),
    (Indicator::SimSignature, "SIM ký số", "SIM chính chủ có tích hợp chữ ký số (đang hiệu lực)"),
    (Indicator::Migrated2g, "Chuyển 2G", "thuê bao 2G đã chuyển lên 4G/5G"),
];

/// The sub-columns of each indicator.
pub(crate) const SUB_COLUMNS: [&str; 5] = ["Đạt/chỉ tiêu", "%", "% KH", "Chậm (ngày)", "Tăng trong ngày"];

/// One indicator in one area, as of the report day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) covered: i64,
    pub(crate) target: u64,
    pub(crate) expected: u64,
    pub(crate) days_behind: u32,
    pub(crate) gained: u64,
    /// Whether the plan knows the baseline (days behind shows "—" if not).
    pub(crate) baseline_known: bool,
}

/// One area's row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub area: AreaId,
    pub code: String,
    pub name: String,
    pub(crate) cells: [Cell; Indicator::COUNT],
    /// The full status behind each cell, in [`INDICATORS`] order (what the
    /// lag rule and the ETA need).
    pub statuses: [coverage::Status; Indicator::COUNT],
    /// Mean clamped ratio over the indicators with a target and a known
    /// baseline, and the indicators left out for an unknown baseline
    /// ([`aggregator::standing`]).
    pub average: standing::Average,
    /// Rank among the districts (None for the province, or without an average).
    pub rank: Option<usize>,
}

/// The daily table: districts in code order, then the province.
#[derive(Clone, Debug)]
pub struct DailyTable {
    pub(crate) day: NaiveDate,
    pub(crate) plan_name: Option<String>,
    pub(crate) start: NaiveDate,
    pub(crate) end: NaiveDate,
    pub districts: Vec<Row>,
    pub(crate) province: Row,
}

/// One key's cell, and the status it shows, from its `coverage_daily`
/// series (`plan.start()..=day`).
fn cell(
    plan: &Plan,
    key: (Indicator, AreaId),
    series: &[&CoverageDailyRow],
    day: NaiveDate,
    what: &str,
) -> Result<(Cell, coverage::Status)> {
    let (ind, area) = key;
    let Some(first) = series.first() else {
        bail!("coverage_daily has no rows for {what}: the pipeline has not reached {day} yet");
    };
    let Some(last) = series.last().filter(|r| r.day == day) else {
        bail!("coverage_daily has no row of {day} for {what}: the pipeline has not reached that day yet");
    };
    if first.day != plan.start() {
        bail!("coverage_daily starts on {} for {what}, not on the plan's start {}", first.day, plan.start());
    }
    // Per-day counts; the view folds events before the start into the first
    // day's covered, so they come back as one entry on the day before.
    let mut days: BTreeMap<NaiveDate, DayCounts> =
        series.iter().map(|r| (r.day, DayCounts { gained: r.gained, lost: r.lost })).collect();
    let baseline = i64::try_from(plan.baseline(ind, area)).unwrap_or(i64::MAX);
    let before = first.covered - baseline - (i64::try_from(first.gained)? - i64::try_from(first.lost)?);
    if before != 0 {
        let eve = plan.start().checked_sub_days(Days::new(1)).context("plan starts at the dawn of time")?;
        days.insert(eve, DayCounts { gained: before.max(0).unsigned_abs(), lost: before.min(0).unsigned_abs() });
    }
    let s = coverage::status(plan, key, &days, day);
    if s.covered != last.covered || s.target != last.target || s.expected != last.expected {
        bail!(
            "coverage_daily disagrees with the plan for {what} on {day} (covered {}, target {}, expected {} in ClickHouse; \
             {}, {}, {} from the plan): was the pipeline run with another plan or geography?",
            last.covered,
            last.target,
            last.expected,
            s.covered,
            s.target,
            s.expected
        );
    }
    Ok((
        Cell {
            covered: s.covered,
            target: s.target,
            expected: s.expected,
            days_behind: s.days_behind,
            gained: s.gained_today,
            baseline_known: s.baseline_known,
        },
        s,
    ))
}

impl DailyTable {
    /// The GSO code of the table's province.
    pub fn province_code(&self) -> &str {
        &self.province.code
    }

    /// Builds the table from `coverage_daily` rows covering `plan.start()..=day`
    /// (any order, other levels ignored).
    pub fn build(geo: &Geography, plan: &Plan, rows: &[CoverageDailyRow], day: NaiveDate) -> Result<DailyTable> {
        let mut by_key: BTreeMap<(&str, &str, &str), Vec<&CoverageDailyRow>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.day <= day) {
            by_key.entry((r.indicator.as_str(), r.area_level.as_str(), r.area.as_str())).or_default().push(r);
        }
        for series in by_key.values_mut() {
            series.sort_by_key(|r| r.day);
        }
        let row = |area: AreaId| -> Result<Row> {
            let a = geo.area(area);
            let mut cells =
                [Cell { covered: 0, target: 0, expected: 0, days_behind: 0, gained: 0, baseline_known: true };
                    Indicator::COUNT];
            let mut statuses = [coverage::Status {
                covered: 0,
                target: 0,
                expected: 0,
                ratio: 0.0,
                gained_today: 0,
                days_behind: 0,
                eta: None,
                baseline_known: true,
                pace_per_day: 0.0,
                needed_per_day: 0.0,
            }; Indicator::COUNT];
            for ((slot, status), (ind, _, _)) in cells.iter_mut().zip(statuses.iter_mut()).zip(INDICATORS) {
                let what = format!("{} in {} {}", ind.as_str(), a.level, a.code);
                let series =
                    by_key.get(&(ind.as_str(), a.level.as_str(), a.code.as_str())).map_or(&[][..], Vec::as_slice);
                (*slot, *status) = cell(plan, (ind, area), series, day, &what)?;
            }
            Ok(Row {
                area,
                code: a.code.clone(),
                name: official_name(geo, area),
                average: standing::average(INDICATORS.iter().map(|(ind, _, _)| *ind).zip(&statuses)),
                cells,
                statuses,
                rank: None,
            })
        };
        let mut districts: Vec<Row> = geo.of_level(AreaLevel::District).map(&row).collect::<Result<_>>()?;
        districts.sort_by(|x, y| (x.code.len(), &x.code).cmp(&(y.code.len(), &y.code)));
        let averages: Vec<Option<f64>> = districts.iter().map(|r| r.average.value).collect();
        for (r, rank) in districts.iter_mut().zip(standing::ranks(&averages)) {
            r.rank = rank;
        }
        let province = row(geo.province())?;
        Ok(DailyTable {
            day,
            plan_name: plan.name().map(str::to_owned),
            start: plan.start(),
            end: plan.end(),
            districts,
            province,
        })
    }
}
