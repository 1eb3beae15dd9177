//! The read-back with a week's days apart and the earlier days summed
//! (`ClickHouseSink::figures` with `apart_from`) gives every figure d06
//! shows as of a day at least six days after `apart_from` exactly as the
//! whole history does: checked against the rows written, recounted here
//! from plain tuples (the winning version of each shard's row, then sums),
//! through the real ClickHouse, with superseded and zombie rows among them.
//! And a slow read-back is not repeated on every flush
//! (`pipeline.figures_share_percent`), while the figures still arrive.

use std::collections::BTreeMap;
use std::time::Duration;

use aggregator::{AreaLevel, Indicator};
use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sinks::clickhouse::{ClickHouseConfig, ClickHouseSink, CoverageShardRow, WriteBatch};

use crate::events::{self, Place};
use crate::harness::{clickhouse_query, clickhouse_url, spawn_app, unique, AppOptions, Producer};

/// (indicator, level, area code, day, shard) → (version, gained, lost) of the
/// winning row: the recount's own model of `ReplacingMergeTree` under FINAL.
type Winners = BTreeMap<(&'static str, &'static str, &'static str, NaiveDate, u32), (u64, u64, u64)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_apart_and_the_rest_summed_shows_what_every_day_shows() {
    let cfg = ClickHouseConfig { url: clickhouse_url(), database: unique("d06_readback_"), ..Default::default() };
    let sink = ClickHouseSink::connect(&cfg).await.expect("connect (bash deploy/local/start.sh clickhouse)");
    sink.migrate().await.expect("migrate");

    let keys: [(Indicator, AreaLevel, &str); 4] = [
        (Indicator::Cccd, AreaLevel::Commune, "25216"),
        (Indicator::Cccd, AreaLevel::District, "688"),
        (Indicator::SimSignature, AreaLevel::District, "688"),
        (Indicator::Vneid, AreaLevel::Province, "70"),
    ];
    let start = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    let day = |n: u64| start + chrono::Days::new(n);
    let mut rng = StdRng::seed_from_u64(0x0d06);
    let mut batch = WriteBatch::default();
    for (ind, level, code) in keys {
        for shard in 0..3u32 {
            for n in 0..24 {
                // Most days have a row; some several versions of it (a later
                // flush, a zombie's lower version written after).
                if rng.random_ratio(1, 8) {
                    continue;
                }
                for _ in 0..rng.random_range(1..=3) {
                    let (version, gained, lost) =
                        (rng.random_range(1..100u64), rng.random_range(0..50u64), rng.random_range(0..5u64));
                    batch.coverage.push(CoverageShardRow {
                        day: day(n),
                        indicator: ind,
                        area_level: level,
                        area: code.to_owned(),
                        shard,
                        gained,
                        lost,
                        net: 0,
                        version,
                    });
                }
            }
        }
    }
    // Equal versions of one row would leave the winner to ClickHouse's choice.
    batch.coverage.sort_by_key(|r| (r.indicator.as_str(), r.area.clone(), r.day, r.shard, r.version));
    batch.coverage.dedup_by_key(|r| (r.indicator.as_str(), r.area.clone(), r.day, r.shard, r.version));
    let mut winners = Winners::new();
    for r in &batch.coverage {
        let code = keys.iter().find(|k| k.2 == r.area).unwrap().2;
        let w = winners.entry((r.indicator.as_str(), r.area_level.as_str(), code, r.day, r.shard)).or_insert((0, 0, 0));
        if r.version > w.0 {
            *w = (r.version, r.gained, r.lost);
        }
    }
    // Written in several inserts, so that the versions meet in several parts.
    for part in batch.coverage.chunks(97) {
        let b = WriteBatch { coverage: part.to_vec(), ..WriteBatch::default() };
        sink.write(&b).await.expect("write rows");
    }

    let levels = ["province", "district", "commune"];
    let every = sink.figures(&levels, start, None).await.expect("read every day");
    let newest = winners.keys().map(|k| k.3).max();
    assert_eq!(every.newest_day, newest);
    for apart_from in [day(0), day(5), day(12), day(20), day(30)] {
        let week = sink.figures(&levels, start, Some(apart_from)).await.expect("read a week apart");
        assert_eq!(week.newest_day, newest, "the newest day is the rows' newest, whatever is summed");
        let per_key = week.coverage.values().map(|d| d.len()).max().unwrap_or(0);
        assert!(
            per_key <= 1 + 24usize.saturating_sub((apart_from - start).num_days() as usize),
            "{per_key} entries a key"
        );
        for today in (0..30).map(day).filter(|t| *t >= apart_from + chrono::Days::new(6)) {
            for (ind, level, code) in keys {
                let key = (ind.as_str().to_owned(), level.as_str().to_owned(), code.to_owned());
                let expect = recount(&winners, (ind.as_str(), level.as_str(), code), today);
                let got = shown(week.coverage.get(&key), today);
                assert_eq!(got, expect, "{key:?} as of {today}, days before {apart_from} summed");
                assert_eq!(shown(every.coverage.get(&key), today), expect, "{key:?} as of {today}, every day");
            }
        }
    }
    let http = reqwest::Client::new();
    let _ = http.post(clickhouse_url()).body(format!("DROP DATABASE IF EXISTS `{}`", cfg.database)).send().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_read_back_is_not_repeated_on_every_flush_and_the_figures_still_arrive() {
    let app = spawn_app(AppOptions {
        partitions: 1,
        shards: 2,
        rust_log: "info,d06::pipeline=debug",
        ..AppOptions::default()
    })
    .await;
    let http = reqwest::Client::new();
    app.wait_for("the first flush", Duration::from_secs(30), || async { app.log().contains("first flush complete") })
        .await;
    // Millions of district rows of areas no geography has (ignored once read,
    // dated before the events so that the province's newest day stays theirs):
    // every read-back has to read them.
    clickhouse_query(
        &http,
        &app.database,
        "INSERT INTO coverage_shard_daily \
         SELECT toDate('2024-03-15') + (number % 28), 'cccd', 'district', concat('x', toString(intDiv(number, 28))), \
         100, 1, 0, 0, 1 FROM numbers(4000000)",
    )
    .await;
    let producer = Producer::new();
    let a = Place::Commune("25216");
    for (id, subject) in [("s1", "070203500001"), ("s2", "070203500002")] {
        let m = events::cccd(id, "2024-04-22T09:00:00+07:00", a, subject, "received");
        producer.send(&app.topics.cccd, 0, None, m.as_bytes()).await;
    }
    app.wait_consumed(2, Duration::from_secs(60)).await;
    app.wait_for("the figures", Duration::from_secs(60), || async {
        let m = app.metrics().await;
        m.get("d06_coverage_gained_today", &[("indicator", "cccd"), ("area_level", "province")]) == Some(2.0)
    })
    .await;
    app.wait_for("a flush without a read-back", Duration::from_secs(30), || async {
        app.log().contains("figures not read back on this flush")
    })
    .await;
}

/// What d06 shows as of `today` (`aggregator::coverage::status`): net
/// through `today`, gained on `today`, net of the seven days ending on it.
type Shown = (i64, u64, i64);

/// [`Shown`] from (day, gained, lost) entries.
fn as_of<'a>(entries: impl Iterator<Item = (NaiveDate, &'a u64, &'a u64)>, today: NaiveDate) -> Shown {
    let mut out = (0, 0, 0);
    for (day, gained, lost) in entries.filter(|(d, _, _)| *d <= today) {
        let net = *gained as i64 - *lost as i64;
        out.0 += net;
        if day == today {
            out.1 += gained;
        }
        if (today - day).num_days() < 7 {
            out.2 += net;
        }
    }
    out
}

/// From the rows written: every shard's winning row of the key, day by day.
fn recount(winners: &Winners, key: (&str, &str, &str), today: NaiveDate) -> Shown {
    let rows = winners.iter().filter(|((i, l, c, _, _), _)| (*i, *l, *c) == key);
    as_of(rows.map(|((_, _, _, day, _), (_, gained, lost))| (*day, gained, lost)), today)
}

/// From what the read-back returned for the key.
fn shown(days: Option<&BTreeMap<NaiveDate, (u64, u64)>>, today: NaiveDate) -> Shown {
    as_of(days.into_iter().flatten().map(|(day, (gained, lost))| (*day, gained, lost)), today)
}
