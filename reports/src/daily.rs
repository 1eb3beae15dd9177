//! `d06 report daily`: the daily progress table read from ClickHouse.

use aggregator::plan::Plan;
use aggregator::{AreaLevel, Geography, ProvincePlan};
use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use sinks::clickhouse::ClickHouseSink;

use crate::table::DailyTable;
use crate::{Format, Source};

/// A province's progress table as of the end of `day` (`province` a GSO
/// code, else the first tracked); with `area` (a district code) only that
/// district's row (its rank still among all).
pub async fn daily(
    source: &Source,
    province: Option<&str>,
    day: NaiveDate,
    area: Option<&str>,
    format: Format,
) -> Result<String> {
    let ProvincePlan { geo, plan } = source.province(province)?;
    if geo.of_level(AreaLevel::District).next().is_none() {
        bail!("the daily report lists districts: it needs the pre-2025 geography");
    }
    if !plan.is_running(day) {
        bail!("{day} is outside the campaign ({} to {}): coverage_daily has no rows for it", plan.start(), plan.end());
    }
    let only = match area {
        None => None,
        Some(code) => Some(
            geo.find(AreaLevel::District, code).with_context(|| format!("--area {code:?} is not a district code"))?,
        ),
    };
    let sink = ClickHouseSink::reader(&source.clickhouse)?;
    let table = load_daily_table(&sink, &geo, &plan, day).await?;
    Ok(match format {
        Format::Markdown => table.markdown(only),
        Format::Html => table.html(only),
    })
}

/// The daily table as of the end of `day` (so far, for today), from
/// `coverage_daily`: what `d06 report daily` prints, and what the daily
/// alerts (the `alerts` crate) are made of.
pub async fn load_daily_table(
    sink: &ClickHouseSink,
    geo: &Geography,
    plan: &Plan,
    day: NaiveDate,
) -> Result<DailyTable> {
    let rows = sink.coverage_rows(plan.start(), day).await.context("reading coverage_daily")?;
    DailyTable::build(geo, plan, &rows, day)
}
