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
//!   "chưa xác định", the district's rank in the province (naming the
//!   indicators its average leaves out for an unknown baseline), then the
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
//! The alerts go to every Alertmanager listed in `alertmanager_url` (as
//! Prometheus does: the replicas deduplicate among themselves); the post
//! succeeds when at least one accepts, and each replica that did not is
//! logged. Any failure (no Alertmanager or ClickHouse reachable, the
//! pipeline not yet at the day) is retried with backoff (1 s doubling to 5 min) until the
//! day ends in local time; then the job gives up on that day with an
//! `error!` and goes on to the next one.

//!
//! # Map
//!
//! `config` ([`AlertsConfig`]), `alertmanager` (the post to every
//! replica, TLS and credentials), `job` ([`DailyAlerts`], the loop: send,
//! post, record, retry), `schedule` (which day is due when), `message` (the
//! alerts of a day: labels, texts, Alertmanager's JSON), `gauges` (the
//! due and success gauges over one job per province), `by_hand`
//! ([`send_day`], `d06 alerts send`).

mod alertmanager;
mod by_hand;
mod config;
mod gauges;
mod job;
mod message;
mod schedule;
#[cfg(test)]
mod tests;

pub use by_hand::send_day;
pub use config::{AlertmanagerUrls, AlertsConfig, Credentials, LocalTime};
pub use gauges::AlertGauges;
pub use job::{Clock, DailyAlerts};
pub use message::SentAlert;

/// The `alertname` of the daily alerts (routed by `deploy/alertmanager/`).
pub const ALERT_NAME: &str = "D06DailyDistrictLag";
