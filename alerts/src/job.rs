//! The daily alert job: at `send_at` each campaign day, the lagging
//! districts' alerts to Alertmanager, recorded in ClickHouse; retried until
//! the day ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregator::coverage::LagRule;
use aggregator::plan::Plan;
use aggregator::Geography;
use anyhow::{Context, Result};
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use sinks::clickhouse::{AlertRecord, ClickHouseConfig, ClickHouseSink};
use sinks::Metrics;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::alertmanager::Alertmanagers;
use crate::config::AlertsConfig;
use crate::gauges::AlertGauges;
use crate::message::{build_alerts, SentAlert};
use crate::schedule::{ends_at, local_instant, next_send, sleep_until};

/// How long an alert stays active in Alertmanager.
pub(crate) const ACTIVE_FOR: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Longest delay between two attempts of a day.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(300);

/// The delays between attempts of a day: 1 s doubling to [`MAX_RETRY`], for
/// as long as the day lasts (the caller stops at its deadline).
pub(crate) const RETRY: ExponentialBuilder =
    ExponentialBuilder::new().with_min_delay(Duration::from_secs(1)).with_max_delay(MAX_RETRY).without_max_times();

/// Limit of one request to Alertmanager.
pub(crate) const ALERTMANAGER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a wall-clock wait sleeps before looking at the clock again
/// (the monotonic timer does not follow clock adjustments).
pub(crate) const WAKE_EVERY: Duration = Duration::from_secs(60);

/// Which day the job works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Live: every campaign day at `send_at` local time by the wall clock.
    Wall,
    /// Tests and replays: that day's alerts once, at once, then idle until shutdown.
    Fixed(NaiveDate),
}

/// The daily alert job.
#[derive(Debug)]
pub struct DailyAlerts {
    config: AlertsConfig,
    rule: LagRule,
    clickhouse: ClickHouseConfig,
    plan: Arc<Plan>,
    geo: Arc<Geography>,
    tz: Tz,
    clock: Clock,
    /// Posted to Alertmanager, not yet recorded in ClickHouse.
    unrecorded: Mutex<Vec<AlertRecord>>,
    /// With several instances, only the owner of facts partition 0 sends.
    sender: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// When the next alerts are due and when they last succeeded: the
    /// shared gauges and this job's number there.
    gauges: Option<(Arc<AlertGauges>, usize)>,
}

impl DailyAlerts {
    /// The job; nothing is contacted until it runs.
    pub fn new(
        config: AlertsConfig,
        clickhouse: ClickHouseConfig,
        plan: Arc<Plan>,
        geo: Arc<Geography>,
        tz: Tz,
        clock: Clock,
    ) -> Self {
        DailyAlerts {
            rule: config.rule.unwrap_or_default(),
            config,
            clickhouse,
            plan,
            geo,
            tz,
            clock,
            unrecorded: Mutex::new(Vec::new()),
            sender: None,
            gauges: None,
        }
    }

    /// Sends only while `owner` is set (this instance owns facts partition 0),
    /// so that N instances send each district's alert once.
    pub fn sent_by(mut self, owner: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.sender = Some(owner);
        self
    }

    /// Keeps `d06_daily_alerts_due_timestamp_seconds` and
    /// `d06_daily_alerts_last_success_timestamp_seconds` (the rule
    /// `D06DailyAlertsNotSent` compares them).
    pub fn reporting_to(self, metrics: Arc<Metrics>) -> Self {
        self.reporting_as(AlertGauges::new(metrics, 1), 0)
    }

    /// [`Self::reporting_to`] as job `job` of several (one per province)
    /// behind the same gauges ([`AlertGauges`]).
    pub fn reporting_as(mut self, gauges: Arc<AlertGauges>, job: usize) -> Self {
        self.gauges = Some((gauges, job));
        self
    }

    /// Waits for `send_at` each local day, sends, records; returns on
    /// shutdown. Disabled, it just waits for shutdown (so that it can sit
    /// under the supervisor with the other tasks either way).
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        if !self.config.enabled {
            info!("daily alerts disabled ([alerts] enabled = false)");
            shutdown.cancelled().await;
            return Ok(());
        }
        let send_at = self.config.send_at.0;
        info!(
            send_at = %self.config.send_at,
            time_zone = %self.tz,
            alertmanager = %self.config.alertmanager_url,
            clock = ?self.clock,
            "daily alerts enabled"
        );
        if let Clock::Fixed(day) = self.clock {
            if let Some((g, job)) = &self.gauges {
                g.set_due(*job, Utc::now().timestamp() as f64);
            }
            self.send_with_retry(day, None, &shutdown).await;
            shutdown.cancelled().await;
            return Ok(());
        }
        let mut done: Option<NaiveDate> = None;
        loop {
            let now = Utc::now();
            let next = next_send(&self.plan, self.tz, send_at, now, done);
            if let Some((g, job)) = &self.gauges {
                g.set_due(*job, next.as_ref().map_or(0.0, |n| n.at.timestamp() as f64));
            }
            let Some(next) = next else {
                info!(end = %self.plan.end(), "the campaign is over: no more daily alerts");
                shutdown.cancelled().await;
                return Ok(());
            };
            if next.at > now {
                info!(day = %next.day, at = %next.at, "next daily alerts");
                if !sleep_until(next.at, &shutdown).await {
                    return Ok(());
                }
            }
            self.send_with_retry(next.day, Some(next.deadline), &shutdown).await;
            if shutdown.is_cancelled() {
                return Ok(());
            }
            done = Some(next.day);
        }
    }

    /// One day's alerts now (used by run and by tests): returns what this
    /// call posted. Districts already recorded in ClickHouse for `day` are
    /// left out; nothing is sent for a day outside the campaign.
    pub async fn send_for_day(&self, day: NaiveDate) -> Result<Vec<SentAlert>> {
        if !self.plan.is_running(day) {
            debug!(%day, "not a campaign day: no daily alerts");
            return Ok(Vec::new());
        }
        let sink = ClickHouseSink::reader(&self.clickhouse)?;
        self.record_unrecorded(&sink).await?;
        let already = sink.alerted_districts(day).await.context("reading the alerts already sent")?;
        let table = reports::load_daily_table(&sink, &self.geo, &self.plan, day).await?;
        let starts_at = local_instant(day, self.config.send_at.0, self.tz);
        let ends_at = ends_at(starts_at, Utc::now());
        let alerts = build_alerts(
            &table,
            &self.rule,
            day,
            (starts_at, ends_at),
            &self.config.severity,
            self.config.report_url.as_deref(),
            &already,
        );
        if alerts.is_empty() {
            info!(%day, already = already.len(), "no district to alert");
            return Ok(alerts);
        }
        self.post(&alerts).await?;
        let sent_at = Utc::now();
        let records: Vec<AlertRecord> = alerts
            .iter()
            .map(|a| AlertRecord {
                day,
                district: a.district.clone(),
                indicator: a.indicator_label().to_owned(),
                sent_at,
                body: a.to_json().to_string(),
            })
            .collect();
        let districts: Vec<&str> = alerts.iter().map(|a| a.district.as_str()).collect();
        info!(%day, districts = ?districts, already = already.len(), "daily alerts accepted by Alertmanager");
        self.lock_unrecorded().extend(records);
        self.record_unrecorded(&sink).await?;
        Ok(alerts)
    }

    /// Posts the alerts as one array to `/api/v2/alerts` of every
    /// Alertmanager; fails only when none accepted.
    async fn post(&self, alerts: &[SentAlert]) -> Result<()> {
        let body = Value::Array(alerts.iter().map(SentAlert::to_json).collect());
        let posted = Alertmanagers::new(&self.config, ALERTMANAGER_TIMEOUT)?.post(&body).await?;
        info!(
            alerts = alerts.len(),
            accepted_by = posted.accepted,
            failed = posted.failed.len(),
            "daily alerts posted to the Alertmanagers"
        );
        Ok(())
    }

    /// Records in ClickHouse the alerts posted but not yet recorded.
    async fn record_unrecorded(&self, sink: &ClickHouseSink) -> Result<()> {
        let pending = self.lock_unrecorded().clone();
        if pending.is_empty() {
            return Ok(());
        }
        sink.record_alerts(&pending)
            .await
            .context("recording the daily alerts Alertmanager accepted (they will not be posted again)")?;
        self.lock_unrecorded().retain(|r| !pending.contains(r));
        Ok(())
    }

    fn lock_unrecorded(&self) -> std::sync::MutexGuard<'_, Vec<AlertRecord>> {
        self.unrecorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`Self::send_for_day`] until it succeeds, `deadline` passes (then
    /// the day is given up, loudly) or shutdown.
    async fn send_with_retry(&self, day: NaiveDate, deadline: Option<DateTime<Utc>>, shutdown: &CancellationToken) {
        if let Some(owner) = &self.sender {
            // The owner of facts partition 0 sends; ownership may move to us before the day ends.
            while !owner.load(std::sync::atomic::Ordering::Relaxed) {
                if deadline.is_some_and(|d| Utc::now() >= d) {
                    info!(%day, "daily alerts left to the owner of facts partition 0");
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {},
                    _ = shutdown.cancelled() => return,
                }
            }
        }
        let mut delays = RETRY.build();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let error = match self.send_for_day(day).await {
                Ok(sent) => {
                    info!(%day, sent = sent.len(), attempts = attempt, "daily alerts done");
                    if let Some((g, job)) = &self.gauges {
                        g.set_success(*job, Utc::now().timestamp() as f64);
                    }
                    return;
                }
                Err(e) => e,
            };
            let now = Utc::now();
            if deadline.is_some_and(|d| now >= d) {
                error!(
                    %day,
                    attempts = attempt,
                    error = %format!("{error:#}"),
                    "GIVING UP on the daily alerts of this day: the day is over and they could not be sent"
                );
                return;
            }
            // RETRY has no limit on attempts: `next` is never None.
            let mut wait = delays.next().unwrap_or(MAX_RETRY);
            if let Some(d) = deadline {
                wait = wait.min((d - now).to_std().unwrap_or_default());
            }
            warn!(
                %day,
                attempts = attempt,
                retry_in_s = wait.as_secs_f64(),
                error = %format!("{error:#}"),
                "daily alerts failed, will retry"
            );
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
