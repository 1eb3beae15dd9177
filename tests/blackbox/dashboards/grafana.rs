//! What Grafana does with a dashboard, done by the test: the dashboard files,
//! their panels' targets and data sources, the variables, and each query
//! expanded as Grafana and the ClickHouse plugin would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{repo, FROM, TABLES};
use crate::yaml::flatten_yaml;

/// One dashboard file.
pub(super) struct Dashboard {
    pub(super) file: PathBuf,
    pub(super) json: Value,
}

impl Dashboard {
    pub(super) fn uid(&self) -> &str {
        self.json["uid"].as_str().unwrap_or("")
    }
}

pub(super) fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
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
pub(super) fn dashboards() -> Vec<Dashboard> {
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
pub(super) fn panels(d: &Value) -> Vec<&Value> {
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
pub(super) enum Query {
    /// PromQL.
    Prometheus(String),
    /// ClickHouse SQL; `time_series` when Grafana reads it as a time series.
    ClickHouse { sql: String, time_series: bool },
}

/// One panel target.
#[derive(Clone, Debug)]
pub(super) struct Target {
    pub(super) dashboard: String,
    pub(super) panel: String,
    pub(super) ref_id: String,
    pub(super) datasource_uid: String,
    pub(super) datasource_type: String,
    pub(super) query: Query,
}

/// The data sources of the provisioning files: uid → type.
pub(crate) fn provisioned_datasources() -> BTreeMap<String, String> {
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
pub(super) fn targets(d: &Dashboard, sources: &BTreeMap<String, String>) -> Vec<Target> {
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
pub(super) fn resolve_datasource(d: &Dashboard, named: &str, sources: &BTreeMap<String, String>) -> String {
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
pub(super) struct Variable {
    pub(super) name: String,
    pub(super) options: Vec<(String, String)>,
    /// A query variable's ClickHouse SQL (its options come from running it:
    /// [`query_variables`]).
    pub(super) sql: Option<String>,
}

/// The variables whose values come from the dashboard itself (custom,
/// constant) with their options; query variables with their SQL and no
/// options yet. Data source variables are resolved in [`targets`].
pub(super) fn variables(d: &Dashboard) -> Vec<Variable> {
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
pub(super) async fn query_variables(vars: &mut [Variable], http: &reqwest::Client, database: &str, range: Range) {
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
pub(super) fn put_variable(text: &str, name: &str, value: &str, label: &str) -> String {
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
pub(super) fn put_macro(text: &str, name: &str, f: impl Fn(&str) -> String) -> String {
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
pub(super) struct Range {
    pub(super) from: chrono::DateTime<chrono::Utc>,
    pub(super) to: chrono::DateTime<chrono::Utc>,
}

impl Range {
    pub(super) fn campaign_to_now() -> Range {
        let from = chrono::DateTime::parse_from_rfc3339(FROM).unwrap().with_timezone(&chrono::Utc);
        Range { from, to: chrono::Utc::now() }
    }
}

/// The ClickHouse plugin's macros and the database qualifier.
pub(super) fn put_clickhouse(sql: &str, range: Range, database: &str) -> String {
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

pub(super) fn put_prometheus(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "1h")
}

/// Every concrete query of a target: one per combination of the values of
/// the variables it uses. `(assignment, query)`.
pub(super) fn expand(
    target: &Target,
    vars: &[Variable],
    range: Range,
    database: &str,
) -> Vec<(Vec<(String, String)>, Query)> {
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
                "{} / {:?} / {}: something left unsubstituted (add it to the table in dashboards/mod.rs):\n{concrete}",
                target.dashboard,
                target.panel,
                target.ref_id
            );
            (a, q)
        })
        .collect()
}
