//! `[alerts]`: when and where the daily alerts go.

use std::fmt;
use std::path::PathBuf;

use aggregator::coverage::LagRule;
use anyhow::{bail, Result};
use chrono::NaiveTime;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sinks::clickhouse::redact_url;
use sinks::tls::{check_http_url, read_secret, CaBundle, Secret};

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

/// One Alertmanager URL or the list of its replicas' (`alertmanager_url`):
/// a string or an array of strings in the file. `Debug` and `Display`
/// hide credentials in the URLs.
#[derive(Clone, PartialEq, Eq)]
pub struct AlertmanagerUrls(pub Vec<String>);

impl fmt::Debug for AlertmanagerUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|u| redact_url(u))).finish()
    }
}

impl Serialize for AlertmanagerUrls {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for AlertmanagerUrls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(u) => AlertmanagerUrls(vec![u]),
            OneOrMany::Many(v) => AlertmanagerUrls(v),
        })
    }
}

impl fmt::Display for AlertmanagerUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.0.iter().map(|u| redact_url(u)).collect();
        f.write_str(&shown.join(", "))
    }
}

/// How d06 authenticates to Alertmanager ([`AlertsConfig::credentials`]).
#[derive(Clone, Debug)]
pub enum Credentials {
    /// No `Authorization` header.
    None,
    /// HTTP basic auth.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

/// `[alerts]`: the daily alert job.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Run the daily alert job inside `d06 run` (off by default).
    pub enabled: bool,
    /// Alertmanager's base URL, `http://` or `https://`, or a list of the
    /// base URLs of every replica (`["https://am1:9093", "https://am2:9093"]`):
    /// the alerts are posted to `{url}/api/v2/alerts` of each one, as
    /// Prometheus does. A day counts as sent when at least one accepts; a
    /// replica that is down or refuses is logged. Certificates are always
    /// verified (the system's roots and `ca_file`).
    pub alertmanager_url: AlertmanagerUrls,
    /// User name for HTTP basic auth (Alertmanager's `--web.config.file`
    /// `basic_auth_users`); its password comes from `password_env` or
    /// `password_file`.
    pub username: Option<String>,
    /// An environment variable holding the basic-auth password.
    pub password_env: Option<String>,
    /// A file holding the basic-auth password (one trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// An environment variable holding a bearer token (`Authorization:
    /// Bearer`, e.g. for a proxy in front of Alertmanager); not with basic auth.
    pub bearer_token_env: Option<String>,
    /// A file holding the bearer token (one trailing newline ignored).
    pub bearer_token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the Alertmanagers' certificates,
    /// trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
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
            alertmanager_url: AlertmanagerUrls(vec!["http://127.0.0.1:9093".into()]),
            username: None,
            password_env: None,
            password_file: None,
            bearer_token_env: None,
            bearer_token_file: None,
            ca_file: None,
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
        let urls = &self.alertmanager_url.0;
        if urls.is_empty() {
            bail!("alertmanager_url: no URL");
        }
        for (i, u) in urls.iter().enumerate() {
            check_http_url("alertmanager_url", u).map_err(anyhow::Error::msg)?;
            if urls[..i].contains(u) {
                bail!("alertmanager_url {:?} is listed twice", redact_url(u));
            }
        }
        self.credentials().map_err(anyhow::Error::msg)?;
        if let Some(ca) = &self.ca_file {
            CaBundle::load(ca).map_err(anyhow::Error::msg)?;
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

    /// The credentials for Alertmanager, read from their sources: basic
    /// auth (`username` and a password), a bearer token, or none.
    pub fn credentials(&self) -> Result<Credentials, String> {
        let password = read_secret("password", self.password_env.as_deref(), self.password_file.as_deref())?;
        let token = read_secret("bearer_token", self.bearer_token_env.as_deref(), self.bearer_token_file.as_deref())?;
        match (&self.username, password, token) {
            (_, Some(_), Some(_)) | (Some(_), _, Some(_)) => {
                Err("basic auth (username, password_*) and bearer_token_* are both set; keep one".into())
            }
            (Some(user), Some(password), None) => Ok(Credentials::Basic { user: user.clone(), password }),
            (Some(_), None, None) => Err("username is set without password_env or password_file".into()),
            (None, Some(_), None) => Err("a password is set without username".into()),
            (None, None, Some(token)) => Ok(Credentials::Bearer(token)),
            (None, None, None) => Ok(Credentials::None),
        }
    }

    /// This section with credentials in URLs replaced, for printing.
    /// Passwords and tokens are never in it (only where to read them).
    pub fn redacted(&self) -> AlertsConfig {
        AlertsConfig {
            alertmanager_url: AlertmanagerUrls(self.alertmanager_url.0.iter().map(|u| redact_url(u)).collect()),
            report_url: self.report_url.as_deref().map(redact_url),
            ..self.clone()
        }
    }

    /// This section with `rule` set to `fallback` (`[pipeline.lag_rule]`)
    /// when the file leaves it out.
    pub fn with_default_rule(mut self, fallback: LagRule) -> Self {
        self.rule.get_or_insert(fallback);
        self
    }
}
