//! Read-only access for `d06 report`: connect without any DDL, so that a
//! reporting user with `readonly = 1` (no `CREATE DATABASE`, no migrations)
//! can read the public views with [`ClickHouseSink::coverage_rows`] and
//! [`ClickHouseSink::hotline_rows`].

use std::time::Duration;

use super::{check_config, redact_url, servers, ClickHouseConfig, ClickHouseSink, SinkError};

impl ClickHouseSink {
    /// A sink for reading only: checks the configuration and the database
    /// name, sends nothing to the server (no `CREATE DATABASE`, unlike
    /// [`ClickHouseSink::connect`]). A missing database or view shows up as
    /// a permanent error on the first read.
    pub fn reader(cfg: &ClickHouseConfig) -> Result<Self, SinkError> {
        check_config(cfg)?;
        tracing::debug!(url = %redact_url(&cfg.url), database = %cfg.database, "ClickHouse reader");
        Ok(ClickHouseSink {
            servers: servers(cfg)?,
            in_database: true,
            database: cfg.database.clone(),
            cluster: cfg.cluster.clone(),
            timeout: Duration::from_secs(cfg.timeout_secs),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reader_checks_the_config_without_network() {
        let bad = ClickHouseConfig { database: "d06`; DROP".into(), ..ClickHouseConfig::default() };
        assert_eq!(ClickHouseSink::reader(&bad).unwrap_err().kind(), "config");
        let zero = ClickHouseConfig { timeout_secs: 0, ..ClickHouseConfig::default() };
        assert_eq!(ClickHouseSink::reader(&zero).unwrap_err().kind(), "config");
        let ok = ClickHouseConfig { database: "reports_db".into(), ..ClickHouseConfig::default() };
        assert_eq!(ClickHouseSink::reader(&ok).unwrap().database(), "reports_db");
    }

    #[tokio::test]
    async fn reading_from_an_unreachable_server_is_retryable() {
        let cfg = ClickHouseConfig { url: "http://127.0.0.1:9".into(), timeout_secs: 5, ..ClickHouseConfig::default() };
        let sink = ClickHouseSink::reader(&cfg).unwrap();
        let d = chrono::NaiveDate::from_ymd_opt(2024, 4, 20).unwrap();
        let err = sink.hotline_rows(d, d).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
