//! `d06 report`: the province's tables, read from ClickHouse (the public
//! views of OUTPUTS-v1) and the campaign plan; nothing else.
//!
//! - [`hotline`]: the monthly 1022 table ([`aggregator::hotline::report_table`])
//!   for the tickets *received* in a period, summed from `hotline_daily`,
//!   for the province or one district or commune. The figures are classified
//!   as of the pipeline's T when it last wrote them.
//! - [`daily`]: the daily progress table, Markdown or HTML, one row per
//!   district (in code order) and a province row, for every indicator:
//!   covered/target, %, expected %, days behind and the day's gain, plus an
//!   average and a rank.
//!
//! # How the daily figures are computed
//!
//! For every (indicator, area) the day series of `coverage_daily` from the
//! plan's start to the report day is turned back into per-day counts and
//! handed to [`aggregator::coverage::status`], the same function that feeds
//! the Prometheus gauges; so *days behind* follows the rule documented
//! there (0 when covered ≥ expected, else today − the latest day whose
//! expectation covered already meets). Events from before the plan's start
//! are folded into the first day's `covered` by the view; they are put back
//! as one entry on the day before the start, which changes neither covered
//! nor days behind. The report checks that the series it rebuilt gives the
//! `covered`, `target` and `expected` ClickHouse holds for the report day,
//! so a plan other than the one the pipeline ran with is an error, not a
//! silently wrong table.
//!
//! **Average and rank.** An area's *average* is the mean, over the
//! indicators whose target is > 0, of covered/target clamped to [0, 1] (so
//! running past one target cannot hide lagging on another); an area with no
//! target at all has none. Districts are ranked by that average, highest
//! first, on the exact value (not the rounded one shown); equal averages
//! share a rank and the next rank skips (1, 2, 2, 4). The province row
//! shows its own average, no rank.
//!
//! Numbers are written the Vietnamese way: `.` between thousands, `,`
//! before decimals; percentages have two decimals, rounded half up.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aggregator::coverage;
use aggregator::hotline::{report_table, HotlineCounts};
use aggregator::plan::Plan;
use aggregator::rollup::DayCounts;
use aggregator::{AreaId, AreaLevel, Geography, Indicator};
use anyhow::{bail, Context, Result};
use chrono::{Days, NaiveDate};
use sinks::clickhouse::{ClickHouseSink, CoverageDailyRow, HotlineDailyRow};

use crate::config::Config;

/// The campaign plan compiled into the binary (used unless `plan.file` is set).
const EMBEDDED_PLAN: &str = include_str!("../deploy/plans/binh-phuoc-2024.toml");

/// Output format of `d06 report daily`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Markdown document (GitHub-flavoured table).
    Markdown,
    /// A self-contained HTML document (inline style, no external assets).
    Html,
}

/// `d06 report hotline --from DATE --to DATE [--area CODE]`: the monthly
/// 1022 table for the tickets received from `from` to `to` (both included),
/// for the province, or for the district or commune whose GSO code is `area`.
pub async fn hotline(config: &Config, from: NaiveDate, to: NaiveDate, area: Option<&str>) -> Result<String> {
    if from > to {
        bail!("--from {from} is after --to {to}");
    }
    let geo = Geography::load(config.contract.geography).context("loading the geography")?;
    let target = match area {
        None => geo.province(),
        Some(code) => find_area(&geo, code)
            .with_context(|| format!("--area {code:?} is not a province, district or commune code of the geography"))?,
    };
    let sink = ClickHouseSink::reader(&config.clickhouse)?;
    let rows = sink.hotline_rows(from, to).await.context("reading hotline_daily")?;
    let a = geo.area(target);
    let counts = sum_hotline(&rows, a.level, &a.code);
    Ok(hotline_text(&counts, from, to, &official_name(&geo, target)))
}

/// `d06 report daily --day DATE [--area CODE] [--format markdown|html]`:
/// the province's progress table as of the end of `day`; with `area` (a
/// district code) only that district's row (its rank still among all).
pub async fn daily(config: &Config, day: NaiveDate, area: Option<&str>, format: Format) -> Result<String> {
    let geo = Geography::load(config.contract.geography).context("loading the geography")?;
    if geo.of_level(AreaLevel::District).next().is_none() {
        bail!("the daily report lists districts: it needs the pre-2025 geography");
    }
    let plan = load_plan(config, &geo)?;
    if !plan.is_running(day) {
        bail!("{day} is outside the campaign ({} to {}): coverage_daily has no rows for it", plan.start(), plan.end());
    }
    let only = match area {
        None => None,
        Some(code) => Some(
            geo.find(AreaLevel::District, code).with_context(|| format!("--area {code:?} is not a district code"))?,
        ),
    };
    let sink = ClickHouseSink::reader(&config.clickhouse)?;
    let table = load_daily_table(&sink, &geo, &plan, day).await?;
    Ok(match format {
        Format::Markdown => table.markdown(only),
        Format::Html => table.html(only),
    })
}

/// The daily table as of the end of `day` (so far, for today), from
/// `coverage_daily`: what `d06 report daily` prints, and what the daily
/// alerts ([`crate::alerts`]) are made of.
pub(crate) async fn load_daily_table(
    sink: &ClickHouseSink,
    geo: &Geography,
    plan: &Plan,
    day: NaiveDate,
) -> Result<DailyTable> {
    let rows = sink.coverage_rows(plan.start(), day).await.context("reading coverage_daily")?;
    DailyTable::build(geo, plan, &rows, day)
}

/// The plan the pipeline runs with: `plan.file`, or the embedded one.
pub(crate) fn load_plan(config: &Config, geo: &Geography) -> Result<Plan> {
    let text = match &config.plan.file {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading the plan {}", p.display()))?,
        None => EMBEDDED_PLAN.to_owned(),
    };
    Plan::from_toml(&text, geo).context("loading the campaign plan")
}

/// An area's official name; the geography names the province without its
/// unit type (`Bình Phước`), so `Tỉnh` is put in front.
fn official_name(geo: &Geography, id: AreaId) -> String {
    let a = geo.area(id);
    if a.level == AreaLevel::Province && !a.name.starts_with("Tỉnh ") && !a.name.starts_with("Thành phố ") {
        format!("Tỉnh {}", a.name)
    } else {
        a.name.clone()
    }
}

/// The area with this code, at the coarsest level that has it.
fn find_area(geo: &Geography, code: &str) -> Option<AreaId> {
    geo.levels().iter().find_map(|level| geo.find(*level, code))
}

// ---------------------------------------------------------------- hotline

/// The sum of the `hotline_daily` rows of one area.
fn sum_hotline(rows: &[HotlineDailyRow], level: AreaLevel, code: &str) -> HotlineCounts {
    rows.iter().filter(|r| r.area_level == level.as_str() && r.area == code).map(HotlineDailyRow::counts).sum()
}

/// [`report_table`] (tab-separated header and row) under a title naming the area.
fn hotline_text(counts: &HotlineCounts, from: NaiveDate, to: NaiveDate, area_name: &str) -> String {
    let table = report_table(counts, from, to, area_name);
    let body = table.split_once('\n').map_or(table.as_str(), |(_, rest)| rest);
    format!(
        "Tổng đài 1022 — {area_name}: tin tiếp nhận từ ngày {} đến ngày {}\n{body}",
        from.format("%d/%m/%Y"),
        to.format("%d/%m/%Y"),
    )
}

// ------------------------------------------------------------------ daily

/// Short column label and full description of each indicator, in
/// [`Indicator::ALL`] order.
pub(crate) const INDICATORS: [(Indicator, &str, &str); 5] = [
    (Indicator::Cccd, "CCCD", "hồ sơ cấp căn cước công dân đã thu nhận"),
    (Indicator::Vneid, "ĐDĐT mức 2", "tài khoản định danh điện tử mức 2 đã kích hoạt"),
    (Indicator::Smartphone4g, "ĐTTM 4G", "thuê bao chuyển sang điện thoại thông minh 4G/5G"),
    (Indicator::SimSignature, "SIM ký số", "SIM chính chủ có tích hợp chữ ký số (đang hiệu lực)"),
    (Indicator::Migrated2g, "Chuyển 2G", "thuê bao 2G đã chuyển lên 4G/5G"),
];

/// The sub-columns of each indicator.
const SUB_COLUMNS: [&str; 5] = ["Đạt/chỉ tiêu", "%", "% KH", "Chậm (ngày)", "Tăng trong ngày"];

/// One indicator in one area, as of the report day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cell {
    covered: i64,
    target: u64,
    expected: u64,
    days_behind: u32,
    gained: u64,
}

/// One area's row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub(crate) area: AreaId,
    pub(crate) code: String,
    pub(crate) name: String,
    cells: [Cell; 5],
    /// The full status behind each cell, in [`INDICATORS`] order (what the
    /// lag rule and the ETA need).
    pub(crate) statuses: [coverage::Status; 5],
    /// Mean clamped ratio over the indicators with a target (module docs).
    average: Option<f64>,
    /// Rank among the districts (None for the province, or without targets).
    pub(crate) rank: Option<usize>,
}

/// The daily table: districts in code order, then the province.
#[derive(Clone, Debug)]
pub(crate) struct DailyTable {
    day: NaiveDate,
    plan_name: Option<String>,
    start: NaiveDate,
    end: NaiveDate,
    pub(crate) districts: Vec<Row>,
    province: Row,
}

/// Mean of covered/target clamped to [0, 1], over the cells with a target.
fn average(cells: &[Cell; 5]) -> Option<f64> {
    let ratios: Vec<f64> =
        cells.iter().filter(|c| c.target > 0).map(|c| (c.covered as f64 / c.target as f64).clamp(0.0, 1.0)).collect();
    if ratios.is_empty() {
        None
    } else {
        Some(ratios.iter().sum::<f64>() / ratios.len() as f64)
    }
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
        },
        s,
    ))
}

impl DailyTable {
    /// Builds the table from `coverage_daily` rows covering `plan.start()..=day`
    /// (any order, other levels ignored).
    pub(crate) fn build(geo: &Geography, plan: &Plan, rows: &[CoverageDailyRow], day: NaiveDate) -> Result<DailyTable> {
        let mut by_key: BTreeMap<(&str, &str, &str), Vec<&CoverageDailyRow>> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.day <= day) {
            by_key.entry((r.indicator.as_str(), r.area_level.as_str(), r.area.as_str())).or_default().push(r);
        }
        for series in by_key.values_mut() {
            series.sort_by_key(|r| r.day);
        }
        let row = |area: AreaId| -> Result<Row> {
            let a = geo.area(area);
            let mut cells = [Cell { covered: 0, target: 0, expected: 0, days_behind: 0, gained: 0 }; 5];
            let mut statuses = [coverage::Status {
                covered: 0,
                target: 0,
                expected: 0,
                ratio: 0.0,
                gained_today: 0,
                days_behind: 0,
                eta: None,
            }; 5];
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
                average: average(&cells),
                cells,
                statuses,
                rank: None,
            })
        };
        let mut districts: Vec<Row> = geo.of_level(AreaLevel::District).map(&row).collect::<Result<_>>()?;
        districts.sort_by(|x, y| (x.code.len(), &x.code).cmp(&(y.code.len(), &y.code)));
        let averages: Vec<Option<f64>> = districts.iter().map(|r| r.average).collect();
        for r in &mut districts {
            r.rank = r.average.map(|mine| 1 + averages.iter().flatten().filter(|other| **other > mine).count());
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

    /// The rows shown: one district, or every district then the province.
    fn shown(&self, only: Option<AreaId>) -> (Vec<&Row>, Option<&Row>) {
        match only {
            Some(a) => (self.districts.iter().filter(|r| r.area == a).collect(), None),
            None => (self.districts.iter().collect(), Some(&self.province)),
        }
    }

    fn title(&self, only: Option<AreaId>) -> String {
        let name = only
            .and_then(|a| self.districts.iter().find(|r| r.area == a))
            .map_or(self.province.name.as_str(), |r| r.name.as_str());
        format!("Tiến độ “4 phủ” ngày {} — {name}", self.day.format("%d/%m/%Y"))
    }

    fn subtitle(&self) -> String {
        let n = (self.day - self.start).num_days() + 1;
        let total = (self.end - self.start).num_days() + 1;
        let name = self.plan_name.as_deref().unwrap_or("Kế hoạch");
        format!(
            "{name}: từ ngày {} đến ngày {}; ngày {} là ngày thứ {n}/{total}. Số liệu đến hết ngày.",
            self.start.format("%d/%m/%Y"),
            self.end.format("%d/%m/%Y"),
            self.day.format("%d/%m/%Y"),
        )
    }

    /// The notes under the table, one sentence each.
    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = INDICATORS.iter().map(|(_, short, long)| format!("{short}: {long}.")).collect();
        notes.extend([
            "Đạt/chỉ tiêu: số đã đạt (cơ sở cộng số tăng, trừ số giảm, đến hết ngày) trên chỉ tiêu giao; %: tỷ lệ đạt.".to_owned(),
            "% KH: số kế hoạch dự kiến đạt đến hết ngày, trên chỉ tiêu giao.".to_owned(),
            "Chậm (ngày): 0 nếu đạt hoặc vượt kế hoạch; nếu không, số ngày kể từ ngày gần nhất mà số kế hoạch dự kiến không vượt quá số đã đạt (từ ngày bắt đầu nếu chưa có ngày nào như vậy).".to_owned(),
            "Tăng trong ngày: số được tính thêm trong ngày (chưa trừ số giảm).".to_owned(),
            "Bình quân: trung bình cộng tỷ lệ đạt (tối đa 100%) của các chỉ tiêu có chỉ tiêu giao.".to_owned(),
            format!(
                "Xếp hạng: thứ hạng theo Bình quân (giá trị chính xác) trong {} huyện, thị xã, thành phố, cao nhất là 1; bằng nhau thì cùng hạng.",
                self.districts.len()
            ),
        ]);
        notes
    }

    /// The text of a row's cells, in column order.
    fn cells(&self, r: &Row) -> Vec<String> {
        let mut out = vec![r.code.clone(), r.name.clone()];
        for c in &r.cells {
            out.push(format!("{}/{}", vi_int(c.covered), vi_int(i64::try_from(c.target).unwrap_or(i64::MAX))));
            out.push(percent(i128::from(c.covered), c.target));
            out.push(percent(i128::from(c.expected), c.target));
            out.push(c.days_behind.to_string());
            out.push(vi_int(i64::try_from(c.gained).unwrap_or(i64::MAX)));
        }
        out.push(r.average.map_or_else(|| "—".to_owned(), average_percent));
        out.push(match r.rank {
            Some(k) => format!("{k}/{}", self.districts.len()),
            None => "—".to_owned(),
        });
        out
    }

    /// The Markdown document.
    pub(crate) fn markdown(&self, only: Option<AreaId>) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# {}\n\n{}\n", md(&self.title(only)), md(&self.subtitle()));
        let mut header = vec!["Mã".to_owned(), "Đơn vị".to_owned()];
        for (_, short, _) in INDICATORS {
            header.extend(SUB_COLUMNS.iter().map(|sub| format!("{short}: {sub}")));
        }
        header.extend(["Bình quân".to_owned(), "Xếp hạng".to_owned()]);
        let line = |cells: &[String]| format!("| {} |\n", cells.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
        s.push_str(&line(&header));
        let align: Vec<&str> = (0..header.len()).map(|i| if i < 2 { "---" } else { "---:" }).collect();
        let _ = writeln!(s, "| {} |", align.join(" | "));
        let (rows, total) = self.shown(only);
        for r in rows {
            s.push_str(&line(&self.cells(r)));
        }
        if let Some(p) = total {
            let mut cells: Vec<String> = self.cells(p).iter().map(|c| md(c)).collect();
            for c in &mut cells {
                *c = format!("**{c}**");
            }
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        s.push_str("\nGhi chú:\n\n");
        for n in self.notes() {
            let _ = writeln!(s, "- {}", md(&n));
        }
        s
    }

    /// The self-contained HTML document.
    fn html(&self, only: Option<AreaId>) -> String {
        let mut s = String::new();
        let title = self.title(only);
        s.push_str("<!DOCTYPE html>\n<html lang=\"vi\">\n<head>\n<meta charset=\"utf-8\">\n");
        let _ = writeln!(s, "<title>{}</title>", esc(&title));
        s.push_str(
            "<style>\nbody{font-family:sans-serif;margin:1em}\ntable{border-collapse:collapse;font-size:13px}\n\
             th,td{border:1px solid #999;padding:2px 6px}\nth{background:#eee}\ntd.n{text-align:right}\n\
             tfoot td{font-weight:bold}\n</style>\n</head>\n<body>\n",
        );
        let _ = writeln!(s, "<h1>{}</h1>\n<p>{}</p>\n<table>\n<thead>", esc(&title), esc(&self.subtitle()));
        s.push_str("<tr><th rowspan=\"2\">Mã</th><th rowspan=\"2\">Đơn vị</th>");
        for (_, short, _) in INDICATORS {
            let _ = write!(s, "<th colspan=\"{}\">{}</th>", SUB_COLUMNS.len(), esc(short));
        }
        s.push_str("<th rowspan=\"2\">Bình quân</th><th rowspan=\"2\">Xếp hạng</th></tr>\n<tr>");
        for _ in INDICATORS {
            for sub in SUB_COLUMNS {
                let _ = write!(s, "<th>{}</th>", esc(sub));
            }
        }
        s.push_str("</tr>\n</thead>\n<tbody>\n");
        let row = |s: &mut String, r: &Row| {
            s.push_str("<tr>");
            for (i, c) in self.cells(r).iter().enumerate() {
                let class = if i < 2 { "" } else { " class=\"n\"" };
                let _ = write!(s, "<td{class}>{}</td>", esc(c));
            }
            s.push_str("</tr>\n");
        };
        let (rows, total) = self.shown(only);
        for r in rows {
            row(&mut s, r);
        }
        s.push_str("</tbody>\n");
        if let Some(p) = total {
            s.push_str("<tfoot>\n");
            row(&mut s, p);
            s.push_str("</tfoot>\n");
        }
        s.push_str("</table>\n<p>Ghi chú:</p>\n<ul>\n");
        for n in self.notes() {
            let _ = writeln!(s, "<li>{}</li>", esc(&n));
        }
        s.push_str("</ul>\n</body>\n</html>\n");
        s
    }
}

// ------------------------------------------------------------- formatting

/// An integer the Vietnamese way: `1.234.567`, `-12`.
pub(crate) fn vi_int(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(ch);
    }
    out
}

/// Hundredths of a percent as `12,34%` (thousands grouped: `1.234,50%`).
fn hundredths(h: i128) -> String {
    let sign = if h < 0 { "-" } else { "" };
    let a = h.unsigned_abs();
    let whole = i64::try_from(a / 100).unwrap_or(i64::MAX);
    format!("{sign}{},{:02}%", vi_int(whole), a % 100)
}

/// `num / den` as a percentage, two decimals rounded half up (away from
/// zero); `—` when `den` is 0.
pub(crate) fn percent(num: i128, den: u64) -> String {
    if den == 0 {
        return "—".to_owned();
    }
    let den = i128::from(den);
    let scaled = num.abs() * 10_000;
    let h = (2 * scaled + den) / (2 * den);
    hundredths(if num < 0 { -h } else { h })
}

/// An average ratio (0..=1) as a percentage, two decimals.
fn average_percent(r: f64) -> String {
    hundredths((r * 10_000.0).round() as i128)
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Escapes text for a Markdown paragraph or table cell: punctuation with a
/// meaning is backslash-escaped, line breaks become spaces.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' => {
                out.push('\\');
                out.push(ch);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use aggregator::GeographyVersion;

    pub(crate) fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, m, day).unwrap()
    }

    /// 10/4–30/4; every district weighs 1. cccd: 110 (10 per district),
    /// 50 % by 20/4, 100 % by 30/4. vneid: 22 (2 per district), 100 % by
    /// 30/4. The other indicators have no target. (Also the fixture of the
    /// daily alerts' tests.)
    pub(crate) fn setup() -> (Geography, Plan) {
        let g = Geography::load(GeographyVersion::Pre2025).unwrap();
        let weights: String = (688..=698).map(|c| format!("\"{c}\" = 1\n")).collect();
        let text = format!(
            "name = 'Thử <b>\"A&B\"</b> | *x*'\nstart = 2024-04-10\nend = 2024-04-30\n[district_weights]\n{weights}\n\
             [indicators.cccd]\ntarget = 110\nbaseline = 0\n\
             milestones = [ {{ date = 2024-04-20, share = 0.5 }}, {{ date = 2024-04-30, share = 1.0 }} ]\n\
             [indicators.vneid]\ntarget = 22\nbaseline = 0\nmilestones = [ {{ date = 2024-04-30, share = 1.0 }} ]\n"
        );
        let p = Plan::from_toml(&text, &g).unwrap();
        (g, p)
    }

    /// (indicator, district code, day, gained) of the scenario.
    const GAINS: &[(Indicator, &str, (u32, u32), u64)] = &[
        (Indicator::Cccd, "688", (4, 11), 1),
        (Indicator::Cccd, "688", (4, 13), 2),
        (Indicator::Cccd, "688", (4, 16), 1),
        (Indicator::Vneid, "688", (4, 12), 1),
        (Indicator::Cccd, "689", (4, 12), 12),
        (Indicator::Cccd, "690", (4, 8), 2), // before the start
        (Indicator::Cccd, "690", (4, 10), 1),
        (Indicator::Vneid, "690", (4, 16), 1),
        (Indicator::Cccd, "691", (4, 11), 2),
        (Indicator::Cccd, "692", (4, 15), 4),
        (Indicator::Vneid, "692", (4, 15), 1),
        (Indicator::Vneid, "692", (4, 17), 1), // after the report day
    ];

    /// `coverage_daily` as the pipeline writes it through 17/4, from
    /// [`coverage::series`]: every indicator, province, districts, one commune.
    pub(crate) fn rows(g: &Geography, p: &Plan) -> Vec<CoverageDailyRow> {
        let mut counts: BTreeMap<(Indicator, AreaId), BTreeMap<NaiveDate, DayCounts>> = BTreeMap::new();
        for &(ind, code, (m, day), gained) in GAINS {
            let district = g.find(AreaLevel::District, code).unwrap();
            for a in [district, g.province()] {
                counts
                    .entry((ind, a))
                    .or_default()
                    .entry(d(m, day))
                    .or_insert(DayCounts { gained: 0, lost: 0 })
                    .gained += gained;
            }
        }
        let commune = g.find(AreaLevel::Commune, "25216").unwrap();
        counts.entry((Indicator::Cccd, commune)).or_default().insert(d(4, 16), DayCounts { gained: 7, lost: 0 });
        let empty = BTreeMap::new();
        let mut out = Vec::new();
        let areas: Vec<AreaId> = g.of_level(AreaLevel::District).chain([g.province(), commune]).collect();
        for ind in Indicator::ALL {
            for a in &areas {
                let days = counts.get(&(*ind, *a)).unwrap_or(&empty);
                let area = g.area(*a);
                for r in coverage::series(p, (*ind, *a), days, d(4, 17)) {
                    out.push(CoverageDailyRow {
                        day: r.day,
                        indicator: ind.as_str().to_owned(),
                        area_level: area.level.as_str().to_owned(),
                        area: area.code.clone(),
                        gained: r.gained,
                        lost: r.lost,
                        covered: r.covered,
                        target: r.target,
                        expected: r.expected,
                    });
                }
            }
        }
        out.reverse(); // order does not matter
        out
    }

    fn c(covered: i64, target: u64, expected: u64, days_behind: u32, gained: u64) -> Cell {
        Cell { covered, target, expected, days_behind, gained }
    }

    #[test]
    fn daily_table_cells_averages_and_ranks() {
        let (g, p) = setup();
        let t = DailyTable::build(&g, &p, &rows(&g, &p), d(4, 16)).unwrap();
        // District cccd: 5 by 20/4 → expected(16/4, day 6 of 10) = round(5 × 6 / 10) = 3;
        // expected(k) for k = 0..=6: 0 1 1 2 2 3 3 (halves up).
        // District vneid: 2 by 30/4 → expected(k) = round(2k / 20): 0 for k ≤ 4, 1 for k = 5..=14.
        let none = c(0, 0, 0, 0, 0);
        let codes: Vec<&str> = t.districts.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["688", "689", "690", "691", "692", "693", "694", "695", "696", "697", "698"]);
        let by = |code: &str| t.districts.iter().find(|r| r.code == code).unwrap();
        // 688: 1 + 2 + 1 = 4 ≥ 3 (one gained today); vneid 1 ≥ 1.
        assert_eq!(by("688").cells, [c(4, 10, 3, 0, 1), c(1, 2, 1, 0, 0), none, none, none]);
        // 689: 12 > 10; vneid 0 < 1, latest day with expected ≤ 0 is 14/4 (k = 4): 2 days.
        assert_eq!(by("689").cells, [c(12, 10, 3, 0, 0), c(0, 2, 1, 2, 0), none, none, none]);
        // 690: 2 before the start + 1 = 3 ≥ 3; vneid 1 gained today.
        assert_eq!(by("690").cells, [c(3, 10, 3, 0, 0), c(1, 2, 1, 0, 1), none, none, none]);
        // 691: 2 < 3, latest k with expected ≤ 2 is 4 (14/4): 2 days.
        assert_eq!(by("691").cells, [c(2, 10, 3, 2, 0), c(0, 2, 1, 2, 0), none, none, none]);
        // 692: the vneid of 17/4 is after the report day.
        assert_eq!(by("692").cells, [c(4, 10, 3, 0, 0), c(1, 2, 1, 0, 0), none, none, none]);
        // No events: cccd met only on the start day (6 days), vneid on 14/4.
        assert_eq!(by("698").cells, [c(0, 10, 3, 6, 0), c(0, 2, 1, 2, 0), none, none, none]);
        // Averages over cccd and vneid (the others have no target), clamped at 1.
        let avg: Vec<(&str, Option<f64>, Option<usize>)> =
            t.districts.iter().take(6).map(|r| (r.code.as_str(), r.average, r.rank)).collect();
        assert_eq!(
            avg,
            [
                ("688", Some(0.45), Some(2)), // (0.4 + 0.5) / 2
                ("689", Some(0.5), Some(1)),  // (min(1.2, 1) + 0) / 2
                ("690", Some(0.4), Some(4)),  // (0.3 + 0.5) / 2
                ("691", Some(0.1), Some(5)),  // (0.2 + 0) / 2
                ("692", Some(0.45), Some(2)), // ties with 688
                ("693", Some(0.0), Some(6)),
            ]
        );
        assert!(t.districts[5..].iter().all(|r| r.rank == Some(6)));
        // Province: cccd 4 + 12 + 3 + 2 + 4 = 25 of 110; 55 by 20/4 → expected(k) = round(5.5k):
        // 22 at k = 4 ≤ 25 < 28 at k = 5 → 2 days behind; expected(16/4) = 33.
        // vneid 3 of 22, expected(k) = round(1.1k): 3 at k = 3, 4 at k = 4 → 3 days; expected 7.
        assert_eq!(t.province.cells, [c(25, 110, 33, 2, 1), c(3, 22, 7, 3, 1), none, none, none]);
        assert_eq!(t.province.rank, None);
        assert_eq!(t.province.name, "Tỉnh Bình Phước");
        assert_eq!(average_percent(t.province.average.unwrap()), "18,18%"); // (25/110 + 3/22) / 2
    }

    #[test]
    fn one_district_in_markdown() {
        let (g, p) = setup();
        let t = DailyTable::build(&g, &p, &rows(&g, &p), d(4, 16)).unwrap();
        let md = t.markdown(g.find(AreaLevel::District, "688"));
        let expected = "\
# Tiến độ “4 phủ” ngày 16/04/2024 — Thị xã Phước Long

Thử \\<b\\>\"A&B\"\\</b\\> \\| \\*x\\*: từ ngày 10/04/2024 đến ngày 30/04/2024; ngày 16/04/2024 là ngày thứ 7/21. Số liệu đến hết ngày.

| Mã | Đơn vị | CCCD: Đạt/chỉ tiêu | CCCD: % | CCCD: % KH | CCCD: Chậm (ngày) | CCCD: Tăng trong ngày | ĐDĐT mức 2: Đạt/chỉ tiêu | ĐDĐT mức 2: % | ĐDĐT mức 2: % KH | ĐDĐT mức 2: Chậm (ngày) | ĐDĐT mức 2: Tăng trong ngày | ĐTTM 4G: Đạt/chỉ tiêu | ĐTTM 4G: % | ĐTTM 4G: % KH | ĐTTM 4G: Chậm (ngày) | ĐTTM 4G: Tăng trong ngày | SIM ký số: Đạt/chỉ tiêu | SIM ký số: % | SIM ký số: % KH | SIM ký số: Chậm (ngày) | SIM ký số: Tăng trong ngày | Chuyển 2G: Đạt/chỉ tiêu | Chuyển 2G: % | Chuyển 2G: % KH | Chuyển 2G: Chậm (ngày) | Chuyển 2G: Tăng trong ngày | Bình quân | Xếp hạng |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| 688 | Thị xã Phước Long | 4/10 | 40,00% | 30,00% | 0 | 1 | 1/2 | 50,00% | 50,00% | 0 | 0 | 0/0 | — | — | 0 | 0 | 0/0 | — | — | 0 | 0 | 0/0 | — | — | 0 | 0 | 45,00% | 2/11 |
";
        assert!(md.starts_with(expected), "{md}");
        assert!(md.contains("\n- Xếp hạng: thứ hạng theo Bình quân (giá trị chính xác) trong 11 huyện, thị xã, thành phố, cao nhất là 1; bằng nhau thì cùng hạng.\n"));
        assert!(!md.contains("Bình Phước |"), "no province row with --area");
        // Every district and the province, in bold, last.
        let full = t.markdown(None);
        let lines: Vec<&str> = full.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(lines.len(), 2 + 11 + 1);
        assert!(lines[13].starts_with("| **70** | **Tỉnh Bình Phước** | **25/110** | **22,73%** | **30,00%** | **2** | **1** | **3/22** | **13,64%** | **31,82%** | **3** | **1** |"), "{}", lines[13]);
        assert!(lines[13].ends_with("| **18,18%** | **—** |"), "{}", lines[13]);
        assert!(
            lines[3].starts_with(
                "| 689 | Thành phố Đồng Xoài | 12/10 | 120,00% | 30,00% | 0 | 0 | 0/2 | 0,00% | 50,00% | 2 | 0 |"
            ),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let (g, p) = setup();
        let t = DailyTable::build(&g, &p, &rows(&g, &p), d(4, 16)).unwrap();
        let html = t.html(None);
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"vi\">\n<head>\n<meta charset=\"utf-8\">\n<title>Tiến độ “4 phủ” ngày 16/04/2024 — Tỉnh Bình Phước</title>\n"));
        assert!(html.contains("<p>Thử &lt;b&gt;&quot;A&amp;B&quot;&lt;/b&gt; | *x*: từ ngày 10/04/2024"), "{html}");
        assert!(!html.contains("<b>"));
        assert!(!html.contains("http") && !html.contains("src=") && !html.contains("<link"), "no external assets");
        assert!(html.contains("<th colspan=\"5\">ĐDĐT mức 2</th>"));
        assert!(html.contains(
            "<tr><td>691</td><td>Thị xã Phước Long</td>".replace("Thị xã Phước Long", "Huyện Bù Gia Mập").as_str()
        ));
        assert!(html.contains(
            "<tfoot>\n<tr><td>70</td><td>Tỉnh Bình Phước</td><td class=\"n\">25/110</td><td class=\"n\">22,73%</td>"
        ));
        assert!(html.ends_with("</ul>\n</body>\n</html>\n"));
        let one = t.html(g.find(AreaLevel::District, "692"));
        assert_eq!(one.matches("<tr><td>").count(), 1);
        assert!(one.contains("<tr><td>692</td><td>Huyện Lộc Ninh</td><td class=\"n\">4/10</td>"));
        assert!(one.contains("<td class=\"n\">45,00%</td><td class=\"n\">2/11</td></tr>"));
        assert!(!one.contains("<tfoot>"));
    }

    #[test]
    fn missing_days_and_another_plan_are_errors() {
        let (g, p) = setup();
        let all = rows(&g, &p);
        // The pipeline has not reached 18/4.
        let err = DailyTable::build(&g, &p, &all, d(4, 18)).unwrap_err().to_string();
        assert!(err.contains("has not reached"), "{err}");
        // One key lost its row of the day.
        let holed: Vec<_> =
            all.iter().filter(|r| !(r.indicator == "vneid" && r.area == "695" && r.day == d(4, 16))).cloned().collect();
        let err = DailyTable::build(&g, &p, &holed, d(4, 16)).unwrap_err().to_string();
        assert!(err.contains("vneid in district 695"), "{err}");
        // Written under another plan (cccd target 220).
        let other = Plan::from_toml(
            &format!(
                "start = 2024-04-10\nend = 2024-04-30\n[district_weights]\n{}\n[indicators.cccd]\ntarget = 220\nbaseline = 0\n\
                 milestones = [ {{ date = 2024-04-30, share = 1.0 }} ]\n",
                (688..=698).map(|c| format!("\"{c}\" = 1\n")).collect::<String>()
            ),
            &g,
        )
        .unwrap();
        let err = DailyTable::build(&g, &other, &all, d(4, 16)).unwrap_err().to_string();
        assert!(err.contains("disagrees with the plan"), "{err}");
    }

    #[test]
    fn numbers_the_vietnamese_way() {
        assert_eq!(vi_int(0), "0");
        assert_eq!(vi_int(999), "999");
        assert_eq!(vi_int(1000), "1.000");
        assert_eq!(vi_int(334_507), "334.507");
        assert_eq!(vi_int(-1_234_567), "-1.234.567");
        assert_eq!(percent(1, 8), "12,50%");
        assert_eq!(percent(1, 3), "33,33%");
        assert_eq!(percent(2, 3), "66,67%");
        assert_eq!(percent(1, 200_000), "0,00%"); // 0.0005 %
        assert_eq!(percent(1, 20_000), "0,01%"); // 0.005 %: half up
        assert_eq!(percent(-1, 8), "-12,50%");
        assert_eq!(percent(5, 0), "—");
        assert_eq!(percent(123_456, 100), "123.456,00%");
        assert_eq!(average_percent(0.021875), "2,19%");
        assert_eq!(md("a|b_c*"), "a\\|b\\_c\\*");
        assert_eq!(esc("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
    }

    #[test]
    fn hotline_sums_one_area_over_the_days() {
        let g = Geography::load(GeographyVersion::Pre2025).unwrap();
        let row = |day: u32, level: &str, area: &str, received: u64, processed: u64, spam: u64| HotlineDailyRow {
            day: d(4, day),
            area_level: level.into(),
            area: area.into(),
            received,
            answered: processed,
            forwarded: 0,
            processed,
            in_progress: 0,
            spam,
            overdue_specialist: received - processed - spam,
            overdue_leadership: 0,
        };
        let rows = [
            row(2, "district", "692", 3, 2, 0),
            row(3, "district", "692", 1000, 990, 5),
            row(3, "commune", "25270", 1, 1, 0),
            row(3, "district", "693", 2, 2, 0),
        ];
        let c = sum_hotline(&rows, AreaLevel::District, "692");
        assert_eq!((c.received, c.processed, c.spam, c.overdue_specialist, c.answered), (1003, 992, 5, 6, 992));
        let id = find_area(&g, "692").unwrap();
        assert_eq!(g.area(id).level, AreaLevel::District);
        assert_eq!(find_area(&g, "25270").map(|a| g.area(a).level), Some(AreaLevel::Commune));
        assert_eq!(find_area(&g, "70"), Some(g.province()));
        assert_eq!(find_area(&g, "999"), None);
        assert_eq!(
            hotline_text(&c, d(4, 1), d(4, 30), &official_name(&g, id)),
            "Tổng đài 1022 — Huyện Lộc Ninh: tin tiếp nhận từ ngày 01/04/2024 đến ngày 30/04/2024\n\
             Đơn vị\tTổng số tin tiếp nhận\tĐã xử lý\tĐang xử lý\tTin rác\t\
             Quá hạn xử lý (cấp chuyên viên 8 giờ hành chính)\tQuá hạn xử lý (cấp lãnh đạo 48 giờ hành chính)\t\
             Tổng đài viên trả lời trực tiếp\tChuyển các ngành xử lý\n\
             Huyện Lộc Ninh\t1.003\t992\t0\t5\t6\t0\t992\t0\n"
        );
        assert_eq!(official_name(&g, g.province()), "Tỉnh Bình Phước");
    }
}
