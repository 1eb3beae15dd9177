//! The versioned ClickHouse schema.
//!
//! Rules for every statement here, old and new:
//! - it runs on ClickHouse 18.16 and on current releases: MergeTree family,
//!   `Date`/`DateTime`, no `DateTime64`, no TTL, no `Nullable`, no window
//!   functions, no `CREATE OR REPLACE`;
//! - it is idempotent (`IF NOT EXISTS` / `IF EXISTS`), so re-running a
//!   migration, or two instances running it at the same moment, is harmless:
//!   the loser of a race finds the object already there and does nothing;
//! - tables are named `{db}.table`; `{db}` is replaced by the configured,
//!   validated database name. Views must name their tables with the database
//!   because a view is resolved in the reader's current database.
//!
//! Migrations are only ever appended; a released one is never edited.

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing, recorded in `schema_migrations`.
    pub version: u32,
    /// Short description, recorded with the version.
    pub name: &'static str,
    /// Statements, run in order; each one idempotent.
    pub statements: &'static [&'static str],
}

/// Created before anything else so that applied versions can be read.
/// `ReplacingMergeTree` so that two instances recording the same version at
/// once leave one logical row.
pub const BOOTSTRAP: &str = "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime
) ENGINE = ReplacingMergeTree
ORDER BY version";

/// `coverage_daily` (OUTPUTS-v1): one row per plan day and key.
///
/// `covered` is the baseline plus the cumulative sum, over all days up to and
/// including this one, of the shard-summed `gained - lost`. It is computed
/// from the per-day counts (not from the shards' stored `net`) so that it is
/// right even when a shard wrote no row for a quiet day: a day without rows
/// carries the last covered value forward. The right side of the join is
/// one row per key with parallel arrays sorted by day: `ds` (days with rows),
/// `gs`/`ls` (gained/lost that day), `cs` (running sum of gained - lost).
/// `arrayCount(... <= day)` is how many of those days are not after this one,
/// so `cs[n]` is covered above the baseline (`cs[0]` is 0: no rows yet).
/// `day` is passed to the lambda through `replicate(day, ds)` rather than
/// captured: ClickHouse 18.16 drops captured columns from a view's
/// subquery when the reader does not also select them ("Unknown identifier").
const COVERAGE_DAILY: &str = "CREATE VIEW IF NOT EXISTS {db}.coverage_daily AS
SELECT
    day,
    indicator,
    area_level,
    area,
    gs[indexOf(ds, day)] AS gained,
    ls[indexOf(ds, day)] AS lost,
    toInt64(baseline) + cs[arrayCount((d, x) -> d <= x, ds, replicate(day, ds))] AS covered,
    target,
    expected
FROM
(
    SELECT day, indicator, area_level, area, baseline, target, expected
    FROM {db}.plan_daily FINAL
)
ANY LEFT JOIN
(
    SELECT
        indicator,
        area_level,
        area,
        arrayMap(t -> t.1, s) AS ds,
        arrayMap(t -> t.2, s) AS gs,
        arrayMap(t -> t.3, s) AS ls,
        arrayCumSum(arrayMap(t -> toInt64(t.2) - toInt64(t.3), s)) AS cs
    FROM
    (
        SELECT indicator, area_level, area, arraySort(groupArray((day, g, l))) AS s
        FROM
        (
            SELECT day, indicator, area_level, area, sum(gained) AS g, sum(lost) AS l
            FROM {db}.coverage_shard_daily FINAL
            GROUP BY day, indicator, area_level, area
        )
        GROUP BY indicator, area_level, area
    )
) USING (indicator, area_level, area)";

/// All migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema: shard tables, plan, views, dead letters, alerts",
        statements: &[
            "CREATE TABLE IF NOT EXISTS {db}.coverage_shard_daily (
    day Date,
    indicator String,
    area_level String,
    area String,
    shard UInt32,
    gained UInt64,
    lost UInt64,
    net Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (indicator, area_level, area, day, shard)",
            "CREATE TABLE IF NOT EXISTS {db}.plan_daily (
    day Date,
    indicator String,
    area_level String,
    area String,
    baseline UInt64,
    target UInt64,
    expected UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (indicator, area_level, area, day)",
            COVERAGE_DAILY,
            "CREATE TABLE IF NOT EXISTS {db}.hotline_shard_daily (
    day Date,
    area_level String,
    area String,
    shard UInt32,
    received UInt64,
    answered UInt64,
    forwarded UInt64,
    processed UInt64,
    in_progress UInt64,
    spam UInt64,
    overdue_specialist UInt64,
    overdue_leadership UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (area_level, area, day, shard)",
            "CREATE VIEW IF NOT EXISTS {db}.hotline_daily AS
SELECT
    day,
    area_level,
    area,
    sum(received) AS received,
    sum(answered) AS answered,
    sum(forwarded) AS forwarded,
    sum(processed) AS processed,
    sum(in_progress) AS in_progress,
    sum(spam) AS spam,
    sum(overdue_specialist) AS overdue_specialist,
    sum(overdue_leadership) AS overdue_leadership
FROM {db}.hotline_shard_daily FINAL
GROUP BY day, area_level, area",
            // No partitioning: a redelivered message may carry another
            // received_at, and rows only replace each other within a partition.
            "CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    received_at DateTime,
    topic String,
    `partition` UInt32,
    `offset` UInt64,
    reason String,
    detail String
) ENGINE = ReplacingMergeTree
ORDER BY (topic, `partition`, `offset`)",
            "CREATE TABLE IF NOT EXISTS {db}.alerts (
    day Date,
    district String,
    indicator String,
    sent_at DateTime,
    body String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, district, indicator)",
        ],
    },
    Migration {
        version: 2,
        name: "shard ownership: generations that fence zombie writers; the deployment's shard count",
        statements: &[
            // One row per claim of a shard (a facts partition) by an owner.
            // Row versions are `generation << 40 | sequence`: a claim with a
            // higher generation supersedes every row an older owner writes.
            "CREATE TABLE IF NOT EXISTS {db}.shard_owners (
    shard UInt32,
    generation UInt64,
    owner String,
    claimed_at DateTime
) ENGINE = ReplacingMergeTree
ORDER BY (shard, generation)",
            // What the shard rows of this database were written under: a
            // deployment with another shard count or facts topic is refused,
            // so the views can never sum stale shards.
            "CREATE TABLE IF NOT EXISTS {db}.deployment (
    name String,
    value String,
    recorded_at DateTime
) ENGINE = ReplacingMergeTree
ORDER BY name",
        ],
    },
    Migration {
        version: 3,
        name: "coverage_baseline: each area's baseline and whether the plan knows it",
        statements: &[
            // One row per (indicator, area): the plan's baseline as the
            // pipeline last wrote it (read with FINAL). `baseline_known` 0:
            // the plan gives no baseline, `covered` counts from 0 and the
            // area is never behind (OUTPUTS-v1).
            "CREATE TABLE IF NOT EXISTS {db}.coverage_baseline (
    indicator String,
    area_level String,
    area String,
    baseline UInt64,
    baseline_known UInt8,
    source String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (indicator, area_level, area)",
        ],
    },
    Migration {
        version: 4,
        name: "areas: the geography's codes and official names, for dashboards' area lists",
        statements: &[
            // One row per area of the geography d06 runs with (read with
            // FINAL): what Grafana's area variables list, so no dashboard
            // carries a list of codes of its own.
            "CREATE TABLE IF NOT EXISTS {db}.areas (
    area_level String,
    area String,
    name String,
    parent String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (area_level, area)",
        ],
    },
    Migration {
        version: 5,
        name: "coverage_shard_recent: each shard's last days of a key and the sum before them, for the figures",
        statements: &[
            // One row per (key, shard), versioned like the day rows: the
            // shard's counts of the days `through - 7 ..= through` that have
            // any (`days`, `gained`, `lost`, parallel and sorted), and the
            // sums of every earlier day (`earlier_*`, pre-start days
            // included). The figures read this instead of every day row: its
            // size does not grow with the campaign's days (docs/SCALING.md).
            "CREATE TABLE IF NOT EXISTS {db}.coverage_shard_recent (
    indicator String,
    area_level String,
    area String,
    shard UInt32,
    through Date,
    earlier_gained UInt64,
    earlier_lost UInt64,
    days Array(Date),
    gained Array(UInt64),
    lost Array(UInt64),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (indicator, area_level, area, shard)",
        ],
    },
];

/// Replaces `{db}` with the (already validated) database name, backquoted.
pub(crate) fn render(statement: &str, database: &str) -> String {
    statement.replace("{db}", &format!("`{database}`"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_strictly_increase_from_one() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions[0], 1);
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    }

    #[test]
    fn every_statement_is_idempotent_and_portable() {
        let all = MIGRATIONS.iter().flat_map(|m| m.statements.iter()).chain([&BOOTSTRAP]);
        let mut count = 0;
        for s in all {
            count += 1;
            let upper = s.to_ascii_uppercase();
            assert!(upper.contains("IF NOT EXISTS") || upper.contains("IF EXISTS"), "not idempotent: {s}");
            for banned in ["DATETIME64", " TTL ", "NULLABLE", " OVER ", "OR REPLACE", "LOWCARDINALITY"] {
                assert!(!upper.contains(banned), "{banned} in {s}");
            }
            // Every table reference is qualified with the database.
            for word in ["FROM ", "EXISTS "] {
                for (i, _) in upper.match_indices(word) {
                    let next = upper[i + word.len()..].trim_start();
                    assert!(next.starts_with("{DB}.") || next.starts_with('('), "unqualified after {word:?} in {s}");
                }
            }
        }
        assert_eq!(count, 13);
    }

    #[test]
    fn render_backquotes_the_database() {
        assert_eq!(render("SELECT 1 FROM {db}.t, {db}.u", "d06_x"), "SELECT 1 FROM `d06_x`.t, `d06_x`.u");
    }
}
