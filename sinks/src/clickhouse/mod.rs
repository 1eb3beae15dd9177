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
//! The client always runs with `with_validation(false)` (plain `RowBinary`):
//! ClickHouse 18.16 cannot describe columns the way schema validation needs.
//! The integration tests in `sinks/tests/clickhouse.rs` check the row
//! structs against the real schema instead.

mod alerts;
mod client;
pub mod cluster;
mod error;
pub mod migrations;
mod ownership;
mod recent;
mod reports;
mod servers;
mod transport;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ::clickhouse::{Client, Row, RowWrite};
use aggregator::{AreaLevel, Indicator};
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use self::alerts::AlertRecord;
pub use self::error::SinkError;
use self::migrations::{render, BOOTSTRAP, MIGRATIONS};
pub use self::ownership::{Figures, HotlineFigure, SEQUENCE_BITS};
use self::recent::RecentWire;
pub use self::recent::{CoverageRecentRow, RECENT_DAYS};
use self::servers::Servers;
use crate::prometheus::{Health, Metrics};
use crate::tls::{read_secret, CaBundle, Secret};

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

/// How to reach ClickHouse (`[clickhouse]` in the config file).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP interface URL, `http://` or `https://`, e.g.
    /// `https://ch.example:8443` (ClickHouse's `https_port`): the server d06
    /// talks to first. The server's certificate is always verified, against
    /// the system's roots and `ca_file`.
    pub url: String,
    /// Further HTTP URLs serving the same data (the other replicas, or other
    /// servers of `cluster`), tried in this order after `url`: a request that
    /// fails in a retryable way (server down, timeout) moves d06 on to the
    /// next one, and the retry goes there. Empty (the default): `url` only.
    pub urls: Vec<String>,
    /// The ClickHouse cluster (a name in the servers' `remote_servers`) that
    /// holds d06's tables. Set: migrations run `ON CLUSTER`, the shard tables
    /// and `dead_letters` are `ReplicatedReplacingMergeTree` per shard read
    /// through `Distributed` tables, the small tables are replicated to every
    /// server (docs/OPERATIONS.md, ClickHouse). Unset (the default): one
    /// server, plain `ReplacingMergeTree` tables. Letters, digits and `_`.
    pub cluster: Option<String>,
    /// Database holding d06's tables and views; created if missing.
    /// Letters, digits and `_` only, not starting with a digit.
    pub database: String,
    /// User name; ClickHouse's `default` user when absent.
    pub user: Option<String>,
    /// Password written in the file; never logged nor printed (`Debug`
    /// redacts it). Prefer `password_env` or `password_file`; at most one
    /// of the three may be set.
    pub password: Option<String>,
    /// An environment variable holding the password, so that secrets stay
    /// out of the config file.
    pub password_env: Option<String>,
    /// A file holding the password (one trailing newline ignored), e.g. a
    /// systemd credential or a mounted secret.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA (one or more certificates) that signed the
    /// server's certificate, trusted besides the system's roots: for an
    /// `https://` URL served with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Limit in seconds for any one request (a DDL statement, an `INSERT`
    /// of one table, a query); an overrun counts as a retryable failure.
    pub timeout_secs: u64,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".to_owned(),
            urls: Vec::new(),
            cluster: None,
            database: "d06".to_owned(),
            user: None,
            password: None,
            password_env: None,
            password_file: None,
            ca_file: None,
            timeout_secs: 30,
        }
    }
}

impl fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &redact_url(&self.url))
            .field("urls", &self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
            .field("cluster", &self.cluster)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// What [`ClickHouseConfig::redacted`] puts in place of a secret.
pub const REDACTED: &str = "[redacted]";

impl ClickHouseConfig {
    /// Checks the scheme of `url` and of every one of `urls` (`http://` or
    /// `https://`). The message names the problem and never quotes
    /// credentials embedded in a URL.
    pub fn check_url(&self) -> Result<(), String> {
        crate::tls::check_http_url("url", &self.url)?;
        self.urls.iter().try_for_each(|u| crate::tls::check_http_url("urls", u))
    }

    /// Checks `cluster`: when set, a name that needs no escaping anywhere
    /// (letters, digits and `_`, not starting with a digit).
    pub fn check_cluster(&self) -> Result<(), String> {
        match &self.cluster {
            Some(name) if !valid_database_name(name) => {
                Err(format!("cluster {name:?} must be letters, digits and _, not starting with a digit"))
            }
            _ => Ok(()),
        }
    }

    /// Checks what needs no network: the URLs' schemes (`http://` or
    /// `https://`), the cluster name, that at most one password source is
    /// set and it can be read, and that `ca_file` holds certificates.
    /// Messages never quote a password or credentials embedded in a URL.
    pub fn check(&self) -> Result<(), String> {
        self.check_url()?;
        self.check_cluster()?;
        self.password()?;
        if let Some(ca) = &self.ca_file {
            CaBundle::load(ca)?;
        }
        Ok(())
    }

    /// `url` followed by `urls`: every server, in the order d06 tries them.
    pub fn servers(&self) -> Vec<String> {
        std::iter::once(&self.url).chain(&self.urls).cloned().collect()
    }

    /// This section with its secrets replaced by [`REDACTED`]: the password
    /// and any `user:password@` in the URL. For printing the configuration.
    pub fn redacted(&self) -> ClickHouseConfig {
        ClickHouseConfig {
            url: redact_url(&self.url),
            urls: self.urls.iter().map(|u| redact_url(u)).collect(),
            password: self.password.as_ref().map(|_| REDACTED.to_owned()),
            ..self.clone()
        }
    }

    /// The password from its one source (`password`, `password_env` or
    /// `password_file`), or none.
    pub fn password(&self) -> Result<Option<Secret>, String> {
        match (&self.password, self.password_env.is_some() || self.password_file.is_some()) {
            (Some(_), true) => Err("password is set inline and in password_env or password_file; keep one".into()),
            (Some(p), false) => Ok(Some(Secret::new(p.clone()))),
            (None, _) => read_secret("password", self.password_env.as_deref(), self.password_file.as_deref()),
        }
    }
}

/// The URL with any `user:password@` replaced, for logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}<redacted>@{}", &url[..scheme_end], &url[scheme_end + at + 1..]),
        None => url.to_owned(),
    }
}

/// One shard's coverage counts for one (day, indicator, area).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoverageShardRow {
    /// Local day.
    pub day: NaiveDate,
    /// The indicator.
    pub indicator: Indicator,
    /// Level of `area`.
    pub area_level: AreaLevel,
    /// GSO code of the area.
    pub area: String,
    /// The shard these counts belong to.
    pub shard: u32,
    /// Subjects of this shard first counted on this day.
    pub gained: u64,
    /// Subjects of this shard removed on this day.
    pub lost: u64,
    /// Cumulative `gained - lost` of this shard through this day. Stored for
    /// checks and debugging; the views derive `covered` from the per-day
    /// counts, so a shard need not write a row for a day without changes.
    pub net: i64,
    /// `ReplacingMergeTree` version: the highest one of a key wins.
    pub version: u64,
}

/// The campaign plan for one (day, indicator, area); the rows of
/// `coverage_daily` are the rows of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRow {
    /// Local day.
    pub day: NaiveDate,
    /// The indicator.
    pub indicator: Indicator,
    /// Level of `area`.
    pub area_level: AreaLevel,
    /// GSO code of the area.
    pub area: String,
    /// Covered before the first counted event.
    pub baseline: u64,
    /// Target in force on this day.
    pub target: u64,
    /// What the plan expects covered to be by the end of this day.
    pub expected: u64,
    /// `ReplacingMergeTree` version.
    pub version: u64,
}

/// One row of `coverage_baseline` (OUTPUTS-v1): an area's baseline as the
/// plan gives it, and whether it is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaselineRow {
    /// The indicator.
    pub indicator: Indicator,
    /// Level of `area`.
    pub area_level: AreaLevel,
    /// GSO code of the area.
    pub area: String,
    /// The baseline (0 when unknown).
    pub baseline: u64,
    /// Whether the plan knows the baseline.
    pub baseline_known: bool,
    /// Where the baseline comes from ("" when the plan does not say).
    pub source: String,
    /// `ReplacingMergeTree` version.
    pub version: u64,
}

/// One row of `areas` (OUTPUTS-v1): an area of the geography.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaRow {
    /// Its level.
    pub area_level: AreaLevel,
    /// GSO code.
    pub area: String,
    /// Official name, with diacritics.
    pub name: String,
    /// GSO code of the area it rolls up into ("" for the province).
    pub parent: String,
    /// `ReplacingMergeTree` version.
    pub version: u64,
}

/// One shard's hotline ticket counts for one (day received, area).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotlineShardRow {
    /// Local day the tickets were received.
    pub day: NaiveDate,
    /// Level of `area`.
    pub area_level: AreaLevel,
    /// GSO code of the area.
    pub area: String,
    /// The shard these counts belong to.
    pub shard: u32,
    /// The tickets received that day, classified as of the pipeline's clock.
    pub counts: aggregator::hotline::HotlineCounts,
    /// `ReplacingMergeTree` version.
    pub version: u64,
}

/// A rejected message (never personal data: `detail` names the rule, not a value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterRow {
    /// When d06 read the message (whole seconds are stored).
    pub received_at: DateTime<Utc>,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: u32,
    /// Source offset; with topic and partition, the key that redelivery rewrites.
    pub offset: u64,
    /// The rejection reason code.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
}

/// Everything one flush writes. Each non-empty table is one `INSERT`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Rows for `coverage_shard_daily`.
    pub coverage: Vec<CoverageShardRow>,
    /// Rows for `coverage_shard_recent`: one per key a shard wrote day rows of.
    pub recent: Vec<CoverageRecentRow>,
    /// Rows for `plan_daily`.
    pub plan: Vec<PlanRow>,
    /// Rows for `coverage_baseline`.
    pub baselines: Vec<BaselineRow>,
    /// Rows for `areas`.
    pub areas: Vec<AreaRow>,
    /// Rows for `hotline_shard_daily`.
    pub hotline: Vec<HotlineShardRow>,
    /// Rows for `dead_letters`.
    pub dead_letters: Vec<DeadLetterRow>,
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of rows over all tables.
    pub fn len(&self) -> usize {
        self.coverage.len()
            + self.recent.len()
            + self.plan.len()
            + self.baselines.len()
            + self.areas.len()
            + self.hotline.len()
            + self.dead_letters.len()
    }
}

/// A row of the `coverage_daily` view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoverageDailyRow {
    /// Local day.
    pub day: NaiveDate,
    /// Indicator name.
    pub indicator: String,
    /// `province`, `district` or `commune`.
    pub area_level: String,
    /// GSO code.
    pub area: String,
    /// Gained this day, all shards.
    pub gained: u64,
    /// Lost this day, all shards.
    pub lost: u64,
    /// Baseline + all gained - all lost through this day.
    pub covered: i64,
    /// Target in force.
    pub target: u64,
    /// Expected by the end of this day.
    pub expected: u64,
}

/// A row of the `hotline_daily` view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotlineDailyRow {
    /// Local day received.
    pub day: NaiveDate,
    /// `province`, `district` or `commune`.
    pub area_level: String,
    /// GSO code.
    pub area: String,
    /// Tickets received.
    pub received: u64,
    /// Answered.
    pub answered: u64,
    /// Forwarded.
    pub forwarded: u64,
    /// Processed.
    pub processed: u64,
    /// In progress.
    pub in_progress: u64,
    /// Spam.
    pub spam: u64,
    /// Overdue at specialist level.
    pub overdue_specialist: u64,
    /// Overdue at leadership level.
    pub overdue_leadership: u64,
}

impl HotlineDailyRow {
    /// The row's eight counts, as the aggregator keeps them.
    pub fn counts(&self) -> aggregator::hotline::HotlineCounts {
        aggregator::hotline::HotlineCounts {
            received: self.received,
            answered: self.answered,
            forwarded: self.forwarded,
            processed: self.processed,
            in_progress: self.in_progress,
            spam: self.spam,
            overdue_specialist: self.overdue_specialist,
            overdue_leadership: self.overdue_leadership,
        }
    }
}

// ---- RowBinary wire structs (field order = column order of the tables) ----

#[derive(Row, Serialize)]
struct CoverageWire<'a> {
    day: u16,
    indicator: &'a str,
    area_level: &'a str,
    area: &'a str,
    shard: u32,
    gained: u64,
    lost: u64,
    net: i64,
    version: u64,
}

#[derive(Row, Serialize)]
struct PlanWire<'a> {
    day: u16,
    indicator: &'a str,
    area_level: &'a str,
    area: &'a str,
    baseline: u64,
    target: u64,
    expected: u64,
    version: u64,
}

#[derive(Row, Serialize)]
struct BaselineWire<'a> {
    indicator: &'a str,
    area_level: &'a str,
    area: &'a str,
    baseline: u64,
    baseline_known: u8,
    source: &'a str,
    version: u64,
}

#[derive(Row, Serialize)]
struct AreaWire<'a> {
    area_level: &'a str,
    area: &'a str,
    name: &'a str,
    parent: &'a str,
    version: u64,
}

#[derive(Row, Serialize)]
struct HotlineWire<'a> {
    day: u16,
    area_level: &'a str,
    area: &'a str,
    shard: u32,
    received: u64,
    answered: u64,
    forwarded: u64,
    processed: u64,
    in_progress: u64,
    spam: u64,
    overdue_specialist: u64,
    overdue_leadership: u64,
    version: u64,
}

#[derive(Row, Serialize, Deserialize)]
struct DeadLetterWire<'a> {
    received_at: u32,
    topic: &'a str,
    partition: u32,
    offset: u64,
    reason: &'a str,
    detail: &'a str,
}

#[derive(Row, Deserialize)]
struct DeadLetterRead {
    received_at: u32,
    topic: String,
    partition: u32,
    offset: u64,
    reason: String,
    detail: String,
}

#[derive(Row, Deserialize)]
struct CoverageDailyRead {
    day: u16,
    indicator: String,
    area_level: String,
    area: String,
    gained: u64,
    lost: u64,
    covered: i64,
    target: u64,
    expected: u64,
}

#[derive(Row, Deserialize)]
struct HotlineDailyRead {
    day: u16,
    area_level: String,
    area: String,
    received: u64,
    answered: u64,
    forwarded: u64,
    processed: u64,
    in_progress: u64,
    spam: u64,
    overdue_specialist: u64,
    overdue_leadership: u64,
}

/// ClickHouse `Date`: days since 1970-01-01 as UInt16.
fn date_to_wire(day: NaiveDate, op: &str) -> Result<u16, SinkError> {
    let days = day.signed_duration_since(NaiveDate::default()).num_days();
    u16::try_from(days)
        .map_err(|_| SinkError::permanent("invalid_row", op, format!("day {day} outside ClickHouse Date range")))
}

fn date_from_wire(days: u16) -> NaiveDate {
    // 1970-01-01 + at most 65535 days (year 2149) cannot overflow NaiveDate.
    NaiveDate::default().checked_add_days(Days::new(u64::from(days))).unwrap_or(NaiveDate::MAX)
}

/// ClickHouse `DateTime`: seconds since the epoch as UInt32.
fn datetime_to_wire(t: DateTime<Utc>, op: &str) -> Result<u32, SinkError> {
    u32::try_from(t.timestamp())
        .map_err(|_| SinkError::permanent("invalid_row", op, format!("time {t} outside ClickHouse DateTime range")))
}

fn datetime_from_wire(secs: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(secs), 0).unwrap_or(DateTime::UNIX_EPOCH)
}

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

/// A database name that needs no escaping anywhere.
fn valid_database_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
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
        let coverage = batch
            .coverage
            .iter()
            .map(|r| {
                Ok(CoverageWire {
                    day: date_to_wire(r.day, "insert coverage_shard_daily")?,
                    indicator: r.indicator.as_str(),
                    area_level: r.area_level.as_str(),
                    area: &r.area,
                    shard: r.shard,
                    gained: r.gained,
                    lost: r.lost,
                    net: r.net,
                    version: r.version,
                })
            })
            .collect::<Result<Vec<_>, SinkError>>()?;
        let recent = batch.recent.iter().map(RecentWire::of).collect::<Result<Vec<_>, SinkError>>()?;
        let plan = batch
            .plan
            .iter()
            .map(|r| {
                Ok(PlanWire {
                    day: date_to_wire(r.day, "insert plan_daily")?,
                    indicator: r.indicator.as_str(),
                    area_level: r.area_level.as_str(),
                    area: &r.area,
                    baseline: r.baseline,
                    target: r.target,
                    expected: r.expected,
                    version: r.version,
                })
            })
            .collect::<Result<Vec<_>, SinkError>>()?;
        let baselines: Vec<BaselineWire> = batch
            .baselines
            .iter()
            .map(|r| BaselineWire {
                indicator: r.indicator.as_str(),
                area_level: r.area_level.as_str(),
                area: &r.area,
                baseline: r.baseline,
                baseline_known: u8::from(r.baseline_known),
                source: &r.source,
                version: r.version,
            })
            .collect();
        let areas: Vec<AreaWire> = batch
            .areas
            .iter()
            .map(|r| AreaWire {
                area_level: r.area_level.as_str(),
                area: &r.area,
                name: &r.name,
                parent: &r.parent,
                version: r.version,
            })
            .collect();
        let hotline = batch
            .hotline
            .iter()
            .map(|r| {
                Ok(HotlineWire {
                    day: date_to_wire(r.day, "insert hotline_shard_daily")?,
                    area_level: r.area_level.as_str(),
                    area: &r.area,
                    shard: r.shard,
                    received: r.counts.received,
                    answered: r.counts.answered,
                    forwarded: r.counts.forwarded,
                    processed: r.counts.processed,
                    in_progress: r.counts.in_progress,
                    spam: r.counts.spam,
                    overdue_specialist: r.counts.overdue_specialist,
                    overdue_leadership: r.counts.overdue_leadership,
                    version: r.version,
                })
            })
            .collect::<Result<Vec<_>, SinkError>>()?;
        let dead_letters = batch
            .dead_letters
            .iter()
            .map(|r| {
                Ok(DeadLetterWire {
                    received_at: datetime_to_wire(r.received_at, "insert dead_letters")?,
                    topic: &r.topic,
                    partition: r.partition,
                    offset: r.offset,
                    reason: &r.reason,
                    detail: &r.detail,
                })
            })
            .collect::<Result<Vec<_>, SinkError>>()?;
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
        Ok(rows
            .into_iter()
            .map(|r| CoverageDailyRow {
                day: date_from_wire(r.day),
                indicator: r.indicator,
                area_level: r.area_level,
                area: r.area,
                gained: r.gained,
                lost: r.lost,
                covered: r.covered,
                target: r.target,
                expected: r.expected,
            })
            .collect())
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
        Ok(rows
            .into_iter()
            .map(|r| HotlineDailyRow {
                day: date_from_wire(r.day),
                area_level: r.area_level,
                area: r.area,
                received: r.received,
                answered: r.answered,
                forwarded: r.forwarded,
                processed: r.processed,
                in_progress: r.in_progress,
                spam: r.spam,
                overdue_specialist: r.overdue_specialist,
                overdue_leadership: r.overdue_leadership,
            })
            .collect())
    }

    /// Up to `limit` rows of `dead_letters` (`FINAL`: one per message),
    /// ordered by topic, partition, offset.
    pub async fn dead_letter_rows(&self, limit: u64) -> Result<Vec<DeadLetterRow>, SinkError> {
        let q = self
            .client()
            .query("SELECT ?fields FROM dead_letters FINAL ORDER BY topic, `partition`, `offset` LIMIT ?")
            .bind(limit);
        let rows = self.timed("read dead_letters", q.fetch_all::<DeadLetterRead>()).await?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetterRow {
                received_at: datetime_from_wire(r.received_at),
                topic: r.topic,
                partition: r.partition,
                offset: r.offset,
                reason: r.reason,
                detail: r.detail,
            })
            .collect())
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

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn dates_use_days_since_epoch() {
        assert_eq!(date_to_wire(date(1970, 1, 1), "t").unwrap(), 0);
        // 2024-01-01 is day 19723 (SELECT toUInt16(toDate('2024-01-01')) on ClickHouse).
        assert_eq!(date_to_wire(date(2024, 1, 1), "t").unwrap(), 19723);
        assert_eq!(date_from_wire(19723), date(2024, 1, 1));
        assert_eq!(date_from_wire(u16::MAX), date(2149, 6, 6));
        let err = date_to_wire(date(1969, 12, 31), "insert plan_daily").unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(err.kind(), "invalid_row");
        assert!(date_to_wire(date(2149, 6, 7), "t").is_err());
    }

    #[test]
    fn datetimes_use_seconds_since_epoch() {
        let t = DateTime::parse_from_rfc3339("2024-01-01T00:00:05Z").unwrap().with_timezone(&Utc);
        assert_eq!(datetime_to_wire(t, "t").unwrap(), 1_704_067_205);
        assert_eq!(datetime_from_wire(1_704_067_205), t);
        let before = DateTime::parse_from_rfc3339("1969-12-31T23:59:59Z").unwrap().with_timezone(&Utc);
        assert!(datetime_to_wire(before, "t").is_err());
    }

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

    #[test]
    fn database_names_are_checked() {
        assert!(valid_database_name("d06"));
        assert!(valid_database_name("d06_test_1a2b"));
        assert!(!valid_database_name("1db"));
        assert!(!valid_database_name("d06`; DROP"));
        assert!(!valid_database_name(""));
        assert!(!valid_database_name("d-06"));
    }

    #[test]
    fn urls_must_be_http_or_https() {
        let with = |url: &str| ClickHouseConfig { url: url.into(), ..ClickHouseConfig::default() }.check();
        assert_eq!(with("http://127.0.0.1:8123"), Ok(()));
        assert_eq!(with("https://admin:hunter2@ch.local:8443"), Ok(()));
        for bad in ["tcp://ch.local:9000", "ch.local:8123", "http://", "", "ftp://u:hunter2@x"] {
            let e = with(bad).unwrap_err();
            assert!(e.contains("must be an http:// or https:// URL") && !e.contains("hunter2"), "{bad}: {e}");
        }
    }

    #[test]
    fn one_password_source_at_most_and_a_readable_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "from-file\n").unwrap();
        let cfg = ClickHouseConfig { password_file: Some(pw.clone()), ..ClickHouseConfig::default() };
        assert_eq!(cfg.password().unwrap().map(|s| s.expose().to_owned()).as_deref(), Some("from-file"));
        assert_eq!(cfg.check(), Ok(()));
        let two = ClickHouseConfig { password: Some("inline".into()), ..cfg.clone() };
        assert!(two.check().unwrap_err().contains("keep one"));
        let env_and_file = ClickHouseConfig { password_env: Some("HOME".into()), ..cfg.clone() };
        assert!(env_and_file.check().unwrap_err().contains("both set"));
        let ca = ClickHouseConfig { ca_file: Some(dir.path().join("absent.pem")), ..ClickHouseConfig::default() };
        assert!(ca.check().unwrap_err().starts_with("ca_file: cannot read"));
    }

    #[test]
    fn redacted_hides_the_password_and_url_credentials_only() {
        let cfg = ClickHouseConfig {
            url: "http://admin:hunter2@ch.local:8123/".into(),
            password: Some("s3cret-pw".into()),
            password_env: Some("D06_CH_PASSWORD".into()),
            user: Some("d06".into()),
            ..ClickHouseConfig::default()
        };
        let r = cfg.redacted();
        assert_eq!(r.url, "http://<redacted>@ch.local:8123/");
        assert_eq!(r.password.as_deref(), Some(REDACTED));
        assert_eq!((r.user, r.password_env, r.database), (cfg.user, cfg.password_env, cfg.database));
        assert_eq!(ClickHouseConfig::default().redacted(), ClickHouseConfig::default());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let cfg = ClickHouseConfig {
            url: "http://admin:hunter2@ch.local:8123/".into(),
            password: Some("s3cret-pw".into()),
            user: Some("d06".into()),
            ..ClickHouseConfig::default()
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("http://<redacted>@ch.local:8123/"), "{shown}");
        assert!(shown.contains("d06"), "{shown}");
        assert_eq!(redact_url("http://127.0.0.1:8123"), "http://127.0.0.1:8123");
    }

    #[test]
    fn the_password_can_come_from_the_environment() {
        let var = "D06_TEST_CH_PASSWORD_RESOLVE";
        std::env::set_var(var, "from-env");
        let cfg = ClickHouseConfig { password_env: Some(var.into()), ..ClickHouseConfig::default() };
        assert_eq!(cfg.password().unwrap().map(|s| s.expose().to_owned()).as_deref(), Some("from-env"));
        assert!(!format!("{cfg:?}").contains("from-env"));
        let inline = ClickHouseConfig { password: Some("inline".into()), password_env: None, ..cfg };
        assert_eq!(inline.password().unwrap().map(|s| s.expose().to_owned()).as_deref(), Some("inline"));
    }

    #[test]
    fn failover_urls_and_the_cluster_are_checked_and_redacted() {
        let cfg: ClickHouseConfig =
            toml::from_str("url = \"http://a:8123\"\nurls = [\"http://admin:hunter2@b:8123\"]\ncluster = \"d06_prod\"")
                .unwrap();
        assert_eq!(cfg.servers(), ["http://a:8123", "http://admin:hunter2@b:8123"]);
        assert_eq!((cfg.check_url(), cfg.check_cluster()), (Ok(()), Ok(())));
        assert_eq!(cfg.redacted().urls, ["http://<redacted>@b:8123"]);
        assert!(!format!("{cfg:?}").contains("hunter2"));
        let bad = ClickHouseConfig { urls: vec!["ch2:8123".into()], ..cfg.clone() };
        assert!(bad.check_url().unwrap_err().contains("\"ch2:8123\" must be an http:// or https:// URL"));
        let bad = ClickHouseConfig { cluster: Some("d06`x".into()), ..cfg };
        assert!(bad.check_cluster().is_err());
        let default = ClickHouseConfig::default();
        assert_eq!((default.servers().len(), default.cluster), (1, None), "one server unless configured");
    }

    #[test]
    fn config_defaults_and_rejects_unknown_fields() {
        let cfg: ClickHouseConfig = toml::from_str("database = \"x\"").unwrap();
        assert_eq!(cfg.url, "http://127.0.0.1:8123");
        assert_eq!(cfg.database, "x");
        assert_eq!(cfg.timeout_secs, 30);
        assert!(toml::from_str::<ClickHouseConfig>("databse = \"x\"").is_err());
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
