//! `d06 report hotline`: the monthly 1022 table of one area, summed from
//! `hotline_daily`.

use aggregator::hotline::{report_table, HotlineCounts};
use aggregator::{AreaId, AreaLevel, Geography};
use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use sinks::clickhouse::{ClickHouseSink, HotlineDailyRow};

use crate::Source;

/// `d06 report hotline --from DATE --to DATE [--area CODE]`: the monthly
/// 1022 table for the tickets received from `from` to `to` (both included),
/// for a province (`province`, else the first tracked), or for the
/// district or commune whose GSO code is `area` (in any tracked province).
pub async fn hotline(
    source: &Source,
    province: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
    area: Option<&str>,
) -> Result<String> {
    if from > to {
        bail!("--from {from} is after --to {to}");
    }
    let geo = source.geography()?;
    let target = match area {
        None => crate::province_id(&geo, province)?,
        Some(code) => find_area(&geo, code)
            .with_context(|| format!("--area {code:?} is not a province, district or commune code of the geography"))?,
    };
    let sink = ClickHouseSink::reader(&source.clickhouse)?;
    let rows = sink.hotline_rows(from, to).await.context("reading hotline_daily")?;
    let a = geo.area(target);
    let counts = sum_hotline(&rows, a.level, &a.code);
    Ok(hotline_text(&counts, from, to, &official_name(&geo, target)))
}

/// An area's official name; the geography names the province without its
/// unit type (`Bình Phước`), so `Tỉnh` is put in front.
pub(crate) fn official_name(geo: &Geography, id: AreaId) -> String {
    let a = geo.area(id);
    if a.level == AreaLevel::Province && !a.name.starts_with("Tỉnh ") && !a.name.starts_with("Thành phố ") {
        format!("Tỉnh {}", a.name)
    } else {
        a.name.clone()
    }
}

/// The area with this code, at the coarsest level that has it.
pub(crate) fn find_area(geo: &Geography, code: &str) -> Option<AreaId> {
    geo.levels().iter().find_map(|level| geo.find(*level, code))
}

/// The sum of the `hotline_daily` rows of one area.
pub(crate) fn sum_hotline(rows: &[HotlineDailyRow], level: AreaLevel, code: &str) -> HotlineCounts {
    rows.iter().filter(|r| r.area_level == level.as_str() && r.area == code).map(HotlineDailyRow::counts).sum()
}

/// [`report_table`] (tab-separated header and row) under a title naming the area.
pub(crate) fn hotline_text(counts: &HotlineCounts, from: NaiveDate, to: NaiveDate, area_name: &str) -> String {
    let table = report_table(counts, from, to, area_name);
    let body = table.split_once('\n').map_or(table.as_str(), |(_, rest)| rest);
    format!(
        "Tổng đài 1022 — {area_name}: tin tiếp nhận từ ngày {} đến ngày {}\n{body}",
        from.format("%d/%m/%Y"),
        to.format("%d/%m/%Y"),
    )
}
