//! The `alerts` table (migration 1): one row per daily district alert that
//! d06 posted to Alertmanager and Alertmanager accepted. The daily alert job
//! reads it before sending, so that a district is alerted at most once a day
//! across restarts and instances, and writes it after Alertmanager accepted.
//!
//! The table is a `ReplacingMergeTree` ordered by `(day, district,
//! indicator)`: two instances recording the same alert leave one logical
//! row, and reads use `FINAL`.

use std::collections::BTreeSet;

use ::clickhouse::Row;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{date_from_wire, date_to_wire, datetime_from_wire, datetime_to_wire, ClickHouseSink, SinkError};

/// One daily alert, as recorded in `alerts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRecord {
    /// The local day the alert is about.
    pub day: NaiveDate,
    /// GSO code of the district.
    pub district: String,
    /// The lagging indicators, comma-joined and sorted (the alert's `indicator` label).
    pub indicator: String,
    /// When Alertmanager accepted it (whole seconds are stored).
    pub sent_at: DateTime<Utc>,
    /// The alert as posted (JSON), for the record.
    pub body: String,
}

#[derive(Row, Serialize)]
struct AlertWire<'a> {
    day: u16,
    district: &'a str,
    indicator: &'a str,
    sent_at: u32,
    body: &'a str,
}

#[derive(Row, Deserialize)]
struct AlertRead {
    day: u16,
    district: String,
    indicator: String,
    sent_at: u32,
    body: String,
}

impl ClickHouseSink {
    /// The alerts recorded for `day` (`FINAL`: one row per district and
    /// indicator list), ordered by district, then indicator.
    pub async fn alert_records(&self, day: NaiveDate) -> Result<Vec<AlertRecord>, SinkError> {
        let q = self
            .client()
            .query("SELECT ?fields FROM alerts FINAL WHERE day = toDate(?) ORDER BY district, indicator")
            .bind(day.to_string());
        let rows = self.timed("read alerts", q.fetch_all::<AlertRead>()).await?;
        Ok(rows
            .into_iter()
            .map(|r| AlertRecord {
                day: date_from_wire(r.day),
                district: r.district,
                indicator: r.indicator,
                sent_at: datetime_from_wire(r.sent_at),
                body: r.body,
            })
            .collect())
    }

    /// The districts that have an alert recorded for `day`.
    pub async fn alerted_districts(&self, day: NaiveDate) -> Result<BTreeSet<String>, SinkError> {
        Ok(self.alert_records(day).await?.into_iter().map(|r| r.district).collect())
    }

    /// Records alerts in one `INSERT` (nothing when empty). Recording the
    /// same (day, district, indicator) again is harmless: one row remains.
    pub async fn record_alerts(&self, records: &[AlertRecord]) -> Result<(), SinkError> {
        let rows = records
            .iter()
            .map(|r| {
                Ok(AlertWire {
                    day: date_to_wire(r.day, "insert alerts")?,
                    district: &r.district,
                    indicator: &r.indicator,
                    sent_at: datetime_to_wire(r.sent_at, "insert alerts")?,
                    body: &r.body,
                })
            })
            .collect::<Result<Vec<_>, SinkError>>()?;
        self.insert_all::<AlertWire<'static>>("alerts", &rows).await?;
        tracing::debug!(rows = rows.len(), "recorded daily alerts in ClickHouse");
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Against a real server, like `sinks/tests/clickhouse.rs`:
    //! `D06_TEST_CLICKHOUSE_URL` (default `http://127.0.0.1:8123`), a fresh
    //! database; `D06_SKIP_SERVICES=1` skips.

    use super::*;
    use crate::clickhouse::ClickHouseConfig;

    fn url() -> String {
        std::env::var("D06_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned())
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn record(day: u32, district: &str, indicator: &str, sent_at: &str, body: &str) -> AlertRecord {
        AlertRecord {
            day: NaiveDate::from_ymd_opt(2024, 4, day).unwrap(),
            district: district.into(),
            indicator: indicator.into(),
            sent_at: at(sent_at),
            body: body.into(),
        }
    }

    #[tokio::test]
    async fn alerts_round_trip_and_a_second_record_of_the_same_alert_leaves_one_row() {
        if std::env::var("D06_SKIP_SERVICES").is_ok_and(|v| v == "1") {
            eprintln!("D06_SKIP_SERVICES=1: skipping a ClickHouse test");
            return;
        }
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let database = format!("d06_test_alerts_{}_{nanos:x}", std::process::id());
        let cfg = ClickHouseConfig { url: url(), database: database.clone(), ..ClickHouseConfig::default() };
        let sink = ClickHouseSink::connect(&cfg).await.unwrap_or_else(|e| {
            panic!("ClickHouse is not reachable at {} ({e}): `bash deploy/local/start.sh clickhouse`, or D06_SKIP_SERVICES=1", url())
        });
        sink.migrate().await.unwrap();

        let d12 = NaiveDate::from_ymd_opt(2024, 4, 12).unwrap();
        assert_eq!(sink.alert_records(d12).await.unwrap(), []);
        let first = [
            record(12, "691", "cccd,vneid", "2024-04-12T10:00:01Z", "{\"a\":\"ê “x”\"}"),
            record(12, "688", "cccd", "2024-04-12T10:00:01Z", "{}"),
            record(13, "688", "cccd", "2024-04-13T10:00:02Z", "{}"),
        ];
        sink.record_alerts(&first).await.unwrap();
        // A second instance records the same alert of 688 a second later.
        sink.record_alerts(&[record(12, "688", "cccd", "2024-04-12T10:00:02Z", "{}")]).await.unwrap();
        sink.record_alerts(&[]).await.unwrap();

        let got = sink.alert_records(d12).await.unwrap();
        let keys: Vec<(&str, &str)> = got.iter().map(|r| (r.district.as_str(), r.indicator.as_str())).collect();
        assert_eq!(keys, [("688", "cccd"), ("691", "cccd,vneid")], "one row per alert, FINAL: {got:?}");
        assert_eq!(got[1], first[0], "every column survives the round trip");
        assert_eq!(
            sink.alerted_districts(d12).await.unwrap().into_iter().collect::<Vec<_>>(),
            ["688".to_owned(), "691".to_owned()]
        );
        let d11 = NaiveDate::from_ymd_opt(2024, 4, 11).unwrap();
        assert!(sink.alerted_districts(d11).await.unwrap().is_empty());

        sink.execute("drop", &format!("DROP DATABASE IF EXISTS `{database}`")).await.unwrap();
    }

    #[tokio::test]
    async fn reading_alerts_from_an_unreachable_server_is_retryable() {
        let cfg = ClickHouseConfig { url: "http://127.0.0.1:9".into(), timeout_secs: 5, ..ClickHouseConfig::default() };
        let sink = ClickHouseSink::reader(&cfg).unwrap();
        let err = sink.alerted_districts(NaiveDate::from_ymd_opt(2024, 4, 12).unwrap()).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let err = sink.record_alerts(&[record(12, "688", "cccd", "2024-04-12T10:00:01Z", "{}")]).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
