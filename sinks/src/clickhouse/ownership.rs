//! Shard ownership in ClickHouse: the generations that fence a zombie's
//! writes, the deployment record that refuses a changed shard count, and the
//! province-wide figures read back as sums over every shard.
//!
//! A new owner of a shard claims the next generation (one more than any
//! claim or row version it can see) and stamps its rows with
//! `generation << 40 | sequence`. Whatever a previous owner writes later —
//! paused past its session, then resumed — carries a lower version and loses
//! in `ReplacingMergeTree`; the new owner's first flush rewrites every row
//! of the shard, so no key is left to the old owner.

use std::collections::BTreeMap;

use ::clickhouse::Row;
use aggregator::hotline::HotlineCounts;
use chrono::NaiveDate;
use serde::Deserialize;

use super::{date_from_wire, ClickHouseSink, SinkError, RECENT_DAYS};

/// Bits of a row version below the generation.
pub const SEQUENCE_BITS: u32 = 40;

/// One area's hotline counts summed over shards and days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotlineFigure {
    /// `area_level`.
    pub area_level: String,
    /// GSO code.
    pub area: String,
    /// Counts.
    pub counts: HotlineCounts,
}

/// (indicator, area_level, area).
pub type CoverageKey = (String, String, String);

/// What every instance shows: sums over all shards, read back from the shard tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// (indicator, area_level, area) → day → (gained, lost), summed over shards.
    pub coverage: BTreeMap<CoverageKey, BTreeMap<NaiveDate, (u64, u64)>>,
    /// Hotline counts of tickets received from the campaign start on.
    pub hotline: Vec<HotlineFigure>,
    /// The newest day any shard has written rows through (the most advanced
    /// shard's "today"; with the event clock, the day of the replay clock T).
    pub newest_day: Option<NaiveDate>,
}

#[derive(Row, Deserialize)]
struct CoverageSumRead {
    indicator: String,
    area_level: String,
    area: String,
    /// The key's days, in order; an entry that sums several days is on the
    /// last of them. Days whose sums are zero may be left out.
    days: Vec<u16>,
    /// Gained on each of `days`, all shards.
    gained: Vec<u64>,
    /// Lost on each of `days`, all shards.
    lost: Vec<u64>,
    /// The newest `through` among the key's rows.
    newest: u16,
}

#[derive(Row, Deserialize)]
struct HotlineSumRead {
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

#[derive(Row, Deserialize)]
struct GenerationRead {
    shard: u32,
    generation: u64,
}

#[derive(Row, Deserialize)]
struct DeploymentRead {
    name: String,
    value: String,
}

impl ClickHouseSink {
    /// Claims `shard` for `owner`: returns a generation higher than every
    /// earlier claim and every row version of the shard.
    ///
    /// On a cluster `shard_owners` has a replica on every server and is read
    /// locally; the claim first waits until this replica has fetched every
    /// claim made through another server (`SYSTEM SYNC REPLICA`), so two
    /// owners never take the same generation through two servers. While a
    /// server that holds claims not yet copied is down, claiming waits
    /// (retryable): safety before liveness, and only on a rebalance.
    pub async fn claim_shard(&self, shard: u32, owner: &str) -> Result<u64, SinkError> {
        if self.cluster.is_some() {
            self.execute("sync shard_owners", &format!("SYSTEM SYNC REPLICA `{}`.shard_owners", self.database)).await?;
        }
        let q = self
            .client()
            .query(
                "SELECT greatest(\
                   (SELECT max(generation) FROM shard_owners WHERE shard = ?), \
                   greatest((SELECT intDiv(max(version), 1099511627776) FROM coverage_shard_daily WHERE shard = ?), \
                   greatest((SELECT intDiv(max(version), 1099511627776) FROM coverage_shard_recent WHERE shard = ?), \
                            (SELECT intDiv(max(version), 1099511627776) FROM hotline_shard_daily WHERE shard = ?))))",
            )
            .bind(shard)
            .bind(shard)
            .bind(shard)
            .bind(shard);
        let seen: u64 = self.timed("read shard generation", q.fetch_one::<u64>()).await?;
        let generation = seen + 1;
        let insert = self
            .client()
            .query("INSERT INTO shard_owners (shard, generation, owner, claimed_at) SELECT ?, ?, ?, now()")
            .bind(shard)
            .bind(generation)
            .bind(owner);
        self.timed("claim shard", insert.execute()).await?;
        Ok(generation)
    }

    /// The newest claimed generation of each of `shards`.
    pub async fn generations(&self, shards: &[u32]) -> Result<BTreeMap<u32, u64>, SinkError> {
        if shards.is_empty() {
            return Ok(BTreeMap::new());
        }
        let list = shards.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let q = self.client().query(&format!(
            "SELECT shard, max(generation) AS generation FROM shard_owners WHERE shard IN ({list}) GROUP BY shard"
        ));
        let rows = self.timed("read shard generations", q.fetch_all::<GenerationRead>()).await?;
        Ok(rows.into_iter().map(|r| (r.shard, r.generation)).collect())
    }

    /// Records `facts` (the facts topic and its incarnation) and `shards` the
    /// first time; refuses, permanently, a database written under others.
    pub async fn check_deployment(&self, facts: &str, shards: u32) -> Result<(), SinkError> {
        let q = self.client().query("SELECT name, value FROM deployment FINAL");
        let rows = self.timed("read deployment", q.fetch_all::<DeploymentRead>()).await?;
        let want = [("facts_topic", facts.to_owned()), ("shards", shards.to_string())];
        for (name, value) in &want {
            match rows.iter().find(|r| r.name == *name) {
                Some(r) if r.value != *value => {
                    return Err(SinkError::permanent(
                        "deployment",
                        "check deployment",
                        format!(
                            "database {} holds shard rows written with {name} = {}, this instance has {value}: its \
                             views would sum stale shards. Use a new database, or the same settings",
                            self.database, r.value
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    let insert = self
                        .client()
                        .query("INSERT INTO deployment (name, value, recorded_at) SELECT ?, ?, now()")
                        .bind(*name)
                        .bind(value.as_str());
                    self.timed("record deployment", insert.execute()).await?;
                }
            }
        }
        Ok(())
    }

    /// Sums over every shard: coverage per key and day (levels in `levels`),
    /// hotline per area for tickets received on or after `since`.
    ///
    /// Coverage is read from `coverage_shard_recent` (one row per shard and
    /// key, `recent.rs`), not from the day rows: each row gives its days
    /// kept one by one and, on the day before the first of them, the sum of
    /// its earlier days. What d06 shows of a key as of a day `today`
    /// (covered through `today`, gained on `today`, the net of the seven days
    /// ending on it: `aggregator::coverage::status`) is then exact while no
    /// shard's day is more than one day after `today` (`recent.rs`).
    ///
    /// With `apart_from`, only the days from it on come one by one; every
    /// earlier entry of a key is summed, in ClickHouse, into one entry on
    /// the day before it, which leaves those figures as they are when
    /// `today − 6 ≥ apart_from` (BENCHMARKS.md, "Reading the figures back").
    pub async fn figures(
        &self,
        levels: &[&str],
        since: NaiveDate,
        apart_from: Option<NaiveDate>,
    ) -> Result<Figures, SinkError> {
        let list = levels.iter().map(|l| format!("'{}'", l.replace('\'', ""))).collect::<Vec<_>>().join(",");
        // Each row's entries: its earlier days' sums on the day before its
        // first kept day, then its kept days; summed per key and day over the
        // shards by `sumMap` (one output row per key; faster here than one
        // row per key and day, BENCHMARKS.md).
        let entries = format!("arrayPushFront(days, subtractDays(through, {RECENT_DAYS}))");
        let days = match apart_from {
            Some(_) => format!("arrayMap(d -> if(d < toDate(?), subtractDays(toDate(?), 1), d), {entries})"),
            None => entries,
        };
        let mut q = self.client().query(&format!(
            "SELECT indicator, area_level, area, s.1 AS days, s.2 AS gained, s.3 AS lost, newest \
             FROM (SELECT indicator, area_level, area, max(through) AS newest, \
                          sumMap({days}, arrayPushFront(gained, earlier_gained), arrayPushFront(lost, earlier_lost)) AS s \
                   FROM coverage_shard_recent FINAL WHERE area_level IN ({list}) \
                   GROUP BY indicator, area_level, area)"
        ));
        if let Some(from) = apart_from {
            q = q.bind(from.to_string()).bind(from.to_string());
        }
        let rows = self.timed("read coverage sums", q.fetch_all::<CoverageSumRead>()).await?;
        let mut out =
            Figures { newest_day: rows.iter().map(|r| r.newest).max().map(date_from_wire), ..Figures::default() };
        for r in rows {
            let days = r.days.iter().zip(r.gained.iter().zip(&r.lost));
            let key = out.coverage.entry((r.indicator, r.area_level, r.area)).or_default();
            key.extend(days.map(|(d, (g, l))| (date_from_wire(*d), (*g, *l))));
        }
        out.hotline = self.hotline_figures(levels, since).await?;
        Ok(out)
    }

    /// Hotline sums per area (levels in `levels`) for tickets received on or
    /// after `since`.
    pub async fn hotline_figures(&self, levels: &[&str], since: NaiveDate) -> Result<Vec<HotlineFigure>, SinkError> {
        let list = levels.iter().map(|l| format!("'{}'", l.replace('\'', ""))).collect::<Vec<_>>().join(",");
        let q = self
            .client()
            .query(&format!(
                "SELECT area_level, area, sum(received) AS received, sum(answered) AS answered, \
                 sum(forwarded) AS forwarded, sum(processed) AS processed, sum(in_progress) AS in_progress, \
                 sum(spam) AS spam, sum(overdue_specialist) AS overdue_specialist, \
                 sum(overdue_leadership) AS overdue_leadership \
                 FROM hotline_shard_daily FINAL WHERE area_level IN ({list}) AND day >= toDate(?) \
                 GROUP BY area_level, area"
            ))
            .bind(since.to_string());
        let rows = self.timed("read hotline sums", q.fetch_all::<HotlineSumRead>()).await?;
        Ok(rows
            .into_iter()
            .map(|r| HotlineFigure {
                area_level: r.area_level,
                area: r.area,
                counts: HotlineCounts {
                    received: r.received,
                    answered: r.answered,
                    forwarded: r.forwarded,
                    processed: r.processed,
                    in_progress: r.in_progress,
                    spam: r.spam,
                    overdue_specialist: r.overdue_specialist,
                    overdue_leadership: r.overdue_leadership,
                },
            })
            .collect())
    }
}
