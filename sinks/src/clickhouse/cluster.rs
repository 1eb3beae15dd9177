//! The schema on a ClickHouse cluster (`[clickhouse] cluster = "NAME"`).
//!
//! The migrations are written once, for one server; on a cluster each
//! statement is rendered here into its cluster form, run `ON CLUSTER`
//! (through the distributed DDL queue in ZooKeeper, so every server applies
//! it, in the same order, also one that was down when it was issued):
//!
//! - a **sharded** table (the shard tables and `dead_letters`: they grow with
//!   the data) becomes `NAME_local`, a `ReplicatedReplacingMergeTree` at
//!   ZooKeeper path `/clickhouse/d06/<database>/{shard}/NAME`, replica
//!   `{replica}`, plus `NAME`, a `Distributed` table over the cluster with a
//!   sharding key that keeps every version of a row on one shard (d06's
//!   `shard` column, or the dead letter's source position). Writers insert
//!   into `NAME` (synchronously, `insert_distributed_sync = 1`), readers read
//!   `NAME ... FINAL`: each shard collapses its own rows, so `FINAL` is exact
//!   and one replica per shard answers, so no row is counted twice;
//! - a table **everywhere** (the plan, `alerts`, `shard_owners`,
//!   `deployment`, `schema_migrations`: small, and read with `FINAL` by
//!   the coordination queries) becomes a `ReplicatedReplacingMergeTree`
//!   with one replica on every server of the cluster, at
//!   `/clickhouse/d06/<database>/all/NAME`, replica `{shard}-{replica}`:
//!   any server answers for all of it, locally;
//! - a view is created on every server unchanged: it reads the names above.
//!
//! The servers need the macros `{shard}` and `{replica}` (docs/OPERATIONS.md).

/// The ZooKeeper path under which d06's replicated tables live.
pub const ZOOKEEPER_ROOT: &str = "/clickhouse/d06";

/// Suffix of a sharded table's local (replicated) part.
pub const LOCAL_SUFFIX: &str = "_local";

/// The sharded tables and their sharding keys. Every other table is
/// replicated to every server.
const SHARDED: &[(&str, &str)] = &[
    ("coverage_shard_daily", "shard"),
    ("coverage_shard_recent", "shard"),
    ("hotline_shard_daily", "shard"),
    ("dead_letters", "cityHash64(topic, `partition`, `offset`)"),
];

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS {db}.";
const CREATE_VIEW: &str = "CREATE VIEW IF NOT EXISTS {db}.";
const ENGINE: &str = " ENGINE = ReplacingMergeTree";

/// The sharding key of `table` when it is sharded on a cluster.
pub fn sharding_key(table: &str) -> Option<&'static str> {
    SHARDED.iter().find(|(t, _)| *t == table).map(|(_, k)| *k)
}

/// The statements that create on cluster `cluster` what `statement` (a
/// migration, with `{db}`) creates on one server, rendered for `database`
/// (already validated: letters, digits, `_`). An `Err` names a statement
/// this module does not know how to place: a programming error that the
/// unit tests catch for every migration.
pub fn render_on_cluster(statement: &str, database: &str, cluster: &str) -> Result<Vec<String>, String> {
    let s = statement.trim();
    let on = format!(" ON CLUSTER `{cluster}`");
    let db = |sql: String| super::migrations::render(&sql, database);
    if let Some(rest) = s.strip_prefix(CREATE_VIEW) {
        let (name, tail) = split_name(rest);
        return Ok(vec![db(format!("{CREATE_VIEW}{name}{on}{tail}"))]);
    }
    let rest = s.strip_prefix(CREATE_TABLE).ok_or_else(|| format!("not a CREATE TABLE/VIEW: {s}"))?;
    let (name, tail) = split_name(rest);
    let at = tail.find(ENGINE).ok_or_else(|| format!("{name}: not a ReplacingMergeTree"))?;
    let columns = &tail[..at];
    let engine_tail = &tail[at + ENGINE.len()..];
    let (version, settings) = match engine_tail.strip_prefix('(') {
        Some(args) => {
            let close = args.find(')').ok_or_else(|| format!("{name}: unclosed engine arguments"))?;
            (format!(", {}", &args[..close]), &args[close + 1..])
        }
        None => (String::new(), engine_tail),
    };
    let replicated = |path: &str, replica: &str| {
        format!(
            " ENGINE = ReplicatedReplacingMergeTree('{ZOOKEEPER_ROOT}/{database}/{path}/{name}', '{replica}'{version})"
        )
    };
    Ok(match sharding_key(name) {
        Some(key) => vec![
            db(format!(
                "{CREATE_TABLE}{name}{LOCAL_SUFFIX}{on}{columns}{}{settings}",
                replicated("{shard}", "{replica}")
            )),
            db(format!(
                "{CREATE_TABLE}{name}{on}{columns} ENGINE = Distributed('{cluster}', '{database}', \
                 '{name}{LOCAL_SUFFIX}', {key})"
            )),
        ],
        None => {
            vec![db(format!("{CREATE_TABLE}{name}{on}{columns}{}{settings}", replicated("all", "{shard}-{replica}")))]
        }
    })
}

/// `name rest...` → (name, rest), the name ending at a space, newline or `(`.
fn split_name(s: &str) -> (&str, &str) {
    let end = s.find([' ', '\n', '(']).unwrap_or(s.len());
    s.split_at(end)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::migrations::{BOOTSTRAP, MIGRATIONS};
    use super::*;

    fn all() -> Vec<&'static str> {
        std::iter::once(BOOTSTRAP).chain(MIGRATIONS.iter().flat_map(|m| m.statements.iter().copied())).collect()
    }

    #[test]
    fn every_migration_renders_on_a_cluster_and_runs_on_cluster() {
        let mut sharded = Vec::new();
        for s in all() {
            let out = render_on_cluster(s, "d06_x", "d06_local").unwrap();
            for r in &out {
                assert!(r.contains(" ON CLUSTER `d06_local`"), "{r}");
                assert!(r.contains("IF NOT EXISTS `d06_x`."), "{r}");
                assert!(!r.contains("{db}"), "{r}");
                assert!(!r.contains("ENGINE = ReplacingMergeTree"), "a plain table on a cluster: {r}");
            }
            if out.len() == 2 {
                sharded.push(out);
            }
        }
        let names: Vec<&str> = SHARDED.iter().map(|(t, _)| *t).collect();
        assert_eq!(sharded.len(), names.len(), "one local + one Distributed table per sharded table");
    }

    #[test]
    fn a_shard_table_becomes_a_replicated_local_table_and_a_distributed_one() {
        let s = MIGRATIONS[0].statements[0];
        let out = render_on_cluster(s, "d06_x", "c1").unwrap();
        assert!(out[0].starts_with("CREATE TABLE IF NOT EXISTS `d06_x`.coverage_shard_daily_local ON CLUSTER `c1` (\n"));
        assert!(out[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/d06/d06_x/{shard}/coverage_shard_daily', '{replica}', version)\nPARTITION BY toYYYYMM(day)\nORDER BY (indicator, area_level, area, day, shard)"
        ), "{}", out[0]);
        assert!(out[1].starts_with("CREATE TABLE IF NOT EXISTS `d06_x`.coverage_shard_daily ON CLUSTER `c1` (\n"));
        assert!(
            out[1].ends_with(") ENGINE = Distributed('c1', 'd06_x', 'coverage_shard_daily_local', shard)"),
            "{}",
            out[1]
        );
    }

    #[test]
    fn small_tables_are_replicated_to_every_server_and_views_stay_as_they_are() {
        let out = render_on_cluster(BOOTSTRAP, "db", "c").unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/d06/db/all/schema_migrations', '{shard}-{replica}')\nORDER BY version"
        ), "{}", out[0]);
        let view =
            MIGRATIONS[0].statements.iter().find(|s| s.contains("VIEW IF NOT EXISTS {db}.hotline_daily")).unwrap();
        let out = render_on_cluster(view, "db", "c").unwrap();
        assert_eq!(
            out,
            [super::super::migrations::render(
                &view.replacen("hotline_daily AS", "hotline_daily ON CLUSTER `c` AS", 1),
                "db"
            )]
        );
    }

    #[test]
    fn an_unknown_statement_is_an_error() {
        assert!(render_on_cluster("DROP TABLE {db}.x", "db", "c").is_err());
        assert!(render_on_cluster("CREATE TABLE IF NOT EXISTS {db}.x (a UInt8) ENGINE = Log", "db", "c").is_err());
    }
}
