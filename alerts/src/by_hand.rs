//! `d06 alerts send --day DATE`: one day's alerts, by hand.

use std::fmt::Write as _;
use std::sync::Arc;

use aggregator::Geography;
use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::config::AlertsConfig;
use crate::job::{Clock, DailyAlerts};

/// `d06 alerts send --day DATE`: the daily alerts of `day`, now, once (no
/// retry; districts already recorded are skipped), whether or not
/// `[alerts] enabled`. Returns one line per alert posted and a summary.
///
/// `alerts` is `[alerts]` with its lag rule defaulted (the pipeline's), `tz`
/// the contract's time zone.
pub async fn send_day(source: &reports::Source, alerts: AlertsConfig, tz: Tz, day: NaiveDate) -> Result<String> {
    let geo = Arc::new(Geography::load(source.geography).context("loading the geography")?);
    let plan = Arc::new(reports::load_plan(source.plan_file.as_deref(), &geo)?);
    if !plan.is_running(day) {
        bail!("{day} is outside the campaign ({} to {}): no daily alerts", plan.start(), plan.end());
    }
    let job = DailyAlerts::new(alerts, source.clickhouse.clone(), plan, geo, tz, Clock::Fixed(day));
    let sent = job.send_for_day(day).await?;
    let mut out = String::new();
    for a in &sent {
        let _ = writeln!(out, "{}\t{}", a.district, a.indicator_label());
    }
    let _ = writeln!(out, "{} daily alert(s) sent for {day}", sent.len());
    Ok(out)
}
