//! `[alerts]`: when and where the daily alerts go.

use std::fmt;

use aggregator::coverage::LagRule;
use anyhow::{bail, Result};
use chrono::NaiveTime;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
