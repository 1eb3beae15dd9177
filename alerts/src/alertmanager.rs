//! The Alertmanager edge: one post of the day's alerts to every replica at
//! once (as Prometheus does), over HTTP or HTTPS, with basic auth or a
//! bearer token. Built for each post, so that a rotated password or token
//! file is read again.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use secrecy::ExposeSecret;
use serde_json::Value;
use sinks::clickhouse::redact_url;
use sinks::tls::CaBundle;
use tracing::warn;

use crate::config::{AlertsConfig, Credentials};

/// The replicas and how to reach them.
#[derive(Debug)]
pub(crate) struct Alertmanagers {
    urls: Vec<String>,
    http: reqwest::Client,
    credentials: Credentials,
}

/// What one post achieved: at least one replica accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Posted {
    /// Replicas that accepted (2xx).
    pub accepted: usize,
    /// Replicas that were unreachable or refused, each with why.
    pub failed: Vec<String>,
}

impl Alertmanagers {
    /// The client for `[alerts]`: credentials read from their sources, the
    /// CA file loaded, each request limited to `timeout`.
    pub(crate) fn new(cfg: &AlertsConfig, timeout: Duration) -> Result<Alertmanagers> {
        let credentials = cfg.credentials().map_err(anyhow::Error::msg).context("alerts")?;
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(path) = &cfg.ca_file {
            let ca = CaBundle::load(path).map_err(anyhow::Error::msg).context("alerts")?;
            for pem in ca.certificates() {
                let der = pem.to_der().context("alerts: ca_file")?;
                builder =
                    builder.add_root_certificate(reqwest::Certificate::from_der(&der).context("alerts: ca_file")?);
            }
        }
        let http = builder.build().context("building the Alertmanager client")?;
        Ok(Alertmanagers { urls: cfg.alertmanager_url.0.clone(), http, credentials })
    }

    /// Posts `alerts` (an array) to `/api/v2/alerts` of every replica
    /// concurrently. Succeeds when at least one accepted; each replica that
    /// did not is a warning. Fails, naming each replica and why, when none did.
    pub(crate) async fn post(&self, alerts: &Value) -> Result<Posted> {
        let results = futures::future::join_all(self.urls.iter().map(|u| self.post_one(u, alerts))).await;
        let mut posted = Posted { accepted: 0, failed: Vec::new() };
        for (url, result) in self.urls.iter().zip(results) {
            match result {
                Ok(()) => posted.accepted += 1,
                Err(e) => {
                    let why = format!("{}: {e:#}", redact_url(url));
                    warn!(alertmanager = %redact_url(url), error = %format!("{e:#}"), "an Alertmanager did not take the daily alerts");
                    posted.failed.push(why);
                }
            }
        }
        if posted.accepted == 0 {
            bail!("no Alertmanager accepted the daily alerts: {}", posted.failed.join("; "));
        }
        Ok(posted)
    }

    async fn post_one(&self, base: &str, alerts: &Value) -> Result<()> {
        let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
        let mut request = self.http.post(&url).json(alerts);
        request = match &self.credentials {
            Credentials::None => request,
            Credentials::Basic { user, password } => request.basic_auth(user, Some(password.expose_secret())),
            Credentials::Bearer(token) => request.bearer_auth(token.expose_secret()),
        };
        let response =
            request.send().await.map_err(|e| anyhow::anyhow!("{}", sinks::tls::with_causes(&e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            let text: String = response.text().await.unwrap_or_default().chars().take(500).collect();
            bail!("refused: {status}: {}", text.trim());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::AlertmanagerUrls;

    #[tokio::test]
    async fn when_no_replica_takes_the_alerts_each_one_is_named() {
        // Port 9 (discard) refuses connections on loopback.
        let cfg = AlertsConfig {
            alertmanager_url: AlertmanagerUrls(vec!["http://127.0.0.1:9".into(), "http://u:pw@127.0.0.2:9/".into()]),
            ..AlertsConfig::default()
        };
        let am = Alertmanagers::new(&cfg, Duration::from_secs(5)).unwrap();
        let e = format!("{:#}", am.post(&Value::Array(Vec::new())).await.unwrap_err());
        assert!(e.starts_with("no Alertmanager accepted the daily alerts: http://127.0.0.1:9: "), "{e}");
        assert!(e.contains("; http://<redacted>@127.0.0.2:9/: ") && !e.contains("pw"), "{e}");
    }
}
