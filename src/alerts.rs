//! The daily alert job (issue 6): at `send_at` local time on every day of
//! the campaign, one alert per district that lags the plan, posted to
//! Alertmanager's API v2 and recorded in ClickHouse's `alerts` table.
//!
//! # What is sent
//!
//! The figures are those of `d06 report daily` for the day
//! ([`reports::load_daily_table`]: `coverage_daily` read back and
//! turned into [`aggregator::coverage::status`]), so the alert, the report
//! and the board agree. A district lags on an indicator when
//! [`LagRule::is_lagging`] says so (the one lag rule; `[alerts] rule`, by
//! default `[pipeline.lag_rule]`). A district lagging on at least one
//! indicator gets ONE alert:
//!
//! - labels `alertname="D06DailyDistrictLag"`, `district` (GSO code),
//!   `indicator` (the lagging indicators, contract names, sorted,
//!   comma-joined), `severity`, and `day` (`YYYY-MM-DD`);
//! - annotations `summary`, `description` (each lagging indicator with
//!   covered, target, expected, days behind, the day's gain and ETA or
//!   "chưa xác định", the district's rank in the province, then the
//!   district's `d06 report daily --area` Markdown) and, when `report_url`
//!   is set, `link` (also the alert's `generatorURL`):
//!   `{report_url}?day=YYYY-MM-DD&area=CODE` (`&` instead of `?` when the
//!   base already has a query);
//! - `startsAt` = the day's `send_at` instant (not the time of posting),
//!   `endsAt` = 24 h later (Alertmanager resolves it then; when that is
//!   already past, as when replaying an old day, 24 h after posting).
//!
//! Nothing is sent on a day outside the campaign (`Plan::is_running`).
//!
//! # Exactly once per district and day
//!
//! Before posting, the job reads the districts already recorded in `alerts`
//! for the day and leaves them out; after Alertmanager accepted the post, it
//! records each alert. So a restart after sending (at 17:00:30) sends
//! nothing again, and a restart across `send_at` (down at 16:59, up at
//! 17:01) sends once, at start-up: a day whose `send_at` has passed and
//! which has not ended is due at once. If recording fails after the post,
//! the alerts are kept in memory and recorded first on the next attempt,
//! without posting again.
//!
//! What remains is a race: two instances (or a crash between the post and
//! the record) may both post before either records. Alertmanager makes that
//! harmless: an alert is identified by its label set, a second post of the
//! same labels merges into the alert already there (same `startsAt`, since
//! it is the day's `send_at` instant), and a group is notified when its set
//! of firing alerts changes, so the receiver gets one notification. The
//! labels are a function of the day and the ClickHouse figures only; they
//! differ only if the figures changed between the two instances' reads
//! (a lagging indicator added in between), and then the district gets a
//! second, different alert. The `day` label makes each day's alert a new
//! alert for Alertmanager, notified at once even when the district lagged
//! on the same indicators the day before.
//!
//! # Failures
//!
//! Any failure (Alertmanager or ClickHouse unreachable, the pipeline not yet
//! at the day) is retried with backoff (1 s doubling to 5 min) until the
//! day ends in local time; then the job gives up on that day with an
//! `error!` and goes on to the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregator::coverage::{LagRule, Status};
use aggregator::plan::Plan;
use aggregator::{Geography, Indicator};
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};
use sinks::clickhouse::{AlertRecord, ClickHouseConfig, ClickHouseSink};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use reports::{percent, vi_int, DailyTable, Row, INDICATORS};

/// The `alertname` of the daily alerts (routed by `deploy/alertmanager/`).
pub const ALERT_NAME: &str = "D06DailyDistrictLag";

/// How long an alert stays active in Alertmanager.
const ACTIVE_FOR: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// First delay before retrying a failed day.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Longest delay between two attempts of a day.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// Limit of one request to Alertmanager.
const ALERTMANAGER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a wall-clock wait sleeps before looking at the clock again
/// (the monotonic timer does not follow clock adjustments).
const WAKE_EVERY: Duration = Duration::from_secs(60);

/// A local time of day, written `"HH:MM"` (24-hour clock).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LocalTime(pub NaiveTime);

impl LocalTime {
    /// Parses `"HH:MM"` (two digits each, 00:00 to 23:59).
    pub fn parse(s: &str) -> Result<LocalTime> {
        let ok = s.len() == 5 && s.as_bytes()[2] == b':';
        match NaiveTime::parse_from_str(s, "%H:%M") {
            Ok(t) if ok => Ok(LocalTime(t)),
            _ => bail!("{s:?} is not a local time \"HH:MM\" (00:00 to 23:59)"),
        }
    }
}

impl fmt::Debug for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.format("%H:%M"))
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LocalTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `[alerts]`: the daily alert job.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Run the daily alert job inside `d06 run` (off by default).
    pub enabled: bool,
    /// Alertmanager's base URL (`http://` only); alerts are posted to
    /// `{alertmanager_url}/api/v2/alerts`.
    pub alertmanager_url: String,
    /// Local time (`contract.time_zone`) the alerts are sent each campaign day, `"HH:MM"`.
    pub send_at: LocalTime,
    /// When a district lags on an indicator; `[pipeline.lag_rule]` (the
    /// board's) when not set, so that the two agree.
    pub rule: Option<LagRule>,
    /// Base URL of a page showing the daily report; when set, each alert
    /// links to `{report_url}?day=YYYY-MM-DD&area=CODE`.
    pub report_url: Option<String>,
    /// The alerts' `severity` label.
    pub severity: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: false,
            alertmanager_url: "http://127.0.0.1:9093".into(),
            send_at: LocalTime(NaiveTime::from_hms_opt(17, 0, 0).unwrap_or(NaiveTime::MIN)),
            rule: None,
            report_url: None,
            severity: "warning".into(),
        }
    }
}

impl AlertsConfig {
    /// Checks what can be checked before anything starts.
    pub fn validate(&self) -> Result<()> {
        let shown = sinks::clickhouse::redact_url(&self.alertmanager_url);
        if self.alertmanager_url.starts_with("https://") {
            bail!(
                "alertmanager_url {shown:?}: d06 is built without TLS for Alertmanager; use http:// (put a local proxy in front of an https Alertmanager)"
            );
        }
        if !self.alertmanager_url.starts_with("http://") || self.alertmanager_url.len() <= "http://".len() {
            bail!("alertmanager_url {shown:?} must be an http:// URL");
        }
        if let Some(u) = &self.report_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("report_url {u:?} must be an http:// or https:// URL");
            }
        }
        if self.severity.trim().is_empty() {
            bail!("severity must not be empty");
        }
        if let Some(r) = &self.rule {
            if !(0.0..=1.0).contains(&r.tolerance) {
                bail!("rule.tolerance must be in [0, 1]");
            }
        }
        Ok(())
    }

    /// This section with `rule` set to `fallback` (`[pipeline.lag_rule]`)
    /// when the file leaves it out.
    pub fn with_default_rule(mut self, fallback: LagRule) -> Self {
        self.rule.get_or_insert(fallback);
        self
    }
}

/// Which day the job works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Live: every campaign day at `send_at` local time by the wall clock.
    Wall,
    /// Tests and replays: that day's alerts once, at once, then idle until shutdown.
    Fixed(NaiveDate),
}

/// One alert posted to Alertmanager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentAlert {
    /// The day it is about.
    pub day: NaiveDate,
    /// GSO code of the district.
    pub district: String,
    /// The lagging indicators, in contract-name order.
    pub indicators: Vec<Indicator>,
    /// All labels, as posted.
    pub labels: BTreeMap<String, String>,
    /// All annotations, as posted.
    pub annotations: BTreeMap<String, String>,
    /// `startsAt`: the day's `send_at` instant.
    pub starts_at: DateTime<Utc>,
    /// `endsAt`.
    pub ends_at: DateTime<Utc>,
}

impl SentAlert {
    /// The alert as Alertmanager's API v2 takes it (one element of the posted array).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "endsAt": self.ends_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        if let Some(link) = self.annotations.get("link") {
            v["generatorURL"] = json!(link);
        }
        v
    }

    /// The `indicator` label.
    pub fn indicator_label(&self) -> &str {
        self.labels.get("indicator").map_or("", String::as_str)
    }
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
    http: reqwest::Client,
    /// Posted to Alertmanager, not yet recorded in ClickHouse.
    unrecorded: Mutex<Vec<AlertRecord>>,
    /// With several instances, only the owner of facts partition 0 sends.
    sender: Option<Arc<std::sync::atomic::AtomicBool>>,
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
        let http =
            reqwest::Client::builder().timeout(ALERTMANAGER_TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new());
        DailyAlerts {
            rule: config.rule.unwrap_or_default(),
            config,
            clickhouse,
            plan,
            geo,
            tz,
            clock,
            http,
            unrecorded: Mutex::new(Vec::new()),
            sender: None,
        }
    }

    /// Sends only while `owner` is set (this instance owns facts partition 0),
    /// so that N instances send each district's alert once.
    pub fn sent_by(mut self, owner: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.sender = Some(owner);
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
            self.send_with_retry(day, None, &shutdown).await;
            shutdown.cancelled().await;
            return Ok(());
        }
        let mut done: Option<NaiveDate> = None;
        loop {
            let now = Utc::now();
            let Some(next) = next_send(&self.plan, self.tz, send_at, now, done) else {
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

    /// Posts the alerts as one array to `/api/v2/alerts`.
    async fn post(&self, alerts: &[SentAlert]) -> Result<()> {
        let url = format!("{}/api/v2/alerts", self.config.alertmanager_url.trim_end_matches('/'));
        let body = Value::Array(alerts.iter().map(SentAlert::to_json).collect());
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("posting the daily alerts to {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(500).collect();
            bail!("Alertmanager refused the daily alerts: POST {url}: {status}: {text}");
        }
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
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let error = match self.send_for_day(day).await {
                Ok(sent) => {
                    info!(%day, sent = sent.len(), attempts = attempt, "daily alerts done");
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
            let mut wait = retry_delay(attempt);
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

/// `d06 alerts send --day DATE`: the daily alerts of `day`, now, once (no
/// retry; districts already recorded are skipped), whether or not
/// `[alerts] enabled`. Returns one line per alert posted and a summary.
pub async fn send_day(config: &Config, day: NaiveDate) -> Result<String> {
    let geo = Arc::new(Geography::load(config.contract.geography).context("loading the geography")?);
    let plan = Arc::new(reports::load_plan(config.plan.file.as_deref(), &geo)?);
    if !plan.is_running(day) {
        bail!("{day} is outside the campaign ({} to {}): no daily alerts", plan.start(), plan.end());
    }
    let job = DailyAlerts::new(
        config.alerts.clone().with_default_rule(config.pipeline.lag_rule),
        config.clickhouse.clone(),
        plan,
        geo,
        config.contract.tz()?,
        Clock::Fixed(day),
    );
    let sent = job.send_for_day(day).await?;
    let mut out = String::new();
    for a in &sent {
        let _ = writeln!(out, "{}\t{}", a.district, a.indicator_label());
    }
    let _ = writeln!(out, "{} daily alert(s) sent for {day}", sent.len());
    Ok(out)
}

// ------------------------------------------------------------------ schedule

/// The next day to send for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Next {
    /// The local day.
    day: NaiveDate,
    /// Its `send_at` instant (in the past when already due).
    at: DateTime<Utc>,
    /// The end of that local day: the attempts stop there.
    deadline: DateTime<Utc>,
}

/// The next campaign day whose alerts are due, given the time `now` and the
/// last day already handled (`done`): today if its `send_at` has not passed
/// or it is not over yet (due at once), else a later day. `None` when the
/// campaign is over.
fn next_send(plan: &Plan, tz: Tz, send_at: NaiveTime, now: DateTime<Utc>, done: Option<NaiveDate>) -> Option<Next> {
    let today = now.with_timezone(&tz).date_naive();
    let mut day = today.max(plan.start());
    if let Some(d) = done.and_then(|d| d.succ_opt()) {
        day = day.max(d);
    }
    if !plan.is_running(day) {
        return None;
    }
    let next_midnight = day.checked_add_days(Days::new(1))?;
    Some(Next { day, at: local_instant(day, send_at, tz), deadline: local_instant(next_midnight, NaiveTime::MIN, tz) })
}

/// The instant of local `time` on `day` in `tz`: the earlier one when the
/// clock is set back over it, the first instant after the gap when the
/// clock is set forward over it.
fn local_instant(day: NaiveDate, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let naive = day.and_time(time);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => (1..=24 * 60)
            .find_map(|m| tz.from_local_datetime(&(naive + chrono::TimeDelta::minutes(m))).earliest())
            .map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc)),
    }
}

/// `endsAt`: 24 h after `starts_at`, or after `now` when that is already past.
fn ends_at(starts_at: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let ends = starts_at + ACTIVE_FOR;
    if ends > now {
        ends
    } else {
        now + ACTIVE_FOR
    }
}

/// The delay before retry number `attempt` (1-based): 1 s doubling to 5 min.
fn retry_delay(attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
    FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY)
}

/// Sleeps until the wall clock reaches `at`; false when shut down first.
async fn sleep_until(at: DateTime<Utc>, shutdown: &CancellationToken) -> bool {
    loop {
        let left = (at - Utc::now()).to_std().unwrap_or_default();
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(left.min(WAKE_EVERY)) => {}
        }
    }
}

// ------------------------------------------------------------------ messages

/// The alerts of one day: one per district that lags on at least one
/// indicator, except those in `already`, in district code order.
fn build_alerts(
    table: &DailyTable,
    rule: &LagRule,
    day: NaiveDate,
    (starts_at, ends_at): (DateTime<Utc>, DateTime<Utc>),
    severity: &str,
    report_url: Option<&str>,
    already: &BTreeSet<String>,
) -> Vec<SentAlert> {
    let districts = table.districts.len();
    table
        .districts
        .iter()
        .filter(|row| !already.contains(&row.code))
        .filter_map(|row| {
            let lagging: Vec<usize> = (0..INDICATORS.len()).filter(|&i| rule.is_lagging(&row.statuses[i])).collect();
            if lagging.is_empty() {
                return None;
            }
            let mut indicators: Vec<Indicator> = lagging.iter().map(|&i| INDICATORS[i].0).collect();
            indicators.sort_by_key(|ind| ind.as_str());
            let label = indicators.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(",");
            let labels: BTreeMap<String, String> = [
                ("alertname", ALERT_NAME.to_owned()),
                ("district", row.code.clone()),
                ("indicator", label),
                ("severity", severity.to_owned()),
                ("day", day.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let link = report_url.map(|base| {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}day={day}&area={}", row.code)
            });
            let mut annotations = BTreeMap::new();
            annotations.insert("summary".to_owned(), summary(row, &lagging, day));
            let mut description = description(row, &lagging, day, rule, districts);
            let _ = write!(description, "\n\n{}", table.markdown(Some(row.area)));
            if let Some(l) = &link {
                let _ = write!(description, "\nXem báo cáo: {l}\n");
                annotations.insert("link".to_owned(), l.clone());
            }
            annotations.insert("description".to_owned(), description);
            Some(SentAlert { day, district: row.code.clone(), indicators, labels, annotations, starts_at, ends_at })
        })
        .collect()
}

/// `Huyện Bù Gia Mập (691) chậm tiến độ “4 phủ” ngày 16/04/2024: CCCD, ĐDĐT mức 2`.
fn summary(row: &Row, lagging: &[usize], day: NaiveDate) -> String {
    let names: Vec<&str> = lagging.iter().map(|&i| INDICATORS[i].1).collect();
    format!("{} ({}) chậm tiến độ “4 phủ” ngày {}: {}", row.name, row.code, day.format("%d/%m/%Y"), names.join(", "))
}

/// The lines naming each lagging indicator with its figures, and the rank.
fn description(row: &Row, lagging: &[usize], day: NaiveDate, rule: &LagRule, districts: usize) -> String {
    let mut s = format!(
        "{} (mã {}) chậm so với kế hoạch ngày {} ở {} chỉ tiêu (chậm: đạt dưới {} số kế hoạch, hoặc chậm từ {} ngày trở lên).\n",
        row.name,
        row.code,
        day.format("%d/%m/%Y"),
        lagging.len(),
        share_percent(1.0 - rule.tolerance),
        rule.days_behind
    );
    for &i in lagging {
        let st: &Status = &row.statuses[i];
        let target = i64::try_from(st.target).unwrap_or(i64::MAX);
        let expected = i64::try_from(st.expected).unwrap_or(i64::MAX);
        let eta = st.eta.map_or_else(|| "chưa xác định".to_owned(), |d| d.format("%d/%m/%Y").to_string());
        let _ = writeln!(
            s,
            "- {}: đạt {}/{} ({}), kế hoạch đến hết ngày {} ({}), chậm {} ngày, tăng trong ngày {}, dự kiến đạt chỉ tiêu: {}.",
            INDICATORS[i].1,
            vi_int(st.covered),
            vi_int(target),
            percent(i128::from(st.covered), st.target),
            vi_int(expected),
            percent(i128::from(expected), st.target),
            st.days_behind,
            vi_int(i64::try_from(st.gained_today).unwrap_or(i64::MAX)),
            eta
        );
    }
    match row.rank {
        Some(k) => {
            let _ =
                write!(s, "Xếp hạng {k}/{districts} huyện, thị xã, thành phố trong tỉnh (theo bình quân tỷ lệ đạt).");
        }
        None => s.push_str("Chưa xếp hạng (không có chỉ tiêu được giao)."),
    }
    s
}

/// A share as a percentage with at most two decimals, the Vietnamese way: `95%`, `97,5%`.
fn share_percent(share: f64) -> String {
    let hundredths = (share * 10_000.0).round() as i64;
    let (whole, frac) = (hundredths / 100, hundredths % 100);
    match frac {
        0 => format!("{whole}%"),
        f if f % 10 == 0 => format!("{whole},{}%", f / 10),
        f => format!("{whole},{f:02}%"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use aggregator::{AreaLevel, GeographyVersion};
    use reports::fixtures::{d, rows, setup};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    const VN: Tz = chrono_tz::Asia::Ho_Chi_Minh;

    /// The campaign 10/4–30/4/2024 of the report's fixture.
    fn plan() -> Plan {
        setup().1
    }

    #[test]
    fn the_send_instant_is_local_time_and_dst_gaps_and_overlaps_resolve_forward_and_early() {
        // UTC+7 all year: 17:00 is 10:00 UTC, every day.
        assert_eq!(local_instant(d(4, 12), hm(17, 0), VN), utc("2024-04-12T10:00:00Z"));
        assert_eq!(local_instant(d(12, 31), hm(0, 0), VN), utc("2024-12-30T17:00:00Z"));
        let berlin = chrono_tz::Europe::Berlin;
        // 31/3/2024 02:00 → 03:00: 02:30 does not exist; the first instant after the gap is 03:00 CEST.
        let spring = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
        assert_eq!(local_instant(spring, hm(2, 30), berlin), utc("2024-03-31T01:00:00Z"));
        // 27/10/2024 03:00 → 02:00: 02:30 happens twice; the first is 02:30 CEST.
        let autumn = NaiveDate::from_ymd_opt(2024, 10, 27).unwrap();
        assert_eq!(local_instant(autumn, hm(2, 30), berlin), utc("2024-10-27T00:30:00Z"));
    }

    #[test]
    fn next_send_across_days_and_restarts() {
        let p = plan();
        let at17 = hm(17, 0);
        let next = |now: &str, done: Option<NaiveDate>| next_send(&p, VN, at17, utc(now), done);
        let n = |day: NaiveDate, at: &str, deadline: &str| Some(Next { day, at: utc(at), deadline: utc(deadline) });
        // 12/4 09:00 local: today at 17:00 (10:00 UTC); the day ends at 17:00 UTC.
        assert_eq!(next("2024-04-12T02:00:00Z", None), n(d(4, 12), "2024-04-12T10:00:00Z", "2024-04-12T17:00:00Z"));
        // Up at 16:59 local, nothing done yet: wait for 17:00.
        assert_eq!(next("2024-04-12T09:59:00Z", None), n(d(4, 12), "2024-04-12T10:00:00Z", "2024-04-12T17:00:00Z"));
        // Restarted at 17:01 (or at 17:00:30 after sending): today is due at once
        // (the ClickHouse record decides whether anything is left to send).
        let restarted = next("2024-04-12T10:01:00Z", None).unwrap();
        assert_eq!((restarted.day, restarted.at <= utc("2024-04-12T10:01:00Z")), (d(4, 12), true));
        // Still due at 23:59 local; at 00:00 local the next day has begun (UTC still says the 12th).
        assert_eq!(next("2024-04-12T16:59:59Z", None).unwrap().day, d(4, 12));
        assert_eq!(next("2024-04-12T17:00:00Z", None), n(d(4, 13), "2024-04-13T10:00:00Z", "2024-04-13T17:00:00Z"));
        // Once today is done: tomorrow, whatever the hour.
        assert_eq!(
            next("2024-04-12T10:00:05Z", Some(d(4, 12))),
            n(d(4, 13), "2024-04-13T10:00:00Z", "2024-04-13T17:00:00Z")
        );
        assert_eq!(next("2024-04-12T02:00:00Z", Some(d(4, 12))).unwrap().day, d(4, 13));
        // Before the campaign: its first day. After it, or its last day done: nothing.
        assert_eq!(next("2024-03-01T02:00:00Z", None), n(d(4, 10), "2024-04-10T10:00:00Z", "2024-04-10T17:00:00Z"));
        assert_eq!(next("2024-04-30T09:00:00Z", None).unwrap().day, d(4, 30));
        assert_eq!(next("2024-04-30T11:00:00Z", Some(d(4, 30))), None);
        assert_eq!(next("2024-05-01T02:00:00Z", None), None);
    }

    #[test]
    fn ends_at_is_a_day_after_the_send_instant_or_after_now_for_a_past_day() {
        let start = utc("2024-04-12T10:00:00Z");
        assert_eq!(ends_at(start, utc("2024-04-12T10:00:03Z")), utc("2024-04-13T10:00:00Z"));
        // Caught up at 23:00 local: still tomorrow 17:00.
        assert_eq!(ends_at(start, utc("2024-04-12T16:00:00Z")), utc("2024-04-13T10:00:00Z"));
        // A replay of 12/4/2024 run in 2026: active for 24 h from now.
        assert_eq!(ends_at(start, utc("2026-01-05T08:00:00Z")), utc("2026-01-06T08:00:00Z"));
    }

    #[test]
    fn retries_back_off_from_1s_to_5min() {
        let s: Vec<u64> = (1..=11).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn config_defaults_parse_and_validation() {
        let c = AlertsConfig::default();
        assert_eq!(
            (c.enabled, c.alertmanager_url.as_str(), c.send_at.0, c.rule, c.report_url.as_deref(), c.severity.as_str()),
            (false, "http://127.0.0.1:9093", hm(17, 0), None, None, "warning")
        );
        c.validate().unwrap();
        let c: AlertsConfig = toml::from_str(
            "enabled = true\nsend_at = \"07:30\"\nreport_url = \"https://ioc.example/d06?x=1\"\n[rule]\ntolerance = 0.1\n",
        )
        .unwrap();
        assert_eq!(c.send_at, LocalTime(hm(7, 30)));
        assert_eq!(c.rule, Some(LagRule { tolerance: 0.1, days_behind: 3 }));
        c.validate().unwrap();
        // The file's rule wins; without one, the pipeline's.
        let pipeline = LagRule { tolerance: 0.2, days_behind: 5 };
        assert_eq!(c.clone().with_default_rule(pipeline).rule, Some(LagRule { tolerance: 0.1, days_behind: 3 }));
        assert_eq!(AlertsConfig::default().with_default_rule(pipeline).rule, Some(pipeline));
        for bad in ["7:30", "24:00", "17:60", "17h00", "17:00:00", ""] {
            let err = toml::from_str::<AlertsConfig>(&format!("send_at = \"{bad}\"")).unwrap_err().to_string();
            assert!(err.contains("is not a local time"), "{bad}: {err}");
        }
        assert!(toml::from_str::<AlertsConfig>("sendat = \"17:00\"").unwrap_err().to_string().contains("sendat"));
        let https = AlertsConfig { alertmanager_url: "https://u:pw-secret@am:9093".into(), ..AlertsConfig::default() };
        let err = https.validate().unwrap_err().to_string();
        assert!(err.contains("without TLS") && err.contains("http://"), "{err}");
        assert!(!err.contains("pw-secret"), "{err}");
        let tcp = AlertsConfig { alertmanager_url: "am:9093".into(), ..AlertsConfig::default() };
        assert!(tcp.validate().unwrap_err().to_string().contains("must be an http:// URL"));
        let no_severity = AlertsConfig { severity: " ".into(), ..AlertsConfig::default() };
        assert!(no_severity.validate().is_err());
        assert_eq!(format!("{:?}", LocalTime(hm(7, 5))), "\"07:05\"");
    }

    #[test]
    fn shares_the_vietnamese_way() {
        assert_eq!(share_percent(0.95), "95%");
        assert_eq!(share_percent(0.975), "97,5%");
        assert_eq!(share_percent(0.9125), "91,25%");
        assert_eq!(share_percent(1.0), "100%");
    }

    /// The report's fixture on 16/4 (hand-checked in the `reports` crate's tests):
    /// district cccd target 10, expected 3; vneid target 2, expected 1.
    fn table_16_4() -> DailyTable {
        let (g, p) = setup();
        DailyTable::build(&g, &p, &rows(&g, &p), d(4, 16)).unwrap()
    }

    fn window() -> (DateTime<Utc>, DateTime<Utc>) {
        (utc("2024-04-16T10:00:00Z"), utc("2024-04-17T10:00:00Z"))
    }

    #[test]
    fn one_alert_per_lagging_district_with_sorted_indicators() {
        let t = table_16_4();
        let alerts = build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", None, &BTreeSet::new());
        let got: Vec<(&str, &str)> = alerts.iter().map(|a| (a.district.as_str(), a.indicator_label())).collect();
        // 688 (cccd 4 ≥ 3, vneid 1 ≥ 1), 690 (3, 1) and 692 (4, 1) are on plan.
        // 689: cccd 12, vneid 0 < 0.95. 691: cccd 2 < 2.85, vneid 0.
        // 693–698: nothing at all.
        let mut want = vec![("689", "vneid"), ("691", "cccd,vneid")];
        want.extend(["693", "694", "695", "696", "697", "698"].map(|c| (c, "cccd,vneid")));
        assert_eq!(got, want);
        let a = &alerts[1];
        assert_eq!(a.indicators, [Indicator::Cccd, Indicator::Vneid]);
        assert_eq!(
            a.labels,
            BTreeMap::from(
                [
                    ("alertname", "D06DailyDistrictLag"),
                    ("district", "691"),
                    ("indicator", "cccd,vneid"),
                    ("severity", "warning"),
                    ("day", "2024-04-16"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
            )
        );
        // A looser rule (34 %, 3 days): 691's cccd 2 ≥ 0.66 × 3 = 1.98 and 2 days behind is
        // on plan; its vneid 0 < 0.66 still lags, and so does everything of 693–698.
        let loose = LagRule { tolerance: 0.34, days_behind: 3 };
        let got: Vec<(String, String)> =
            build_alerts(&t, &loose, d(4, 16), window(), "warning", None, &BTreeSet::new())
                .iter()
                .map(|a| (a.district.clone(), a.indicator_label().to_owned()))
                .collect();
        assert_eq!(
            got[..3],
            [("689", "vneid"), ("691", "vneid"), ("693", "cccd,vneid")].map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(got.len(), 8);
        // A rule that only counts days (tolerance 1 ⇒ never short by ratio): 693–698 are 6 days
        // behind on cccd, 2 on vneid; 689 and 691 only 2 days: only the six, on cccd alone.
        let days_only = LagRule { tolerance: 1.0, days_behind: 3 };
        let got: Vec<(String, String)> =
            build_alerts(&t, &days_only, d(4, 16), window(), "warning", None, &BTreeSet::new())
                .iter()
                .map(|a| (a.district.clone(), a.indicator_label().to_owned()))
                .collect();
        assert_eq!(got, ["693", "694", "695", "696", "697", "698"].map(|c| (c.to_owned(), "cccd".to_owned())));
    }

    #[test]
    fn districts_already_recorded_are_not_alerted_again() {
        let t = table_16_4();
        let already: BTreeSet<String> = ["689", "693", "698"].map(str::to_owned).into();
        let alerts = build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", None, &already);
        let got: Vec<&str> = alerts.iter().map(|a| a.district.as_str()).collect();
        assert_eq!(got, ["691", "694", "695", "696", "697"]);
    }

    #[test]
    fn the_message_names_every_lagging_indicator_with_its_figures_and_the_rank() {
        let t = table_16_4();
        let alerts = build_alerts(
            &t,
            &LagRule::default(),
            d(4, 16),
            window(),
            "critical",
            Some("https://ioc.example/d06/daily"),
            &BTreeSet::new(),
        );
        let a = alerts.iter().find(|a| a.district == "691").unwrap();
        assert_eq!(a.labels["severity"], "critical");
        assert_eq!(
            a.annotations["summary"],
            "Huyện Bù Gia Mập (691) chậm tiến độ “4 phủ” ngày 16/04/2024: CCCD, ĐDĐT mức 2"
        );
        // cccd: 2 (gained 11/4) of 10, expected 3 on 16/4; expected ≤ 2 last on 14/4 → 2 days.
        // ETA: net gain over 10/4–16/4 is 2 → 8 more need ⌈8 × 7 / 2⌉ = 28 days → 14/5/2024.
        // vneid: 0 of 2, expected 1; expected 0 last on 14/4 → 2 days; no gain → no ETA.
        // Rank: average (0.2 + 0) / 2 = 0.1, fifth of eleven (the `reports` crate's tests).
        let description = &a.annotations["description"];
        let want = "\
Huyện Bù Gia Mập (mã 691) chậm so với kế hoạch ngày 16/04/2024 ở 2 chỉ tiêu (chậm: đạt dưới 95% số kế hoạch, hoặc chậm từ 3 ngày trở lên).
- CCCD: đạt 2/10 (20,00%), kế hoạch đến hết ngày 3 (30,00%), chậm 2 ngày, tăng trong ngày 0, dự kiến đạt chỉ tiêu: 14/05/2024.
- ĐDĐT mức 2: đạt 0/2 (0,00%), kế hoạch đến hết ngày 1 (50,00%), chậm 2 ngày, tăng trong ngày 0, dự kiến đạt chỉ tiêu: chưa xác định.
Xếp hạng 5/11 huyện, thị xã, thành phố trong tỉnh (theo bình quân tỷ lệ đạt).

# Tiến độ “4 phủ” ngày 16/04/2024 — Huyện Bù Gia Mập
";
        assert!(description.starts_with(want), "{description}");
        // The district's row of `d06 report daily --area 691`, then the link.
        let g = Geography::load(GeographyVersion::Pre2025).unwrap();
        let md = t.markdown(g.find(AreaLevel::District, "691"));
        assert!(
            md.contains("\n| 691 | Huyện Bù Gia Mập | 2/10 | 20,00% | 30,00% | 2 | 0 | 0/2 | 0,00% | 50,00% | 2 | 0 |"),
            "{md}"
        );
        assert!(description
            .ends_with(&format!("{md}\nXem báo cáo: https://ioc.example/d06/daily?day=2024-04-16&area=691\n")));
        assert_eq!(a.annotations["link"], "https://ioc.example/d06/daily?day=2024-04-16&area=691");

        // One indicator, a gain today, and a base URL that already has a query.
        let alerts = build_alerts(
            &t,
            &LagRule::default(),
            d(4, 16),
            window(),
            "warning",
            Some("http://x/r?k=1"),
            &BTreeSet::new(),
        );
        let a = alerts.iter().find(|a| a.district == "689").unwrap();
        assert_eq!(
            a.annotations["summary"],
            "Thành phố Đồng Xoài (689) chậm tiến độ “4 phủ” ngày 16/04/2024: ĐDĐT mức 2"
        );
        assert!(a.annotations["description"].starts_with(
            "Thành phố Đồng Xoài (mã 689) chậm so với kế hoạch ngày 16/04/2024 ở 1 chỉ tiêu (chậm: đạt dưới 95% số kế hoạch, hoặc chậm từ 3 ngày trở lên).\n\
             - ĐDĐT mức 2: đạt 0/2 (0,00%), kế hoạch đến hết ngày 1 (50,00%), chậm 2 ngày, tăng trong ngày 0, dự kiến đạt chỉ tiêu: chưa xác định.\n\
             Xếp hạng 1/11 huyện, thị xã, thành phố trong tỉnh (theo bình quân tỷ lệ đạt).\n\n"
        ));
        assert_eq!(a.annotations["link"], "http://x/r?k=1&day=2024-04-16&area=689");
        // Without report_url: no link anywhere.
        let plain = build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", None, &BTreeSet::new());
        assert!(plain
            .iter()
            .all(|a| !a.annotations.contains_key("link") && !a.annotations["description"].contains("Xem báo cáo")));
        assert!(plain[0].to_json().get("generatorURL").is_none());
    }

    #[test]
    fn the_posted_json_is_alertmanager_v2_with_deterministic_times() {
        let t = table_16_4();
        let alerts =
            build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", Some("http://r/"), &BTreeSet::new());
        let v = alerts[0].to_json();
        assert_eq!(v["startsAt"], "2024-04-16T10:00:00Z");
        assert_eq!(v["endsAt"], "2024-04-17T10:00:00Z");
        assert_eq!(v["labels"]["alertname"], "D06DailyDistrictLag");
        assert_eq!(v["labels"]["district"], "689");
        assert_eq!(v["generatorURL"], "http://r/?day=2024-04-16&area=689");
        assert_eq!(v["annotations"]["summary"], alerts[0].annotations["summary"]);
        // Built again (another instance, a retry): the very same alert.
        let again =
            build_alerts(&t, &LagRule::default(), d(4, 16), window(), "warning", Some("http://r/"), &BTreeSet::new());
        assert_eq!(again, alerts);
    }

    #[tokio::test]
    async fn nothing_is_sent_outside_the_campaign_and_no_service_is_contacted() {
        let (g, p) = setup();
        let job = DailyAlerts::new(
            AlertsConfig { alertmanager_url: "http://127.0.0.1:9".into(), enabled: true, ..AlertsConfig::default() },
            ClickHouseConfig { url: "http://127.0.0.1:9".into(), ..ClickHouseConfig::default() },
            Arc::new(p),
            Arc::new(g),
            VN,
            Clock::Wall,
        );
        // Port 9 refuses connections: any contact would be an error.
        assert_eq!(job.send_for_day(d(4, 9)).await.unwrap(), []);
        assert_eq!(job.send_for_day(NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()).await.unwrap(), []);
        // On a campaign day the unreachable ClickHouse is an error (retried by `run`).
        assert!(job.send_for_day(d(4, 16)).await.is_err());
    }

    #[tokio::test]
    async fn a_disabled_job_waits_for_shutdown() {
        let (g, p) = setup();
        let job = DailyAlerts::new(
            AlertsConfig::default(),
            ClickHouseConfig::default(),
            Arc::new(p),
            Arc::new(g),
            VN,
            Clock::Wall,
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(job.run(stop.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished());
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
    }
}
