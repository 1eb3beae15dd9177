//! Issue 7: the Grafana dashboards and the deployment files.
//!
//! The live test runs EVERY target of EVERY dashboard under
//! `deploy/grafana/dashboards/` against real data: the real `d06` fed through
//! the real broker, its ClickHouse database, and a real Prometheus scraping
//! it. A panel whose query does not run, or finds nothing, fails it. Grafana
//! itself is not here, so the test puts in what Grafana would:
//!
//! | in a query                          | replaced with (Grafana's own expansion, or the test's value)         |
//! |-------------------------------------|-----------------------------------------------------------------------|
//! | `$var`, `${var}`, `${var:raw}`, `[[var]]` | each value of the dashboard variable in turn (custom/constant)  |
//! | `${var:text}`                       | that value's label                                                    |
//! | time range (ClickHouse)             | from 2024-04-10 00:00 +07 (campaign start) to the wall clock now      |
//! | `$__dateFilter(c)`                  | `c >= toDate('<from, UTC>') AND c <= toDate('<to, UTC>')` (plugin 4.x) |
//! | `$__timeFilter(c)`                  | `c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)` (plugin 4.x)   |
//! | `$__fromTime`, `$__toTime`          | `toDateTime(<from s>)`, `toDateTime(<to s>)`                          |
//! | `d06.<table>` (ClickHouse)          | `` `<the app's database>`.<table> `` (deployments use `d06`)          |
//! | `$__rate_interval`                  | `1m` (Grafana: max(4 × scrape interval, interval + scrape interval) = 1m at 15 s) |
//! | `$__interval`                       | `15s`                                                                 |
//! | `$__range`                          | `1h`                                                                  |
//!
//! Anything else starting with `$` left in a query fails the test: add it to
//! this table first. Prometheus targets run as instant queries
//! (`/api/v1/query`); ClickHouse targets over HTTP in the app's database.
//!
//! The plain `#[test]`s check what needs no services: stable unique uids,
//! data sources that the provisioning defines, the PromQL and SQL house rules.
//! `grafana.rs` does what Grafana would (targets, variables, macros); the
//! deployment files have their own module (`deployment.rs`).

pub(crate) mod grafana;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use self::grafana::*;
use crate::events::{self, Place};
use crate::harness::{clickhouse_url, spawn_app, App, AppOptions, Producer, Prometheus};
use crate::proxy::FlakyProxy;

/// The dashboards and their uids: stable, the IOC wall links to them.
const UIDS: [&str; 4] = ["d06-province", "d06-district", "d06-hotline", "d06-pipeline"];
/// Dashboards read by the IOC wall: Vietnamese titles, with diacritics.
const WALL: [&str; 3] = ["d06-province", "d06-district", "d06-hotline"];
/// The five indicators of EVENTS-v1.
const INDICATORS: [&str; 5] = ["cccd", "vneid", "smartphone_4g", "sim_signature", "migrated_2g"];
/// Tables and views a dashboard may read (OUTPUTS-v1 and the physical ones).
const TABLES: [&str; 9] = [
    "coverage_daily",
    "coverage_baseline",
    "areas",
    "hotline_daily",
    "dead_letters",
    "plan_daily",
    "coverage_shard_daily",
    "hotline_shard_daily",
    "alerts",
];
/// Campaign start (the embedded 2024 plan), the start of the test's time range.
const FROM: &str = "2024-04-10T00:00:00+07:00";

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------------------ static checks

#[test]
fn dashboards_have_stable_unique_uids_and_only_provisioned_datasources() {
    let all = dashboards();
    let uids: Vec<&str> = all.iter().map(Dashboard::uid).collect();
    let unique: BTreeSet<&str> = uids.iter().copied().collect();
    assert_eq!(unique.len(), uids.len(), "duplicate dashboard uid in {uids:?}");
    assert_eq!(unique, UIDS.into_iter().collect::<BTreeSet<_>>(), "the dashboards and their stable uids");
    let sources = provisioned_datasources();
    assert_eq!(
        sources,
        BTreeMap::from([
            ("d06-clickhouse".to_owned(), "grafana-clickhouse-datasource".to_owned()),
            ("d06-prometheus".to_owned(), "prometheus".to_owned()),
        ])
    );
    for d in &all {
        assert_eq!(d.file.file_stem().and_then(|s| s.to_str()), Some(d.uid()), "file name = uid: {}", d.file.display());
        assert!(d.json["id"].is_null(), "{}: no numeric id in a provisioned dashboard", d.uid());
        let mut ids = BTreeSet::new();
        for p in panels(&d.json) {
            let title = p["title"].as_str().unwrap_or("");
            assert!(!title.is_empty(), "{}: a panel without a title", d.uid());
            assert!(ids.insert(p["id"].as_u64().unwrap_or(0)), "{}: panel id {} twice", d.uid(), p["id"]);
            if p["type"] == "row" {
                continue;
            }
            let n = p["targets"].as_array().map_or(0, Vec::len);
            assert!(n > 0, "{}: panel {title:?} has no query", d.uid());
            if WALL.contains(&d.uid()) {
                assert!(!title.is_ascii(), "{}: {title:?} is not Vietnamese with diacritics", d.uid());
            }
            // Every data source a panel names is provisioned, or a variable
            // resolving to one (targets are checked in `targets`).
            if let Some(uid) = p["datasource"]["uid"].as_str() {
                let uid = resolve_datasource(d, uid, &sources);
                assert!(sources.contains_key(&uid), "{}: panel {title:?}: datasource {uid} not provisioned", d.uid());
            }
        }
        let t = targets(d, &sources);
        assert!(!t.is_empty(), "{}: no targets", d.uid());
        let mut refs = BTreeSet::new();
        for x in &t {
            assert!(
                refs.insert((x.panel.clone(), x.ref_id.clone())),
                "{}: {:?} refId {} twice",
                d.uid(),
                x.panel,
                x.ref_id
            );
        }
    }
}

/// The `/` operators of a PromQL expression outside brackets, split.
fn top_level_divisions(expr: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0i32;
    let mut quoted = false;
    for c in expr.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' | '{' | '[' if !quoted => depth += 1,
            ')' | '}' | ']' if !quoted => depth -= 1,
            '/' if !quoted && depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().unwrap().push(c);
    }
    parts
}

fn strip_parens(s: &str) -> &str {
    let mut s = s.trim();
    while s.starts_with('(') && s.ends_with(')') {
        s = s[1..s.len() - 1].trim();
    }
    s
}

#[test]
fn queries_follow_the_house_rules() {
    let sources = provisioned_datasources();
    let mut checked = 0;
    for d in dashboards() {
        for t in targets(&d, &sources) {
            let at = format!("{} / {:?} / {}", t.dashboard, t.panel, t.ref_id);
            let expected = match &t.query {
                Query::Prometheus(_) => ("d06-prometheus", "prometheus"),
                Query::ClickHouse { .. } => ("d06-clickhouse", "grafana-clickhouse-datasource"),
            };
            assert_eq!((t.datasource_uid.as_str(), t.datasource_type.as_str()), expected, "{at}");
            match &t.query {
                Query::Prometheus(expr) => {
                    assert!(!expr.trim().is_empty(), "{at}: empty expr");
                    // Combine numerators and denominators, then divide: a ratio of
                    // totals, never a sum (or an average) of ratios. Every
                    // instance exports the province-wide figures, so instances
                    // combine with max (ARCHITECTURE.md); sum stays right for
                    // figures that are per instance.
                    let sides = top_level_divisions(expr);
                    if sides.len() > 1 {
                        for side in &sides {
                            let s = strip_parens(side);
                            assert!(
                                s.starts_with("sum by")
                                    || s.starts_with("sum(")
                                    || s.starts_with("max by")
                                    || s.starts_with("max("),
                                "{at}: divide combined totals only, got {s:?} in\n{expr}"
                            );
                        }
                    }
                    let compact: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
                    assert!(!compact.contains("avg("), "{at}: no averages of per-area figures: {expr}");
                    // One province at a time: a deployment may track several,
                    // and a max or sum over them would mix their campaigns.
                    for (i, _) in compact.match_indices("d06_coverage_").chain(compact.match_indices("d06_hotline_")) {
                        let selector = compact[i..].split_once('}').map_or("", |(s, _)| s);
                        assert!(selector.contains("province=\"$province\""), "{at}: {selector}}} without the province");
                    }
                    assert!(
                        !compact.contains("d06_coverage_ratio"),
                        "{at}: compute ratios from covered and target: {expr}"
                    );
                }
                Query::ClickHouse { sql, time_series } => {
                    let upper = sql.to_ascii_uppercase();
                    assert!(upper.trim_start().starts_with("SELECT"), "{at}: not a SELECT: {sql}");
                    assert!(
                        !upper.contains(" OVER ") && !upper.contains(" OVER("),
                        "{at}: no window functions on 18.16: {sql}"
                    );
                    // 18.16 reads `ORDER BY 1` as a constant: name the columns.
                    for (i, _) in upper.match_indices("ORDER BY") {
                        let after = upper[i + 8..].trim_start();
                        assert!(!after.starts_with(|c: char| c.is_ascii_digit()), "{at}: ORDER BY a position: {sql}");
                    }
                    for (i, _) in upper.match_indices("GROUP BY") {
                        let after = upper[i + 8..].trim_start();
                        assert!(!after.starts_with(|c: char| c.is_ascii_digit()), "{at}: GROUP BY a position: {sql}");
                    }
                    assert!(sql.contains("d06."), "{at}: qualify tables with the database (d06.<table>): {sql}");
                    // One province at a time (as above): its own row, one area
                    // of it, or the areas whose parent it is.
                    if sql.contains("d06.coverage_daily") || sql.contains("d06.hotline_daily") {
                        assert!(
                            sql.contains("area = '${province}'")
                                || sql.contains("parent = '${province}'")
                                || sql.contains("area = '${district}'"),
                            "{at}: not kept to one province: {sql}"
                        );
                    }
                    if *time_series {
                        assert!(sql.contains(" AS time"), "{at}: a time series needs a `time` column: {sql}");
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} targets: a dashboard went missing?");
}

/// The districts of the pre-2025 geography, `(code, official name)`, from
/// the embedded data file (not from d06's types).
fn official_districts() -> Vec<(String, String)> {
    let csv = std::fs::read_to_string(repo().join("aggregator/data/binh_phuoc_district_summary.csv")).unwrap();
    let districts: Vec<(String, String)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(districts.len(), 11);
    let codes: BTreeSet<&str> = events::COMMUNES.iter().map(|(_, d)| *d).collect();
    assert_eq!(codes, districts.iter().map(|(c, _)| c.as_str()).collect::<BTreeSet<_>>());
    districts
}

#[test]
fn the_district_list_comes_from_the_data_and_the_five_indicators_are_listed() {
    let districts = official_districts();
    let all = dashboards();
    let district = all.iter().find(|d| d.uid() == "d06-district").unwrap();
    let vars = variables(district);
    let v = vars.iter().find(|v| v.name == "district").expect("district variable");
    // A ClickHouse query over the geography d06 runs with, not a list of codes.
    let sql = v.sql.as_deref().expect("the district variable is a query");
    assert!(sql.contains("d06.areas") && v.options.is_empty(), "{sql}");
    // The districts of the province chosen, itself a query over the data.
    assert!(sql.contains("parent = '${province}'"), "{sql}");
    for d in all.iter().filter(|d| WALL.contains(&d.uid())) {
        let vars = variables(d);
        let p =
            vars.iter().find(|v| v.name == "province").unwrap_or_else(|| panic!("{}: no province variable", d.uid()));
        assert!(p.sql.as_deref().is_some_and(|q| q.contains("d06.areas") && q.contains("'province'")), "{:?}", p.sql);
    }
    let templating = district.json["templating"].to_string();
    for (code, name) in &districts {
        assert!(!templating.contains(&format!("\"{code}\"")), "a hard-coded district {code} in {templating}");
        assert!(!templating.contains(name.as_str()), "a hard-coded name {name} in {templating}");
    }
    // Every data source is a variable: no panel names a uid itself.
    for d in &all {
        for p in panels(&d.json) {
            for ds in std::iter::once(&p["datasource"])
                .chain(p["targets"].as_array().map(Vec::as_slice).unwrap_or_default().iter().map(|t| &t["datasource"]))
            {
                if let Some(uid) = ds["uid"].as_str() {
                    assert!(uid.starts_with("${ds_"), "{}: panel {}: data source {uid}", d.uid(), p["title"]);
                }
            }
        }
    }
    let province = all.iter().find(|d| d.uid() == "d06-province").unwrap();
    let vars = variables(province);
    let v = vars.iter().find(|v| v.name == "indicator").expect("indicator variable");
    assert_eq!(v.options.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), INDICATORS);
}

#[test]
fn substitution_follows_grafana_and_the_plugin() {
    assert_eq!(
        put_variable("a=\"$district\",b=${district},c=$districts", "district", "689", "x"),
        "a=\"689\",b=689,c=$districts"
    );
    assert_eq!(put_variable("${indicator:text} [[indicator]]", "indicator", "cccd", "CCCD"), "CCCD cccd");
    let range = Range {
        from: chrono::DateTime::parse_from_rfc3339(FROM).unwrap().with_timezone(&chrono::Utc),
        to: chrono::DateTime::parse_from_rfc3339("2024-04-22T10:00:00+07:00").unwrap().with_timezone(&chrono::Utc),
    };
    assert_eq!(
        put_clickhouse("SELECT 1 FROM d06.coverage_daily WHERE $__dateFilter(day) AND $__timeFilter( t )", range, "db"),
        "SELECT 1 FROM `db`.coverage_daily WHERE day >= toDate('2024-04-09') AND day <= toDate('2024-04-22') \
         AND t >= toDateTime(1712682000) AND t <= toDateTime(1713754800)"
    );
    assert_eq!(put_prometheus("rate(x[$__rate_interval]) + y[$__range]"), "rate(x[1m]) + y[1h]");
}

// ------------------------------------------------------------ the live test

/// Coverage events: several districts, every indicator, one duplicate, one
/// level-1 activation (not counted), the newest event last. `(topic, partition, message)`.
fn coverage_stream() -> Vec<(usize, i32, String)> {
    let c = |code| Place::Commune(code);
    vec![
        (0, 0, events::cccd("dc1", "2024-04-12T09:00:00+07:00", c("25195"), &events::citizen(1), "received")),
        (0, 1, events::cccd("dc2", "2024-04-12T10:00:00+07:00", c("25195"), &events::citizen(2), "received")),
        (0, 0, events::cccd("dc3", "2024-04-15T09:00:00+07:00", c("25270"), &events::citizen(3), "received")),
        (0, 0, events::cccd("dc1", "2024-04-12T09:00:00+07:00", c("25195"), &events::citizen(1), "received")),
        (1, 0, events::vneid("dv1", "2024-04-16T09:00:00+07:00", c("25363"), &events::citizen(5), "activated", 2)),
        (1, 1, events::vneid("dv2", "2024-04-17T09:00:00+07:00", c("25432"), &events::citizen(6), "activated", 2)),
        (1, 1, events::vneid("dv3", "2024-04-17T10:00:00+07:00", c("25432"), &events::citizen(7), "activated", 1)),
        (2, 0, events::swap("ds1", "2024-04-18T09:00:00+07:00", c("25222"), &events::phone(1), "smartphone")),
        (2, 1, events::swap("ds2", "2024-04-19T09:00:00+07:00", c("25308"), &events::phone(2), "feature_phone")),
        (2, 0, events::signature("dg1", "2024-04-20T09:00:00+07:00", c("25240"), &events::phone(3), "installed")),
        (2, 1, events::signature("dg2", "2024-04-21T09:00:00+07:00", c("25320"), &events::phone(4), "installed")),
        (0, 1, events::cccd("dc4", "2024-04-22T09:00:00+07:00", c("25396"), &events::citizen(4), "received")),
    ]
}

/// Hotline tickets (each ticket's events in one partition, in order), one
/// malformed message, and the newest event of all (22/4 10:00).
fn hotline_stream() -> Vec<(usize, i32, String)> {
    let c = |code| Place::Commune(code);
    vec![
        // Leadership, never closed: 48 working hours ran out on 19/4 (18/4 is a holiday).
        (3, 0, events::ticket("dt1", "2024-04-10T08:00:00+07:00", c("25216"), "T-1", "received", "leadership")),
        // Answered within the hour: processed, answered.
        (3, 1, events::ticket("dt2", "2024-04-15T08:00:00+07:00", c("25195"), "T-2", "received", "specialist")),
        (3, 1, events::ticket("dt3", "2024-04-15T09:00:00+07:00", c("25195"), "T-2", "answered", "specialist")),
        // Specialist, never closed: overdue since 17/4 08:00.
        (3, 0, events::ticket("dt4", "2024-04-16T08:00:00+07:00", c("25270"), "T-3", "received", "specialist")),
        // Leadership, forwarded, deadline after T: in progress, forwarded.
        (3, 1, events::ticket("dt5", "2024-04-19T08:00:00+07:00", c("25396"), "T-4", "received", "leadership")),
        (3, 1, events::ticket("dt6", "2024-04-19T09:00:00+07:00", c("25396"), "T-4", "forwarded", "leadership")),
        // Spam.
        (3, 0, events::ticket("dt7", "2024-04-12T08:00:00+07:00", c("25363"), "T-5", "received", "specialist")),
        (3, 0, events::ticket("dt8", "2024-04-12T08:30:00+07:00", c("25363"), "T-5", "spam", "specialist")),
        (0, 0, "{\"schema\":\"d06.event.v1\",".to_owned()),
        (0, 0, events::cccd("dc5", "2024-04-22T10:00:00+07:00", c("25216"), &events::citizen(8), "received")),
    ]
}

/// T: 2024-04-22T10:00:00+07:00.
const NEWEST_EVENT_S: f64 = 1_713_754_800.0;

/// The outcome of one concrete query.
#[derive(Debug)]
enum Outcome {
    /// `(labels, value)` per series.
    Series(Vec<(BTreeMap<String, String>, f64)>),
    /// Column names and rows (JSON objects) from ClickHouse.
    Rows(Vec<(String, String)>, Vec<serde_json::Map<String, Value>>),
}

struct Ran {
    target: Target,
    vars: Vec<(String, String)>,
    query: Query,
    outcome: Result<Outcome, String>,
}

async fn run_clickhouse(http: &reqwest::Client, database: &str, sql: &str) -> Result<Outcome, String> {
    let r = http
        .post(clickhouse_url())
        .query(&[("database", database), ("default_format", "JSON")])
        .body(sql.to_owned())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(body.trim().to_owned());
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    let meta = v["meta"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| (m["name"].as_str().unwrap_or("").to_owned(), m["type"].as_str().unwrap_or("").to_owned()))
        .collect();
    let rows = v["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.as_object().cloned())
        .collect();
    Ok(Outcome::Rows(meta, rows))
}

/// A ClickHouse cell as a number (18.16 quotes 64-bit integers in JSON).
fn number(v: &Value) -> f64 {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(f64::NAN)
}

fn find<'a>(ran: &'a [Ran], uid: &str, panel: &str, ref_id: &str, vars: &[(&str, &str)]) -> &'a Outcome {
    let r = ran
        .iter()
        .find(|r| {
            r.target.dashboard == uid
                && r.target.panel == panel
                && r.target.ref_id == ref_id
                && vars.iter().all(|(k, v)| r.vars.iter().any(|(a, b)| a == k && b == v))
        })
        .unwrap_or_else(|| panic!("no query ran for {uid} / {panel:?} / {ref_id} / {vars:?}"));
    r.outcome.as_ref().unwrap_or_else(|e| panic!("{uid} / {panel:?}: {e}"))
}

fn series_value(o: &Outcome, label: &str, value: &str) -> f64 {
    match o {
        Outcome::Series(s) => s
            .iter()
            .find(|(l, _)| l.get(label).map(String::as_str) == Some(value))
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no series {label}={value} in {s:?}")),
        Outcome::Rows(..) => panic!("not a Prometheus outcome"),
    }
}

fn row_value(o: &Outcome, key_column: &str, key: &str, column: &str) -> f64 {
    match o {
        Outcome::Rows(_, rows) => rows
            .iter()
            .find(|r| r.get(key_column).and_then(Value::as_str) == Some(key))
            .map(|r| number(&r[column]))
            .unwrap_or_else(|| panic!("no row {key_column}={key} in {rows:?}")),
        Outcome::Series(_) => panic!("not a ClickHouse outcome"),
    }
}

async fn baseline(app: &App, ind: &str, level: &str, area: &str) -> f64 {
    let sql = format!(
        "SELECT any(baseline) FROM plan_daily FINAL WHERE indicator = '{ind}' AND area_level = '{level}' AND area = '{area}'"
    );
    app.clickhouse(&sql).await.trim().parse::<f64>().expect("baseline")
}

/// Runs every target of every dashboard, for every value of the variables it
/// uses, against `app`'s ClickHouse database and `prometheus`, as Grafana
/// would; returns what ran and each dashboard's variables with their values.
async fn run_every_query(app: &App, prometheus: &Prometheus) -> (Vec<Ran>, BTreeMap<String, Vec<Variable>>) {
    let sources = provisioned_datasources();
    let range = Range::campaign_to_now();
    let http = reqwest::Client::new();
    let mut ran: Vec<Ran> = Vec::new();
    let mut all_vars = BTreeMap::new();
    let mut per_dashboard: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for d in dashboards() {
        let mut vars = variables(&d);
        query_variables(&mut vars, &http, &app.database, range).await;
        for target in targets(&d, &sources) {
            let counts = per_dashboard.entry(d.uid().to_owned()).or_default();
            counts.0 += 1;
            for (assignment, query) in expand(&target, &vars, range, &app.database) {
                counts.1 += 1;
                let started = Instant::now();
                let outcome = loop {
                    let outcome = match &query {
                        Query::Prometheus(e) => prometheus.query(e).await.map(Outcome::Series),
                        Query::ClickHouse { sql, .. } => run_clickhouse(&http, &app.database, sql).await,
                    };
                    // An empty answer may be a rate() still waiting for samples: retry a while.
                    let empty = matches!(&outcome, Ok(Outcome::Series(s)) if s.is_empty());
                    if !empty || started.elapsed() > Duration::from_secs(10) {
                        break outcome;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                };
                ran.push(Ran { target: target.clone(), vars: assignment, query, outcome });
            }
        }
        all_vars.insert(d.uid().to_owned(), vars);
    }
    eprintln!("dashboards: (targets, concrete queries) {per_dashboard:?}");
    assert_eq!(per_dashboard.keys().map(String::as_str).collect::<BTreeSet<_>>(), UIDS.into_iter().collect());
    (ran, all_vars)
}

/// Fails on any query that errs or answers nothing, but for the days behind
/// of an indicator whose baseline is unknown (`unknown_baseline`), which
/// OUTPUTS-v1 leaves absent, and series of counters the run never moved
/// (`unmoved`, e.g. `d06_sink_write_failures_total` with no failure):
/// returns how many were absent by contract. Checks that ClickHouse time
/// series have a DateTime `time` column.
fn check_outcomes(ran: &[Ran], unknown_baseline: impl Fn(&str) -> bool, unmoved: &[&str]) -> usize {
    let mut absent_by_contract = 0;
    let mut failures = Vec::new();
    for r in ran {
        let at = format!("{} / {:?} / {} {:?}", r.target.dashboard, r.target.panel, r.target.ref_id, r.vars);
        let days_behind_of_unknown = matches!(&r.query, Query::Prometheus(e) if e.contains("d06_coverage_days_behind"))
            && r.vars.iter().any(|(k, v)| k == "indicator" && unknown_baseline(v));
        match &r.outcome {
            Err(e) => failures.push(format!("{at}: error: {e}\n  {:?}", r.query)),
            Ok(Outcome::Series(s)) if s.is_empty() && days_behind_of_unknown => absent_by_contract += 1,
            Ok(Outcome::Series(s))
                if s.is_empty()
                    && matches!(&r.query, Query::Prometheus(e) if unmoved.iter().any(|c| e.contains(c))) => {}
            Ok(Outcome::Series(s)) if s.is_empty() => failures.push(format!("{at}: no series\n  {:?}", r.query)),
            Ok(Outcome::Rows(_, rows)) if rows.is_empty() => failures.push(format!("{at}: no rows\n  {:?}", r.query)),
            Ok(Outcome::Rows(meta, _)) => {
                if let Query::ClickHouse { time_series: true, .. } = r.query {
                    let time = meta.iter().find(|(n, _)| n == "time").map(|(_, t)| t.as_str());
                    if !time.is_some_and(|t| t.starts_with("DateTime")) {
                        failures.push(format!("{at}: a time series needs a DateTime `time` column, got {meta:?}"));
                    }
                }
            }
            Ok(Outcome::Series(_)) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {} queries failed:\n{}", failures.len(), ran.len(), failures.join("\n"));
    absent_by_contract
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_against_real_data() {
    // The app writes ClickHouse through a proxy that can refuse requests.
    let mut app = spawn_app(AppOptions { partitions: 2, shards: 2, ..AppOptions::default() }).await;
    let upstream = clickhouse_url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    let proxy = FlakyProxy::start(upstream).await;
    app.stop();
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    let direct = format!("url = \"{}\"", clickhouse_url());
    assert_eq!(config.matches(&direct).count(), 1, "the ClickHouse url line in\n{config}");
    // A fresh consumer group too: rejoining the one just left can wait out its session.
    let config = config
        .replace(&direct, &format!("url = \"{}\"", proxy.url()))
        .replace("group_id = \"", "group_id = \"proxied-");
    app.group = format!("proxied-{}", app.group);
    std::fs::write(&app.config_path, config).unwrap();
    app.start().await;
    let prometheus = Prometheus::start(app.metrics_port, None);

    let producer = Producer::new();
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let send = |stream: Vec<(usize, i32, String)>| {
        stream.into_iter().map(|(t, p, m)| (topics[t].clone(), p, m.into_bytes())).collect::<Vec<_>>()
    };
    let first = send(coverage_stream());
    let second = send(hotline_stream());
    let total = (first.len() + second.len()) as u64;
    producer.send_all(&first).await;
    app.wait_consumed(first.len() as u64, Duration::from_secs(60)).await;
    app.wait_for("the first events in ClickHouse", Duration::from_secs(30), || async {
        let sql = "SELECT sum(gained) FROM coverage_shard_daily FINAL WHERE area_level = 'province'";
        app.clickhouse(sql).await.trim() == "11"
    })
    .await;
    // The next two new ClickHouse connections are refused: the sink records
    // the failed attempts and retries.
    proxy.fail_next(2);
    producer.send_all(&second).await;
    app.wait_consumed(total, Duration::from_secs(60)).await;
    app.wait_for("the hotline figures and a failed write", Duration::from_secs(60), || async {
        let m = app.metrics().await;
        m.get("d06_hotline_tickets", &[("area_level", "province"), ("status", "received")]) == Some(5.0)
            && m.sum("d06_sink_write_failures_total") >= 1.0
            && m.get("d06_newest_event_timestamp_seconds", &[]) == Some(NEWEST_EVENT_S)
    })
    .await;
    assert!(proxy.refused.load(Ordering::SeqCst) >= 1, "the proxy refused a connection");

    // Prometheus has scraped the final state.
    let b_cccd = baseline(&app, "cccd", "province", "70").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let consumed = prometheus.value("sum(d06_messages_consumed_total)").await;
        let cccd = prometheus.value("sum(d06_coverage_covered{indicator=\"cccd\",area_level=\"province\"})").await;
        let tickets = prometheus.value("sum(d06_hotline_tickets{area_level=\"province\",status=\"received\"})").await;
        let failures = prometheus.value("sum(d06_sink_write_failures_total)").await;
        let newest = prometheus.value("max(d06_newest_event_timestamp_seconds)").await;
        if consumed == Some(total as f64)
            && cccd == Some(b_cccd + 5.0)
            && tickets == Some(5.0)
            && failures >= Some(1.0)
            && newest == Some(NEWEST_EVENT_S)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never showed the final figures: consumed {consumed:?}, cccd {cccd:?}, tickets {tickets:?}, failures {failures:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A few more scrapes, so that every rate() has two samples of the final state.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (ran, vars) = run_every_query(&app, &prometheus).await;
    // From the data: the eleven districts with their official names.
    let district = vars["d06-district"].iter().find(|v| v.name == "district").expect("district variable");
    assert_eq!(district.options, official_districts(), "values are the codes, labels the official names");
    for uid in ["d06-district", "d06-province", "d06-hotline"] {
        let level = vars[uid].iter().find(|v| v.name == "level").expect("level variable");
        assert_eq!(level.options, [("district".to_owned(), "huyện".to_owned())], "{uid}: before 2025, the districts");
    }

    // OUTPUTS-v1: no days_behind while a baseline is unknown (the 2024
    // plan's smartphone_4g and sim_signature): an empty answer is the
    // honest one there, and only there.
    let m = app.metrics().await;
    let unknown_baseline = |ind: &str| {
        let label = |l: &BTreeMap<String, String>, k: &str| l.get(k).map(String::as_str).unwrap_or("").to_owned();
        let known: Vec<f64> = m
            .series
            .iter()
            .filter(|(n, l, _)| {
                n == "d06_coverage_baseline_known"
                    && label(l, "indicator") == ind
                    && label(l, "area_level") == "district"
            })
            .map(|(_, _, v)| *v)
            .collect();
        !known.is_empty() && known.iter().all(|v| *v == 0.0)
    };
    let absent_by_contract = check_outcomes(&ran, unknown_baseline, &[]);
    assert_eq!(absent_by_contract, 2, "days behind of smartphone_4g and sim_signature by district: absent");

    // Hand-checked figures through the panels themselves.
    let hot = find(&ran, "d06-hotline", "Tin phản ánh 1022 từ đầu đợt — toàn tỉnh", "A", &[]);
    for (status, n) in [
        ("received", 5.0),
        ("answered", 1.0),
        ("forwarded", 1.0),
        ("processed", 1.0),
        ("in_progress", 1.0),
        ("spam", 1.0),
        ("overdue_specialist", 1.0),
        ("overdue_leadership", 1.0),
    ] {
        assert_eq!(series_value(hot, "status", status), n, "hotline {status}");
    }
    let by_district = find(&ran, "d06-hotline", "Báo cáo theo ${level:text} trong khoảng thời gian đang xem", "A", &[]);
    assert_eq!(row_value(by_district, "area", "692", "Quá hạn cấp chuyên viên"), 1.0);
    assert_eq!(row_value(by_district, "area", "688", "Quá hạn cấp lãnh đạo"), 1.0);
    assert_eq!(row_value(by_district, "area", "696", "Đang xử lý"), 1.0);

    let summary = find(&ran, "d06-province", "Tổng hợp theo chỉ tiêu — toàn tỉnh", "A", &[]);
    for (ind, n) in
        [("cccd", 5.0), ("vneid", 2.0), ("smartphone_4g", 1.0), ("migrated_2g", 2.0), ("sim_signature", 2.0)]
    {
        let b = baseline(&app, ind, "province", "70").await;
        assert_eq!(series_value(summary, "indicator", ind), b + n, "province covered {ind}");
    }
    let today = find(&ran, "d06-province", "Tăng trong ngày", "A", &[]);
    assert_eq!(series_value(today, "indicator", "cccd"), 2.0, "on 22/4: citizens 4 and 8");

    let b689 = baseline(&app, "cccd", "district", "689").await;
    let series =
        find(&ran, "d06-district", "Thu nhận hồ sơ CCCD: đã thực hiện và kế hoạch", "A", &[("district", "689")]);
    assert_eq!(row_value(series, "time", "2024-04-11 00:00:00", "Đã thực hiện"), b689);
    assert_eq!(row_value(series, "time", "2024-04-12 00:00:00", "Đã thực hiện"), b689 + 2.0);
    let gained = find(&ran, "d06-district", "Tăng mới theo ngày", "A", &[("district", "697")]);
    assert_eq!(
        row_value(gained, "time", "2024-04-17 00:00:00", "Kích hoạt VNeID mức 2"),
        1.0,
        "the level-1 activation does not count"
    );

    let newest = find(&ran, "d06-pipeline", "Thời điểm sự kiện mới nhất", "A", &[]);
    match newest {
        Outcome::Series(s) => assert_eq!(s.first().map(|(_, v)| *v), Some(NEWEST_EVENT_S * 1000.0)),
        Outcome::Rows(..) => panic!("not Prometheus"),
    }
    let rejected = find(&ran, "d06-pipeline", "Bản tin bị từ chối theo lý do", "A", &[]);
    series_value(rejected, "reason", "malformed_json");
    let failed = find(&ran, "d06-pipeline", "Lỗi ghi sink", "A", &[]);
    series_value(failed, "sink", "clickhouse");
    let dead = find(&ran, "d06-pipeline", "Bản tin lỗi theo lý do (ClickHouse)", "A", &[]);
    assert_eq!(row_value(dead, "Lý do", "malformed_json", "Số bản tin"), 1.0);
}

/// The post-2025 communes of the geography fixture, `(code, official
/// name)`, read from the embedded data file (not from d06's types).
fn post2025_communes() -> Vec<(String, String)> {
    let csv = std::fs::read_to_string(repo().join("aggregator/data/binh_phuoc_area_post2025_2tier.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (code, name) = (col("commune_code"), col("commune_name"));
    let communes: Vec<(String, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[code].to_owned(), f[name].to_owned())
        })
        .collect();
    assert_eq!(communes.len(), 40);
    communes
}

/// A plan for the post-2025 geography: every commune a target of 10 per
/// indicator, baselines 0 (known), one milestone at the end.
fn post2025_plan(communes: &[(String, String)]) -> String {
    let mut plan = String::from("name = \"post-2025 test\"\nstart = 2024-04-10\nend = 2024-07-08\n");
    for ind in INDICATORS {
        plan += &format!(
            "[indicators.{ind}]\ntarget = {}\nbaseline = 0\nmilestones = [ {{ date = 2024-07-08, share = 1.0 }} ]\n",
            10 * communes.len()
        );
        for (code, _) in communes {
            plan += &format!("areas.\"{code}\" = {{ target = 10 }}\n");
        }
    }
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_on_the_post_2025_geography() {
    // The same streams (old commune codes, mapped forward by d06) on the
    // geography after the 2025 reform: no district tier, 40 communes.
    let communes = post2025_communes();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("post2025.toml");
    std::fs::write(&plan, post2025_plan(&communes)).unwrap();
    let app = spawn_app(AppOptions {
        partitions: 2,
        shards: 2,
        extra_toml: format!("[contract]\ngeography = \"post2025\"\n[plan]\nfile = \"{}\"\n", plan.display()),
        // d06's default, the commune gauges off (the harness asks for them).
        commune_metrics: false,
        ..AppOptions::default()
    })
    .await;
    let prometheus = Prometheus::start(app.metrics_port, None);

    let producer = Producer::new();
    let topics: Vec<String> = app.topics.sources().iter().map(|s| s.to_string()).collect();
    let messages: Vec<(String, i32, Vec<u8>)> = coverage_stream()
        .into_iter()
        .chain(hotline_stream())
        .map(|(t, p, m)| (topics[t].clone(), p, m.into_bytes()))
        .collect();
    producer.send_all(&messages).await;
    app.wait_consumed(messages.len() as u64, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cccd = prometheus.value("max(d06_coverage_covered{indicator=\"cccd\",area_level=\"province\"})").await;
        let tickets = prometheus.value("max(d06_hotline_tickets{area_level=\"province\",status=\"received\"})").await;
        let communes_seen =
            prometheus.value("count(max by (area) (d06_coverage_target{area_level=\"commune\"}))").await;
        let newest = prometheus.value("max(d06_newest_event_timestamp_seconds)").await;
        if cccd == Some(5.0) && tickets == Some(5.0) && communes_seen == Some(40.0) && newest == Some(NEWEST_EVENT_S) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never showed the final figures: cccd {cccd:?}, tickets {tickets:?}, communes {communes_seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (ran, vars) = run_every_query(&app, &prometheus).await;
    for uid in ["d06-district", "d06-province", "d06-hotline"] {
        let level = vars[uid].iter().find(|v| v.name == "level").expect("level variable");
        assert_eq!(level.options, [("commune".to_owned(), "xã".to_owned())], "{uid}: after 2025, the communes");
    }
    let area = vars["d06-district"].iter().find(|v| v.name == "district").expect("district variable");
    assert_eq!(area.options, communes, "the 40 communes, codes and official names");
    // Every baseline is known here: no days behind may be absent. ClickHouse
    // never failed (the other test's proxy makes it fail): no failure series.
    assert_eq!(check_outcomes(&ran, |_| false, &["d06_sink_write_failures_total"]), 0);

    // Ranked by commune: every commune has a target, so a ratio each.
    let ranked = find(
        &ran,
        "d06-province",
        "Tỷ lệ hoàn thành theo ${level:text} — ${indicator:text}",
        "A",
        &[("indicator", "cccd")],
    );
    match ranked {
        Outcome::Series(s) => assert_eq!(s.len(), 40, "{s:?}"),
        Outcome::Rows(..) => panic!("not Prometheus"),
    }
    // The hotline by commune, over the communes' rows: the province's totals.
    let by_commune = find(&ran, "d06-hotline", "Báo cáo theo ${level:text} trong khoảng thời gian đang xem", "A", &[]);
    let Outcome::Rows(_, rows) = by_commune else { panic!("not ClickHouse") };
    let codes: BTreeSet<&str> = communes.iter().map(|(c, _)| c.as_str()).collect();
    assert!(rows.iter().all(|r| r["area"].as_str().is_some_and(|a| codes.contains(a))), "{rows:?}");
    let total = |column: &str| rows.iter().map(|r| number(&r[column])).sum::<f64>();
    assert_eq!(total("Quá hạn cấp chuyên viên"), 1.0);
    assert_eq!(total("Quá hạn cấp lãnh đạo"), 1.0);
    assert_eq!(total("Đang xử lý"), 1.0);
    // 25195's two applications on 12/4 in the commune it became (25195
    // kept its code: the old→new table of the fixture).
    let series =
        find(&ran, "d06-district", "Thu nhận hồ sơ CCCD: đã thực hiện và kế hoạch", "A", &[("district", "25195")]);
    assert_eq!(row_value(series, "time", "2024-04-11 00:00:00", "Đã thực hiện"), 0.0, "{series:?}");
    assert_eq!(row_value(series, "time", "2024-04-12 00:00:00", "Đã thực hiện"), 2.0, "{series:?}");
}
