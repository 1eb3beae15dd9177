//! The ClickHouse sink: schema migrations, idempotent batched writes, reads
//! of the public views.
//!
//! Every row written is an absolute value for its key (never an increment),
//! stamped by the caller with a `version` that only grows, into a
//! `ReplacingMergeTree(version)` table. Rewriting a row, replaying a flush
//! after a crash, or writing the same batch twice therefore leaves the same
//! logical content. The shard tables keep one row per shard
//! (SCALING.md 2); the views `coverage_daily` and `hotline_daily` sum them
//! and are the public names of OUTPUTS-v1.
//!
//! On a ClickHouse cluster (`[clickhouse] cluster`) the same statements and
//! names serve: [`cluster`] renders the schema into replicated and
//! `Distributed` tables, and `servers` fails over between `url` and `urls`.
//!
//! `config.rs` holds `[clickhouse]`, `rows.rs` the rows as d06 sees them
//! and `wire.rs` their RowBinary form; this file is the sink itself:
//! connect, migrate, write, read.
//!
//! The client always runs with `with_validation(false)` (plain `RowBinary`):
//! ClickHouse 18.16 cannot describe columns the way schema validation needs.
//! The integration tests in `sinks/tests/clickhouse.rs` check the row
//! structs against the real schema instead.

mod alerts;
mod client;
pub mod cluster;
mod config;
mod error;
pub mod migrations;
mod ownership;
mod recent;
mod reports;
mod rows;
mod servers;
mod transport;
mod wire;

use std::time::{Duration, Instant};

use ::clickhouse::{Client, RowWrite};
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;

pub use self::alerts::AlertRecord;
use self::config::valid_database_name;
pub use self::config::{redact_url, ClickHouseConfig, REDACTED};
pub use self::error::SinkError;
use self::migrations::{render, BOOTSTRAP, MIGRATIONS};
pub use self::ownership::{Figures, HotlineFigure, SEQUENCE_BITS};
use self::recent::RecentWire;
pub use self::recent::{CoverageRecentRow, RECENT_DAYS};
pub use self::rows::{
    AreaRow, BaselineRow, CoverageDailyRow, CoverageShardRow, DeadLetterRow, HotlineDailyRow, HotlineShardRow, PlanRow,
    WriteBatch,
};
use self::servers::Servers;
use self::wire::{
    date_from_wire, date_to_wire, datetime_from_wire, datetime_to_wire, AreaWire, BaselineWire, CoverageDailyRead,
    CoverageWire, DeadLetterRead, DeadLetterWire, HotlineDailyRead, HotlineWire, PlanWire,
};
use crate::prometheus::{Health, Metrics};

/// How d06 waits between attempts at a ClickHouse request that failed in a
/// retryable way ([`ClickHouseSink::write_with_retry`]; the binary's
/// connect and migrate, and its reads and claims of shard generations):
/// 50 ms doubling to 5 s, each wait stretched by a random factor in [1, 2)
/// so that instances that failed together do not retry together (50 ms to
/// 10 s in all); no limit on the attempts.
pub const RETRY: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(50))
    .with_max_delay(Duration::from_secs(5))
    .with_jitter()
    .without_max_times();

/// The checks both [`ClickHouseSink::connect`] and
/// [`ClickHouseSink::reader`] make before building a client.
fn check_config(cfg: &ClickHouseConfig) -> Result<(), SinkError> {
    if !valid_database_name(&cfg.database) {
        return Err(SinkError::permanent(
            "config",
            "connect",
            format!("database name {:?} must be letters, digits and _", cfg.database),
        ));
    }
    if cfg.timeout_secs == 0 {
        return Err(SinkError::permanent("config", "connect", "timeout_secs must be at least 1"));
    }
    Ok(())
}

/// One client per server of `cfg` (after [`check_config`]), without a
/// database. On a cluster, inserts into the `Distributed` tables are
/// synchronous: acknowledged only when the owning shard holds the rows, so
/// that offsets still move only after ClickHouse has the data.
fn servers(cfg: &ClickHouseConfig) -> Result<Servers, SinkError> {
    Servers::try_new(&cfg.servers(), |url| {
        let client = client::build(cfg, url)?;
        Ok(match cfg.cluster {
            Some(_) => client.with_setting("insert_distributed_sync", "1"),
            None => client,
        })
    })
}

/// Writes d06's rows to ClickHouse and reads the public views back.
#[derive(Debug, Clone)]
pub struct ClickHouseSink {
    servers: Servers,
    /// Whether requests name the database (all but the first `CREATE DATABASE`).
    in_database: bool,
    database: String,
    cluster: Option<String>,
    timeout: Duration,
}

impl ClickHouseSink {
    /// Connects, and creates the database if it is missing.
    ///
    /// Fails with [`SinkError::Retryable`] when the server cannot be reached
    /// and [`SinkError::Permanent`] for a bad configuration or credentials.
    ///
    /// Tries the servers in order (`url`, then `urls`) and keeps the first
    /// that answers. On a cluster the database is created `ON CLUSTER`, and
    /// only when this server does not have it yet, so that d06 starts while
    /// another server is down once the schema exists.
    pub async fn connect(cfg: &ClickHouseConfig) -> Result<Self, SinkError> {
        check_config(cfg)?;
        let admin = ClickHouseSink {
            servers: servers(cfg)?,
            in_database: false,
            database: cfg.database.clone(),
            cluster: cfg.cluster.clone(),
            timeout: Duration::from_secs(cfg.timeout_secs),
        };
        let mut failure = None;
        for index in 0..admin.servers.len() {
            admin.servers.select(index);
            match admin.create_database().await {
                Ok(()) => {
                    failure = None;
                    break;
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(url = admin.servers.shown(index), error = %e, "ClickHouse server not usable");
                    failure = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let index = admin.servers.current();
        tracing::info!(url = admin.servers.shown(index), database = %cfg.database, cluster = ?cfg.cluster, "connected to ClickHouse");
        Ok(ClickHouseSink { in_database: true, ..admin })
    }

    /// `CREATE DATABASE IF NOT EXISTS`, on the cluster when there is one.
    async fn create_database(&self) -> Result<(), SinkError> {
        let Some(cluster) = &self.cluster else {
            return self
                .execute("create database", &format!("CREATE DATABASE IF NOT EXISTS `{}`", self.database))
                .await;
        };
        let q = self.client().query("SELECT count() FROM system.databases WHERE name = ?").bind(&self.database);
        if self.timed("read databases", q.fetch_one::<u64>()).await? > 0 {
            return Ok(());
        }
        self.execute(
            "create database",
            &format!("CREATE DATABASE IF NOT EXISTS `{}` ON CLUSTER `{cluster}`", self.database),
        )
        .await
    }

    /// The client of the current server (see `servers`), in the database
    /// once connected.
    fn client(&self) -> Client {
        let client = self.servers.client().clone();
        if self.in_database {
            client.with_database(&self.database)
        } else {
            client
        }
    }

    /// The database this sink writes to.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// How many times this sink (and its clones) moved to another URL
    /// after a failure. A writer that sees it change rewrites everything it
    /// wrote before: rows acknowledged by the server it left may not have
    /// reached its replicas yet (replication is asynchronous), and that
    /// server may never come back.
    pub fn failovers(&self) -> u64 {
        self.servers.failovers()
    }

    /// Applies the migrations not yet recorded in `schema_migrations`.
    ///
    /// Safe to run at every start-up and from several instances at once:
    /// every statement is idempotent (`IF NOT EXISTS`), so an instance that
    /// loses a race re-runs statements that then do nothing, and the version
    /// recorded twice collapses to one row (`ReplacingMergeTree`).
    ///
    /// On a cluster every statement runs `ON CLUSTER` in its cluster form
    /// ([`cluster::render_on_cluster`]); the distributed DDL queue applies
    /// the statements of concurrent instances one after the other on every
    /// server, where the later ones find the objects there. Nothing is sent
    /// when this server already records every migration, so a restart does
    /// not wait for a server that is down.
    pub async fn migrate(&self) -> Result<(), SinkError> {
        if self.cluster.is_none() || !self.has_table("schema_migrations").await? {
            self.run_statement("migrate", BOOTSTRAP).await?;
        }
        let applied = self.applied_migrations().await?;
        for m in MIGRATIONS {
            if applied.contains(&m.version) {
                continue;
            }
            for statement in m.statements {
                self.run_statement(&format!("migration {}", m.version), statement).await?;
            }
            let op = format!("record migration {}", m.version);
            let record = self
                .client()
                .query("INSERT INTO schema_migrations (version, name, applied_at) SELECT ?, ?, now()")
                .bind(m.version)
                .bind(m.name);
            self.timed(&op, record.execute()).await?;
            tracing::info!(version = m.version, name = m.name, database = %self.database, "applied ClickHouse migration");
        }
        Ok(())
    }

    /// Runs one migration statement (with `{db}`), in its cluster form on a cluster.
    async fn run_statement(&self, op: &str, statement: &str) -> Result<(), SinkError> {
        let Some(cluster) = &self.cluster else {
            return self.execute(op, &render(statement, &self.database)).await;
        };
        let rendered = cluster::render_on_cluster(statement, &self.database, cluster)
            .map_err(|m| SinkError::permanent("bad_query", op, m))?;
        for sql in rendered {
            self.execute(op, &sql).await?;
        }
        Ok(())
    }

    /// Whether the current server has `table` in the database.
    async fn has_table(&self, table: &str) -> Result<bool, SinkError> {
        let q = self
            .client()
            .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
            .bind(&self.database)
            .bind(table);
        Ok(self.timed("read tables", q.fetch_one::<u64>()).await? > 0)
    }

    /// Versions recorded in `schema_migrations`, ascending.
    pub async fn applied_migrations(&self) -> Result<Vec<u32>, SinkError> {
        let q = self.client().query("SELECT DISTINCT version FROM schema_migrations ORDER BY version");
        self.timed("read schema_migrations", q.fetch_all::<u32>()).await
    }

    /// Writes all rows of a batch, each non-empty table as one `INSERT`
    /// (they run concurrently). On error some tables may have been
    /// written and others not; writing the batch again is harmless.
    pub async fn write(&self, batch: &WriteBatch) -> Result<(), SinkError> {
        let coverage = batch.coverage.iter().map(CoverageWire::of).collect::<Result<Vec<_>, _>>()?;
        let recent = batch.recent.iter().map(RecentWire::of).collect::<Result<Vec<_>, _>>()?;
        let plan = batch.plan.iter().map(PlanWire::of).collect::<Result<Vec<_>, _>>()?;
        let baselines = batch.baselines.iter().map(BaselineWire::of).collect::<Result<Vec<_>, _>>()?;
        let areas = batch.areas.iter().map(AreaWire::of).collect::<Result<Vec<_>, _>>()?;
        let hotline = batch.hotline.iter().map(HotlineWire::of).collect::<Result<Vec<_>, _>>()?;
        let dead_letters = batch.dead_letters.iter().map(DeadLetterWire::of).collect::<Result<Vec<_>, _>>()?;
        tokio::try_join!(
            self.insert_all::<CoverageWire<'static>>("coverage_shard_daily", &coverage),
            self.insert_all::<RecentWire<'static>>("coverage_shard_recent", &recent),
            self.insert_all::<PlanWire<'static>>("plan_daily", &plan),
            self.insert_all::<BaselineWire<'static>>("coverage_baseline", &baselines),
            self.insert_all::<AreaWire<'static>>("areas", &areas),
            self.insert_all::<HotlineWire<'static>>("hotline_shard_daily", &hotline),
            self.insert_all::<DeadLetterWire<'static>>("dead_letters", &dead_letters),
        )?;
        tracing::debug!(
            coverage = coverage.len(),
            recent = recent.len(),
            plan = plan.len(),
            baselines = baselines.len(),
            areas = areas.len(),
            hotline = hotline.len(),
            dead_letters = dead_letters.len(),
            "wrote batch to ClickHouse"
        );
        Ok(())
    }

    /// [`write`](Self::write), retrying retryable failures after the waits
    /// of [`RETRY`] until it succeeds or `shutdown` is cancelled; a
    /// permanent failure returns at once.
    ///
    /// Always makes at least one attempt, even when `shutdown` is already
    /// cancelled (so a final flush at shutdown works), and lets an attempt in
    /// flight finish (bounded by `timeout_secs`). When stopped by `shutdown`
    /// it returns the last (retryable) error. Each attempt is recorded in
    /// `metrics` under `sink="clickhouse"`.
    pub async fn write_with_retry(
        &self,
        batch: &WriteBatch,
        shutdown: &CancellationToken,
        metrics: Option<&Metrics>,
        health: Option<&Health>,
    ) -> Result<(), SinkError> {
        let mut waits = RETRY.build();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let started = Instant::now();
            let result = self.write(batch).await;
            if let Some(m) = metrics {
                m.observe_sink_write("clickhouse", started.elapsed(), result.as_ref().err().map(SinkError::kind));
            }
            if let Some(h) = health {
                h.set_sink_failing(result.is_err());
            }
            match result {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!(
                            attempts = attempt,
                            rows = batch.len(),
                            "ClickHouse write succeeded after retrying"
                        );
                    }
                    return Ok(());
                }
                Err(e) if !e.is_retryable() => {
                    tracing::error!(attempts = attempt, error = %e, "ClickHouse write failed permanently");
                    return Err(e);
                }
                Err(e) => {
                    // RETRY has no limit on attempts: `next` is never None.
                    let wait = waits.next().unwrap_or(Duration::from_secs(10));
                    tracing::warn!(
                        attempts = attempt,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error = %e,
                        "ClickHouse write failed, will retry"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return Err(e),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Rows of `coverage_daily` with `day_from <= day <= day_to`, ordered by
    /// indicator, area level, area, day.
    pub async fn coverage_rows(
        &self,
        day_from: NaiveDate,
        day_to: NaiveDate,
    ) -> Result<Vec<CoverageDailyRow>, SinkError> {
        let q = self
            .client()
            .query(
                "SELECT ?fields FROM coverage_daily WHERE day >= toDate(?) AND day <= toDate(?) \
                 ORDER BY indicator, area_level, area, day",
            )
            .bind(day_from.to_string())
            .bind(day_to.to_string());
        let rows = self.timed("read coverage_daily", q.fetch_all::<CoverageDailyRead>()).await?;
        Ok(rows.into_iter().map(CoverageDailyRow::from).collect())
    }

    /// Rows of `hotline_daily` with `day_from <= day <= day_to`, ordered by
    /// area level, area, day.
    pub async fn hotline_rows(
        &self,
        day_from: NaiveDate,
        day_to: NaiveDate,
    ) -> Result<Vec<HotlineDailyRow>, SinkError> {
        let q = self
            .client()
            .query(
                "SELECT ?fields FROM hotline_daily WHERE day >= toDate(?) AND day <= toDate(?) \
                 ORDER BY area_level, area, day",
            )
            .bind(day_from.to_string())
            .bind(day_to.to_string());
        let rows = self.timed("read hotline_daily", q.fetch_all::<HotlineDailyRead>()).await?;
        Ok(rows.into_iter().map(HotlineDailyRow::from).collect())
    }

    /// Up to `limit` rows of `dead_letters` (`FINAL`: one per message),
    /// ordered by topic, partition, offset.
    pub async fn dead_letter_rows(&self, limit: u64) -> Result<Vec<DeadLetterRow>, SinkError> {
        let q = self
            .client()
            .query("SELECT ?fields FROM dead_letters FINAL ORDER BY topic, `partition`, `offset` LIMIT ?")
            .bind(limit);
        let rows = self.timed("read dead_letters", q.fetch_all::<DeadLetterRead>()).await?;
        Ok(rows.into_iter().map(DeadLetterRow::from).collect())
    }

    /// The highest `version` in the versioned tables (0 when empty), so that
    /// a restarted writer never stamps a lower one even if the clock went back.
    pub async fn max_version(&self) -> Result<u64, SinkError> {
        let q = self.client().query(
            "SELECT greatest(\
               (SELECT max(version) FROM coverage_shard_daily), \
               greatest((SELECT max(version) FROM plan_daily), (SELECT max(version) FROM hotline_shard_daily)))",
        );
        self.timed("read max version", q.fetch_one::<u64>()).await
    }

    /// Runs one statement without result rows (sent verbatim: no `?` binding).
    async fn execute(&self, op: &str, sql: &str) -> Result<(), SinkError> {
        self.timed(op, self.client().query_raw(sql).execute()).await
    }

    /// One `INSERT` of all `rows` into `table` (nothing when empty).
    async fn insert_all<T: RowWrite>(&self, table: &'static str, rows: &[T::Value<'_>]) -> Result<(), SinkError> {
        if rows.is_empty() {
            return Ok(());
        }
        let op = format!("insert {table}");
        let work = async {
            let sent = async {
                let mut insert = self.client().insert::<T>(table).await?;
                for row in rows {
                    insert.write(row).await?;
                }
                insert.end().await
            };
            match sent.await {
                // Cut without a cause ("channel closed", "connection was
                // not ready"): find out why by asking again.
                Err(cut) => Err(transport::explain_cut(cut, &self.client()).await),
                ok => ok,
            }
        };
        self.timed(&op, work).await
    }

    /// Awaits `fut` within the configured timeout, classifying its error;
    /// a retryable one moves the sink on to the next server (`urls`).
    async fn timed<T>(
        &self,
        op: &str,
        fut: impl std::future::Future<Output = Result<T, ::clickhouse::error::Error>>,
    ) -> Result<T, SinkError> {
        let server = self.servers.current();
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(SinkError::timeout(op, self.timeout)),
            Ok(Err(e)) => Err(SinkError::from_client(op, e)),
            Ok(Ok(v)) => Ok(v),
        };
        if result.as_ref().is_err_and(SinkError::is_retryable) {
            self.servers.fail_over(server);
        }
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_50ms_doubling_to_5s_each_stretched_by_up_to_2x() {
        // backon computes in f32 seconds: allow a millisecond either way.
        let base_ms = [50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 5000.0, 5000.0, 5000.0];
        let mut stretched = false;
        for _ in 0..100 {
            let waits: Vec<f64> = RETRY.build().take(200).map(|w| w.as_secs_f64() * 1e3).collect();
            assert_eq!(waits.len(), 200, "no limit on attempts");
            for (i, w) in waits.iter().enumerate() {
                let base = base_ms[i.min(base_ms.len() - 1)];
                assert!(*w >= base - 1.0 && *w < 2.0 * base + 1.0, "wait {i}: {w} ms, base {base} ms");
                stretched |= *w > base * 1.05;
            }
        }
        assert!(stretched, "the waits are jittered");
    }

    #[tokio::test]
    async fn connect_rejects_bad_config_without_network() {
        let cfg = ClickHouseConfig { database: "bad name".into(), ..ClickHouseConfig::default() };
        let err = ClickHouseSink::connect(&cfg).await.unwrap_err();
        assert_eq!(err.kind(), "config");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn unreachable_server_is_retryable() {
        // Port 9 (discard) on loopback: nothing listens there, connection refused.
        let cfg = ClickHouseConfig { url: "http://127.0.0.1:9".into(), timeout_secs: 5, ..ClickHouseConfig::default() };
        let err = ClickHouseSink::connect(&cfg).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.kind(), "connection_refused");
    }
}

/// A write whose server is gone names the cause (connection refused, reset,
/// closed), never the client's bare `network error: channel closed`.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod transport_tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn sink(port: u16) -> ClickHouseSink {
        let cfg = ClickHouseConfig {
            url: format!("http://127.0.0.1:{port}"),
            timeout_secs: 10,
            ..ClickHouseConfig::default()
        };
        ClickHouseSink {
            servers: servers(&cfg).unwrap(),
            in_database: true,
            database: cfg.database.clone(),
            cluster: None,
            timeout: Duration::from_secs(cfg.timeout_secs),
        }
    }

    /// `rows` dead letters: the body of one `INSERT`, in several chunks when large.
    fn batch(rows: u64) -> WriteBatch {
        let received_at = chrono::DateTime::from_timestamp(1_712_700_000, 0).unwrap();
        let dead_letters = (0..rows)
            .map(|offset| DeadLetterRow {
                received_at,
                topic: "d06.cccd.v1".into(),
                partition: 0,
                offset,
                reason: "bad_json".into(),
                detail: "x".repeat(200),
            })
            .collect();
        WriteBatch { dead_letters, ..WriteBatch::default() }
    }

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    /// Serves every connection with `serve`.
    async fn listener<F, Fut>(serve: F) -> u16
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(serve(s));
            }
        });
        port
    }

    /// Reads what the client sends until it pauses for 200 ms.
    async fn drain(s: &mut tokio::net::TcpStream) {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            if n == 0 {
                break;
            }
        }
    }

    fn check(err: &SinkError, kind: &str, says: &str) {
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.kind(), kind, "{err}");
        let text = err.to_string();
        assert!(text.contains(says), "{text}");
        assert!(!text.ends_with("network error: channel closed"), "the cause is named: {text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_port_is_connection_refused() {
        let sink = sink(closed_port());
        // Small and large bodies (the large one is sent in chunks while
        // the request's task has already failed: "channel closed").
        for rows in [1, 20_000, 20_000] {
            let err = sink.write(&batch(rows)).await.unwrap_err();
            check(&err, "connection_refused", "Connection refused");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_resetting_the_connection_is_connection_reset() {
        let port = listener(|s| async move {
            s.set_zero_linger().unwrap();
            drop(s); // RST
        })
        .await;
        let sink = sink(port);
        for rows in [1, 20_000] {
            let err = sink.write(&batch(rows)).await.unwrap_err();
            check(&err, "connection_reset", "reset");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_closing_the_connection_is_connection_closed() {
        let port = listener(|mut s| async move {
            drain(&mut s).await;
            let _ = s.shutdown().await; // FIN, nothing answered
        })
        .await;
        let err = sink(port).write(&batch(1)).await.unwrap_err();
        check(&err, "connection_closed", "connection closed before message completed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_server_is_a_timeout() {
        let port = listener(|mut s| async move {
            drain(&mut s).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        let mut sink = sink(port);
        sink.timeout = Duration::from_secs(1);
        let err = sink.write(&batch(1)).await.unwrap_err();
        check(&err, "timeout", "no answer within 1 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_request_is_explained_by_asking_again() {
        use ::clickhouse::error::Error as E;
        let cut = || E::Network("channel closed".into());
        assert!(transport::is_cut(&cut()));
        assert!(!transport::is_cut(&E::Network("connection refused".into())));
        // The server is gone: the probe is refused too, and says so.
        let gone = sink(closed_port());
        let err = SinkError::from_client("insert t", transport::explain_cut(cut(), &gone.client()).await);
        check(&err, "connection_refused", "ended before its body was sent");
        assert!(err.to_string().contains("Connection refused"), "{err}");
        // The server answers now: the connection was cut on the way.
        let port = listener(|mut s| async move {
            drain(&mut s).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        })
        .await;
        let err = SinkError::from_client("insert t", transport::explain_cut(cut(), &sink(port).client()).await);
        check(&err, "connection_closed", "asked again, the server answers");
        // The server refuses the request itself: that refusal, classified as any.
        let port = listener(|mut s| async move {
            drain(&mut s).await;
            let body = "Code: 516. DB::Exception: d06: Authentication failed";
            let head = format!("HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(format!("{head}{body}").as_bytes()).await;
        })
        .await;
        let err = SinkError::from_client("insert t", transport::explain_cut(cut(), &sink(port).client()).await);
        assert!(!err.is_retryable(), "{err}");
        assert_eq!(err.kind(), "auth", "{err}");
    }
}
