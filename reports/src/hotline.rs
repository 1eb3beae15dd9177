//! `d06 report hotline`: the monthly 1022 table of one area, summed from
//! `hotline_daily`.

use aggregator::hotline::HotlineCounts;
use aggregator::{AreaId, AreaLevel, Geography};
use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use sinks::clickhouse::{ClickHouseSink, HotlineDailyRow};

use crate::numbers::vi_count;
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

/// The column headers of the province's monthly 1022 report, in order.
pub const REPORT_COLUMNS: [&str; 9] = [
    "Đơn vị",
    "Tổng số tin tiếp nhận",
    "Đã xử lý",
    "Đang xử lý",
    "Tin rác",
    "Quá hạn xử lý (cấp chuyên viên 8 giờ hành chính)",
    "Quá hạn xử lý (cấp lãnh đạo 48 giờ hành chính)",
    "Tổng đài viên trả lời trực tiếp",
    "Chuyển các ngành xử lý",
];

/// The province's monthly 1022 figures as a tab-separated table: a title
/// line with the period (`dd/mm/yyyy`), the header row ([`REPORT_COLUMNS`])
/// and one row for `area_name`, numbers with `.` as thousands separator.
pub fn report_table(counts: &HotlineCounts, from: NaiveDate, to: NaiveDate, area_name: &str) -> String {
    let c = counts;
    let row = [
        area_name.to_owned(),
        vi_count(c.received),
        vi_count(c.processed),
        vi_count(c.in_progress),
        vi_count(c.spam),
        vi_count(c.overdue_specialist),
        vi_count(c.overdue_leadership),
        vi_count(c.answered),
        vi_count(c.forwarded),
    ];
    format!(
        "Tổng đài 1022: từ ngày {} đến ngày {}\n{}\n{}\n",
        from.format("%d/%m/%Y"),
        to.format("%d/%m/%Y"),
        REPORT_COLUMNS.join("\t"),
        row.join("\t")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn report_table_has_the_province_columns() {
        let counts = HotlineCounts {
            received: 1493,
            answered: 1293,
            forwarded: 151,
            processed: 1434,
            in_progress: 5,
            spam: 47,
            overdue_specialist: 1,
            overdue_leadership: 6,
        };
        let table = report_table(&counts, date(2023, 1, 1), date(2023, 7, 19), "Tỉnh Bình Phước");
        assert_eq!(
            table,
            "Tổng đài 1022: từ ngày 01/01/2023 đến ngày 19/07/2023\n\
             Đơn vị\tTổng số tin tiếp nhận\tĐã xử lý\tĐang xử lý\tTin rác\t\
             Quá hạn xử lý (cấp chuyên viên 8 giờ hành chính)\tQuá hạn xử lý (cấp lãnh đạo 48 giờ hành chính)\t\
             Tổng đài viên trả lời trực tiếp\tChuyển các ngành xử lý\n\
             Tỉnh Bình Phước\t1.493\t1.434\t5\t47\t1\t6\t1.293\t151\n"
        );
    }
}
