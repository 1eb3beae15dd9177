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
//! data sources that the provisioning defines, the PromQL and SQL house rules,
//! and the deployment files (compose, Dockerfile, systemd unit).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

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

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------------------ dashboards

/// One dashboard file.
struct Dashboard {
    file: PathBuf,
    json: Value,
}

impl Dashboard {
    fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or("")
    }
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// Every dashboard under `deploy/grafana/dashboards/`, sorted by file name.
fn dashboards() -> Vec<Dashboard> {
    let mut files = Vec::new();
    json_files(&repo().join("deploy/grafana/dashboards"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            Dashboard { file, json }
        })
        .collect()
}

/// Every panel, rows' collapsed panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push(p);
        for inner in p["panels"].as_array().map(Vec::as_slice).unwrap_or_default() {
            out.push(inner);
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
enum Query {
    /// PromQL.
    Prometheus(String),
    /// ClickHouse SQL; `time_series` when Grafana reads it as a time series.
    ClickHouse { sql: String, time_series: bool },
}

/// One panel target.
#[derive(Clone, Debug)]
struct Target {
    dashboard: String,
    panel: String,
    ref_id: String,
    datasource_uid: String,
    datasource_type: String,
    query: Query,
}

/// The data sources of the provisioning files: uid → type.
fn provisioned_datasources() -> BTreeMap<String, String> {
    let dir = repo().join("deploy/grafana/provisioning/datasources");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            continue;
        }
        let flat = flatten_yaml(&std::fs::read_to_string(&path).unwrap());
        let mut uid = None;
        for (key, value) in &flat {
            if key == "datasources[]uid" {
                uid = Some(value.clone());
            }
            if key == "datasources[]type" {
                out.insert(
                    uid.take().unwrap_or_else(|| panic!("{}: put `uid` before `type`", path.display())),
                    value.clone(),
                );
            }
        }
    }
    out
}

/// Every target of a dashboard, with its data source resolved (target's own,
/// else the panel's). Panics on a target it cannot classify.
fn targets(d: &Dashboard, sources: &BTreeMap<String, String>) -> Vec<Target> {
    let mut out = Vec::new();
    for p in panels(&d.json) {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("").to_owned();
        for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let ds = if t["datasource"].is_object() { &t["datasource"] } else { &p["datasource"] };
            let named = ds["uid"].as_str().unwrap_or_else(|| panic!("{}: panel {title:?}: no datasource uid", d.uid()));
            let uid = resolve_datasource(d, named, sources);
            let uid = uid.as_str();
            let ty = sources
                .get(uid)
                .unwrap_or_else(|| panic!("{}: panel {title:?} uses datasource {uid:?}, not provisioned", d.uid()));
            if let Some(declared) = ds["type"].as_str() {
                assert_eq!(declared, ty, "{}: panel {title:?}: datasource {uid} has type {ty}", d.uid());
            }
            let query = match ty.as_str() {
                "prometheus" => Query::Prometheus(t["expr"].as_str().unwrap_or("").to_owned()),
                "grafana-clickhouse-datasource" => Query::ClickHouse {
                    sql: t["rawSql"].as_str().or_else(|| t["query"].as_str()).unwrap_or("").to_owned(),
                    time_series: t["queryType"] == "timeSeries" || t["format"] == 0,
                },
                other => panic!("{}: panel {title:?}: no way to run a {other} query here", d.uid()),
            };
            out.push(Target {
                dashboard: d.uid().to_owned(),
                panel: title.clone(),
                ref_id: t["refId"].as_str().unwrap_or("").to_owned(),
                datasource_uid: uid.to_owned(),
                datasource_type: ty.clone(),
                query,
            });
        }
    }
    out
}

/// A data source uid as a panel names it: a provisioned uid, or
/// `${var}` for a data source variable of the dashboard, which Grafana
/// resolves to its current value among the data sources of its plugin
/// type (here: the one provisioned source of that type).
fn resolve_datasource(d: &Dashboard, named: &str, sources: &BTreeMap<String, String>) -> String {
    let Some(var) = named.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
        return named.to_owned();
    };
    let list = d.json["templating"]["list"].as_array().map(Vec::as_slice).unwrap_or_default();
    let v = list
        .iter()
        .find(|v| v["name"] == var)
        .unwrap_or_else(|| panic!("{}: data source {named}: no such variable", d.uid()));
    assert_eq!(v["type"], "datasource", "{}: {named} is not a data source variable", d.uid());
    let ty = v["query"].as_str().unwrap_or("");
    let of_type: Vec<&String> = sources.iter().filter(|(_, t)| *t == ty).map(|(u, _)| u).collect();
    assert_eq!(of_type.len(), 1, "{}: {named}: provisioned sources of type {ty}: {of_type:?}", d.uid());
    assert_eq!(v["current"]["value"], of_type[0].as_str(), "{}: {named}: the default is the provisioned one", d.uid());
    of_type[0].clone()
}

/// A dashboard variable and its `(value, label)` options.
#[derive(Clone, Debug)]
struct Variable {
    name: String,
    options: Vec<(String, String)>,
    /// A query variable's ClickHouse SQL (its options come from running it:
    /// [`query_variables`]).
    sql: Option<String>,
}

/// The variables whose values come from the dashboard itself (custom,
/// constant) with their options; query variables with their SQL and no
/// options yet. Data source variables are resolved in [`targets`].
fn variables(d: &Dashboard) -> Vec<Variable> {
    let mut out = Vec::new();
    for v in d.json["templating"]["list"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = v["name"].as_str().unwrap_or("").to_owned();
        let options: Vec<(String, String)> = match v["type"].as_str().unwrap_or("") {
            "datasource" => continue,
            "query" => {
                let uid = v["datasource"]["uid"].as_str().unwrap_or("");
                let ty = resolve_datasource(d, uid, &provisioned_datasources());
                assert_eq!(ty, "d06-clickhouse", "{}: variable {name}: only ClickHouse query variables here", d.uid());
                let sql = v["query"].as_str().unwrap_or_else(|| panic!("{}: variable {name}: SQL query", d.uid()));
                assert_eq!(v["definition"].as_str(), Some(sql), "{}: variable {name}: definition = query", d.uid());
                out.push(Variable { name, options: Vec::new(), sql: Some(sql.to_owned()) });
                continue;
            }
            // Grafana's custom syntax: `label : value, label : value` (or bare values).
            "custom" => v["query"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .map(|item| match item.split_once(" : ") {
                    Some((label, value)) => (value.trim().to_owned(), label.trim().to_owned()),
                    None => (item.trim().to_owned(), item.trim().to_owned()),
                })
                .collect(),
            "constant" => {
                let q = v["query"].as_str().unwrap_or("").to_owned();
                vec![(q.clone(), q)]
            }
            other => panic!("{}: variable {name}: type {other:?} has no entry in the substitution table", d.uid()),
        };
        assert!(!options.is_empty(), "{}: variable {name} has no values", d.uid());
        out.push(Variable { name, options, sql: None });
    }
    out
}

/// Fills the options of the query variables by running their SQL against
/// the test's database, as Grafana does on load (first column the value,
/// second the text, as the ClickHouse plugin reads them), in order: a query
/// that uses an earlier variable runs with that variable's current value,
/// which on load is its first option (so such a variable must have exactly
/// one, or the combinations [`expand`] makes would not be Grafana's).
async fn query_variables(vars: &mut [Variable], http: &reqwest::Client, database: &str, range: Range) {
    for i in 0..vars.len() {
        let (earlier, rest) = vars.split_at_mut(i);
        let v = &mut rest[0];
        let Some(sql) = &v.sql else { continue };
        let mut sql = sql.clone();
        for e in earlier.iter() {
            if sql.contains(&format!("${}", e.name)) || sql.contains(&format!("${{{}", e.name)) {
                assert_eq!(
                    e.options.len(),
                    1,
                    "variable {} uses {}, which has several values: {:?}",
                    v.name,
                    e.name,
                    e.options
                );
                let (value, label) = &e.options[0];
                sql = put_variable(&sql, &e.name, value, label);
            }
        }
        let concrete = put_clickhouse(&sql, range, database);
        let text = crate::harness::clickhouse_query(http, database, &concrete).await;
        v.options = text
            .lines()
            .map(|l| {
                let (value, label) = l.split_once('\t').unwrap_or((l, l));
                (value.to_owned(), label.to_owned())
            })
            .collect();
        assert!(!v.options.is_empty(), "variable {}: no values from\n{concrete}", v.name);
    }
}

/// Replaces the Grafana forms of variable `name` by `value` (`label` for `:text`).
fn put_variable(text: &str, name: &str, value: &str, label: &str) -> String {
    let mut s = text
        .replace(&format!("${{{name}:text}}"), label)
        .replace(&format!("${{{name}:raw}}"), value)
        .replace(&format!("${{{name}}}"), value)
        .replace(&format!("[[{name}]]"), value);
    // `$name` not followed by an identifier character.
    let needle = format!("${name}");
    let mut out = String::new();
    while let Some(i) = s.find(&needle) {
        let after = &s[i + needle.len()..];
        let continues = after.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&s[..i]);
        out.push_str(if continues { &needle } else { value });
        s = after.to_owned();
    }
    out.push_str(&s);
    out
}

/// Replaces a one-argument macro `$__name(arg)` using `f(arg)`.
fn put_macro(text: &str, name: &str, f: impl Fn(&str) -> String) -> String {
    let needle = format!("$__{name}(");
    let mut s = text.to_owned();
    while let Some(i) = s.find(&needle) {
        let rest = &s[i + needle.len()..];
        let close = rest.find(')').unwrap_or_else(|| panic!("unclosed {needle} in {text}"));
        let replaced = f(rest[..close].trim());
        s = format!("{}{}{}", &s[..i], replaced, &rest[close + 1..]);
    }
    s
}

/// The time range of the test, as Grafana would pass it.
#[derive(Clone, Copy, Debug)]
struct Range {
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
}

impl Range {
    fn campaign_to_now() -> Range {
        let from = chrono::DateTime::parse_from_rfc3339(FROM).unwrap().with_timezone(&chrono::Utc);
        Range { from, to: chrono::Utc::now() }
    }
}

/// The ClickHouse plugin's macros and the database qualifier.
fn put_clickhouse(sql: &str, range: Range, database: &str) -> String {
    let (from_s, to_s) = (range.from.timestamp(), range.to.timestamp());
    let (from_d, to_d) = (range.from.format("%Y-%m-%d").to_string(), range.to.format("%Y-%m-%d").to_string());
    let mut s = put_macro(sql, "dateFilter", |c| format!("{c} >= toDate('{from_d}') AND {c} <= toDate('{to_d}')"));
    s = put_macro(&s, "timeFilter", |c| format!("{c} >= toDateTime({from_s}) AND {c} <= toDateTime({to_s})"));
    s = s.replace("$__fromTime", &format!("toDateTime({from_s})")).replace("$__toTime", &format!("toDateTime({to_s})"));
    for t in TABLES {
        s = s.replace(&format!("d06.{t}"), &format!("`{database}`.{t}"));
    }
    s
}

fn put_prometheus(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "1h")
}

/// Every concrete query of a target: one per combination of the values of
/// the variables it uses. `(assignment, query)`.
fn expand(target: &Target, vars: &[Variable], range: Range, database: &str) -> Vec<(Vec<(String, String)>, Query)> {
    let text = match &target.query {
        Query::Prometheus(e) => e.clone(),
        Query::ClickHouse { sql, .. } => sql.clone(),
    };
    let used: Vec<&Variable> = vars
        .iter()
        .filter(|v| {
            let n = &v.name;
            text.contains(&format!("${n}")) || text.contains(&format!("${{{n}")) || text.contains(&format!("[[{n}]]"))
        })
        .collect();
    let mut combos: Vec<(Vec<(String, String)>, String)> = vec![(Vec::new(), text)];
    for v in used {
        let mut next = Vec::new();
        for (assignment, t) in &combos {
            for (value, label) in &v.options {
                let mut a = assignment.clone();
                a.push((v.name.clone(), value.clone()));
                next.push((a, put_variable(t, &v.name, value, label)));
            }
        }
        combos = next;
    }
    combos
        .into_iter()
        .map(|(a, t)| {
            let q = match &target.query {
                Query::Prometheus(_) => Query::Prometheus(put_prometheus(&t)),
                Query::ClickHouse { time_series, .. } => {
                    Query::ClickHouse { sql: put_clickhouse(&t, range, database), time_series: *time_series }
                }
            };
            let concrete = match &q {
                Query::Prometheus(e) => e,
                Query::ClickHouse { sql, .. } => sql,
            };
            assert!(
                !concrete.contains('$') && !concrete.contains("[["),
                "{} / {:?} / {}: something left unsubstituted (add it to the table in dashboards.rs):\n{concrete}",
                target.dashboard,
                target.panel,
                target.ref_id
            );
            (a, q)
        })
        .collect()
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
    let mut app = spawn_app(AppOptions {
        partitions: 2,
        shards: 2,
        extra_toml: format!("[contract]\ngeography = \"post2025\"\n[plan]\nfile = \"{}\"\n", plan.display()),
        ..AppOptions::default()
    })
    .await;
    // Commune gauges by default: the harness asks for them, so stop asking.
    app.stop();
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    assert_eq!(config.matches("commune_metrics = true\n").count(), 1, "{config}");
    std::fs::write(&app.config_path, config.replace("commune_metrics = true\n", "")).unwrap();
    app.start().await;
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

// ------------------------------------------------------------ deployment files

/// A minimal YAML reader for the deployment files of this repository (block
/// mappings and sequences, flow sequences of scalars, `|` block scalars,
/// quoted scalars, comments): `(path, scalar)` pairs in file order, where a
/// path joins mapping keys with `.` and marks a sequence item with `[]`
/// (`scrape_configs[]static_configs[]targets[]`); an empty value is `""`.
/// `compose_file_parses_the_same_with_pyyaml` checks it against PyYAML.
fn flatten_yaml(text: &str) -> Vec<(String, String)> {
    fn unquote(s: &str) -> String {
        let s = s.trim();
        let quoted =
            s.len() >= 2 && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')));
        if quoted {
            s[1..s.len() - 1].to_owned()
        } else {
            s.to_owned()
        }
    }
    fn strip_comment(line: &str) -> &str {
        let mut quote = None;
        for (i, c) in line.char_indices() {
            match (c, quote) {
                ('"' | '\'', None) => quote = Some(c),
                (q, Some(open)) if q == open => quote = None,
                ('#', None) if i == 0 || line[..i].ends_with(' ') => return &line[..i],
                _ => {}
            }
        }
        line
    }
    /// `(key, rest)` when the text starts with a mapping key.
    fn key_value(s: &str) -> Option<(String, &str)> {
        if let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'') {
            let end = s[1..].find(q)? + 1;
            let rest = s[end + 1..].strip_prefix(':')?;
            return Some((s[1..end].to_owned(), rest));
        }
        let i = s.find(": ").or_else(|| s.strip_suffix(':').map(str::len))?;
        let key = &s[..i];
        (!key.is_empty() && !key.contains(' ')).then(|| (key.to_owned(), &s[i + 1..]))
    }
    fn indent_of(l: &str) -> usize {
        l.len() - l.trim_start().len()
    }
    /// The literal block after a `|` whose owner sits at column `owner`.
    fn block(lines: &[&str], i: &mut usize, owner: usize, keep: bool) -> String {
        let mut out = Vec::new();
        let mut at = None;
        while *i < lines.len() {
            let l = lines[*i];
            if !l.trim().is_empty() && indent_of(l) <= owner {
                break;
            }
            let n = *at.get_or_insert(indent_of(l));
            out.push(l.get(n..).unwrap_or(""));
            *i += 1;
        }
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        let mut s = out.join("\n");
        if keep {
            s.push('\n');
        }
        s
    }
    fn join(parent: &str, key: &str) -> String {
        if parent.is_empty() || parent.ends_with("[]") {
            format!("{parent}{key}")
        } else {
            format!("{parent}.{key}")
        }
    }

    let lines: Vec<&str> = text.lines().collect();
    let next_indent =
        |from: usize| lines[from..].iter().map(|l| strip_comment(l)).find(|l| !l.trim().is_empty()).map(indent_of);
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new(); // (column of the key or dash, path)
    let mut i = 0;
    while i < lines.len() {
        let raw = strip_comment(lines[i]).trim_end();
        i += 1;
        if raw.trim().is_empty() || raw.trim() == "---" {
            continue;
        }
        let mut col = indent_of(raw);
        let mut body = raw.trim_start();
        while stack.last().is_some_and(|(n, _)| *n >= col) {
            stack.pop();
        }
        let mut parent = stack.last().map(|(_, p)| p.clone()).unwrap_or_default();
        if let Some(item) = body.strip_prefix("- ").or_else(|| (body == "-").then_some("")) {
            parent.push_str("[]");
            stack.push((col, parent.clone()));
            let item = item.trim_start();
            if item == "|" || item == "|-" {
                out.push((parent, block(&lines, &mut i, col, item == "|")));
                continue;
            }
            if key_value(item).is_none() {
                out.push((parent, unquote(item)));
                continue;
            }
            col = raw.len() - item.len();
            body = item;
        }
        let Some((key, rest)) = key_value(body) else { panic!("cannot read YAML line {i}: {raw:?}") };
        let path = join(&parent, &key);
        let rest = rest.trim();
        if rest == "|" || rest == "|-" {
            out.push((path, block(&lines, &mut i, col, rest == "|")));
        } else if rest.is_empty() {
            if next_indent(i).is_some_and(|n| n > col) {
                stack.push((col, path));
            } else {
                out.push((path, String::new()));
            }
        } else if rest.starts_with('[') && rest.ends_with(']') {
            for item in rest[1..rest.len() - 1].split(',').map(str::trim).filter(|s| !s.is_empty()) {
                out.push((format!("{path}[]"), unquote(item)));
            }
        } else {
            out.push((path, unquote(rest)));
        }
    }
    out
}

/// The flattened values at `path`.
fn at<'a>(flat: &'a [(String, String)], path: &str) -> Vec<&'a str> {
    flat.iter().filter(|(k, _)| k == path).map(|(_, v)| v.as_str()).collect()
}

fn compose() -> (PathBuf, Vec<(String, String)>) {
    let dir = repo().join("deploy/compose");
    let text = std::fs::read_to_string(dir.join("docker-compose.yml")).expect("deploy/compose/docker-compose.yml");
    (dir, flatten_yaml(&text))
}

/// `(host, container, options)` of a service's short-syntax volumes.
fn mounts<'a>(flat: &'a [(String, String)], service: &str) -> Vec<(&'a str, &'a str)> {
    at(flat, &format!("services.{service}.volumes[]"))
        .into_iter()
        .map(|v| {
            let mut parts = v.splitn(3, ':');
            (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
        })
        .collect()
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn compose_references_only_files_that_exist_and_promtool_accepts_its_prometheus_config() {
    let (dir, flat) = compose();
    let services: BTreeSet<&str> =
        flat.iter().filter_map(|(k, _)| k.strip_prefix("services.")?.split('.').next()).collect();
    for s in ["kafka", "clickhouse", "prometheus", "alertmanager", "grafana", "d06"] {
        assert!(services.contains(s), "no service {s} in {services:?}");
    }

    // Every bind mount, build file and secret file exists (secrets: ignored by git instead).
    let mut referenced = Vec::new();
    for s in &services {
        for (host, container) in mounts(&flat, s) {
            assert!(container.starts_with('/'), "{s}: container path {container:?}");
            if host.starts_with('.') || host.starts_with('/') {
                referenced.push((s.to_string(), host.to_owned()));
            }
        }
        for key in ["build.context", "env_file", "env_file[]"] {
            for v in at(&flat, &format!("services.{s}.{key}")) {
                referenced.push((s.to_string(), v.to_owned()));
            }
        }
        for v in at(&flat, &format!("services.{s}.build.dockerfile")) {
            let context = at(&flat, &format!("services.{s}.build.context"));
            referenced.push((s.to_string(), format!("{}/{v}", context.first().copied().unwrap_or("."))));
        }
    }
    let secret_files: Vec<&str> = flat
        .iter()
        .filter(|(k, _)| k.starts_with("secrets.") && k.ends_with(".file"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(!secret_files.is_empty(), "the HMAC key comes from a secret file");
    for f in &secret_files {
        assert!(f.starts_with("./secrets/"), "secret {f} outside secrets/");
    }
    let ignore = std::fs::read_to_string(dir.join("secrets/.gitignore")).expect("secrets/.gitignore");
    assert!(ignore.lines().any(|l| l.trim() == "*"), "secrets/ must be ignored by git");
    assert!(referenced.len() >= 8, "{referenced:?}");
    for (service, path) in &referenced {
        let p = dir.join(path);
        assert!(p.exists(), "{service} references {path}, which is not in the repository ({})", p.display());
    }

    // Kafka in KRaft mode.
    let roles = at(&flat, "services.kafka.environment.KAFKA_PROCESS_ROLES");
    assert_eq!(roles, ["broker,controller"], "a single KRaft broker and controller");
    assert!(!flat.iter().any(|(k, v)| k.contains("ZOOKEEPER") || v.contains("zookeeper")), "no ZooKeeper");

    // Grafana: the plugin, the provisioning, the dashboards where the provider looks.
    let g = mounts(&flat, "grafana");
    // Nothing downloaded at start (the IOC network is closed): the plugins
    // from deploy/grafana/plugins (fetch-plugins.sh), no preinstall, no calls out.
    let env = |key: &str| at(&flat, &format!("services.grafana.environment.{key}"));
    for (key, value) in [
        ("GF_PLUGINS_PREINSTALL_DISABLED", "true"),
        ("GF_PLUGINS_PUBLIC_KEY_RETRIEVAL_DISABLED", "true"),
        ("GF_ANALYTICS_CHECK_FOR_UPDATES", "false"),
        ("GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES", "false"),
        ("GF_ANALYTICS_REPORTING_ENABLED", "false"),
    ] {
        assert_eq!(env(key), [value], "{key}");
    }
    for key in ["GF_INSTALL_PLUGINS", "GF_PLUGINS_PREINSTALL", "GF_PLUGINS_PREINSTALL_SYNC"] {
        assert!(env(key).is_empty(), "{key} downloads at start");
    }
    let plugins_dir = env("GF_PATHS_PLUGINS");
    assert_eq!(plugins_dir.len(), 1, "GF_PATHS_PLUGINS");
    assert!(g.contains(&("../grafana/plugins", plugins_dir[0])), "the plugins mounted at {plugins_dir:?}: {g:?}");
    assert!(g.contains(&("../grafana/provisioning", "/etc/grafana/provisioning")), "{g:?}");
    let provider =
        flatten_yaml(&std::fs::read_to_string(repo().join("deploy/grafana/provisioning/dashboards/d06.yml")).unwrap());
    let path = at(&provider, "providers[]options.path");
    assert_eq!(path.len(), 1, "{provider:?}");
    assert!(
        g.contains(&("../grafana/dashboards", path[0])),
        "dashboards mounted at the provider's path {path:?}: {g:?}"
    );
    let home = at(&flat, "services.grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH");
    let file = home.first().and_then(|h| h.strip_prefix(&format!("{}/", path[0]))).expect("home dashboard among them");
    assert!(repo().join("deploy/grafana/dashboards").join(file).exists(), "{home:?}");
    let ds =
        flatten_yaml(&std::fs::read_to_string(repo().join("deploy/grafana/provisioning/datasources/d06.yml")).unwrap());
    assert_eq!(at(&ds, "datasources[]url"), ["http://prometheus:9090"]);
    assert_eq!(at(&ds, "datasources[]jsonData.host"), ["clickhouse"]);
    let password = at(&ds, "datasources[]secureJsonData.password");
    assert_eq!(password, ["$D06_GRAFANA_CLICKHOUSE_PASSWORD"], "from the environment, not the file");
    assert_eq!(at(&flat, "services.grafana.environment.D06_GRAFANA_CLICKHOUSE_PASSWORD").len(), 1);

    // Prometheus: promtool on the config as the container sees it (rules included).
    let p = mounts(&flat, "prometheus");
    let config = p.iter().find(|(_, c)| *c == "/etc/prometheus/prometheus.yml").expect("prometheus.yml mounted");
    assert!(p.contains(&("../prometheus/rules", "/etc/prometheus/rules")), "{p:?}");
    let root = tempfile::tempdir().unwrap();
    for (host, container) in &p {
        if !(host.starts_with('.') || host.starts_with('/')) {
            continue;
        }
        let inside = root.path().join(container.trim_start_matches('/'));
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(dir.join(host).canonicalize().unwrap(), &inside).unwrap();
    }
    let inside = root.path().join(config.1.trim_start_matches('/'));
    let (ok, report) = run(Command::new("promtool").arg("check").arg("config").arg(&inside));
    assert!(ok, "promtool check config {}:\n{report}", config.0);
    let prom = flatten_yaml(&std::fs::read_to_string(dir.join(config.0)).unwrap());
    assert_eq!(at(&prom, "rule_files[]"), ["rules/*.yml"], "rules relative to the config, as mounted");
    assert!(at(&prom, "scrape_configs[]static_configs[]targets[]").contains(&"d06:9464"), "{prom:?}");
    assert!(at(&prom, "alerting.alertmanagers[]static_configs[]targets[]").contains(&"alertmanager:9093"));
    let rules: Vec<_> = std::fs::read_dir(repo().join("deploy/prometheus/rules")).unwrap().collect();
    if !rules.is_empty() {
        assert!(report.contains("SUCCESS"), "rule files checked: {report}");
    }

    // Alertmanager: its config, checked by amtool when installed.
    let a = mounts(&flat, "alertmanager");
    let am = a.iter().find(|(_, c)| *c == "/etc/alertmanager/alertmanager.yml").expect("alertmanager.yml mounted");
    assert_eq!(am.0, "../alertmanager/alertmanager.yml");
    if Command::new("amtool").arg("--version").output().is_ok() {
        let (ok, report) = run(Command::new("amtool").arg("check-config").arg(dir.join(am.0)));
        assert!(ok, "amtool check-config:\n{report}");
    }

    // d06: the image, its config (which loads), its secret.
    assert_eq!(at(&flat, "services.d06.build.dockerfile"), ["deploy/Dockerfile"]);
    assert_eq!(at(&flat, "services.d06.command[]"), ["run", "--config", "/etc/d06/d06.toml"]);
    let d = mounts(&flat, "d06");
    let cfg = d.iter().find(|(_, c)| *c == "/etc/d06/d06.toml").expect("d06.toml mounted");
    // The key is a compose secret, in the container only: everything else is checked.
    let (ok, report) =
        run(Command::new(env!("CARGO_BIN_EXE_d06")).args(["check-config", "--without-key"]).arg(dir.join(cfg.0)));
    assert!(ok, "d06 check-config {}:\n{report}", cfg.0);
    let toml = std::fs::read_to_string(dir.join(cfg.0)).unwrap();
    let secrets = at(&flat, "services.d06.secrets[]");
    assert!(
        secrets.iter().any(|s| toml.contains(&format!("key_file = \"/run/secrets/{s}\""))),
        "pseudonym.key_file is one of the service's secrets {secrets:?}"
    );
    assert!(toml.contains("listen = \"0.0.0.0:9464\""), "reachable by Prometheus at d06:9464");
    assert_eq!(at(&flat, "services.d06.stop_signal"), ["SIGTERM"]);
    // ClickHouse admits the password-less writer from the d06 replicas' fixed addresses only.
    let replicas = ["d06", "d06-b"];
    let users = std::fs::read_to_string(dir.join("clickhouse/users.d/d06.xml")).unwrap();
    let d06_user = &users[users.find("<d06>").unwrap()..users.find("</d06>").unwrap()];
    for r in replicas {
        let address = at(&flat, &format!("services.{r}.networks.d06.ipv4_address"));
        assert_eq!(address.len(), 1, "{r} has a fixed address");
        assert!(d06_user.contains(&format!("<ip>{}</ip>", address[0])), "{r}: {d06_user}");
        assert_eq!(at(&flat, &format!("services.{r}.stop_signal")), ["SIGTERM"]);
    }
    assert_eq!(d06_user.matches("<ip>").count(), replicas.len(), "{d06_user}");
}

/// `deploy/grafana/fetch-plugins.sh --zip <zip>` into `dest`: (success, stdout and stderr).
fn fetch_plugins(zip: &Path, dest: &Path) -> (bool, String) {
    run(Command::new("bash")
        .arg(repo().join("deploy/grafana/fetch-plugins.sh"))
        .arg("--zip")
        .arg(zip)
        .env("D06_GRAFANA_PLUGINS_DIR", dest))
}

/// A plugin release zip as grafana.com serves one: a top directory named
/// after the plugin with `plugin.json`, optionally `MANIFEST.txt`, and an
/// executable backend (built with Python's zipfile, which keeps modes).
fn plugin_zip(path: &Path, id: &str, version: &str, manifest: bool) {
    let script = r##"
import sys, zipfile
path, id, version, manifest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
with zipfile.ZipFile(path, "w") as z:
    z.writestr(id + "/plugin.json",
        '{"type":"datasource","id":"%s","info":{"version":"%s"},"dependencies":{"grafanaDependency":">=10.4.0"}}' % (id, version))
    if manifest:
        z.writestr(id + "/MANIFEST.txt", "-----BEGIN PGP SIGNED MESSAGE-----\n")
    exe = zipfile.ZipInfo(id + "/gpx_clickhouse_linux_amd64")
    exe.external_attr = 0o100755 << 16
    z.writestr(exe, "#!/bin/sh\n")
"##;
    let (ok, out) =
        run(Command::new("python3").arg("-c").arg(script).arg(path).arg(id).arg(version).arg(if manifest {
            "1"
        } else {
            "0"
        }));
    assert!(ok, "python3 zipfile: {out}");
}

#[test]
fn the_grafana_plugin_is_unpacked_from_a_carried_in_zip_after_its_checks() {
    use std::os::unix::fs::PermissionsExt;
    let script = std::fs::read_to_string(repo().join("deploy/grafana/fetch-plugins.sh")).unwrap();
    let pinned = |key: &str| {
        script
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key}= in fetch-plugins.sh"))
            .to_owned()
    };
    let (id, version) = (pinned("PLUGIN_ID"), pinned("PLUGIN_VERSION"));
    // The plugin the provisioned ClickHouse data source is a type of.
    assert!(provisioned_datasources().values().any(|t| *t == id), "{id} is not a provisioned data source type");
    let operations = std::fs::read_to_string(repo().join("docs/OPERATIONS.md")).unwrap();
    assert!(operations.contains(&format!("{id} {version}")), "docs/OPERATIONS.md names {id} {version}");

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("plugins");
    let zip = |name: &str, id: &str, version: &str, manifest: bool| {
        let path = dir.path().join(name);
        plugin_zip(&path, id, version, manifest);
        path
    };
    // Refused, nothing written: another version, another plugin, unsigned, not a zip.
    for (zip, says) in [
        (zip("old.zip", &id, "4.0.0", true), format!("version 4.0.0, d06 pins {version}")),
        (zip("other.zip", "grafana-other-datasource", &version, true), format!("plugin.json is not {id}")),
        (zip("unsigned.zip", &id, &version, false), "no MANIFEST.txt".to_owned()),
        (repo().join("deploy/grafana/plugins/README.md"), "not a zip file".to_owned()),
    ] {
        let (ok, out) = fetch_plugins(&zip, &dest);
        assert!(!ok && out.contains(&says), "{}: {out}", zip.display());
        assert!(!dest.join(&id).exists(), "{}: nothing unpacked", zip.display());
    }
    // The pinned release: unpacked where Grafana looks, its backend executable.
    let good = zip("good.zip", &id, &version, true);
    let (ok, out) = fetch_plugins(&good, &dest);
    assert!(ok && out.contains("unpacked"), "{out}");
    assert!(dest.join(&id).join("plugin.json").exists() && dest.join(&id).join("MANIFEST.txt").exists());
    let mode = std::fs::metadata(dest.join(&id).join("gpx_clickhouse_linux_amd64")).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "the backend stays executable: {mode:o}");
    // Again: already there, nothing done.
    let (ok, out) = fetch_plugins(&good, &dest);
    assert!(ok && out.contains("already in"), "{out}");
}

#[test]
fn compose_file_parses_the_same_with_pyyaml() {
    let script = r#"
import json, sys, yaml
def flat(v, p, out):
    if isinstance(v, dict):
        for k, x in v.items():
            flat(x, (p + '.' if p and not p.endswith('[]') else p) + str(k), out)
    elif isinstance(v, list):
        for x in v:
            flat(x, p + '[]', out)
    elif v is None:
        out.append([p, ''])
    elif isinstance(v, bool):
        out.append([p, 'true' if v else 'false'])
    else:
        out.append([p, str(v)])
out = []
for f in sys.argv[1:]:
    out.append([f, None])
    flat(yaml.safe_load(open(f)), '', out)
print(json.dumps(out))
"#;
    let files = [
        "deploy/compose/docker-compose.yml",
        "deploy/compose/prometheus.yml",
        "deploy/grafana/provisioning/datasources/d06.yml",
        "deploy/grafana/provisioning/dashboards/d06.yml",
    ];
    let probe = Command::new("python3").args(["-c", "import yaml"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("PyYAML not installed: the YAML files are checked by the minimal reader only");
        return;
    }
    let (ok, out) = run(Command::new("python3").arg("-c").arg(script).args(files.iter().map(|f| repo().join(f))));
    assert!(ok, "{out}");
    let parsed: Vec<(String, Option<String>)> = serde_json::from_str(&out).unwrap();
    let mut by_file: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for (k, v) in parsed {
        match v {
            None => current = k,
            Some(v) => by_file.entry(current.clone()).or_default().push((k, v)),
        }
    }
    for f in files {
        let mine = flatten_yaml(&std::fs::read_to_string(repo().join(f)).unwrap());
        let theirs = &by_file[&repo().join(f).display().to_string()];
        assert_eq!(&mine, theirs, "{f}: the minimal reader and PyYAML disagree");
    }
}

#[test]
fn dockerfile_builds_in_stages_and_runs_as_a_user_with_the_config() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    let froms: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a builder and a runtime stage: {froms:?}");
    assert!(froms[0].starts_with("FROM rust:") && froms[0].ends_with(" AS build"), "{froms:?}");
    assert!(froms[1].contains("-slim"), "a slim runtime: {froms:?}");
    // The builder's Rust is the workspace's rust-version.
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let msrv = cargo.lines().find_map(|l| l.strip_prefix("rust-version = ")).unwrap().trim_matches('"');
    assert!(text.contains(&format!("ARG RUST_VERSION={msrv}\n")), "ARG RUST_VERSION={msrv}");
    let builder: String = text[..text.find("\nFROM debian").unwrap()].to_owned();
    for pkg in ["cmake", "libssl-dev", "pkg-config"] {
        assert!(builder.contains(pkg), "the builder installs {pkg}");
    }
    assert!(builder.contains("cargo build --release --locked --bin d06"));
    let runtime = &text[text.find("\nFROM debian").unwrap()..];
    assert!(runtime.contains("libssl3") && runtime.contains("ca-certificates"));
    let user = lines.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("USER");
    assert!(!user.starts_with("root") && !user.starts_with('0'), "non-root: {user}");
    assert!(lines.contains(&"ENTRYPOINT [\"/usr/local/bin/d06\"]"));
    assert!(lines.contains(&"CMD [\"run\", \"--config\", \"/etc/d06/d06.toml\"]"));
    let ignore = std::fs::read_to_string(repo().join("deploy/Dockerfile.dockerignore")).unwrap();
    for p in ["target", ".git", "deploy/compose/secrets"] {
        assert!(ignore.lines().any(|l| l == p), "{p} stays out of the build context");
    }
}

#[test]
fn systemd_unit_verifies_is_hardened_and_its_config_loads() {
    let dir = repo().join("deploy/systemd");
    let unit = std::fs::read_to_string(dir.join("d06.service")).unwrap();
    let directives: BTreeMap<&str, Vec<&str>> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .filter_map(|l| l.split_once('='))
        .fold(BTreeMap::new(), |mut m, (k, v)| {
            m.entry(k.trim()).or_insert_with(Vec::new).push(v.trim());
            m
        });
    let one = |k: &str| directives.get(k).map(|v| v.join(" ")).unwrap_or_default();
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("StateDirectory"), "d06");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("RestartPreventExitStatus"), "78", "no restart loop on a configuration error (EX_CONFIG)");
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert_eq!(one("EnvironmentFile"), "/etc/d06/d06.env");
    assert!(one("TimeoutStopSec").ends_with('s'));
    assert_eq!(one("ExecStart"), "/usr/local/bin/d06 run --config %d/d06.toml");
    assert_eq!(one("LoadCredential"), "d06.toml:/etc/d06/d06.toml");

    // The example config loads (with the variables the unit's EnvironmentFile provides).
    let (ok, report) = run(Command::new(env!("CARGO_BIN_EXE_d06"))
        .arg("check-config")
        .arg(dir.join("d06.toml"))
        .env("D06_KAFKA_PASSWORD", "example")
        .env("D06_CLICKHOUSE_PASSWORD", "example")
        .env("D06_HMAC_KEY", "an-example-key-of-32-bytes-long!"));
    assert!(ok, "d06 check-config deploy/systemd/d06.toml:\n{report}");
    let toml = std::fs::read_to_string(dir.join("d06.toml")).unwrap();
    assert!(toml.contains("state_dir = \"/var/lib/d06/state\""), "inside StateDirectory=d06");

    // systemd's own checks, when systemd-analyze is here: the unit as
    // installed, with ExecStart pointing at the binary just built.
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze not installed: unit checked by the directive list only");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let installed = tmp.path().join("d06.service");
    std::fs::write(&installed, unit.replace("/usr/local/bin/d06", env!("CARGO_BIN_EXE_d06"))).unwrap();
    let (ok, report) = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&installed));
    assert!(ok && report.trim().is_empty(), "systemd-analyze verify:\n{report}");
    let (ok, report) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&installed));
    assert!(ok, "exposure above 2.0 (systemd-analyze security):\n{report}");
}
