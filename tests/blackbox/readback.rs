//! The figures' read-back (`ClickHouseSink::figures`) reads one row per
//! shard and key (`coverage_shard_recent`: the shard's last eight days one
//! by one, the earlier ones summed) and gives every figure d06 shows as of
//! a day that no shard is more than one day ahead of exactly as the whole
//! history does, also with the days before `apart_from` summed once more:
//! checked against each shard's counts day by day, recounted here from
//! plain tuples, through the real ClickHouse, with superseded and zombie
//! rows among the rows written. And a slow read-back is not repeated on
//! every flush (`pipeline.figures_share_percent`), while the figures still
//! arrive.

use std::collections::BTreeMap;
use std::time::Duration;

use aggregator::{AreaLevel, Indicator};
use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sinks::clickhouse::{ClickHouseConfig, ClickHouseSink, CoverageRecentRow, WriteBatch};

use crate::events::{self, Place};
use crate::harness::{clickhouse_query, clickhouse_url, spawn_app, unique, AppOptions, Producer};

/// (indicator, level, area code, shard) → the shard's (day, gained, lost)
/// through its own day: what the figures must add up.
type Truth = BTreeMap<(&'static str, &'static str, &'static str, u32), Vec<(NaiveDate, u64, u64)>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recent_rows_and_a_week_apart_show_what_every_day_shows() {
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
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut truth = Truth::new();
    let mut rows: Vec<CoverageRecentRow> = Vec::new();
    let mut newest = day(0);
    for (ind, level, code) in keys {
        for shard in 0..3u32 {
            // Each shard at its own day (20..=23), a count on most days up to it.
            let through = day(rng.random_range(20..=23));
            newest = newest.max(through);
            let counts: Vec<(NaiveDate, u64, u64)> = (0..=(through - start).num_days() as u64)
                .filter(|_| rng.random_ratio(7, 8))
                .collect::<Vec<u64>>()
                .into_iter()
                .map(|n| (day(n), rng.random_range(0..50u64), rng.random_range(0..5u64)))
                .collect();
            let row = |through: NaiveDate, version: u64, counts: &[(NaiveDate, u64, u64)]| {
                let mut r = CoverageRecentRow::new(ind, level, code.to_owned(), shard, through, version);
                for (d, g, l) in counts {
                    r.add(*d, *g, *l);
                }
                r
            };
            // The winner, then superseded versions: earlier flushes (fewer days)
            // and zombies (any counts, a day up to three after the winner's).
            let winner = rng.random_range(50..100u64);
            rows.push(row(through, winner, &counts));
            for version in 1..rng.random_range(2..=4u64) {
                let upto = rng.random_range(0..counts.len().max(1));
                let mut other = counts[..upto].to_vec();
                if rng.random_ratio(1, 2) {
                    other.push((through + chrono::Days::new(rng.random_range(1..=3)), 999, 0));
                }
                let at = other.last().map_or(through, |(d, _, _)| *d).max(day(8));
                rows.push(row(at, version * 10, &other));
            }
            truth.insert((ind.as_str(), level.as_str(), code, shard), counts);
        }
    }
    // Written in several inserts and shuffled, so that the versions meet in
    // several parts and a zombie's lower version is often written last.
    rows.shuffle(&mut rng);
    for part in rows.chunks(5) {
        sink.write(&WriteBatch { recent: part.to_vec(), ..WriteBatch::default() }).await.expect("write rows");
    }

    let levels = ["province", "district", "commune"];
    let every = sink.figures(&levels, start, None).await.expect("read the recent rows");
    assert_eq!(every.newest_day, Some(newest), "the newest day is the winning rows' newest");
    let per_key = every.coverage.values().map(|d| d.len()).max().unwrap_or(0);
    assert!(per_key <= 12, "{per_key} entries a key: the shards' last days, not the 24 days written");
    // Every day no shard is more than one day ahead of, some past the last count.
    let shown_days: Vec<NaiveDate> = (0..32).map(day).filter(|t| *t + chrono::Days::new(1) >= newest).collect();
    assert!(!shown_days.is_empty());
    for apart_from in [None, Some(day(0)), Some(day(9)), Some(day(15)), Some(day(22))] {
        let read = match apart_from {
            None => every.clone(),
            Some(a) => sink.figures(&levels, start, Some(a)).await.expect("read a week apart"),
        };
        assert_eq!(read.newest_day, Some(newest), "the newest day, whatever is summed");
        for today in shown_days.iter().copied().filter(|t| apart_from.is_none_or(|a| *t >= a + chrono::Days::new(6))) {
            for (ind, level, code) in keys {
                let key = (ind.as_str().to_owned(), level.as_str().to_owned(), code.to_owned());
                let expect = recount(&truth, (ind.as_str(), level.as_str(), code), today);
                assert_eq!(shown(read.coverage.get(&key), today), expect, "{key:?} as of {today}, {apart_from:?}");
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
    // Millions of shard rows (200 shards × 20,000 district keys no geography
    // has: ignored once read; dated before the events so that the province's
    // newest day stays theirs): every read-back has to read them.
    clickhouse_query(
        &http,
        &app.database,
        "INSERT INTO coverage_shard_recent \
         SELECT 'cccd', 'district', concat('x', toString(number % 20000)), 100 + intDiv(number, 20000), \
         toDate('2024-03-15') + (number % 28), \
         1, 0, [toDate('2024-03-15') + (number % 28)], [1], [0], 1 FROM numbers(4000000)",
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

/// From each shard's counts day by day.
fn recount(truth: &Truth, key: (&str, &str, &str), today: NaiveDate) -> Shown {
    let days = truth.iter().filter(|((i, l, c, _), _)| (*i, *l, *c) == key).flat_map(|(_, days)| days);
    as_of(days.map(|(day, gained, lost)| (*day, gained, lost)), today)
}

/// From what the read-back returned for the key.
fn shown(days: Option<&BTreeMap<NaiveDate, (u64, u64)>>, today: NaiveDate) -> Shown {
    as_of(days.into_iter().flatten().map(|(day, (gained, lost))| (*day, gained, lost)), today)
}
