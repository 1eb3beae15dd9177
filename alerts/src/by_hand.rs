//! `d06 alerts send --day DATE`: one day's alerts, by hand.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::config::AlertsConfig;
use crate::job::{Clock, DailyAlerts};

/// `d06 alerts send --day DATE`: the daily alerts of `day`, now, once (no
/// retry; districts already recorded are skipped), whether or not
/// `[alerts] enabled`, for every tracked province whose campaign runs that
/// day (or only `province`). Returns one line per alert posted and a summary.
///
/// `alerts` is `[alerts]` with its lag rule defaulted (the pipeline's), `tz`
/// the contract's time zone.
pub async fn send_day(
    source: &reports::Source,
    province: Option<&str>,
    alerts: AlertsConfig,
    tz: Tz,
    day: NaiveDate,
) -> Result<String> {
    let units = match province {
        Some(code) => vec![source.province(Some(code))?],
        None => {
            let geo = source.geography()?;
            source.plans(&geo)?.units().to_vec()
        }
    };
    let running: Vec<_> = units.iter().filter(|u| u.plan.is_running(day)).collect();
    if running.is_empty() {
        let spans: Vec<String> =
            units.iter().map(|u| format!("{} {} to {}", u.code(), u.plan.start(), u.plan.end())).collect();
        bail!("{day} is outside the campaign ({}): no daily alerts", spans.join("; "));
    }
    let mut out = String::new();
    let mut total = 0;
    for unit in running {
        let job = DailyAlerts::new(
            alerts.clone(),
            source.clickhouse.clone(),
            Arc::clone(&unit.plan),
            Arc::clone(&unit.geo),
            tz,
            Clock::Fixed(day),
        );
        let sent = job.send_for_day(day).await.with_context(|| format!("province {}", unit.code()))?;
        for a in &sent {
            let _ = writeln!(out, "{}\t{}", a.district, a.indicator_label());
        }
        total += sent.len();
    }
    let _ = writeln!(out, "{total} daily alert(s) sent for {day}");
    Ok(out)
}
