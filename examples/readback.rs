//! What the province-wide read-back costs as the shard rows grow, for
//! `deploy/bench/readback.sh` (BENCHMARKS.md, "Reading the figures back").
//!
//! Every flush of d06 ends by reading the sums over all shards back from
//! ClickHouse (`ClickHouseSink::figures`, ARCHITECTURE.md "State is sharded
//! by subject digest"). This fills a fresh database, through d06's own
//! migrations and write path, with the dense day rows `--shards` shards
//! write over `--days` days for every area of every province (pre-2025:
//! 10,810 areas; post-2025: 3,355; × 5 indicators) and the row per shard and
//! key of `coverage_shard_recent` they write with them on the last day, then
//! times `figures` as d06 calls it (which reads the latter), and, for
//! reference, the query it sent before 2026-12-05's second change (the day
//! rows, the last week's days apart), checking both give the same sums: for
//! the levels d06 exports by default (the province, and the districts
//! before the reform or the communes after it), or every level with
//! `--communes` (`http.commune_metrics = true`).
//!
//! ```sh
//! readback --clickhouse http://127.0.0.1:8123 --database d06_readback --shards 2 --days 30 [--post2025] [--communes] [--tickets N]
//! ```

use std::time::Instant;

use std::collections::BTreeMap;

use aggregator::hotline::HotlineCounts;
use aggregator::{AreaId, AreaLevel, Geography, GeographyVersion, Indicator};
use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::Parser;
use sinks::clickhouse::{
    ClickHouseConfig, ClickHouseSink, CoverageRecentRow, CoverageShardRow, HotlineShardRow, WriteBatch,
};

#[derive(Parser)]
struct Args {
    /// ClickHouse HTTP URL.
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse: String,
    /// A database this run creates and fills (it must not hold d06's data).
    #[arg(long)]
    database: String,
    /// Shards writing rows.
    #[arg(long)]
    shards: u32,
    /// Days of the campaign so far.
    #[arg(long)]
    days: u32,
    /// The geography after the 2025 reform (34 provinces, communes only).
    #[arg(long)]
    post2025: bool,
    /// Read every level back, communes included (`http.commune_metrics`).
    #[arg(long)]
    communes: bool,
    /// Times the read-back is repeated.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Hotline tickets spread over the shards, days and communes (or, before
    /// the reform, the districts' communes): their sparse rows are written
    /// too and the hotline's read-back timed beside the coverage's.
    #[arg(long, default_value_t = 0)]
    tickets: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let version = if args.post2025 { GeographyVersion::Post2025 } else { GeographyVersion::Pre2025 };
    let codes: Vec<String> = aggregator::geo::provinces(version)?.into_iter().map(|p| p.code).collect();
    let geo = Geography::load_provinces(version, &codes)?;
    let cfg = ClickHouseConfig { url: args.clickhouse.clone(), database: args.database.clone(), ..Default::default() };
    let sink = ClickHouseSink::connect(&cfg).await.context("connecting to ClickHouse")?;
    sink.migrate().await.context("creating d06's tables")?;

    let start = NaiveDate::from_ymd_opt(2024, 5, 1).context("start day")?;
    let last = start + chrono::Days::new(u64::from(args.days.max(1) - 1));
    let gained_on = |i: usize, d: u32, shard: u32| (i as u64 + u64::from(d) + u64::from(shard)) % 7;
    let filled = Instant::now();
    let mut rows = 0u64;
    for shard in 0..args.shards {
        for d in 0..args.days {
            let day = start + chrono::Days::new(u64::from(d));
            let mut batch = WriteBatch::default();
            for ind in Indicator::ALL {
                for (i, area) in geo.areas().iter().enumerate() {
                    let gained = gained_on(i, d, shard);
                    batch.coverage.push(CoverageShardRow {
                        day,
                        indicator: *ind,
                        area_level: area.level,
                        area: area.code.clone(),
                        shard,
                        gained,
                        lost: 0,
                        net: i64::from(d) * 3,
                        version: 1,
                    });
                }
            }
            rows += batch.coverage.len() as u64;
            sink.write(&batch).await.context("writing rows")?;
        }
        let mut batch = WriteBatch::default();
        for ind in Indicator::ALL {
            for (i, area) in geo.areas().iter().enumerate() {
                let mut r = CoverageRecentRow::new(*ind, area.level, area.code.clone(), shard, last, 1);
                for d in 0..args.days {
                    r.add(start + chrono::Days::new(u64::from(d)), gained_on(i, d, shard), 0);
                }
                batch.recent.push(r);
            }
        }
        sink.write(&batch).await.context("writing the recent rows")?;
    }
    let hotline_rows = write_tickets(&sink, &geo, &args, start).await?;
    let fill_secs = filled.elapsed().as_secs_f64();
    // As `View::exported`: communes only where they are the tier below the
    // province, or when asked for.
    let levels: Vec<&str> = geo
        .levels()
        .iter()
        .filter(|l| **l != AreaLevel::Commune || **l == geo.tier() || args.communes)
        .map(|l| l.as_str())
        .collect();
    // As d06 reads them on the last day: the week's days apart, the earlier ones summed.
    let week = last.checked_sub_days(chrono::Days::new(6)).context("a week before the last day")?;
    let http = reqwest::Client::new();
    let list = levels.iter().map(|l| format!("'{l}'")).collect::<Vec<_>>().join(",");
    for run in 1..=args.repeat {
        let t = Instant::now();
        let f = sink.figures(&levels, start, Some(week)).await.context("reading the figures back")?;
        let secs = t.elapsed().as_secs_f64();
        let sums: usize = f.coverage.values().map(|d| d.len()).sum();
        let total: u64 = f.coverage.values().flat_map(|d| d.values()).map(|(g, _)| g).sum();
        // The reference: the day rows' query of `figures` before the recent rows.
        let t = Instant::now();
        let day_rows = http
            .post(&args.clickhouse)
            .query(&[("database", args.database.as_str())])
            .body(format!(
                "SELECT if(day < toDate('{week}'), subtractDays(toDate('{week}'), 1), day) AS d, indicator, \
                 area_level, area, sum(gained) AS gained, sum(lost) AS lost, max(day) AS newest \
                 FROM coverage_shard_daily FINAL WHERE area_level IN ({list}) \
                 GROUP BY d, indicator, area_level, area FORMAT TSV"
            ))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("the day rows' query")?
            .text()
            .await?;
        let day_secs = t.elapsed().as_secs_f64();
        let day_total: u64 = day_rows.lines().filter_map(|l| l.split('\t').nth(4)?.parse::<u64>().ok()).sum();
        anyhow::ensure!(day_total == total, "the day rows sum to {day_total} gained, the recent rows to {total}");
        println!(
            "{version:?}, levels {}: shards {} days {} day rows {rows} (written in {fill_secs:.1} s); \
             read-back {run}: recent rows {secs:.2} s ({sums} (key, day) sums, {} keys), \
             the day rows' query {day_secs:.2} s, the same {total} gained",
            levels.join(","),
            args.shards,
            args.days,
            f.coverage.len()
        );
        if args.tickets > 0 {
            let t = Instant::now();
            let hotline = sink.hotline_figures(&levels, start).await.context("reading the hotline back")?;
            let secs = t.elapsed().as_secs_f64();
            let received: u64 = hotline
                .iter()
                .filter(|h| h.area_level == AreaLevel::Province.as_str())
                .map(|h| h.counts.received)
                .sum();
            anyhow::ensure!(received == args.tickets, "the provinces received {received}, not {}", args.tickets);
            println!(
                "  hotline read-back {run}: {secs:.2} s over {hotline_rows} sparse rows, {} areas, {received} tickets",
                hotline.len()
            );
        }
    }
    Ok(())
}

/// Writes `--tickets` tickets as the shards would: one row per (area, day,
/// shard) that received any, for the lowest area of each ticket and every
/// area above it. Returns the rows written.
async fn write_tickets(sink: &ClickHouseSink, geo: &Geography, args: &Args, start: NaiveDate) -> Result<u64> {
    if args.tickets == 0 {
        return Ok(0);
    }
    let lowest: Vec<AreaId> =
        (0..geo.areas().len()).map(|i| AreaId(i as u16)).filter(|a| geo.area(*a).level == AreaLevel::Commune).collect();
    let mut counts: BTreeMap<(AreaId, u32, u32), u64> = BTreeMap::new();
    for t in 0..args.tickets {
        // Spread evenly and deterministically: a multiplicative hash of the ticket number.
        let h = t.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let area = lowest[(h % lowest.len() as u64) as usize];
        let (day, shard) = ((h >> 20) as u32 % args.days.max(1), (h >> 40) as u32 % args.shards.max(1));
        for a in geo.chain(area) {
            *counts.entry((a, day, shard)).or_default() += 1;
        }
    }
    let mut batch = WriteBatch::default();
    for ((a, day, shard), n) in &counts {
        let area = geo.area(*a);
        batch.hotline.push(HotlineShardRow {
            day: start + chrono::Days::new(u64::from(*day)),
            area_level: area.level,
            area: area.code.clone(),
            shard: *shard,
            counts: HotlineCounts { received: *n, answered: *n, ..HotlineCounts::default() },
            version: 1,
        });
    }
    sink.write(&batch).await.context("writing the hotline rows")?;
    Ok(counts.len() as u64)
}
