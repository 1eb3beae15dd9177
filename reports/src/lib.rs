//! `d06 report`: the province's tables, read from ClickHouse (the public
//! views of OUTPUTS-v1) and the campaign plan; nothing else.
//!
//! - [`hotline`]: the monthly 1022 table (`hotline::report_table`)
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
//! **Average and rank** ([`aggregator::standing`], shared with the board
//! and the alerts). An area's *average* is the mean, over the indicators
//! whose target is > 0 and whose baseline the plan knows, of covered/target
//! clamped to [0, 1] (so running past one target cannot hide lagging on
//! another). An indicator with an unknown baseline counts from 0
//! (OUTPUTS-v1), so its ratio says nothing about how far the area is: it
//! is left out, and a note under the table names it and the areas where it
//! was (“mọi đơn vị” when everywhere). An area with no indicator left has
//! no average (“—”) and no rank. Districts are ranked by that average,
//! highest first, on the exact value (not the rounded one shown); equal
//! averages share a rank and the next rank skips (1, 2, 2, 4). The province
//! row shows its own average, no rank.
//!
//! Numbers are written the Vietnamese way: `.` between thousands, `,`
//! before decimals; percentages have two decimals, rounded half up.
//!
//! # Map
//!
//! `hotline` (the 1022 table), `daily` (the daily table, read from
//! ClickHouse), `table` (the table built from `coverage_daily` rows and the
//! plan), `render` (Markdown and HTML), `numbers` (the Vietnamese way);
//! `fixtures` (with the `fixtures` feature) the tables' test data.

mod daily;
mod deployment;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod hotline;
mod numbers;
mod render;
mod table;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aggregator::baseline_csv::BaselineEntry;
use aggregator::plan::Plan;
use aggregator::plan_source;
use aggregator::{Geography, GeographyVersion};

use anyhow::{Context, Result};
use sinks::clickhouse::ClickHouseConfig;

pub use daily::{daily, load_daily_table};
pub use deployment::province_id;
pub use hotline::hotline;
pub use numbers::{percent, vi_int};
pub use table::{DailyTable, Row, INDICATORS};

/// What the reports read: the pieces of the binary's configuration they need.
#[derive(Clone, Debug)]
pub struct Source {
    /// The geography areas resolve in.
    pub geography: GeographyVersion,
    /// The provinces tracked (`contract.provinces`, GSO codes); empty:
    /// Bình Phước from the project's own files.
    pub provinces: Vec<String>,
    /// The ClickHouse database the pipeline writes to.
    pub clickhouse: ClickHouseConfig,
    /// The campaign plan file (`plan.file`); the embedded plan when `None`.
    pub plan_file: Option<PathBuf>,
    /// Each province's plan file (`plan.by_province`), by GSO code.
    pub plan_files: BTreeMap<String, PathBuf>,
}

/// The campaign plan compiled in (used unless `plan.file` is set).
const EMBEDDED_PLAN: &str = include_str!("../../deploy/plans/binh-phuoc-2024.toml");

/// Output format of `d06 report daily`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Markdown document (GitHub-flavoured table).
    Markdown,
    /// A self-contained HTML document (inline style, no external assets).
    Html,
}

/// The plan the pipeline runs with: `plan_file`, or the embedded one, with
/// the baseline file it names (`baseline_file`, relative to the plan file;
/// [`aggregator::plan_source`]). `d06 run`, `check-config`, the reports and
/// the alerts all load the plan here; every error names the file (and the
/// row of a refused baseline file).
pub fn load_plan(plan_file: Option<&Path>, geo: &Geography) -> Result<Plan> {
    load_plan_with(plan_file, geo, |_| None)
}

/// [`load_plan`], then the baseline rows `extra` makes from that plan
/// imported over it, named `extra`'s first element in errors
/// ([`plan_source::load_with`]); `None` adds nothing. `d06 demo` adds its
/// simulated baseline so.
pub fn load_plan_with<F>(plan_file: Option<&Path>, geo: &Geography, extra: F) -> Result<Plan>
where
    F: FnOnce(&Plan) -> Option<(String, Vec<BaselineEntry>)>,
{
    let text = match plan_file {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading the plan {}", p.display()))?,
        None => EMBEDDED_PLAN.to_owned(),
    };
    let name = plan_file.map_or_else(|| "the embedded plan".to_owned(), |p| p.display().to_string());
    let csv = match plan_source::baseline_file(&text).with_context(|| format!("loading the campaign plan {name}"))? {
        None => None,
        Some(file) => {
            let dir = plan_file.and_then(Path::parent).unwrap_or(Path::new(""));
            let path = dir.join(&file);
            let csv = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the baseline file {} named by the plan {name}", path.display()))?;
            Some(csv)
        }
    };
    let plan =
        plan_source::load(&text, csv.as_deref(), geo).with_context(|| format!("loading the campaign plan {name}"))?;
    match extra(&plan) {
        None => Ok(plan),
        Some((what, rows)) => plan_source::load_with(&text, csv.as_deref(), Some((&what, &rows)), geo)
            .with_context(|| format!("loading the campaign plan {name}")),
    }
}
