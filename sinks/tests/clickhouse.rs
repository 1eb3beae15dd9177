//! The ClickHouse sink against a real server.
//!
//! Uses `D06_TEST_CLICKHOUSE_URL` (default `http://127.0.0.1:8123`) and a
//! fresh database per test. An unreachable server FAILS these tests, with
//! instructions; set `D06_SKIP_SERVICES=1` to skip them instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aggregator::hotline::HotlineCounts;
use aggregator::{AreaLevel, Indicator};
use chrono::{DateTime, NaiveDate, Utc};
use sinks::clickhouse::{
    AreaRow, BaselineRow, ClickHouseConfig, ClickHouseSink, CoverageDailyRow, CoverageShardRow, DeadLetterRow,
    HotlineDailyRow, HotlineShardRow, PlanRow, WriteBatch,
};
use sinks::Metrics;
use tokio_util::sync::CancellationToken;

fn url() -> String {
    std::env::var("D06_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned())
}

fn skip() -> bool {
    std::env::var("D06_SKIP_SERVICES").is_ok_and(|v| v == "1")
}

/// A database name no other test (or run) uses.
fn fresh_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("d06_test_{}_{nanos:x}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn config(database: &str) -> ClickHouseConfig {
    ClickHouseConfig { url: url(), database: database.to_owned(), timeout_secs: 30, ..ClickHouseConfig::default() }
}

/// A raw client for checks the sink's API does not offer.
fn raw() -> clickhouse::Client {
    clickhouse::Client::default().with_url(url()).with_validation(false)
}

/// Connects to a fresh database, or `None` when services are skipped.
async fn fresh_sink() -> Option<ClickHouseSink> {
    if skip() {
        eprintln!("D06_SKIP_SERVICES=1: skipping a ClickHouse test");
        return None;
    }
    let db = fresh_database();
    match ClickHouseSink::connect(&config(&db)).await {
        Ok(sink) => Some(sink),
        Err(e) => panic!(
            "ClickHouse is not reachable at {} ({e}).\n\
             Start it (`bash deploy/local/start.sh clickhouse`), point D06_TEST_CLICKHOUSE_URL at one, \
             or set D06_SKIP_SERVICES=1 to skip the service tests.",
            url()
        ),
    }
}

async fn drop_database(sink: &ClickHouseSink) {
    raw().query_raw(&format!("DROP DATABASE IF EXISTS `{}`", sink.database())).execute().await.unwrap();
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, d).unwrap()
}

fn plan(d: u32, indicator: Indicator, area: &str, baseline: u64, expected: u64, version: u64) -> PlanRow {
    PlanRow {
        day: day(d),
        indicator,
        area_level: AreaLevel::Province,
        area: area.to_owned(),
        baseline,
        target: 1000,
        expected,
        version,
    }
}

fn cov(d: u32, shard: u32, gained: u64, lost: u64, net: i64, version: u64) -> CoverageShardRow {
    CoverageShardRow {
        day: day(d),
        indicator: Indicator::Cccd,
        area_level: AreaLevel::Province,
        area: "70".to_owned(),
        shard,
        gained,
        lost,
        net,
        version,
    }
}

fn daily(
    d: u32,
    indicator: &str,
    gained: u64,
    lost: u64,
    covered: i64,
    target: u64,
    expected: u64,
) -> CoverageDailyRow {
    CoverageDailyRow {
        day: day(d),
        indicator: indicator.to_owned(),
        area_level: "province".to_owned(),
        area: "70".to_owned(),
        gained,
        lost,
        covered,
        target,
        expected,
    }
}

#[tokio::test]
async fn connect_creates_the_database_and_migrate_is_idempotent() {
    let Some(sink) = fresh_sink().await else { return };
    let exists: u64 = raw()
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(sink.database())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(exists, 1);

    let started = Instant::now();
    sink.migrate().await.unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    sink.migrate().await.unwrap();
    eprintln!("migrate: first {first:?}, second {:?}", started.elapsed());
    assert_eq!(sink.applied_migrations().await.unwrap(), [1, 2, 3, 4, 5]);

    // A second instance migrating the same database at the same moment as
    // a third: both succeed, nothing is duplicated.
    let db = sink.database().to_owned();
    drop_database(&sink).await;
    let cfg = config(&db);
    let (a, b) = tokio::join!(ClickHouseSink::connect(&cfg), ClickHouseSink::connect(&cfg));
    let (a, b) = (a.unwrap(), b.unwrap());
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    assert_eq!(a.applied_migrations().await.unwrap(), [1, 2, 3, 4, 5]);
    let tables: Vec<String> = raw()
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(db.as_str())
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        tables,
        [
            "alerts",
            "areas",
            "coverage_baseline",
            "coverage_daily",
            "coverage_shard_daily",
            "coverage_shard_recent",
            "dead_letters",
            "deployment",
            "hotline_daily",
            "hotline_shard_daily",
            "plan_daily",
            "schema_migrations",
            "shard_owners"
        ]
    );
    let recorded: u64 =
        raw().query(&format!("SELECT count() FROM `{db}`.schema_migrations FINAL")).fetch_one().await.unwrap();
    assert_eq!(recorded, sinks::clickhouse::migrations::MIGRATIONS.len() as u64, "one row per migration");
    drop_database(&a).await;
}

#[tokio::test]
async fn coverage_view_sums_shards_and_the_latest_version_wins() {
    let Some(sink) = fresh_sink().await else { return };
    sink.migrate().await.unwrap();

    // Plan: cccd on days 1..=4 (baseline 100), vneid on day 1 only.
    let mut first = WriteBatch {
        plan: vec![
            plan(1, Indicator::Cccd, "70", 100, 150, 1),
            plan(2, Indicator::Cccd, "70", 100, 200, 1),
            plan(3, Indicator::Cccd, "70", 100, 250, 1),
            plan(4, Indicator::Cccd, "70", 100, 300, 1),
            plan(1, Indicator::Vneid, "70", 7, 8, 1),
        ],
        // Day 2: shard 0 gains 5 loses 1, shard 1 gains 3. Day 4: shard 0 gains 2.
        // Nothing on days 1 and 3.
        coverage: vec![cov(2, 0, 5, 1, 4, 1), cov(2, 1, 3, 0, 3, 1), cov(4, 0, 2, 0, 6, 1)],
        ..WriteBatch::default()
    };
    let started = Instant::now();
    sink.write(&first).await.unwrap();
    eprintln!("write of {} rows: {:?}", first.len(), started.elapsed());

    // Same rows again (a replay), then newer versions for shard 1 on day 2
    // and for the plan of day 1.
    sink.write(&first).await.unwrap();
    let second = WriteBatch {
        plan: vec![plan(1, Indicator::Cccd, "70", 100, 999, 2)],
        coverage: vec![cov(2, 1, 7, 0, 7, 2)],
        ..WriteBatch::default()
    };
    sink.write(&second).await.unwrap();
    // A stale write arriving last must not win: versions decide, not order.
    first.coverage = vec![cov(2, 1, 1000, 0, 1000, 1)];
    first.plan.clear();
    sink.write(&first).await.unwrap();

    let started = Instant::now();
    let rows = sink.coverage_rows(day(1), day(31)).await.unwrap();
    eprintln!("coverage_rows: {:?}", started.elapsed());
    assert_eq!(
        rows,
        [
            // No shard rows yet: covered is the baseline.
            daily(1, "cccd", 0, 0, 100, 1000, 999),
            // Shards sum: gained 5 + 7, lost 1; covered 100 + 12 - 1.
            daily(2, "cccd", 12, 1, 111, 1000, 200),
            // A quiet day after events carries covered forward.
            daily(3, "cccd", 0, 0, 111, 1000, 250),
            daily(4, "cccd", 2, 0, 113, 1000, 300),
            daily(1, "vneid", 0, 0, 7, 1000, 8),
        ]
    );
    // The date range filters.
    let only = sink.coverage_rows(day(3), day(3)).await.unwrap();
    assert_eq!(only, [daily(3, "cccd", 0, 0, 111, 1000, 250)]);

    // Reading only `covered` works (ClickHouse 18.16 once lost `day` here).
    let covered: Vec<i64> = raw()
        .query(&format!("SELECT covered FROM `{}`.coverage_daily ORDER BY indicator, day", sink.database()))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(covered, [100, 111, 111, 113, 7]);

    // The view's types are the contract's.
    let types: Vec<(String, String)> = raw()
        .query("SELECT name, type FROM system.columns WHERE database = ? AND table = 'coverage_daily'")
        .bind(sink.database())
        .fetch_all()
        .await
        .unwrap();
    let expect = [
        ("day", "Date"),
        ("indicator", "String"),
        ("area_level", "String"),
        ("area", "String"),
        ("gained", "UInt64"),
        ("lost", "UInt64"),
        ("covered", "Int64"),
        ("target", "UInt64"),
        ("expected", "UInt64"),
    ];
    let expect: Vec<(String, String)> = expect.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
    assert_eq!(types, expect);

    assert_eq!(sink.max_version().await.unwrap(), 2);
    drop_database(&sink).await;
}

#[tokio::test]
async fn hotline_view_sums_shards_and_the_latest_version_wins() {
    let Some(sink) = fresh_sink().await else { return };
    sink.migrate().await.unwrap();
    let row = |d: u32, area: &str, shard: u32, received: u64, spam: u64, version: u64| HotlineShardRow {
        day: day(d),
        area_level: AreaLevel::District,
        area: area.to_owned(),
        shard,
        counts: HotlineCounts {
            received,
            answered: 1,
            forwarded: 0,
            processed: 2,
            in_progress: 0,
            spam,
            overdue_specialist: 1,
            overdue_leadership: 0,
        },
        version,
    };
    let batch = WriteBatch {
        hotline: vec![row(5, "689", 0, 4, 0, 10), row(5, "689", 1, 6, 1, 10), row(6, "689", 0, 1, 0, 10)],
        ..WriteBatch::default()
    };
    sink.write(&batch).await.unwrap();
    sink.write(&batch).await.unwrap();
    let newer = WriteBatch { hotline: vec![row(5, "689", 1, 9, 2, 11)], ..WriteBatch::default() };
    sink.write(&newer).await.unwrap();

    let got = sink.hotline_rows(day(1), day(31)).await.unwrap();
    let want = |d: u32, received: u64, answered: u64, processed: u64, spam: u64, overdue: u64| HotlineDailyRow {
        day: day(d),
        area_level: "district".to_owned(),
        area: "689".to_owned(),
        received,
        answered,
        forwarded: 0,
        processed,
        in_progress: 0,
        spam,
        overdue_specialist: overdue,
        overdue_leadership: 0,
    };
    // Day 5: shard 0 (4 received) + shard 1 at version 11 (9 received, 2 spam).
    assert_eq!(got, [want(5, 13, 2, 4, 2, 2), want(6, 1, 1, 2, 0, 1)]);
    assert_eq!(sink.max_version().await.unwrap(), 11);
    drop_database(&sink).await;
}

#[tokio::test]
async fn dead_letters_rewrite_the_same_key() {
    let Some(sink) = fresh_sink().await else { return };
    sink.migrate().await.unwrap();
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    let letter = |offset: u64, reason: &str, received_at: &str| DeadLetterRow {
        received_at: at(received_at),
        topic: "d06.cccd.v1".to_owned(),
        partition: 2,
        offset,
        reason: reason.to_owned(),
        detail: "field occurred_at: not RFC 3339".to_owned(),
    };
    let first = WriteBatch {
        dead_letters: vec![
            letter(5, "bad_time", "2024-01-31T23:59:59Z"),
            letter(6, "bad_json", "2024-01-31T23:59:59Z"),
        ],
        ..WriteBatch::default()
    };
    sink.write(&first).await.unwrap();
    // Redelivered after a restart, in another month, classified again.
    let again =
        WriteBatch { dead_letters: vec![letter(5, "bad_time_v2", "2024-02-01T00:00:10Z")], ..WriteBatch::default() };
    sink.write(&again).await.unwrap();
    let rows = sink.dead_letter_rows(100).await.unwrap();
    assert_eq!(rows, [letter(5, "bad_time_v2", "2024-02-01T00:00:10Z"), letter(6, "bad_json", "2024-01-31T23:59:59Z")]);
    drop_database(&sink).await;
}

#[tokio::test]
async fn a_missing_table_is_permanent_and_not_retried() {
    let Some(sink) = fresh_sink().await else { return };
    // No migrate: the tables do not exist.
    let batch = WriteBatch { plan: vec![plan(1, Indicator::Cccd, "70", 1, 1, 1)], ..WriteBatch::default() };
    let metrics = Metrics::new().unwrap();
    let started = Instant::now();
    let err = sink.write_with_retry(&batch, &CancellationToken::new(), Some(&metrics), None).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.kind(), "unknown_table", "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "retried a permanent error");
    assert_eq!(metrics.sink_failures.with_label_values(&["clickhouse", "unknown_table"]).get(), 1);
    assert_eq!(metrics.sink_write_seconds.with_label_values(&["clickhouse"]).get_sample_count(), 1);

    // Wrong credentials are permanent too.
    let cfg = ClickHouseConfig {
        user: Some("d06_no_such_user".into()),
        password: Some("wrong".into()),
        ..config(sink.database())
    };
    let err = ClickHouseSink::connect(&cfg).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.kind(), "auth", "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");
    drop_database(&sink).await;
}

#[tokio::test]
async fn baselines_and_areas_keep_the_newest_version_per_key() {
    let Some(sink) = fresh_sink().await else { return };
    sink.migrate().await.unwrap();
    let baseline = |known: bool, n: u64, version: u64| BaselineRow {
        indicator: Indicator::SimSignature,
        area_level: AreaLevel::District,
        area: "689".into(),
        baseline: n,
        baseline_known: known,
        source: if known { "Sở TT&TT".into() } else { String::new() },
        version,
    };
    let area = |name: &str, version: u64| AreaRow {
        area_level: AreaLevel::District,
        area: "689".into(),
        name: name.into(),
        parent: "70".into(),
        version,
    };
    // Unknown first; then a plan with an imported figure (a newer version);
    // a stale write last must not win.
    for (b, a) in [
        (baseline(false, 0, 1), area("old", 1)),
        (baseline(true, 1200, 3), area("Thành phố Đồng Xoài", 3)),
        (baseline(false, 0, 2), area("stale", 2)),
    ] {
        sink.write(&WriteBatch { baselines: vec![b], areas: vec![a], ..WriteBatch::default() }).await.unwrap();
    }
    let db = sink.database().to_owned();
    let got: (String, String, u64, u8, String) = raw()
        .query(&format!("SELECT indicator, area, baseline, baseline_known, source FROM `{db}`.coverage_baseline FINAL"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(got, ("sim_signature".into(), "689".into(), 1200, 1, "Sở TT&TT".into()));
    let names: Vec<(String, String, String)> =
        raw().query(&format!("SELECT area, name, parent FROM `{db}`.areas FINAL")).fetch_all().await.unwrap();
    assert_eq!(names, [("689".into(), "Thành phố Đồng Xoài".into(), "70".into())]);
    drop_database(&sink).await;
}
