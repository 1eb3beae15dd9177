//! Issue 6: alerting. The Prometheus rules of `deploy/prometheus/rules/`
//! evaluated by a real Prometheus on a real d06's metrics, and the
//! Alertmanager routing of `deploy/local/alertmanager.yml` (the local copy of
//! `deploy/alertmanager/alertmanager.yml`) checked end to end: alerts posted
//! to the real Alertmanager reach the webhook of their own district.
//!
//! The webhook receivers of the local configuration all live on
//! 127.0.0.1:9099 (`/district/<code>`, `/province`, `/ops`); a test listens
//! there itself. Two runs (or two tests) cannot both listen, so a test waits
//! for the port; alerts carry a `blackbox_run` label, and a listener asks
//! Alertmanager to retry (503) a notification that belongs to another run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::events::{self, Place};
use crate::harness::{spawn_app, unique, AppOptions, Metrics, Producer, Prometheus};
use crate::webhook::Webhooks;

/// Where deploy/local/alertmanager.yml sends every notification.
const WEBHOOK_ADDR: &str = "127.0.0.1:9099";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn alertmanager_url() -> String {
    std::env::var("D06_TEST_ALERTMANAGER").unwrap_or_else(|_| {
        format!("http://127.0.0.1:{}", std::env::var("D06_ALERTMANAGER_PORT").unwrap_or_else(|_| "9093".into()))
    })
}

/// The eleven pre-2025 district codes, from the geography the project ships.
fn district_codes() -> Vec<String> {
    district_names().into_keys().collect()
}

/// The eleven pre-2025 districts, code → official name, from the CSV the
/// geography is built from (not from d06's types).
fn district_names() -> BTreeMap<String, String> {
    let csv =
        std::fs::read_to_string(repo().join("aggregator/data/binh_phuoc_district_summary.csv")).expect("district csv");
    let names: BTreeMap<String, String> = csv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .filter(|(c, _)| !c.is_empty())
        .collect();
    assert_eq!(names.len(), 11, "{names:?}");
    names
}

// --- Alertmanager configuration, statically (amtool) -------------------------

fn amtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("amtool").args(args).output().expect(
        "amtool not found on PATH (Debian package prometheus-alertmanager): run `bash deploy/local/install.sh`",
    );
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The receivers `amtool` resolves for an alert with `labels` under `config`.
fn receivers(config: &Path, labels: &[(&str, &str)]) -> String {
    let mut args = vec!["config".to_owned(), "routes".to_owned(), "test".to_owned()];
    args.push(format!("--config.file={}", config.display()));
    args.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, text) = amtool(&args);
    assert!(ok, "amtool {args:?}: {text}");
    text.lines().filter(|l| !l.starts_with("Warning")).collect::<Vec<_>>().join("\n").trim().to_owned()
}

#[test]
fn both_alertmanager_configs_are_valid_and_route_every_district_to_its_own_receiver() {
    let configs = [repo().join("deploy/alertmanager/alertmanager.yml"), repo().join("deploy/local/alertmanager.yml")];
    for config in &configs {
        let (ok, text) = amtool(&["check-config", &config.display().to_string()]);
        assert!(ok && text.contains("SUCCESS"), "{}: {text}", config.display());
        for code in district_codes() {
            let district = format!("district-{code}");
            assert_eq!(
                receivers(
                    config,
                    &[("alertname", "D06DistrictBehindPlan"), ("district", &code), ("indicator", "cccd")]
                ),
                district,
                "{}",
                config.display()
            );
            // The daily report: the province's summary, then the district.
            assert_eq!(
                receivers(config, &[("alertname", "D06DailyDistrictLag"), ("district", &code)]),
                format!("ioc-province,{district}"),
                "{}",
                config.display()
            );
        }
        for name in [
            "D06PipelineStalled",
            "D06DeadLettersRising",
            "D06ClickHouseWritesFailing",
            "D06StateDiskFull",
            "D06ShardsUnowned",
            "D06DailyAlertsNotSent",
            "D06Down",
        ] {
            assert_eq!(receivers(config, &[("alertname", name), ("instance", "x")]), "d06-ops", "{}", config.display());
        }
        // Not a district of the campaign: the province sees it.
        assert_eq!(receivers(config, &[("alertname", "D06DistrictBehindPlan"), ("district", "75")]), "ioc-province");
        assert_eq!(receivers(config, &[("alertname", "D06DailyDistrictLag"), ("district", "75")]), "ioc-province,null");
    }
    // Production limits the district routes to working hours and mutes
    // holidays; the daily routes are not limited to working hours.
    let prod = std::fs::read_to_string(&configs[0]).expect("read");
    assert_eq!(prod.matches("active_time_intervals: [vn-working-hours]").count(), 11);
    assert_eq!(prod.matches("mute_time_intervals: [vn-public-holidays]").count(), 11 + 11 + 1);
    assert!(prod.contains("location: Asia/Ho_Chi_Minh"));
    let local = std::fs::read_to_string(&configs[1]).expect("read");
    assert!(!local.contains("active_time_intervals:"), "local routing must not depend on the hour of the test");
    assert!(local.contains("group_wait: 1s"));
}

// --- Alertmanager, live ---------------------------------------------------------

/// Posts alerts to the real Alertmanager (API v2).
async fn post_alerts(alerts: &Value) {
    let url = format!("{}/api/v2/alerts", alertmanager_url());
    let r = reqwest::Client::new().post(&url).json(alerts).send().await.unwrap_or_else(|e| {
        panic!("cannot reach Alertmanager at {url} (is it running? `bash deploy/local/start.sh alertmanager`): {e}")
    });
    let status = r.status();
    assert!(status.is_success(), "POST {url}: {status}: {}", r.text().await.unwrap_or_default());
}

/// Resolves `alerts` (same labels, endsAt now) so they do not linger.
async fn resolve(mut alerts: Value) {
    let now = chrono::Utc::now().to_rfc3339();
    if let Some(list) = alerts.as_array_mut() {
        for a in list {
            a["endsAt"] = json!(now);
        }
    }
    post_alerts(&alerts).await;
}

fn label<'a>(alert: &'a Value, name: &str) -> &'a str {
    alert["labels"][name].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_for_district_688_reaches_688s_webhook_and_not_689s() {
    let run = unique("r");
    let mut hooks = Webhooks::listen(WEBHOOK_ADDR, Some(&run)).await;
    // A name of its own, so that nothing else shares its groups.
    let alertname = unique("D06BlackboxRouting");
    let alert = |district: &str, indicator: &str| {
        json!({
            "labels": {"alertname": alertname, "district": district, "indicator": indicator,
                       "severity": "warning", "blackbox_run": run},
            "annotations": {"summary": format!("black-box routing test, district {district}")},
        })
    };
    let alerts = json!([alert("688", "cccd"), alert("688", "vneid"), alert("689", "cccd")]);
    post_alerts(&alerts).await;

    // group_wait is 1 s locally; give it 30 s, then 3 s for strays.
    let got = hooks
        .collect(Duration::from_secs(30), Duration::from_secs(3), |got| {
            ["/district/688", "/district/689"].iter().all(|p| got.iter().any(|d| d.path == *p))
        })
        .await;
    resolve(alerts).await;

    let mut paths: Vec<&str> = got.iter().map(|d| d.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/district/688", "/district/689"], "one notification per district, nowhere else: {got:#?}");
    let d688 = got.iter().find(|d| d.path == "/district/688").expect("688");
    assert_eq!(d688.body["receiver"], "district-688");
    assert_eq!(d688.body["groupLabels"], json!({"alertname": alertname, "district": "688"}));
    let mut indicators: Vec<&str> = d688.alerts().iter().map(|a| label(a, "indicator")).collect();
    indicators.sort_unstable();
    assert_eq!(indicators, ["cccd", "vneid"], "both of 688's alerts, grouped: {d688:#?}");
    assert!(d688.alerts().iter().all(|a| label(a, "district") == "688" && label(a, "alertname") == alertname));
    let d689 = got.iter().find(|d| d.path == "/district/689").expect("689");
    assert_eq!(d689.body["receiver"], "district-689");
    assert_eq!(d689.alerts().len(), 1, "689 gets its own alert only: {d689:#?}");
    assert_eq!(label(d689.alerts()[0], "district"), "689");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_report_reaches_the_province_and_the_district() {
    let run = unique("r");
    let mut hooks = Webhooks::listen(WEBHOOK_ADDR, Some(&run)).await;
    let alerts = json!([{
        "labels": {"alertname": "D06DailyDistrictLag", "district": "690", "indicator": "cccd",
                   "severity": "info", "blackbox_run": run},
        "annotations": {"summary": "black-box daily report test"},
    }]);
    post_alerts(&alerts).await;
    let got = hooks
        .collect(Duration::from_secs(30), Duration::from_secs(3), |got| {
            ["/province", "/district/690"].iter().all(|p| got.iter().any(|d| d.path == *p))
        })
        .await;
    resolve(alerts).await;

    let mut paths: Vec<&str> = got.iter().map(|d| d.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/district/690", "/province"], "{got:#?}");
    let province = got.iter().find(|d| d.path == "/province").expect("province");
    assert_eq!(province.body["receiver"], "ioc-province");
    assert_eq!(
        province.body["groupLabels"],
        json!({"alertname": "D06DailyDistrictLag"}),
        "one summary for all districts"
    );
    let district = got.iter().find(|d| d.path == "/district/690").expect("690");
    assert_eq!(district.body["receiver"], "district-690");
    assert!(district.alerts().iter().all(|a| label(a, "district") == "690"), "{district:#?}");
}

// --- the rules on a real d06 ------------------------------------------------------

impl Prometheus {
    /// Every series of an instant query: (labels without __name__, value).
    async fn series(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let Some(v) = self.get("/api/v1/query", &[("query", promql)]).await else { return Vec::new() };
        let mut out = Vec::new();
        for s in v["data"]["result"].as_array().cloned().unwrap_or_default() {
            let mut labels: BTreeMap<String, String> = s["metric"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned())).collect())
                .unwrap_or_default();
            labels.remove("__name__");
            let value = s["value"][1].as_str().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN);
            out.push((labels, value));
        }
        out
    }

    /// (group, rule, health, lastError) of every loaded rule.
    async fn rules(&self) -> Vec<(String, String, String, String)> {
        let Some(v) = self.get("/api/v1/rules", &[]).await else { return Vec::new() };
        let mut out = Vec::new();
        for g in v["data"]["groups"].as_array().cloned().unwrap_or_default() {
            for r in g["rules"].as_array().cloned().unwrap_or_default() {
                let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
                out.push((g["name"].as_str().unwrap_or("").to_owned(), s("name"), s("health"), s("lastError")));
            }
        }
        out
    }
}

fn rules_dir() -> PathBuf {
    repo().join("deploy/prometheus/rules")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_evaluate_on_a_real_d06_and_the_districts_add_up_to_the_province() {
    let app = spawn_app(AppOptions { partitions: 1, shards: 2, ..AppOptions::default() }).await;
    let prometheus = Prometheus::start(app.metrics_port, Some(&rules_dir()));
    let producer = Producer::new();
    // CCCD applications: two in a commune of 688, one in 696.
    let a = Place::Commune("25216");
    let b = Place::Commune("25396");
    let msgs = [
        events::cccd("al1", "2024-04-20T09:00:00+07:00", a, "070203100011", "received"),
        events::cccd("al2", "2024-04-21T09:00:00+07:00", a, "070203100012", "received"),
        events::cccd("al3", "2024-04-22T09:00:00+07:00", b, "070203100013", "received"),
    ];
    for m in &msgs {
        producer.send(&app.topics.cccd, 0, None, m.as_bytes()).await;
    }
    app.wait_consumed(msgs.len() as u64, Duration::from_secs(60)).await;
    app.wait_for("district gauges", Duration::from_secs(30), || async {
        app.metrics()
            .await
            .get("d06_coverage_covered", &[("indicator", "cccd"), ("area_level", "district"), ("area", "696")])
            == Some(1.0)
    })
    .await;

    // Every rule loads and evaluates without error.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules = loop {
        let rules = prometheus.rules().await;
        if !rules.is_empty() && rules.iter().all(|(_, _, health, _)| health == "ok") {
            break rules;
        }
        assert!(Instant::now() < deadline, "rules not healthy: {rules:#?}\n{}", prometheus.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // As many as the rule files hold (counted from their text, not from a
    // Prometheus parse): none was dropped on loading.
    let in_files: usize = std::fs::read_dir(rules_dir())
        .expect("rules dir")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("rules file"))
        .map(|text| {
            text.lines()
                .filter(|l| l.trim_start().starts_with("- record:") || l.trim_start().starts_with("- alert:"))
                .count()
        })
        .sum();
    assert!(in_files >= 30, "the rule files hold the coverage and pipeline groups: {in_files}");
    assert_eq!(rules.len(), in_files, "{rules:#?}");

    // Wait until one evaluation of the group has recorded everything read
    // below. The rules of a group run in order at one evaluation time, but
    // their samples are appended one rule after another: a query between two
    // of them sees the first rule's new series and not yet the later ones'.
    // So wait for the last series read, not the first.
    let m = app.metrics().await;
    let province =
        |name: &str| m.get(name, &[("indicator", "cccd"), ("area_level", "province"), ("area", "70")]).expect(name);
    let one = |rows: Vec<(BTreeMap<String, String>, f64)>| match rows.as_slice() {
        [(_, v)] => Some(*v),
        _ => None,
    };
    // A lag flag per district for the three indicators whose baseline the
    // 2024 plan knows; none for smartphone_4g and sim_signature (unknown
    // baselines are a data gap, not a lag).
    let expected_flags = district_codes().len() * 3;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (covered, target, ratio) = loop {
        let area = one(prometheus
            .series(r#"d06:coverage_covered:max_by_area{indicator="cccd",area_level="district",area="696"}"#)
            .await);
        let covered = one(prometheus
            .series(r#"d06:coverage_covered:sum_by_indicator_level{indicator="cccd",area_level="district"}"#)
            .await);
        let target = one(prometheus
            .series(r#"d06:coverage_target:sum_by_indicator_level{indicator="cccd",area_level="district"}"#)
            .await);
        let ratio = one(prometheus
            .series(r#"d06:coverage_ratio:by_indicator_level{indicator="cccd",area_level="district"}"#)
            .await);
        let flags = prometheus.series("d06:coverage_behind_plan:district").await;
        match (area, covered, target, ratio) {
            (Some(a), Some(c), Some(t), Some(r))
                if a == 1.0 && c == province("d06_coverage_covered") && flags.len() == expected_flags =>
            {
                break (c, t, r)
            }
            state => assert!(
                Instant::now() < deadline,
                "recorded series never settled: (696, covered, target, ratio) = {state:?}, {} flags\n{}",
                flags.len(),
                prometheus.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The eleven districts add up to the province (covered and target).
    assert_eq!(covered, 3.0);
    assert_eq!(covered, sum_where(&m, "d06_coverage_covered", "cccd", "district"));
    assert_eq!(target, province("d06_coverage_target"));
    assert_eq!(target, 7101.0, "the 2024 plan's CCCD target");
    assert_eq!(ratio, covered / target);

    // The lag flag of every district and indicator agrees with the gauges:
    // covered < 0.95 × expected, or days behind ≥ 3. Read after two more
    // scrape-and-evaluate intervals so every flag saw the final gauges.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let flags = prometheus.series("d06:coverage_behind_plan:district").await;
    assert_eq!(flags.len(), expected_flags, "{flags:?}");
    let codes = district_codes();
    for (labels, flag) in &flags {
        let (ind, area) = (labels["indicator"].as_str(), labels["area"].as_str());
        assert_eq!(labels["district"], area);
        assert!(codes.iter().any(|c| c == area), "{labels:?}");
        let g =
            |name: &str| m.get(name, &[("indicator", ind), ("area_level", "district"), ("area", area)]).expect(name);
        assert_eq!(g("d06_coverage_baseline_known"), 1.0, "{labels:?}");
        let behind =
            g("d06_coverage_covered") < 0.95 * g("d06_coverage_expected") || g("d06_coverage_days_behind") >= 3.0;
        assert_eq!(*flag, if behind { 1.0 } else { 0.0 }, "{labels:?}");
    }
    // The district names the annotations use come from d06's geography
    // (d06_area_info), one per district, as the shipped CSV names them.
    let names: BTreeMap<String, String> = prometheus
        .series("d06:district_name:info")
        .await
        .into_iter()
        .map(|(l, v)| {
            assert_eq!(v, 1.0, "{l:?}");
            assert_eq!(l.len(), 3, "province, district and district_name only: {l:?}");
            assert_eq!(l["province"], "70", "{l:?}");
            (l["district"].clone(), l["district_name"].clone())
        })
        .collect();
    assert_eq!(names, district_names());
    let unknown: Vec<&str> = flags
        .iter()
        .map(|(l, _)| l["indicator"].as_str())
        .filter(|i| ["smartphone_4g", "sim_signature"].contains(i))
        .collect();
    assert!(unknown.is_empty(), "{unknown:?}");
    for code in &codes {
        for ind in ["smartphone_4g", "sim_signature"] {
            let labels = [("indicator", ind), ("area_level", "district"), ("area", code.as_str())];
            assert_eq!(m.get("d06_coverage_baseline_known", &labels), Some(0.0), "{ind} {code}");
        }
    }
}

/// Sum of `name` over the areas of one level, for one indicator.
fn sum_where(m: &Metrics, name: &str, indicator: &str, level: &str) -> f64 {
    m.series
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && l.get("indicator").map(String::as_str) == Some(indicator)
                && l.get("area_level").map(String::as_str) == Some(level)
        })
        .map(|(_, _, v)| v)
        .sum()
}
